"""Composing the bot's email from Jinja2 templates: multipart text + HTML, safe headers."""

from __future__ import annotations

import re
from datetime import datetime
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import formatdate, parseaddr
from importlib import resources
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape

from bot.domain import Reversibility
from bot.task_view import TaskView
from bot.wording import PLAIN, badge, badge_parts, requester

__all__ = ["MailComposer"]

# The badge's colours; its words are `bot.wording`'s.
_BADGE_COLORS = {
    "safe": {"color": "#14532d", "background": "#ecfdf3", "border": "#86efac"},
    "recoverable": {"color": "#713f12", "background": "#fefce8", "border": "#fde047"},
    "irreversible": {"color": "#7f1d1d", "background": "#fef2f2", "border": "#fca5a5"},
}
# Folding at 78 characters makes Python's email package move long subjects wholesale onto a
# continuation line (read back with a leading space); RFC 5322 allows lines up to 998.
_POLICY = SMTP.clone(max_line_length=998)
_HEADINGS = {
    "request": "Approval needed",
    "reminder": "Reminder: approval still needed",
    "escalation": "Escalated to you: nobody answered in time",
}


# Everything `str.splitlines()` breaks on, which Python's email package refuses in a header
# (U+2028, U+2029, U+0085, \v, \f, \x1c-\x1e), and every other C0/C1 control character.
_NOT_IN_A_HEADER = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]+")


def _one_line(text: str, limit: int = 150) -> str:
    """Header-safe: no line breaks or control characters, at most `limit` characters."""
    flat = _NOT_IN_A_HEADER.sub(" ", text).strip()
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _utc(value: str | datetime) -> str:
    return PLAIN.time(datetime.fromisoformat(value) if isinstance(value, str) else value)


class MailComposer:
    """Builds EmailMessages for requests, alerts and answers to replies."""

    def __init__(self, *, mail_from: str, app_url: str, reply_domain: str | None) -> None:
        folder = str(resources.files("templates"))
        self.env = Environment(
            loader=FileSystemLoader(folder),
            autoescape=select_autoescape(enabled_extensions=("html.j2",), default=False),
            trim_blocks=False,
        )
        self.mail_from = mail_from
        self.domain = parseaddr(mail_from)[1].rpartition("@")[2] or "taskjuice.invalid"
        self.app_url = app_url
        self.reply_domain = reply_domain

    def message_id(self, kind: str, key: object) -> str:
        """Stable per delivery, so a retried send carries the same Message-ID."""
        return f"<taskjuice.{kind}.{key}@{self.domain}>"

    def _message(self, *, to: str, subject: str, message_id: str) -> EmailMessage:
        message = EmailMessage(policy=_POLICY)
        message["From"] = self.mail_from
        message["To"] = to
        message["Subject"] = _one_line(subject)
        message["Date"] = formatdate(localtime=False, usegmt=True)
        message["Message-ID"] = message_id
        message["Auto-Submitted"] = "auto-generated"  # RFC 3834: never answer this mail
        message["X-Auto-Response-Suppress"] = "All"
        return message

    def request(
        self,
        task: TaskView,
        *,
        kind: str,
        to: str,
        message_id: str,
        approve_url: str,
        deny_url: str,
        reply_token: str | None,
    ) -> EmailMessage:
        """An approval request (or its reminder, or an escalation) to one approver."""
        irreversible = task.reversibility is Reversibility.IRREVERSIBLE
        reply_hint = (
            'You can also reply to this email with "deny" on the first line. Approving an '
            "irreversible action by reply is not possible: use the Approve button."
            if irreversible
            else 'You can also reply to this email with "approve" or "deny" on the first line.'
        )
        values = {
            "task": task,
            "heading": _HEADINGS[kind],
            "title": _one_line(task.summary),
            "details": [(str(k), "" if v is None else str(v)) for k, v in task.details.items()],
            "badge": {
                "label": badge_parts(task.reversibility).label,
                "text": badge_parts(task.reversibility).effect + ".",
                "line": badge(task.reversibility, PLAIN),
                **_BADGE_COLORS[task.reversibility],
            },
            "requested_by": requester(task.requested_by, PLAIN),
            "expires": _utc(task.expires_at),
            "approve_url": approve_url,
            "deny_url": deny_url,
            "inbox_url": f"{self.app_url}/{task.workspace}/monitoring/approvals",
            "reply_enabled": reply_token is not None,
            "reply_hint": reply_hint,
        }
        message = self._message(
            to=to, subject=f"{_HEADINGS[kind]}: {task.summary}", message_id=message_id
        )
        if reply_token is not None and self.reply_domain:
            message["Reply-To"] = f"TaskJuice approvals <{reply_token}@{self.reply_domain}>"
        self._bodies(message, "mail/request", values)
        return message

    def alert(
        self,
        *,
        to: list[str],
        workspace: str,
        title: str,
        lines: list[str],
        action_label: str,
        action_url: str,
        message_id: str,
    ) -> EmailMessage:
        """A soft spend-cap warning or a reauthorization notice to the alert addresses."""
        message = self._message(
            to=", ".join(to), subject=f"{title} — {workspace}", message_id=message_id
        )
        self._bodies(
            message,
            "mail/alert",
            {
                "workspace": workspace,
                "title": title,
                "lines": lines,
                "action_label": action_label,
                "action_url": action_url,
            },
        )
        return message

    def answer(
        self,
        *,
        to: str,
        subject: str,
        in_reply_to: str | None,
        text: str,
        summary: str,
        inbox_url: str | None,
        message_id: str,
    ) -> EmailMessage:
        """A short answer to someone's reply: what was understood and what happened."""
        subject = subject if subject.lower().startswith("re:") else f"Re: {subject}"
        message = self._message(to=to, subject=subject, message_id=message_id)
        if in_reply_to:
            message["In-Reply-To"] = in_reply_to
            message["References"] = in_reply_to
        body = self.env.get_template("mail/answer.txt.j2").render(
            text=text, summary=summary, inbox_url=inbox_url
        )
        message.set_content(body)
        return message

    def _bodies(self, message: EmailMessage, name: str, values: dict[str, Any]) -> None:
        message.set_content(self.env.get_template(f"{name}.txt.j2").render(**values))
        message.add_alternative(
            self.env.get_template(f"{name}.html.j2").render(**values), subtype="html"
        )
