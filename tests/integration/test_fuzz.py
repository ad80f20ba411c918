"""Fuzzing: schemathesis against the OpenAPI document; hypothesis on Slack payloads and mail."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import asyncpg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.mail.replies import first_line, is_automatic, parse, read_reply, sender, understand
from tests.conftest import Service, approval_body
from tests.slack_support import DANA, SlackUserAgent
from tests.support import CallbackReceiver, ServiceProcess, free_port, service_env


async def test_the_api_matches_its_openapi_document_under_fuzzing(
    tmp_path: Path, database_url: str, receiver: CallbackReceiver
) -> None:
    proc = ServiceProcess(
        env=service_env(database_url, receiver.url, free_port(), LOG_LEVEL="WARNING"),
        log_path=tmp_path / "svc.log",
    )
    await proc.start()
    try:
        run = await asyncio.create_subprocess_exec(
            str(Path(sys.executable).parent / "schemathesis"),
            "run",
            proc.base_url + "/api/v1/openapi.json",
            "--header",
            "Authorization: Bearer test-api-token",
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,"
            "response_schema_conformance,response_headers_conformance",
            "--max-examples",
            "25",
            "--seed",
            "20261124",
            "--workers",
            "1",
            "--generation-allow-x00",
            "true",
            "--suppress-health-check",
            "all",
            "--request-timeout",
            "10",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            cwd=tmp_path,
        )
        out, _ = await asyncio.wait_for(run.communicate(), 240)
    finally:
        await proc.terminate()
    report = out.decode(errors="replace")
    assert run.returncode == 0, report[-6000:]
    assert "500 Internal Server Error" not in (tmp_path / "svc.log").read_text()


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=30),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)
_VALUE = st.one_of(
    st.text(max_size=80),
    _JSON.map(json.dumps),
    st.fixed_dictionaries(
        {
            "t": st.text(max_size=40) | st.uuids().map(str),
            "r": st.integers(-3, 3) | st.text(max_size=3),
            "h": st.text(max_size=40),
        }
    ).map(json.dumps),
)
_PAYLOAD = st.one_of(
    st.fixed_dictionaries(
        {
            "type": st.sampled_from(["block_actions", "view_submission", "shortcut", "x"]),
            "user": st.one_of(
                st.none(),
                st.fixed_dictionaries({"id": st.text(max_size=12)}),
                st.just({"id": DANA}),
            ),
            "team": st.one_of(st.none(), st.just({"id": "T0TASKJ01"})),
            "actions": st.lists(
                st.fixed_dictionaries(
                    {
                        "action_id": st.sampled_from(
                            [
                                "taskjuice_approve",
                                "taskjuice_deny",
                                "taskjuice_resume_workflow",
                                "other",
                            ]
                        ),
                        "value": _VALUE,
                    }
                ),
                max_size=2,
            ),
            "view": st.one_of(
                st.none(),
                st.fixed_dictionaries(
                    {
                        "callback_id": st.just("taskjuice_deny_reason"),
                        "private_metadata": _VALUE,
                        "state": _JSON,
                    }
                ),
            ),
            "container": _JSON,
            "channel": _JSON,
        }
    ),
    _JSON,
)


def _drawn(strategy: st.SearchStrategy[Any], count: int) -> list[Any]:
    """`count` examples drawn by hypothesis (then sent by the async test)."""
    found: list[Any] = []

    @settings(
        max_examples=count, database=None, deadline=None, suppress_health_check=list(HealthCheck)
    )
    @given(strategy)
    def collect(example: Any) -> None:
        found.append(example)

    collect()
    return found


async def test_malformed_slack_payloads_never_fail_and_never_decide(
    slack_service: Service, slack_user: SlackUserAgent, pool: asyncpg.Pool
) -> None:
    await slack_service.request("POST", "/api/v1/approvals", json=approval_body())
    statuses: set[int] = set()
    for payload in _drawn(_PAYLOAD, 150):
        status, _ = await slack_user.interact(payload)
        statuses.add(status)
    raw_bodies = [b"", b"payload=", b"payload=%7B", b"\xff\xfe", b"x" * 5000]
    for body in raw_bodies:
        status, _ = await slack_user.send(body, "application/x-www-form-urlencoded")
        statuses.add(status)
    assert statuses <= {200, 400, 404}, statuses
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM decisions") == 0


# The shapes that once earned a 500 or stored what could never be delivered.
_HOSTILE_TEXT = st.sampled_from(
    ["\x00", "\ud800", "\udfff", "\u2028", "\u2029", "\x85", "\x0b", "²", "١", "\r\n", "é"]
)
_HOSTILE_NUMBER = st.sampled_from(
    ["NaN", "Infinity", "-Infinity", "1e999", "-1e999", "9" * 400, "1" * 4400, "1e-999", "-0"]
)
_FIELDS = ["summary", "step", "run_id", "required_approvals", "expires_in", "details", "workspace"]


@st.composite
def _hostile_body(draw: st.DrawFn) -> bytes:
    """A create body with one field replaced by hostile raw JSON text."""
    field = draw(st.sampled_from(_FIELDS))
    text = draw(st.text(max_size=10)) + draw(_HOSTILE_TEXT) + draw(st.text(max_size=10))
    depth = draw(st.integers(20, 1200))
    value = draw(
        st.one_of(
            _HOSTILE_NUMBER,
            st.just(json.dumps(text)),
            st.just(json.dumps(text).replace("\\u", "\\\\u")),
            st.just("[" * depth + "]" * depth),
            st.just('{"k": ' * depth + "1" + "}" * depth),
            st.just(json.dumps({text: "v"}, ensure_ascii=draw(st.booleans()))),
        )
    )
    raw = json.dumps(approval_body(**{field: "MARK"})).replace('"MARK"', value)
    return raw.encode("utf-8", "surrogatepass")


_QUERY = st.sampled_from(["workspace", "status", "limit", "cursor"])


async def test_hostile_bodies_and_queries_never_fail_and_never_write(
    service: Service, pool: asyncpg.Pool
) -> None:
    statuses: list[int] = []
    for raw in _drawn(_hostile_body(), 60):
        status, body = await service.request("POST", "/api/v1/approvals", data=raw)
        statuses.append(status)
        assert status in (201, 422), (raw[:200], body)
    for name, text in _drawn(st.tuples(_QUERY, st.text(max_size=8) | _HOSTILE_TEXT), 40):
        for path in ("/api/v1/approvals", "/api/v1/outbox"):
            query = urlencode({name: text}, errors="surrogatepass")
            status, body = await service.request("GET", f"{path}?{query}")
            assert status in (200, 422), (path, name, text, body)
    for number in _drawn(st.integers(-(2**70), 2**70) | _HOSTILE_TEXT, 20):
        status, _ = await service.request(
            "GET", f"/api/v1/outbox?cursor={quote(str(number), errors='surrogatepass')}"
        )
        assert status in (200, 422)
        status, _ = await service.request(
            "POST", f"/api/v1/outbox/{quote(str(number), errors='surrogatepass')}/retry"
        )
        assert status == 404
    assert 422 in statuses
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM tasks") == statuses.count(201)


# Any text a client can put in a header (HTTP clients refuse control characters).
_HEADER_TEXT = st.characters(blacklist_categories=("Cc", "Cs"))
_TIMESTAMP = st.one_of(
    st.text(_HEADER_TEXT, max_size=12),
    st.sampled_from(["²", "١٧٠٠٠٠٠٠٠٠", "9" * 400, "1" * 5000, "-1", "", " 1"]),
    st.integers(-(2**80), 2**80).map(str),
)
_SIGNATURE = st.one_of(
    st.text(_HEADER_TEXT, max_size=70),
    st.text(alphabet="0123456789abcdefé", min_size=64, max_size=64).map(lambda h: "v0=" + h),
)


async def test_bad_signatures_and_timestamps_always_get_401(
    slack_service: Service, slack_user: SlackUserAgent, pool: asyncpg.Pool
) -> None:
    body = b"payload=" + json.dumps({"type": "block_actions", "actions": []}).encode()
    for timestamp, signature in _drawn(st.tuples(_TIMESTAMP, _SIGNATURE), 80):
        headers = {"X-Slack-Request-Timestamp": timestamp, "X-Slack-Signature": signature}
        status, _ = await slack_user.send(body, "application/x-www-form-urlencoded", headers)
        assert status == 401, (timestamp[:40], signature)
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM decisions") == 0


@settings(max_examples=300, deadline=None)
@given(
    raw=st.binary(max_size=600)
    | st.text(max_size=600).map(lambda t: t.encode("utf-8", "surrogatepass"))
)
def test_mail_parsing_never_crashes_on_garbage(raw: bytes) -> None:
    message = parse(raw)
    is_automatic(message, None)
    who = sender(message)
    assert who is None or "@" in who
    understand(first_line(message))
    facts = read_reply(raw, "mx.acme.test", None)  # what the worker process runs
    assert facts.problem in (None, "too_complex", "unreadable")
    assert "\x00" not in facts.key and (facts.subject or "").isprintable()


_HEADER_VALUE = st.text(alphabet=st.characters(blacklist_characters="\r\n"), max_size=60)


@settings(max_examples=300, deadline=None)
@given(
    headers=st.lists(
        st.tuples(
            st.sampled_from(
                [
                    "From",
                    "To",
                    "Reply-To",
                    "Sender",
                    "Content-Type",
                    "Auto-Submitted",
                    "Precedence",
                    "Return-Path",
                ]
            ),
            _HEADER_VALUE,
        ),
        max_size=6,
    ),
    body=st.text(max_size=200),
)
def test_no_forged_from_reads_as_the_approver(headers: list[tuple[str, str]], body: str) -> None:
    lines = [f"{name}: {value}" for name, value in headers]
    raw = ("\r\n".join(lines) + "\r\n\r\n" + body).encode("utf-8", "surrogatepass")
    who = sender(parse(raw))
    from_values = [v for name, v in headers if name == "From"]
    if who == "dana@acme.test":
        # only a single, plain From naming exactly that mailbox may authenticate
        assert len(from_values) == 1 and from_values[0].count("@") == 1
        assert "dana@acme.test" in from_values[0].lower()
