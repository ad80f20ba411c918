"""Inbound edges: one module per way the outside world reaches the bot."""

from __future__ import annotations

__all__: list[str] = []
