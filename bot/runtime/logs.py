"""Structured logging: one JSON object per line, one line per event."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

__all__ = ["configure_logging", "quiet_libraries"]


# Attributes every LogRecord has; anything else came in through `extra=` and is logged.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON line: time, level, logger, message and the extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info).splitlines()[-1]
        return json.dumps(entry, default=str, ensure_ascii=False)


def configure_logging(level: str) -> None:
    """Send every logger's records to stderr as JSON lines."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    quiet_libraries()


# Libraries whose debug output would carry secrets: request paths with magic-link tokens
# (aiohttp's access log), whole mails with their links (aiosmtpd's "mail.log", aiosmtplib),
# and Slack request bodies (Bolt logs through the Slack edge's logger, under `handlers.slack`,
# whose level its modules inherit). They stay at these levels even with LOG_LEVEL=DEBUG.
_QUIET = {
    "aiohttp.access": logging.WARNING,
    "mail.log": logging.WARNING,
    "aiosmtplib": logging.WARNING,
    "slack_sdk": logging.INFO,
    "slack_bolt": logging.INFO,
    "handlers.slack": logging.INFO,
}


def quiet_libraries() -> None:
    """Hold the libraries that could log secrets at safe levels."""
    for name, floor in _QUIET.items():
        logging.getLogger(name).setLevel(floor)
