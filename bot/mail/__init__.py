"""Email: composing and sending mail, and reading and handling replies."""

from __future__ import annotations

__all__: list[str] = []
