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


def test_manifest_serves_distribution_with_exactly_the_scopes_the_install_asks_for() -> None:
    from bot.slack.install_flow import BOT_SCOPES

    bot_scopes = MANIFEST.split("    bot:\n")[1].split("\nsettings:")[0]
    assert set(re.findall(r"^\s+- ([a-z_.:-]+)$", bot_scopes, re.M)) == set(BOT_SCOPES)
    assert "incoming-webhook" in BOT_SCOPES  # the installer picks the alerts channel
    assert re.search(r"redirect_urls:\n\s+- https://\S+/slack/oauth_redirect\n", MANIFEST)
    events = MANIFEST.split("bot_events:\n")[1].split("\n  interactivity:")[0]
    assert {"app_home_opened", "app_uninstalled", "tokens_revoked"} <= set(
        re.findall(r"- (\w+)", events)
    )
