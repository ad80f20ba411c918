"""The composition root: settings, the app factory, the CLI, dev mode, logs, metrics."""

from __future__ import annotations

__all__: list[str] = []
