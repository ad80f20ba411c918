"""Slack: installations of the app in many Slack workspaces, and what the bot says there."""

from __future__ import annotations

__all__: list[str] = []
