"""The Slack app manifest asks for what the bot uses, and nothing it cannot use."""

from __future__ import annotations

import re

from tests.support import ROOT

MANIFEST = (ROOT / "manifest.yml").read_text()


def test_manifest_has_the_scopes_features_and_endpoints_the_bot_needs() -> None:
    scopes = set(re.findall(r"^\s+- ([a-z_.:]+)$", MANIFEST, re.M))
    assert {"chat:write", "im:write", "users:read", "users:read.email", "commands"} <= scopes
    # conversations.history looks up a post whose answer was lost (metadata) before re-posting
    assert {"im:history", "channels:history", "groups:history"} <= scopes
    assert "command: /taskjuice" in MANIFEST and "app_home_opened" in MANIFEST
    assert "home_tab_enabled: true" in MANIFEST and "interactivity:" in MANIFEST
    assert MANIFEST.count("/slack/events") == 3
