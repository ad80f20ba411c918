"""Magic links: signed tokens and form nonces, and the pages they open."""

from __future__ import annotations

__all__: list[str] = []
