"""Reading replies to approval mails: who sent it, is it a person, and what did they say.

A reply decides only when its reply address names a task and approver, it has exactly one
From mailbox and that is the approver (and DMARC passed, when a trusted authserv-id is set),
it is not an automatic message, and the first line of the text above the quoted mail says
clearly approve or deny. Everything else decides nothing.
"""

from __future__ import annotations

import enum
import hashlib
import re
from email import errors, policy
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import getaddresses
from html.parser import HTMLParser
from typing import Any

from mailparser_reply import EmailReplyParser

from bot.domain import Outcome

__all__ = [
    "Reading",
    "dmarc_passed",
    "first_line",
    "is_automatic",
    "message_key",
    "outcome_of",
    "parse",
    "reply_tokens",
    "sender",
    "understand",
]


_APPROVE = {
    "approve",
    "approved",
    "yes",
    "lgtm",
    "genehmigt",
    "genehmigen",
    "genehmige",
    "ja",
    "freigegeben",
    "zugestimmt",
    "approuvé",
    "approuve",
    "approuver",
    "oui",
    "accepté",
    "accepte",
    "aprobado",
    "apruebo",
    "aprobar",
    "sí",
    "si",
}
_DENY = {
    "deny",
    "denied",
    "no",
    "reject",
    "rejected",
    "abgelehnt",
    "ablehnen",
    "lehne",
    "nein",
    "refusé",
    "refuse",
    "refuser",
    "non",
    "rejeté",
    "rejete",
    "denegado",
    "deniego",
    "rechazado",
    "rechazar",
    "rechazo",
}
_NEGATIONS = {
    "not",
    "don't",
    "dont",
    "never",
    "nicht",
    "kein",
    "keine",
    "pas",
    "ne",
    "jamais",
    "nunca",
}
_PRECEDENCE_AUTO = {"bulk", "junk", "list", "auto_reply"}
_AUTO_HEADERS = ("X-Autoreply", "X-Autorespond", "X-Auto-Reply", "X-Autoresponder")
_BOUNCERS = {"mailer-daemon", "postmaster"}
_REPLY_PARSER = EmailReplyParser(languages=["en", "de", "fr", "es"])


class Reading(enum.StrEnum):
    """What the first line of a reply says."""

    APPROVE = "approve"
    DENY = "deny"
    AMBIGUOUS = "ambiguous"


def parse(raw: bytes) -> EmailMessage:
    message = BytesParser(policy=policy.default).parsebytes(raw)
    assert isinstance(message, EmailMessage)
    return message


def message_key(message: EmailMessage, raw: bytes) -> str:
    """What makes a delivered message the same message: its Message-ID, else its bytes."""
    message_id = str(message.get("Message-ID", "")).strip()
    return message_id if message_id else "sha256:" + hashlib.sha256(raw).hexdigest()


def is_automatic(message: EmailMessage, envelope_from: str | None) -> bool:
    """Auto-replies, out-of-office and bounces (RFC 3834 and common practice).

    A message whose headers cannot even be read counts as automatic: it decides nothing.
    """
    try:
        return _is_automatic(message, envelope_from)
    except (errors.HeaderParseError, IndexError, ValueError, TypeError, AttributeError):
        return True


def _is_automatic(message: EmailMessage, envelope_from: str | None) -> bool:
    auto = str(message.get("Auto-Submitted", "no")).strip().lower()
    if auto.split(";")[0].strip() != "no":
        return True
    if any(message.get(h) is not None for h in _AUTO_HEADERS):
        return True
    if str(message.get("Precedence", "")).strip().lower() in _PRECEDENCE_AUTO:
        return True
    return_path = message.get("Return-Path")
    if envelope_from == "" or (return_path is not None and str(return_path).strip() in ("<>", "")):
        return True
    if message.get_content_type() == "multipart/report":
        return True
    local = (sender(message) or "").partition("@")[0]
    return local in _BOUNCERS


def sender(message: EmailMessage) -> str | None:
    """The one From mailbox, or None; see `_sender`. An unreadable header is None."""
    try:
        return _sender(message)
    except (errors.HeaderParseError, IndexError, ValueError, TypeError, AttributeError):
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
    """DMARC passed according to the trusted receiver's Authentication-Results.

    Only headers whose authserv-id is the configured one count: any sender can add others.
    """
    for header in message.get_all("Authentication-Results") or []:
        value = str(header)
        serv = value.split(";", 1)[0].strip().split()[0].lower() if value.strip() else ""
        if serv != authserv_id.lower():
            continue
        for result in value.split(";")[1:]:
            result = result.strip().lower()
            if re.match(r"dmarc\s*=\s*pass\b", result):
                found = re.search(r"header\.from\s*=\s*([^\s;]+)", result)
                if found is None or found.group(1) == from_domain.lower():
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


class _Text(HTMLParser):
    """Visible text of an HTML mail, with a line break for each block."""

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("style", "script", "head"):
            self._skip += 1
        if tag in ("br", "p", "div", "tr", "li", "blockquote", "h1", "h2", "h3"):
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("style", "script", "head") and self._skip:
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


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
    if part.get_content_subtype() == "html":
        extractor = _Text()
        extractor.feed(content)
        content = "".join(extractor.parts)
    return content


def first_line(message: EmailMessage) -> str:
    """The first non-empty line of what the person wrote, quoted mail and signature removed."""
    text = _body_text(message).replace("\r\n", "\n")
    try:
        reply = _REPLY_PARSER.parse_reply(text=text)
    except Exception:  # the parser is third-party; an odd mail must not stop us
        reply = text
    for line in (reply or "").splitlines():
        line = line.strip()
        if line and not line.startswith(">"):
            return line[:500]
    return ""


def understand(line: str) -> Reading:
    """Approve, deny, or ambiguous (both, neither, or negated)."""
    words = set(re.findall(r"[\w'’]+", line.lower().replace("’", "'")))
    approve, deny, negated = words & _APPROVE, words & _DENY, words & _NEGATIONS
    if approve and not deny and not negated:
        return Reading.APPROVE
    if deny and not approve and not negated:
        return Reading.DENY
    return Reading.AMBIGUOUS


def outcome_of(reading: Reading) -> Outcome | None:
    return {Reading.APPROVE: Outcome.APPROVE, Reading.DENY: Outcome.DENY}.get(reading)
