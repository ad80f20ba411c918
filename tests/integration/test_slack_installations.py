"""Slack installations in PostgreSQL: find semantics Bolt relies on, tokens encrypted at rest
and key rotation, single-use OAuth states, and rotating-token refresh serialised per team."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import asyncpg
import pytest
from aiohttp import web
from slack_sdk.errors import SlackTokenRotationError
from slack_sdk.oauth.installation_store.models.bot import Bot
from slack_sdk.oauth.installation_store.models.installation import Installation
from slack_sdk.oauth.token_rotation.async_rotator import AsyncTokenRotator
from slack_sdk.web.async_client import AsyncWebClient

from bot.errors import SettingsError
from bot.slack.installations import PostgresInstallationStore, PostgresOAuthStateStore
from bot.slack.refresh import refresh_due, refresh_if_due
from bot.slack.tokens import TokenCipher, TokenKeyMissing, rotate_token_keys
from store import bindings
from tests.distributed_support import CLIENT_ID, CLIENT_SECRET, fake_key
from tests.support import eventually, free_port

KEY_A, KEY_B = fake_key("A"), fake_key("B")


def team_install(**changes: object) -> Installation:
    values: dict[str, object] = {
        "app_id": "A0FAKE",
        "team_id": "T0FAKE",
        "team_name": "Fake Team",
        "bot_token": "xoxb-fake-bot-token-1",
        "bot_id": "B0FAKE",
        "bot_user_id": "U0BOT",
        "bot_scopes": ["chat:write", "users:read.email"],
        "user_id": "U0INSTALLER",
        "user_token": "xoxp-fake-user-token-1",
        "user_scopes": ["identity.basic"],
        "incoming_webhook_url": "https://hooks.slack.test/services/FAKE/WEBHOOK",
        "incoming_webhook_channel": "#approvals",
        "incoming_webhook_channel_id": "C0ALERTS",
        "token_type": "bot",
    }
    values.update(changes)
    return Installation(**values)  # type: ignore[arg-type]


@pytest.fixture
def store(pool: asyncpg.Pool) -> PostgresInstallationStore:
    return PostgresInstallationStore(pool, TokenCipher([KEY_A]))


async def test_team_install_is_found_by_team_and_by_its_installer(
    store: PostgresInstallationStore,
) -> None:
    await store.async_save(team_install())

    found = await store.async_find_installation(enterprise_id=None, team_id="T0FAKE")
    assert found is not None
    assert (found.bot_token, found.user_token) == (
        "xoxb-fake-bot-token-1",
        "xoxp-fake-user-token-1",
    )
    assert found.incoming_webhook_url == "https://hooks.slack.test/services/FAKE/WEBHOOK"
    assert found.incoming_webhook_channel_id == "C0ALERTS"
    assert list(found.bot_scopes or []) == ["chat:write", "users:read.email"]

    bot = await store.async_find_bot(enterprise_id=None, team_id="T0FAKE")
    assert bot is not None and bot.bot_token == "xoxb-fake-bot-token-1"
    assert bot.bot_user_id == "U0BOT"

    by_user = await store.async_find_installation(
        enterprise_id=None, team_id="T0FAKE", user_id="U0INSTALLER"
    )
    assert by_user is not None and by_user.user_token == "xoxp-fake-user-token-1"
    assert (
        await store.async_find_installation(
            enterprise_id=None, team_id="T0FAKE", user_id="U0NOBODY"
        )
        is None
    )
    assert await store.async_find_bot(enterprise_id=None, team_id="T0OTHER") is None


async def test_org_wide_install_is_found_from_any_team_of_the_org(
    store: PostgresInstallationStore,
) -> None:
    await store.async_save(
        team_install(
            enterprise_id="E0FAKE",
            enterprise_name="Fake Org",
            team_id=None,
            team_name=None,
            is_enterprise_install=True,
        )
    )

    for team in ("T0ONE", "T0TWO", None):
        bot = await store.async_find_bot(
            enterprise_id="E0FAKE", team_id=team, is_enterprise_install=True
        )
        assert bot is not None and bot.bot_token == "xoxb-fake-bot-token-1", team
        found = await store.async_find_installation(
            enterprise_id="E0FAKE", team_id=team, is_enterprise_install=True
        )
        assert found is not None and found.is_enterprise_install
    # A workspace-level lookup in the org is another installation.
    assert await store.async_find_bot(enterprise_id="E0FAKE", team_id="T0ONE") is None


async def test_reinstall_replaces_the_live_row_and_keeps_the_binding(
    store: PostgresInstallationStore, pool: asyncpg.Pool
) -> None:
    await store.async_save(team_install())
    async with pool.acquire() as conn:
        assert await bindings.bind_workspace(
            conn,
            None,
            "T0FAKE",
            workspace="acme",
            installed_by_user_id="U0INSTALLER",
            installed_by_email="admin@acme.test",
        )
    await store.async_save(team_install(bot_token="xoxb-fake-bot-token-2", user_id="U0SECOND"))

    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM slack_installations") == 1
        binding = await bindings.binding_of(conn, "acme")
    assert binding is not None
    assert (binding["team_id"], binding["status"]) == ("T0FAKE", "active")
    assert binding["installed_by_user_id"] == "U0INSTALLER"
    bot = await store.async_find_bot(enterprise_id=None, team_id="T0FAKE")
    assert bot is not None and bot.bot_token == "xoxb-fake-bot-token-2"
    # Both installers are remembered; the latest is the default.
    latest = await store.async_find_installation(enterprise_id=None, team_id="T0FAKE")
    assert latest is not None and latest.user_id == "U0SECOND"
    first = await store.async_find_installation(
        enterprise_id=None, team_id="T0FAKE", user_id="U0INSTALLER"
    )
    assert first is not None and first.bot_token == "xoxb-fake-bot-token-2"


async def test_revoked_installation_keeps_its_binding_and_forgets_its_tokens(
    store: PostgresInstallationStore, pool: asyncpg.Pool
) -> None:
    await store.async_save(team_install())
    async with pool.acquire() as conn:
        await bindings.bind_workspace(
            conn,
            None,
            "T0FAKE",
            workspace="acme",
            installed_by_user_id="U0INSTALLER",
            installed_by_email=None,
        )
        assert await bindings.mark_revoked(conn, None, "T0FAKE", "tokens_revoked") == "acme"
        binding = await bindings.binding_of(conn, "acme")
        tokens = await conn.fetchrow(
            "SELECT i.bot_token, i.incoming_webhook_url, u.user_token"
            " FROM slack_installations i JOIN slack_installers u ON u.installation_id = i.id"
        )
    assert binding is not None
    assert (binding["status"], binding["revoked_reason"]) == ("revoked", "tokens_revoked")
    assert tuple(tokens) == (None, None, None)
    assert await store.async_find_bot(enterprise_id=None, team_id="T0FAKE") is None


async def test_deletes_forget_what_they_name(store: PostgresInstallationStore) -> None:
    await store.async_save(team_install())
    await store.async_save(team_install(user_id="U0SECOND", user_token="xoxp-fake-user-2"))

    await store.async_delete_installation(enterprise_id=None, team_id="T0FAKE", user_id="U0SECOND")
    assert (
        await store.async_find_installation(
            enterprise_id=None, team_id="T0FAKE", user_id="U0SECOND"
        )
        is None
    )
    assert (
        await store.async_find_installation(
            enterprise_id=None, team_id="T0FAKE", user_id="U0INSTALLER"
        )
        is not None
    )

    await store.async_delete_bot(enterprise_id=None, team_id="T0FAKE")
    assert await store.async_find_bot(enterprise_id=None, team_id="T0FAKE") is None

    await store.async_delete_all(enterprise_id=None, team_id="T0FAKE")
    assert await store.async_find_installation(enterprise_id=None, team_id="T0FAKE") is None


async def test_raw_tables_never_hold_a_token_in_plain_text(
    store: PostgresInstallationStore, pool: asyncpg.Pool
) -> None:
    secrets_ = {
        "bot_token": "xoxe.xoxb-fake-rotating-bot",
        "bot_refresh_token": "xoxe-1-fake-bot-refresh",
        "bot_token_expires_in": 43200,
        "user_token": "xoxe.xoxp-fake-rotating-user",
        "user_refresh_token": "xoxe-1-fake-user-refresh",
        "user_token_expires_in": 43200,
        "incoming_webhook_url": "https://hooks.slack.test/services/FAKE/SECRET",
    }
    await store.async_save(team_install(**secrets_))
    await store.async_save_bot(
        Bot(
            team_id="T0FAKE",
            bot_token="xoxe.xoxb-fake-saved-bot",
            bot_refresh_token="xoxe-1-fake-saved-refresh",
            bot_token_expires_in=43200,
            bot_id="B0FAKE",
            bot_user_id="U0BOT",
            installed_at=time.time(),
        )
    )
    async with pool.acquire() as conn:
        dump = "\n".join(
            [
                str(await conn.fetchval(f"SELECT json_agg(t)::text FROM {table} t"))
                for table in ("slack_installations", "slack_installers")
            ]
        )
    plain = [v for v in secrets_.values() if isinstance(v, str)]
    plain += ["xoxe.xoxb-fake-saved-bot", "xoxe-1-fake-saved-refresh"]
    assert "xoxe-1-fake-user-refresh" in plain and "T0FAKE" in dump  # the dump is the data
    assert [p for p in plain if p in dump] == []
    assert "fake-token-key" not in dump
    found = await store.async_find_installation(enterprise_id=None, team_id="T0FAKE")
    assert found is not None and found.bot_token == "xoxe.xoxb-fake-saved-bot"
    assert found.user_refresh_token == "xoxe-1-fake-user-refresh"


async def test_a_newer_key_reads_old_tokens_and_rotation_lets_the_old_key_go(
    pool: asyncpg.Pool,
) -> None:
    await PostgresInstallationStore(pool, TokenCipher([KEY_A])).async_save(team_install())

    both = TokenCipher.from_setting(f"{KEY_A}, {KEY_B}")
    with_both = PostgresInstallationStore(pool, both)
    found = await with_both.async_find_installation(enterprise_id=None, team_id="T0FAKE")
    assert found is not None and found.bot_token == "xoxb-fake-bot-token-1"

    only_b = PostgresInstallationStore(pool, TokenCipher.from_setting(KEY_B))
    with pytest.raises(TokenKeyMissing):
        await only_b.async_find_bot(enterprise_id=None, team_id="T0FAKE")

    # bot_token, incoming_webhook_url (one row) and user_token (one row)
    assert await rotate_token_keys(pool, both) == 2

    found = await only_b.async_find_installation(enterprise_id=None, team_id="T0FAKE")
    assert found is not None
    assert (found.bot_token, found.user_token) == (
        "xoxb-fake-bot-token-1",
        "xoxp-fake-user-token-1",
    )
    assert found.incoming_webhook_url == "https://hooks.slack.test/services/FAKE/WEBHOOK"
    with pytest.raises(TokenKeyMissing):
        await PostgresInstallationStore(pool, TokenCipher([KEY_A])).async_find_bot(
            enterprise_id=None, team_id="T0FAKE"
        )


@pytest.mark.parametrize(
    "setting", ["not-a-key", f"{KEY_A},short", "", base64.urlsafe_b64encode(b"x" * 31).decode()]
)
def test_malformed_token_key_is_refused_naming_the_setting_only(setting: str) -> None:
    with pytest.raises(SettingsError) as refused:
        TokenCipher.from_setting(setting)
    message = refused.value.message
    assert message.startswith("SLACK_TOKEN_KEYS:")
    for part in setting.split(","):
        assert not part or part not in message
    # nothing chained that could print the key in a traceback
    error = refused.value
    assert error.__cause__ is None and (error.__context__ is None or error.__suppress_context__)


async def test_install_link_state_is_consumed_once_for_its_workspace(pool: asyncpg.Pool) -> None:
    states = PostgresOAuthStateStore(pool)
    state, expires_at = await states.issue_install_link_state("acme")
    async with pool.acquire() as conn:
        lifetime = await conn.fetchval("SELECT $1::timestamptz - now()", expires_at)
    assert 29 * 60 < lifetime.total_seconds() <= 30 * 60
    assert len(state) >= 43  # 32 random bytes
    other, _ = await states.issue_install_link_state("acme")
    assert other != state

    assert await states.consume(state) == "acme"
    assert await states.consume(state) is None


async def test_expired_or_tampered_state_gives_nothing(pool: asyncpg.Pool) -> None:
    states = PostgresOAuthStateStore(pool)
    expired, _ = await states.issue_install_link_state("acme")
    live, _ = await states.issue_install_link_state("acme")
    async with pool.acquire() as conn:
        await conn.execute(
            "UPDATE slack_oauth_states SET expires_at = now() - interval '1 second'"
            " WHERE state = $1",
            expired,
        )
    tampered = live[:-1] + ("A" if live[-1] != "A" else "B")
    assert await states.consume(expired) is None
    assert await states.consume(tampered) is None
    assert await states.consume("") is None
    assert await states.consume(live) == "acme"


async def test_bolt_state_interface_issues_single_use_states_binding_no_workspace(
    pool: asyncpg.Pool,
) -> None:
    states = PostgresOAuthStateStore(pool)
    state = await states.async_issue()
    assert await states.async_consume(state) is True
    assert await states.async_consume(state) is False
    generic = await states.async_issue()
    assert await states.consume(generic) is None  # valid, but made for no workspace


@pytest.mark.parametrize(
    ("lifetime", "remaining", "due"),
    [
        (40, 31, False),  # a 40-second token: a quarter is 10 s
        (40, 9, True),
        (12 * 3600, 121 * 60, False),  # 12 hours: 120 minutes is less than a quarter
        (12 * 3600, 119 * 60, True),
        (4 * 3600, 61 * 60, False),  # 4 hours: a quarter (60 minutes) is less
        (4 * 3600, 59 * 60, True),
        (None, 119 * 60, True),  # lifetime unknown: 120 minutes
        (40, -5, True),  # already expired
    ],
)
def test_token_is_due_at_a_quarter_of_its_lifetime_or_120_minutes(
    lifetime: int | None, remaining: int, due: bool
) -> None:
    now = 1_800_000_000.0
    expires_at = now + remaining
    issued_at = None if lifetime is None else expires_at - lifetime
    assert refresh_due(expires_at, issued_at, now) is due


@dataclass
class FakeSlackOAuth:
    """`oauth.v2.access` for grant_type=refresh_token, like Slack's: a refresh token is spent
    by its first use (a second use gets `invalid_grant`). `gate` may hold an answer back."""

    port: int
    calls: int = 0
    live: set[str] = field(default_factory=set)
    gate: asyncio.Event | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/"

    async def handle(self, request: web.Request) -> web.Response:
        self.calls += 1
        form = await request.post()
        auth = base64.b64decode(request.headers["Authorization"].split()[1]).decode()
        if auth != f"{CLIENT_ID}:{CLIENT_SECRET}" or form.get("grant_type") != "refresh_token":
            return web.json_response({"ok": False, "error": "invalid_client"})
        refresh = str(form.get("refresh_token"))
        if refresh not in self.live:
            return web.json_response({"ok": False, "error": "invalid_grant"})
        self.live.discard(refresh)
        if self.gate is not None:
            await self.gate.wait()
        new_refresh = f"xoxe-1-fake-refresh-{self.calls + 1}"
        self.live.add(new_refresh)
        return web.json_response(
            {
                "ok": True,
                "token_type": "bot",
                "access_token": f"xoxe.xoxb-fake-bot-{self.calls + 1}",
                "refresh_token": new_refresh,
                "expires_in": 43200,
            }
        )


@pytest.fixture
async def slack_oauth() -> AsyncIterator[FakeSlackOAuth]:
    fake = FakeSlackOAuth(port=free_port())
    fake.live.add("xoxe-1-fake-refresh-1")
    app = web.Application()
    app.router.add_post("/api/oauth.v2.access", fake.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", fake.port).start()
    yield fake
    await runner.cleanup()


def rotator_for(fake: FakeSlackOAuth) -> AsyncTokenRotator:
    return AsyncTokenRotator(
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        client=AsyncWebClient(base_url=fake.base_url, timeout=10),
    )


async def save_rotating_bot(
    store: PostgresInstallationStore, pool: asyncpg.Pool, *, seconds_left: int
) -> None:
    """A 40-second rotating token with `seconds_left` of its life to go."""
    await store.async_save(
        team_install(
            bot_token="xoxe.xoxb-fake-bot-1",
            bot_refresh_token="xoxe-1-fake-refresh-1",
            bot_token_expires_in=40,
        )
    )
    async with pool.acquire() as conn:
        await conn.execute(
            "UPDATE slack_installations SET"
            " bot_token_expires_at = now() + make_interval(secs => $1),"
            " bot_token_issued_at = now() + make_interval(secs => $1 - 40)",
            seconds_left,
        )


async def advisory_waiters_are(pool: asyncpg.Pool, count: int) -> bool:
    async with pool.acquire() as conn:
        waiting: int = await conn.fetchval(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
        )
    return waiting == count


async def test_the_fake_slack_refuses_a_refresh_token_spent_twice(
    store: PostgresInstallationStore, pool: asyncpg.Pool, slack_oauth: FakeSlackOAuth
) -> None:
    await save_rotating_bot(store, pool, seconds_left=5)
    bot = await store.async_find_bot(enterprise_id=None, team_id="T0FAKE")
    assert bot is not None
    rotator = rotator_for(slack_oauth)
    first = await rotator.perform_bot_token_rotation(bot=bot, minutes_before_expiration=1)
    assert first is not None and first.bot_token == "xoxe.xoxb-fake-bot-2"
    with pytest.raises(SlackTokenRotationError):
        await rotator.perform_bot_token_rotation(bot=bot, minutes_before_expiration=1)


async def test_token_with_time_to_spare_is_not_refreshed(
    store: PostgresInstallationStore, pool: asyncpg.Pool, slack_oauth: FakeSlackOAuth
) -> None:
    await save_rotating_bot(store, pool, seconds_left=31)
    bot = await refresh_if_due(
        store, rotator_for(slack_oauth), enterprise_id=None, team_id="T0FAKE"
    )
    assert bot is not None and bot.bot_token == "xoxe.xoxb-fake-bot-1"
    assert slack_oauth.calls == 0


async def test_the_serving_read_waits_out_a_refresh_and_reads_its_token(
    store: PostgresInstallationStore, pool: asyncpg.Pool, slack_oauth: FakeSlackOAuth
) -> None:
    # The sender's one-statement read (migration 0022) keeps the shared lock's promise: a
    # read during a refresh returns the token the refresh saved, never the one it spent.
    await save_rotating_bot(store, pool, seconds_left=5)
    slack_oauth.gate = asyncio.Event()
    refresh = asyncio.create_task(
        refresh_if_due(store, rotator_for(slack_oauth), enterprise_id=None, team_id="T0FAKE")
    )
    await eventually(lambda: slack_oauth.calls == 1, what="the refresh reaching Slack")

    async def read() -> tuple[Bot, float | None] | None:
        async with pool.acquire() as conn:
            return await store.read_serving_bot(conn, None, "T0FAKE")

    reader = asyncio.create_task(read())
    await eventually(lambda: advisory_waiters_are(pool, 1), what="the read waiting")
    assert not reader.done()
    slack_oauth.gate.set()
    await asyncio.wait_for(refresh, timeout=10)
    found = await asyncio.wait_for(reader, timeout=10)
    assert found is not None and found[0].bot_token == "xoxe.xoxb-fake-bot-2"
    assert await advisory_waiters_are(pool, 0)


async def test_two_concurrent_refreshes_spend_the_refresh_token_once(
    store: PostgresInstallationStore, pool: asyncpg.Pool, slack_oauth: FakeSlackOAuth
) -> None:
    await save_rotating_bot(store, pool, seconds_left=5)
    slack_oauth.gate = asyncio.Event()
    rotator = rotator_for(slack_oauth)

    first = asyncio.create_task(
        refresh_if_due(store, rotator, enterprise_id=None, team_id="T0FAKE")
    )
    await eventually(lambda: slack_oauth.calls == 1, what="the first refresh reaching Slack")
    second = asyncio.create_task(
        refresh_if_due(store, rotator, enterprise_id=None, team_id="T0FAKE")
    )
    reader = asyncio.create_task(store.async_find_bot(enterprise_id=None, team_id="T0FAKE"))
    # Both wait on the team's lock while the first holds Slack's answer.
    await eventually(
        lambda: advisory_waiters_are(pool, 2), what="the refresher and the reader waiting"
    )
    slack_oauth.gate.set()
    bots = await asyncio.wait_for(asyncio.gather(first, second, reader), timeout=10)

    assert slack_oauth.calls == 1
    assert [b.bot_token if b else None for b in bots] == ["xoxe.xoxb-fake-bot-2"] * 3
    stored = await store.async_find_bot(enterprise_id=None, team_id="T0FAKE")
    assert stored is not None and stored.bot_refresh_token == "xoxe-1-fake-refresh-2"
    assert stored.bot_token_expires_at is not None
    assert stored.bot_token_expires_at > time.time() + 43000
    # A new 12-hour token: not due again until 120 minutes remain.
    again = await refresh_if_due(store, rotator, enterprise_id=None, team_id="T0FAKE")
    assert again is not None and again.bot_token == "xoxe.xoxb-fake-bot-2"
    assert slack_oauth.calls == 1
