"""Where settings come from: a `.env` file, the environment, and secret files (NAME_FILE),
read through a reader that collects every problem for the one start-up line."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from bot.errors import SettingsError

__all__ = ["SECRET_SETTINGS", "Reader", "read_dotenv", "read_secret_files"]

# Settings that may instead be read from a file named by NAME_FILE (a mounted secret), so the
# value need not sit in the environment. A secret setting joins by being listed here.
SECRET_SETTINGS: tuple[str, ...] = (
    "DATABASE_URL",
    "API_TOKENS",
    "CALLBACK_SECRET",
    "SLACK_BOT_TOKEN",
    "SLACK_SIGNING_SECRET",
    "SLACK_APP_TOKEN",
    "SLACK_CLIENT_SECRET",
    "SLACK_TOKEN_KEYS",
    "LINK_SECRETS",
    "SMTP_PASSWORD",
    "INBOUND_WEBHOOK_SECRET",
    "MAILGUN_SIGNING_KEY",
)


class Reader:
    """Collects every problem so the one start-up line names them all."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.problems: dict[str, str] = {}

    def require(self, name: str, why: str = "required") -> None:
        if name not in self.env and f"{name}_FILE" not in self.problems:
            self.problems.setdefault(name, f"missing ({why})")

    def problem(self, name: str, what: str) -> None:
        self.problems.setdefault(name, what)

    def get(self, name: str, parse: Callable[[str], Any], default: Any = None) -> Any:
        raw = self.env.get(name)
        if raw is None:
            return default
        try:
            return parse(raw)
        except ValueError as exc:
            self.problems.setdefault(name, f"malformed ({exc})")
            return default

    def raise_problems(self) -> None:
        if self.problems:
            listed = "; ".join(f"{name} {what}" for name, what in self.problems.items())
            raise SettingsError(f"invalid settings: {listed}")


def read_secret_files(reader: Reader, names: tuple[str, ...]) -> None:
    """Put the content of each NAME_FILE into NAME, less one trailing newline (files written
    by `echo` or an editor end with one). Problems name the settings, never the content."""
    for name in names:
        path = reader.env.get(f"{name}_FILE")
        if path is None:
            continue
        if name in reader.env:
            reader.problem(name, f"and {name}_FILE are both set (set one)")
            continue
        try:
            value = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not UTF-8 text"
            reader.problem(f"{name}_FILE", f"cannot be read ({why}: {path})")
            continue
        value = value.removesuffix("\n").removesuffix("\r")
        if value == "":
            reader.problem(f"{name}_FILE", f"names an empty file ({path})")
            continue
        reader.env[name] = value


def read_dotenv(path: Path | None) -> dict[str, str]:
    if path is None or not path.is_file():
        return {}
    from dotenv import dotenv_values

    return {k: v for k, v in dotenv_values(path).items() if v is not None}
