"""TaskJuice ChatOps bot: carries approval requests and alerts to people and decisions back."""

from __future__ import annotations

__all__: list[str] = []
