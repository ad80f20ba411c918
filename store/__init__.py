"""PostgreSQL access: the pool, migrations and every query the bot runs."""

from __future__ import annotations

__all__: list[str] = []
