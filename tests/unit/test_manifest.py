"""The Slack app manifest asks for what the bot uses, and nothing it cannot use."""

from __future__ import annotations

import re

from tests.support import ROOT

MANIFEST = (ROOT / "manifest.yml").read_text()


def test_manifest_has_the_scopes_features_and_endpoints_the_bot_needs() -> None:
    scopes = set(re.findall(r"^\s+- ([a-z_.:]+)$", MANIFEST, re.M))
    assert {"chat:write", "im:write", "users:read", "users:read.email", "commands"} <= scopes
    # The history scopes serve one path only: the lost-post check reads conversations.history
    # (DMs, public and private channels), within Slack's 2025 limits for apps outside the
    # Marketplace (15 messages, one read a minute per team).
    from bot.slack.delivery import HISTORY_LIMIT
    from bot.slack.egress import DEFAULT_LIMITS, Limit

    assert {"im:history", "channels:history", "groups:history"} <= scopes
    assert HISTORY_LIMIT <= 15 and DEFAULT_LIMITS["conversations.history"] == Limit(1, 60.0)
    readers = [
        path.relative_to(ROOT).as_posix()
        for path in (ROOT / "bot").rglob("*.py")
        if "devkit" not in path.parts and '"conversations.history",' in path.read_text()
    ]
    assert readers == ["bot/slack/delivery.py"]
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
