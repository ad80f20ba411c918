"""Reading replies to approval mails: who sent it, is it a person, and what did they say.

A reply decides only when its reply address names a task and approver, it has exactly one
From mailbox and that is the approver (and DMARC passed, when a trusted authserv-id is set),
it is not an automatic message, and the person's own text (see `bot.mail.reply_text`) says clearly
approve or deny. Everything else decides nothing.

Everything here is pure and may run in a worker process (`read_reply`); only `header_tokens`
runs on the event loop, and it reads nothing but the bounded header section.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from dataclasses import dataclass
from email import errors, policy
from email.message import EmailMessage, Message
from email.parser import BytesHeaderParser, BytesParser
from email.utils import getaddresses
from typing import Any

from bot.mail.reply_text import Reading, html_text, outcome_of, own_blocks, understand, verdict

__all__ = [
    "MAX_DEPTH",
    "MAX_HEADER_BYTES",
    "MAX_PARTS",
    "Reading",
    "ReplyFacts",
    "TooComplex",
    "bounded_parse",
    "clean_text",
    "dmarc_passed",
    "first_line",
    "header_tokens",
    "is_automatic",
    "message_key",
    "outcome_of",
    "parse",
    "read_reply",
    "reading_of",
    "reply_tokens",
    "sender",
    "understand",
]


_PRECEDENCE_AUTO = {"bulk", "junk", "list", "auto_reply"}
_AUTO_HEADERS = ("X-Autoreply", "X-Autorespond", "X-Auto-Reply", "X-Autoresponder")
_BOUNCERS = {"mailer-daemon", "postmaster"}
_HEADER_ERRORS = (errors.HeaderParseError, IndexError, ValueError, TypeError, AttributeError)

# Limits on what a sender controls: the parser costs ~0.25 ms per MIME part.
MAX_HEADER_BYTES = 256 * 1024
MAX_PARTS = 100
MAX_DEPTH = 8
_ADDRESS_HEADERS = ("delivered-to", "x-original-to", "to", "cc")
_MSG_ID = re.compile(r"<[\x21-\x3b\x3d\x3f-\x7e]{1,250}>")


class TooComplex(Exception):
    """The message is beyond what a reply may be (header size, MIME parts or nesting)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplyFacts:
    """Everything the decision needs from one reply, read in one pass (picklable)."""

    problem: str | None = None  # "too_complex" | "unreadable"
    automatic: bool = False
    sender: str | None = None
    dmarc: bool = False
    reading: Reading = Reading.AMBIGUOUS
    key: str = ""
    subject: str | None = None
    message_id: str | None = None


def parse(raw: bytes) -> EmailMessage:
    message = BytesParser(policy=policy.default).parsebytes(raw)
    assert isinstance(message, EmailMessage)
    return message


def _header_section(raw: bytes) -> bytes:
    ends = [i for i in (raw.find(b"\r\n\r\n"), raw.find(b"\n\n")) if i >= 0]
    head = raw[: min(ends) + 2] if ends else raw
    if len(head) > MAX_HEADER_BYTES:
        raise TooComplex
    return head


def header_tokens(raw: bytes, reply_domain: str) -> list[str]:
    """Reply tokens named in the address headers, read from the header section alone."""
    headers = BytesHeaderParser(policy=policy.compat32).parsebytes(_header_section(raw))
    found = re.compile(
        r"(?<![\w.%+-])([a-z2-7]{24})@" + re.escape(reply_domain) + r"(?![\w.-])", re.IGNORECASE
    )
    values = [str(v) for k, v in headers.raw_items() if k.lower() in _ADDRESS_HEADERS]
    return [m.group(1).lower() for value in values for m in found.finditer(value)]


_BOUNCE = r"bounce\+([a-z2-7]{24})@"


def bounce_tokens(addresses: list[str], reply_domain: str) -> list[str]:
    """The tokens of request-mail envelope senders (`bounce+<token>@REPLY_DOMAIN`) among
    `addresses` (a delivery status notification is sent to one)."""
    found = re.compile(_BOUNCE + re.escape(reply_domain) + r"$", re.IGNORECASE)
    return [
        m.group(1).lower()
        for address in addresses
        if (m := found.match(address.strip().strip("<>")))
    ]


def header_bounce_tokens(raw: bytes, reply_domain: str) -> list[str]:
    """Envelope-sender tokens named in the address headers (a DSN is addressed `To:` the
    envelope sender), read from the header section alone."""
    headers = BytesHeaderParser(policy=policy.compat32).parsebytes(_header_section(raw))
    found = re.compile(
        r"(?<![\w.%+-])" + _BOUNCE + re.escape(reply_domain) + r"(?![\w.-])", re.IGNORECASE
    )
    values = [str(v) for k, v in headers.raw_items() if k.lower() in _ADDRESS_HEADERS]
    return [m.group(1).lower() for value in values for m in found.finditer(value)]


def delivery_failure(raw: bytes) -> str | None:
    """What a delivery status notification (RFC 3464, `multipart/report;
    report-type=delivery-status`) says failed — "bounced: 5.1.1 <diagnostic>" — or None when
    it is not one or reports no failure (a delay, a success notice)."""
    message = bounded_parse(raw)
    if message.get_content_type() != "multipart/report":
        return None
    for part in message.walk():
        if part.get_content_type() != "message/delivery-status":
            continue
        blocks = part.get_payload()
        for block in blocks if isinstance(blocks, list) else []:
            if not isinstance(block, Message):
                continue
            if str(block.get("Action", "")).strip().lower() == "failed":
                status = clean_text(block.get("Status", ""), 20)
                diagnostic = clean_text(block.get("Diagnostic-Code", ""), 200)
                return " ".join(x for x in ("bounced:", status, diagnostic) if x)
    return None


def bounded_parse(raw: bytes) -> EmailMessage:
    """Parse a message no bigger in MIME terms than a reply may be; else TooComplex."""
    _header_section(raw)
    # Each part needs a boundary line or a Content-Type line: count both before parsing.
    if raw.count(b"\n--") > 4 * MAX_PARTS or len(re.findall(rb"(?im)^content-type:", raw)) > (
        2 * MAX_PARTS
    ):
        raise TooComplex
    message = parse(raw)
    parts, stack = 0, [(message, 0)]
    while stack:
        part, depth = stack.pop()
        parts += 1
        if parts > MAX_PARTS or depth > MAX_DEPTH:
            raise TooComplex
        payload = part.get_payload()
        if isinstance(payload, list):
            stack += [(p, depth + 1) for p in payload if isinstance(p, EmailMessage)]
    return message


def clean_text(value: object, limit: int) -> str:
    """Header-safe text: printable characters only, whitespace collapsed, at most `limit`."""
    text = "".join(ch if ch.isprintable() else " " for ch in str(value))
    return " ".join(text.split())[:limit]


def _message_id(message: EmailMessage) -> tuple[str | None, str]:
    """The Message-ID if it is a plain one (safe to copy into our headers), and its raw text."""
    raw = next((str(v) for k, v in message.raw_items() if k.lower() == "message-id"), "")
    candidate = "".join(raw.split())
    return (candidate if _MSG_ID.fullmatch(candidate) else None), raw


def message_key(message: EmailMessage, raw: bytes) -> str:
    """What makes a delivered message the same message: its Message-ID, else its bytes."""
    clean, given = _message_id(message)
    if clean:
        return clean
    if given.strip():  # not safe to store as is: its digest is just as stable
        return "sha256:" + hashlib.sha256(given.encode("utf-8", "surrogatepass")).hexdigest()
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def read_reply(raw: bytes, authserv_id: str | None, envelope_from: str | None) -> ReplyFacts:
    """Read one reply completely; CPU-heavy, so callers run it in a worker process."""
    try:
        message = bounded_parse(raw)
    except (TooComplex, RecursionError):
        return ReplyFacts(problem="too_complex")
    except Exception:
        return ReplyFacts(problem="unreadable")
    try:
        key = message_key(message, raw)
        subject = clean_text(message.get("Subject", ""), 200) or None
        clean_id, _ = _message_id(message)
        facts = ReplyFacts(key=key, subject=subject, message_id=clean_id)
        if is_automatic(message, envelope_from):
            return _with(facts, automatic=True)
        who = sender(message)
        if who is None:
            return facts
        dmarc = bool(authserv_id) and dmarc_passed(
            message, authserv_id or "", who.rpartition("@")[2]
        )
        return _with(facts, sender=who, dmarc=dmarc, reading=reading_of(message))
    except _HEADER_ERRORS:
        return ReplyFacts(problem="unreadable")


def _with(facts: ReplyFacts, **changes: Any) -> ReplyFacts:
    return dataclasses.replace(facts, **changes)


def is_automatic(message: EmailMessage, envelope_from: str | None) -> bool:
    """Auto-replies, out-of-office and bounces (RFC 3834 and common practice).

    A null reverse path ("" or aiosmtpd's "<>") is a bounce. A message whose headers cannot
    even be read counts as automatic: it decides nothing.
    """
    if envelope_from is not None and envelope_from.strip() in ("", "<>"):
        return True
    try:
        return _is_automatic(message)
    except _HEADER_ERRORS:
        return True


def _all(message: EmailMessage, name: str) -> list[str]:
    return [str(v).strip().lower() for v in message.get_all(name) or []]


def _is_automatic(message: EmailMessage) -> bool:
    if any(v.split(";")[0].strip() != "no" for v in _all(message, "Auto-Submitted")):
        return True
    if any(message.get(h) is not None for h in _AUTO_HEADERS):
        return True
    if any(v in _PRECEDENCE_AUTO for v in _all(message, "Precedence")):
        return True
    if any(v in ("<>", "") for v in _all(message, "Return-Path")):
        return True
    if message.get_content_type() == "multipart/report":
        return True
    local = (sender(message) or "").partition("@")[0]
    return local in _BOUNCERS


def sender(message: EmailMessage) -> str | None:
    """The one From mailbox, or None; see `_sender`. An unreadable header is None."""
    try:
        return _sender(message)
    except _HEADER_ERRORS:
        return None


def _sender(message: EmailMessage) -> str | None:
    """The one From mailbox, or None when there is not exactly one.

    Two parsers must agree on a single address: the modern header registry and
    `getaddresses`, so tricks that make one parser see another mailbox (CVE-2023-27043)
    authenticate nobody.
    """
    headers = message.get_all("From") or []
    raws = [value for name, value in message.raw_items() if name.lower() == "from"]
    if len(headers) != 1 or len(raws) != 1:
        return None
    header = headers[0]
    # The parser had to guess: never authenticate on a guess. Raw UTF-8 in a display name
    # (RFC 6532 mail) is only undecodable bytes, not a guess about the address.
    if any(not isinstance(d, errors.UndecodableBytesDefect) for d in header.defects):
        return None
    addresses: list[Any] = list(getattr(header, "addresses", ()))
    groups: list[Any] = list(getattr(header, "groups", ()))
    if len(addresses) != 1 or any(g.display_name is not None for g in groups):
        return None
    modern = str(addresses[0].addr_spec).lower()
    raw = re.sub(r"\r?\n[ \t]", " ", str(raws[0]))  # the header as sent, unfolded
    classic = [a for _, a in getaddresses([raw]) if a]

    if len(classic) != 1 or classic[0].lower() != modern:
        return None
    if not re.fullmatch(r"[^@\s<>(),;:\"\[\]\\]+@[A-Za-z0-9.-]+", modern):
        return None
    return modern


def dmarc_passed(message: EmailMessage, authserv_id: str, from_domain: str) -> bool:
    """DMARC passed for the From domain, according to the trusted receiver.

    Only the topmost Authentication-Results header counts, and only if the trusted receiver
    wrote it (RFC 8601 §5): anything below it came with the mail and may be the sender's own.
    Its dmarc=pass must name `header.from` equal to the From domain.
    """
    values = [str(v) for k, v in message.raw_items() if k.lower() == "authentication-results"]
    if not values:
        return False
    value = re.sub(r"\([^()]*\)", " ", " ".join(values[0].split())).lower()
    head, _, results = value.partition(";")
    serv = head.split()[0] if head.split() else ""
    if serv != authserv_id.lower():
        return False
    for result in results.split(";"):
        if re.match(r"\s*dmarc\s*=\s*pass\b", result):
            found = re.search(r"\bheader\.from\s*=\s*\"?([^\s;\"]+)", result)
            if found is not None and found.group(1) == from_domain.lower():
                return True
    return False


def reply_tokens(addresses: list[str], reply_domain: str) -> list[str]:
    """Local parts of the addresses at the reply domain."""
    tokens = []
    for address in addresses:
        local, _, domain = address.strip().strip("<>").rpartition("@")
        if (
            local
            and domain.lower() == reply_domain.lower()
            and re.fullmatch(r"[a-z2-7]{24}", local.lower())
        ):
            tokens.append(local.lower())
    return tokens


def _body_text(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain", "html"))
    if part is None:
        return ""
    try:
        content = part.get_content()
    except (LookupError, ValueError, AssertionError):
        return ""
    if not isinstance(content, str):
        return ""
    return html_text(content) if part.get_content_subtype() == "html" else content


def first_line(message: EmailMessage) -> str:
    """The first line the person wrote, quoted mail and signature removed."""
    blocks = own_blocks(_body_text(message))
    return blocks[0][0][:500] if blocks else ""


def reading_of(message: EmailMessage) -> Reading:
    """What the person's own text says: the first line of each of their blocks (above, below
    or between quotes) is read; all that say something must agree."""
    said = {verdict(block[0]) for block in own_blocks(_body_text(message))}
    said.discard(None)
    only = said.pop() if len(said) == 1 else None
    return only or Reading.AMBIGUOUS
