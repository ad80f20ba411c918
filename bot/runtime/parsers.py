"""The parsers of one setting's text: URLs, ports, seconds, rate limits, keys, choices.

Each raises ValueError whose message says what was expected, never echoing a secret.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable
from urllib.parse import urlsplit

from bot.errors import SettingsError

__all__ = [
    "boolean",
    "choice",
    "fernet_keys",
    "http_url",
    "log_level",
    "port",
    "port_like_int",
    "positive",
    "postgres_url",
    "prefixed",
    "rate_limits",
    "slash_url",
    "token_list",
    "whsec",
]


def postgres_url(raw: str) -> str:
    if urlsplit(raw).scheme not in ("postgres", "postgresql"):
        raise ValueError("expected postgresql://...")
    return raw


def http_url(raw: str) -> str:
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("expected an http(s) URL")
    return raw.rstrip("/")


def slash_url(raw: str) -> str:
    return http_url(raw) + "/"


def port(raw: str) -> int:
    value = port_like_int(raw)
    if value > 65535:
        raise ValueError("expected a port number")
    return value


def port_like_int(raw: str) -> int:
    if not raw.isdigit() or int(raw) <= 0:
        raise ValueError("expected a positive whole number")
    return int(raw)


def positive(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ValueError("expected a number of seconds") from None
    if not value > 0:
        raise ValueError("expected a positive number of seconds")
    return value


_METHOD = re.compile(r"[a-z]+(?:\.[a-zA-Z0-9]+)+")


def rate_limits(raw: str) -> tuple[tuple[str, int, float], ...]:
    """`method=count/seconds,...`: at most `count` calls in any window of `seconds`."""
    limits: dict[str, tuple[str, int, float]] = {}
    for entry in (e.strip() for e in raw.split(",")):
        method, equals, rate = entry.partition("=")
        count, slash, seconds = rate.strip().partition("/")
        method, count, seconds = method.strip(), count.strip(), seconds.strip()
        if not equals or not slash or not _METHOD.fullmatch(method):
            raise ValueError(f"expected method=count/seconds, got {entry[:40]!r}")
        if not count.isdigit() or int(count) <= 0:
            raise ValueError(f"{method}: expected a positive whole count")
        try:
            window = float(seconds)
        except ValueError:
            raise ValueError(f"{method}: expected a number of seconds") from None
        if not 0 < window <= 86400:
            raise ValueError(f"{method}: expected seconds between 0 and 86400")
        if method in limits:
            raise ValueError(f"{method} is given twice")
        limits[method] = (method, int(count), window)
    return tuple(limits.values())


def boolean(raw: str) -> bool:
    lowered = raw.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected true or false")


def token_list(raw: str) -> tuple[str, ...]:
    tokens = tuple(t.strip() for t in raw.split(",") if t.strip())
    if not tokens:
        raise ValueError("expected at least one value")
    return tokens


def fernet_keys(raw: str) -> tuple[str, ...]:
    """Keys TokenCipher accepts; its refusal names the key's position, never its value."""
    from bot.slack.tokens import TokenCipher

    keys = tuple(k.strip() for k in raw.split(",") if k.strip())
    try:
        TokenCipher(keys)
    except SettingsError as exc:
        raise ValueError(exc.message.removeprefix("SLACK_TOKEN_KEYS: ")) from None
    return keys


def whsec(raw: str) -> str:
    if not raw.startswith("whsec_"):
        raise ValueError("expected whsec_<base64>")
    try:
        key = base64.b64decode(raw.removeprefix("whsec_"), validate=True)
    except binascii.Error:
        raise ValueError("expected whsec_<base64>") from None
    if len(key) < 16:
        raise ValueError("the key must be at least 16 bytes")
    return raw


def log_level(raw: str) -> str:
    return choice("DEBUG", "INFO", "WARNING", "ERROR")(raw.upper())


def choice(*allowed: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        if raw not in allowed:
            raise ValueError("expected one of " + ", ".join(allowed))
        return raw

    return parse


def prefixed(prefix: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        if not raw.startswith(prefix):
            raise ValueError(f"expected {prefix}...")
        return raw

    return parse
