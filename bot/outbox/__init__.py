"""The outbox: what a change causes, and the worker that sends it."""

from __future__ import annotations

__all__: list[str] = []
