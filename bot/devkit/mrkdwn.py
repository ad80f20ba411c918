"""Slack mrkdwn to HTML, as Slack shows it (for the dev console)."""

from __future__ import annotations

import html
import re
from collections.abc import Callable

__all__ = ["to_html"]

_CONTROL = re.compile(r"<([^<>]+)>")


def _slack_unescape(text: str) -> str:
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def _inline(text: str) -> str:
    """Bold, italic, strike and code on already HTML-escaped text."""
    text = re.sub(r"`([^`\n]+)`", r"<code>\1</code>", text)
    text = re.sub(r"(?<![\w*])\*([^*\n]+)\*(?![\w*])", r"<strong>\1</strong>", text)
    text = re.sub(r"(?<![\w_])_([^_\n]+)_(?![\w_])", r"<em>\1</em>", text)
    return re.sub(r"(?<![\w~])~([^~\n]+)~(?![\w~])", r"<del>\1</del>", text)


def _control(inner: str, user_name: Callable[[str], str]) -> str:
    target, _, label = inner.partition("|")
    if target.startswith("@"):
        return f'<span class="mention">@{html.escape(user_name(target[1:]))}</span>'
    if target.startswith("#"):
        return f'<span class="mention">#{html.escape(label or target[1:])}</span>'
    if target.startswith("!date^"):
        return f"<time>{html.escape(_slack_unescape(label))}</time>"
    if target.startswith("!"):
        return f'<span class="mention">@{html.escape(target[1:])}</span>'
    url = _slack_unescape(target)
    shown = _slack_unescape(label) if label else url
    if not url.startswith(("http://", "https://", "mailto:")):
        return html.escape(shown)
    return (
        f'<a href="{html.escape(url)}" target="_blank" rel="noreferrer noopener">'
        f"{html.escape(shown)}</a>"
    )


def to_html(text: str, user_name: Callable[[str], str] = lambda u: u) -> str:
    """Render Slack mrkdwn: `<…>` controls become mentions, dates and links; `&lt;` is text."""
    out: list[str] = []
    position = 0
    for match in _CONTROL.finditer(text):
        out.append(_inline(html.escape(_slack_unescape(text[position : match.start()]))))
        out.append(_control(match.group(1), user_name))
        position = match.end()
    out.append(_inline(html.escape(_slack_unescape(text[position:]))))
    rendered = "".join(out)
    lines = rendered.split("\n")
    quoted = [f"<blockquote>{ln[4:]}</blockquote>" if ln.startswith("&gt;") else ln for ln in lines]
    return "<br>".join(quoted)
