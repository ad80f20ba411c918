"""`taskjuice-bot rotate-token-keys`: the operator's step between adding a key and dropping the
old one (docs/slack-distribution.md), run as the real command against a real database."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest

from bot.slack.installations import PostgresInstallationStore
from bot.slack.tokens import TokenCipher, TokenKeyMissing
from tests.integration.test_slack_installations import KEY_A, KEY_B, team_install
from tests.support import service_env


def run_rotation(database_url: str, keys: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = service_env(
        database_url,
        "http://127.0.0.1:9/callbacks",
        3000,
        SLACK_CLIENT_ID="111.222",
        SLACK_CLIENT_SECRET="fake-client-secret",
        SLACK_SIGNING_SECRET="fake-signing-secret",
        SLACK_TOKEN_KEYS=keys,
    )
    return subprocess.run(
        [sys.executable, "-m", "bot.runtime.cli", "rotate-token-keys"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_rotation_re_encrypts_every_token_so_the_old_key_can_go(
    database_url: str, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    await PostgresInstallationStore(pool, TokenCipher([KEY_A])).async_save(team_install())
    only_b = PostgresInstallationStore(pool, TokenCipher([KEY_B]))
    with pytest.raises(TokenKeyMissing):
        await only_b.async_find_bot(enterprise_id=None, team_id="T0FAKE")

    done = run_rotation(database_url, f"{KEY_A},{KEY_B}", tmp_path)

    assert done.returncode == 0, done.stderr
    assert "2 row(s)" in done.stdout
    assert KEY_A not in done.stdout + done.stderr and KEY_B not in done.stdout + done.stderr
    found = await only_b.async_find_installation(enterprise_id=None, team_id="T0FAKE")
    assert found is not None
    assert (found.bot_token, found.user_token) == (
        "xoxb-fake-bot-token-1",
        "xoxp-fake-user-token-1",
    )


async def test_a_malformed_key_stops_the_command_with_one_line(
    database_url: str, tmp_path: Path
) -> None:
    done = run_rotation(database_url, f"{KEY_A},not-a-key", tmp_path)

    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "SLACK_TOKEN_KEYS" in lines[0]
    assert "not-a-key" not in lines[0] and KEY_A not in lines[0]
