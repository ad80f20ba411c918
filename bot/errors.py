"""The bot's error hierarchy; each docstring doubles as the default message."""

from __future__ import annotations

from typing import Any

from store.database import DATABASE_ERRORS, UNAVAILABLE

__all__ = [
    "DATABASE_ERRORS",
    "UNAVAILABLE",
    "BotError",
    "Conflict",
    "NotFound",
    "SettingsError",
    "ValidationFailed",
]


# The database's failures, named here for the edges, which import nothing from `store/`:
# UNAVAILABLE is "away or restarting, try again later" (a 503, an SMTP 451), and
# DATABASE_ERRORS adds any error PostgreSQL reports.


class BotError(Exception):
    """Something went wrong in the TaskJuice bot."""

    status = 400

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())

    @property
    def message(self) -> str:
        return str(self.args[0])


class SettingsError(BotError):
    """A setting is missing or malformed."""


class ValidationFailed(BotError):
    """The request has invalid fields."""

    status = 422

    def __init__(self, fields: dict[str, str], message: str | None = None) -> None:
        super().__init__(message)
        self.fields = fields


class NotFound(BotError):
    """No such resource."""

    status = 404


class Conflict(BotError):
    """The request conflicts with the current state."""

    status = 409

    def __init__(self, message: str | None = None, **details: Any) -> None:
        super().__init__(message)
        self.details = details
