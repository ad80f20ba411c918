"""What a person wrote in a reply: their own lines wherever they stand (above, below or between
the quoted mail), without quoted text, attribution lines, original-message blocks and
signatures. English, German, French and Spanish clients.

Every step is one pass over bounded lines with plain string tests or short anchored patterns,
so no text, however hostile, makes reading slow.
"""

from __future__ import annotations

import enum
import re
from html.parser import HTMLParser

from bot.domain import Outcome

__all__ = [
    "MAX_LINES",
    "MAX_LINE_CHARS",
    "MAX_TEXT_CHARS",
    "Reading",
    "html_text",
    "outcome_of",
    "own_blocks",
    "understand",
    "verdict",
]

MAX_TEXT_CHARS = 256_000
MAX_LINES = 5_000
MAX_LINE_CHARS = 1_000
_MAX_HTML_CHARS = 512_000

# "On … wrote:", "Am … schrieb …:", "Le … a écrit :", "El … escribió:" (one to three lines).
_ATTRIBUTION_OPENERS = ("on ", "am ", "le ", "el ")
_ATTRIBUTION_VERBS = (" wrote", " schrieb ", " a écrit", " escribió", " escribio")
# The original mail follows unquoted: Outlook's header block, separators, forwards.
_HEADER_FROM = re.compile(r"\*?(from|von|de)\*?:[ \t]*\S", re.IGNORECASE)
_HEADER_NEXT = re.compile(
    r"\*?(sent|date|to|subject|gesendet|datum|an|betreff|envoyé|à|objet|enviado|fecha|para|"
    r"asunto)\*?:",
    re.IGNORECASE,
)
_SEPARATOR = re.compile(
    r"-{3,}\s*(original message|ursprüngliche nachricht|message d'origine|mensaje original|"
    r"forwarded message|weitergeleitete nachricht|message transféré|mensaje reenviado)\s*-{3,}"
    r"|_{20,}"
    r"|(begin forwarded message|anfang der weitergeleiteten nachricht|début du message "
    r"réexpédié|inicio del mensaje reenviado)\s*:",
    re.IGNORECASE,
)
_SENT_FROM = re.compile(
    r"(sent from my|get outlook for|gesendet von|von meinem|envoyé de mon|envoyé depuis|"
    r"enviado desde)\b",
    re.IGNORECASE,
)


def _lines(text: str) -> list[str]:
    """Bounded, right-stripped lines; runs of blank lines collapsed to one."""
    lines: list[str] = []
    blank = False
    for line in text[:MAX_TEXT_CHARS].replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        line = line[:MAX_LINE_CHARS].strip()
        if not line:
            if not blank and lines:
                lines.append("")
            blank = True
            continue
        blank = False
        lines.append(line)
        if len(lines) >= MAX_LINES:
            break
    return lines


def _attribution(lines: list[str], at: int) -> int:
    """How many lines from `at` form an attribution line ("On … wrote:"), or 0."""
    if not lines[at].lower().startswith(_ATTRIBUTION_OPENERS):
        return 0
    joined = ""
    for count in range(1, 4):
        if at + count > len(lines) or not lines[at + count - 1]:
            return 0
        joined = (joined + " " + lines[at + count - 1]).strip().lower()
        if joined.endswith(":") and any(verb in joined for verb in _ATTRIBUTION_VERBS):
            return count
    return 0


def _original_starts(lines: list[str], at: int) -> bool:
    """The unquoted original mail begins at this line."""
    line = lines[at]
    if _SEPARATOR.fullmatch(line):
        return True
    if _HEADER_FROM.match(line):
        return any(_HEADER_NEXT.match(nxt) for nxt in lines[at + 1 : at + 4])
    return False


def own_blocks(text: str) -> list[list[str]]:
    """The person's own text as blocks of lines, split wherever quoted mail stood."""
    lines = _lines(text)
    blocks: list[list[str]] = [[]]
    in_signature = False
    at = 0
    while at < len(lines):
        line = lines[at]
        quoted = line.startswith(">")
        taken = 0 if quoted else _attribution(lines, at)
        if quoted or taken:
            in_signature = False
            if blocks[-1]:
                blocks.append([])
            if taken:
                following = next((x for x in lines[at + taken :] if x), "")
                if not following.startswith(">"):
                    break  # an attribution above an unquoted original: the rest is the original
            at += max(taken, 1)
            continue
        if _original_starts(lines, at):
            break
        if line == "--":  # the "-- " delimiter, stripped
            in_signature = True
        elif line and not in_signature and not _SENT_FROM.match(line):
            blocks[-1].append(line)
        at += 1
    return [block for block in blocks if block]


class _Text(HTMLParser):
    """Visible text of an HTML mail: a line per block, `> ` before lines in a blockquote."""

    _BLOCKS = ("br", "p", "div", "tr", "li", "h1", "h2", "h3", "hr", "table")

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.lines: list[str] = []
        self.current: list[str] = []
        self.depth = 0
        self._skip = 0

    def _break(self) -> None:
        text = " ".join("".join(self.current).split())
        self.lines.append("> " * self.depth + text if text else "")
        self.current = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("style", "script", "head", "title"):
            self._skip += 1
        elif tag == "blockquote":
            self._break()
            self.depth += 1
        elif tag in self._BLOCKS:
            self._break()

    def handle_endtag(self, tag: str) -> None:
        if tag in ("style", "script", "head", "title"):
            self._skip = max(0, self._skip - 1)
        elif tag == "blockquote":
            self._break()
            self.depth = max(0, self.depth - 1)
        elif tag in self._BLOCKS:
            self._break()

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.current.append(data)


def html_text(html: str) -> str:
    """Plain lines of a bounded HTML body, quoted parts marked as `>` quotes."""
    extractor = _Text()
    extractor.feed(html[:_MAX_HTML_CHARS])
    extractor.close()
    extractor._break()
    return "\n".join(extractor.lines)


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


class Reading(enum.StrEnum):
    """What the person's own text says."""

    APPROVE = "approve"
    DENY = "deny"
    AMBIGUOUS = "ambiguous"


def verdict(line: str) -> Reading | None:
    """Approve, deny, ambiguous (both, or negated), or None when the line says neither."""
    words = set(re.findall(r"[\w'’]+", line.lower().replace("’", "'")))
    approve, deny, negated = words & _APPROVE, words & _DENY, words & _NEGATIONS
    if not approve and not deny:
        return None
    if approve and not deny and not negated:
        return Reading.APPROVE
    if deny and not approve and not negated:
        return Reading.DENY
    return Reading.AMBIGUOUS


def understand(line: str) -> Reading:
    """Approve, deny, or ambiguous (both, neither, or negated)."""
    return verdict(line) or Reading.AMBIGUOUS


def outcome_of(reading: Reading) -> Outcome | None:
    return {Reading.APPROVE: Outcome.APPROVE, Reading.DENY: Outcome.DENY}.get(reading)
