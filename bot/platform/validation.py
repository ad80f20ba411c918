"""Turn API bodies into typed values, naming every bad field in plain words."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

from jsonschema import Draft202012Validator, validators
from jsonschema.exceptions import ValidationError, best_match

from bot.domain import Actor, NewApproval, NewTier, Reversibility, TimeoutPolicy
from bot.errors import ValidationFailed
from bot.platform.schemas import SCHEMAS

__all__ = [
    "MAX_DEPTH",
    "MAX_DIGITS",
    "check_schema",
    "field_path",
    "load_json",
    "parse_new_approval",
    "unfit_text",
    "whole_number",
]

# Deeper than any body of the API needs, far below the interpreter's recursion limit.
MAX_DEPTH = 32
# Integers beyond this many digits are no count or amount the platform sends; Python refuses
# to even print one of over 4,300 digits, and no renderer could format it.
MAX_DIGITS = 30
_SURROGATE = re.compile("[\ud800-\udfff]")


def unfit_text(text: str) -> str | None:
    """Why `text` cannot be stored in PostgreSQL or sent in mail, or None when it can.

    PostgreSQL text holds no U+0000; a lone surrogate (JSON `"\\ud800"`, or a header byte that
    is not UTF-8) has no UTF-8 encoding at all.
    """
    if "\x00" in text:
        return "must not contain NUL characters"
    if _SURROGATE.search(text):
        return "must be valid Unicode (no unpaired surrogates)"
    return None


def whole_number(raw: str, maximum: int) -> int | None:
    """`raw` as an int in 0..maximum when it is plain ASCII digits, else None.

    `str.isdigit()` alone admits `²` (which `int()` refuses) and digit strings so long that
    `int()` refuses them too; the length bound keeps the conversion cheap.
    """
    if not (raw.isascii() and raw.isdigit()) or len(raw) > len(str(maximum)):
        return None
    value = int(raw)
    return value if value <= maximum else None


class _Refused:
    """A JSON number the loader will not turn into a Python value: named after parsing."""

    def __init__(self, reason: str) -> None:
        self.reason = reason


def _parse_int(raw: str) -> int | _Refused:
    if len(raw.lstrip("-")) > MAX_DIGITS:
        return _Refused(f"must be a number of at most {MAX_DIGITS} digits")
    return int(raw)


def _parse_float(raw: str) -> float | _Refused:
    value = float(raw)
    return value if math.isfinite(value) else _Refused("must be a finite number")


def _parse_constant(raw: str) -> _Refused:
    return _Refused("must be a finite number (JSON has no NaN or Infinity)")


def load_json(raw: bytes) -> Any:
    """The one way a JSON body is read: strict UTF-8, no NaN/Infinity, no number that
    overflows, nesting at most MAX_DEPTH, and every string fit for PostgreSQL and mail.

    Raises ValidationFailed naming each problem (by field path where there is one).
    """
    try:
        text = raw.decode("utf-8")
        value = json.loads(
            text,
            parse_int=_parse_int,
            parse_float=_parse_float,
            parse_constant=_parse_constant,
        )
    except RecursionError:
        raise ValidationFailed(
            {"body": f"must not nest more than {MAX_DEPTH} levels deep"}, "The body is too deep."
        ) from None
    except (UnicodeDecodeError, ValueError):
        raise ValidationFailed(
            {"body": "must be a JSON document"}, "The body is not JSON."
        ) from None
    fields = dict(_unfit(value))
    if fields:
        raise ValidationFailed(fields)
    return value


def _unfit(value: Any) -> Iterator[tuple[str, str]]:
    """(path, problem) for every refused number, unfit string or key, and too-deep nesting;
    iterative, so no body can exhaust the stack."""
    stack: list[tuple[Any, list[Any]]] = [(value, [])]
    while stack:
        item, path = stack.pop()
        if len(path) > MAX_DEPTH:
            yield "body", f"must not nest more than {MAX_DEPTH} levels deep"
            return
        if isinstance(item, _Refused):
            yield field_path(path), item.reason
        elif isinstance(item, str):
            reason = unfit_text(item)
            if reason:
                yield field_path(path), reason
        elif isinstance(item, dict):
            for key, inner in item.items():
                reason = unfit_text(key)
                if reason:
                    yield field_path(path), f"keys {reason}"
                stack.append((inner, [*path, key]))
        elif isinstance(item, list):
            stack.extend((inner, [*path, index]) for index, inner in enumerate(item))


def _pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Iterator[ValidationError]:
    """JSON Schema's `pattern` with ECMA-262's `$` (end of text): Python's `$` also matches
    before a final newline, which let `acme\\n` pass as a workspace and an email address."""
    if not validator.is_type(instance, "string"):
        return
    python = (
        pattern[:-1] + r"\Z" if pattern.endswith("$") and not pattern.endswith("\\$") else pattern
    )
    if not re.search(python, instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


_Validator = validators.extend(Draft202012Validator, {"pattern": _pattern})
_VALIDATORS = {name: _Validator(schema) for name, schema in SCHEMAS.items()}


def field_path(parts: Iterable[Any]) -> str:
    """`approvers[1].email` from a JSON path; `body` for the document itself."""
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "body"


def check_schema(schema: str, body: Any) -> dict[str, Any]:
    """Validate `body` against a named schema; raise ValidationFailed naming each bad field."""
    if not isinstance(body, dict):
        raise ValidationFailed({"body": "must be an object"})
    fields = dict(_unfit(body))
    if "body" not in fields:  # a body nested too deep is not walked any further
        for error in _VALIDATORS[schema].iter_errors(body):
            for path, message in _describe(error):
                fields.setdefault(path, message)
    if fields:
        raise ValidationFailed(fields)
    assert isinstance(body, dict)
    return body


def _describe(error: ValidationError) -> list[tuple[str, str]]:
    """The fields an error names, each with what is wrong: the keywords about an object's
    fields (missing, unknown, alternatives) here, a single value's in `_value_message`."""
    path = list(error.absolute_path)
    match error.validator:
        case "required":
            missing = [name for name in error.validator_value if name not in error.instance]
            return [(field_path([*path, name]), "is required") for name in missing]
        case "additionalProperties":
            known = set(error.schema.get("properties", {}))
            extra = [name for name in error.instance if name not in known]
            return [(field_path([*path, name]), "is not a known field") for name in extra]
        case "anyOf" if error.schema.get("anyOf", [{}])[0].get("required") == ["email"]:
            return [(field_path(path), "needs an email or a slack_user_id")]
        case "anyOf" | "oneOf" if error.context:
            inner = best_match(error.context)
            return _describe(inner) if inner is not None else [(field_path(path), "is invalid")]
    return [(field_path(path), _value_message(str(error.validator), error.validator_value, path))]


# A bound a value breaks, by its keyword: the message, with the bound in place of {}.
_BOUNDS = {
    "maxLength": "must be at most {} characters",
    "minimum": "must be at least {}",
    "exclusiveMinimum": "must be greater than {}",
    "maximum": "must be at most {}",
    "exclusiveMaximum": "must be less than {}",
    "minItems": "must have at least {} item(s)",
    "maxItems": "must have at most {} items",
    "maxProperties": "must have at most {} entries",
}


def _value_message(keyword: str, value: Any, path: list[Any]) -> str:
    """What is wrong with one value, by the schema keyword it fails (`value` is the
    keyword's own value in the schema: the type, the choices, the bound)."""
    match keyword:
        case "type":
            kinds = value if isinstance(value, list) else [value]
            return "must be " + " or ".join(_article(k) for k in kinds)
        case "enum":
            return "must be one of " + ", ".join(map(str, value))
        case "minLength":
            return "must not be empty" if value == 1 else f"must be at least {value} characters"
        case "pattern":
            return _pattern_message(path)
    return _BOUNDS[keyword].format(value) if keyword in _BOUNDS else "is invalid"


def _article(kind: str) -> str:
    return {"object": "an object", "array": "a list", "integer": "a whole number"}.get(
        kind, "null" if kind == "null" else f"a {kind}"
    )


def _pattern_message(path: list[Any]) -> str:
    last = next((p for p in reversed(path) if isinstance(p, str)), "")
    return {
        "email": "is not an email address",
        "alert_emails": "is not an email address",
        "slack_user_id": "is not a Slack user ID (U… or W…)",
        "slack_team_id": "is not a Slack team ID (T… or E…)",
        "slack_channel": "is not a Slack channel ID (C…, G… or D…)",
        "workspace": "must be a URL-safe slug (letters, digits, . _ -)",
        "currency": "must be a three-letter ISO 4217 code",
    }.get(last, "has an invalid format")


def _actor(raw: dict[str, Any]) -> Actor:
    email = raw.get("email")
    return Actor(
        email=email.lower() if email else None,
        slack_user_id=raw.get("slack_user_id"),
        slack_team_id=raw.get("slack_team_id"),
    )


def _distinct(actors: Iterable[Actor], where: str, fields: dict[str, str]) -> tuple[Actor, ...]:
    """The tier's approvers; one naming an email or Slack id named before is a field error:
    one person is one vote, so a list that names someone twice is refused, not trimmed."""
    seen: dict[str, int] = {}
    out = []
    for index, actor in enumerate(actors):
        keys = {f"e:{actor.email}" if actor.email else "", f"s:{actor.slack_user_id or ''}"}
        keys -= {"", "s:"}
        earlier = next((seen[k] for k in sorted(keys) if k in seen), None)
        if earlier is not None:
            fields.setdefault(f"{where}[{index}]", f"names the same person as {where}[{earlier}]")
            continue
        seen |= dict.fromkeys(keys, index)
        out.append(actor)
    return tuple(out)


def parse_new_approval(body: Any, *, allow_proceed_irreversible: bool) -> NewApproval:
    """A NewApproval from a create body; every problem is named in one ValidationFailed."""
    data = check_schema("ApprovalCreate", body)
    fields: dict[str, str] = {}
    known = set(SCHEMAS["ApprovalCreate"]["properties"])
    policy = TimeoutPolicy(data.get("timeout_policy", "deny"))
    reversibility = Reversibility(data["reversibility"])
    escalation = data.get("escalation") or []

    expires_at: datetime | None = None
    if ("expires_in" in data) == ("expires_at" in data):
        fields["expires_in"] = "give exactly one of expires_in or expires_at"
    elif "expires_at" in data:
        expires_at = _parse_timestamp(data["expires_at"], fields)

    if policy is TimeoutPolicy.ESCALATE and not escalation:
        fields["escalation"] = "at least one tier is required when timeout_policy is escalate"
    if escalation and policy is not TimeoutPolicy.ESCALATE:
        fields["escalation"] = "escalation tiers apply only with timeout_policy escalate"
    if (
        policy is TimeoutPolicy.PROCEED
        and reversibility is Reversibility.IRREVERSIBLE
        and not allow_proceed_irreversible
    ):
        fields["timeout_policy"] = (
            "proceed is refused for irreversible actions (operator setting "
            "ALLOW_PROCEED_IRREVERSIBLE)"
        )

    requested_by = _actor(data["requested_by"]) if data.get("requested_by") else None
    allow_self = bool(data.get("allow_self_approval", False))
    required = int(data.get("required_approvals", 1))
    tiers = [
        NewTier(
            approvers=_distinct((_actor(a) for a in data["approvers"]), "approvers", fields),
            expires_in=data.get("expires_in"),
            expires_at=expires_at,
        )
    ]
    tiers += [
        NewTier(
            approvers=_distinct(
                (_actor(a) for a in t["approvers"]), f"escalation[{i}].approvers", fields
            ),
            expires_in=t["expires_in"],
        )
        for i, t in enumerate(escalation)
    ]
    for index, tier in enumerate(tiers):
        eligible = [
            a
            for a in tier.approvers
            if allow_self or requested_by is None or not _same(a, requested_by)
        ]
        if len(eligible) < required:
            where = "approvers" if index == 0 else f"escalation[{index - 1}].approvers"
            fields.setdefault(
                where,
                f"required_approvals is {required} but only {len(eligible)} distinct approver(s)"
                " other than the requester can approve",
            )
    if fields:
        raise ValidationFailed(fields)

    deliver = {"slack": True, "email": True, "slack_channel": None} | data.get("deliver", {})
    return NewApproval(
        workspace=data["workspace"],
        run_id=data["run_id"],
        workflow=data["workflow"],
        step=data.get("step"),
        summary=data["summary"],
        details=data.get("details", {}),
        reversibility=reversibility,
        tiers=tuple(tiers),
        required_approvals=required,
        requested_by=requested_by,
        allow_self_approval=allow_self,
        timeout_policy=policy,
        remind_before=data.get("remind_before"),
        remind_default="remind_before" not in data,
        deliver=deliver,
        extra={k: v for k, v in data.items() if k not in known},
    )


def _same(a: Actor, b: Actor) -> bool:
    if a.email and b.email and a.email == b.email:
        return True
    return bool(a.slack_user_id and a.slack_user_id == b.slack_user_id)


def _parse_timestamp(raw: str, fields: dict[str, str]) -> datetime | None:
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        fields["expires_at"] = "must be an RFC 3339 timestamp with a time zone"
        return None
    if value.tzinfo is None:
        fields["expires_at"] = "must include a time zone (e.g. Z or +00:00)"
        return None
    return value
