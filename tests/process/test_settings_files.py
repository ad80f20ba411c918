"""Secrets from files, as the processes see them: `serve` and `migrate` refuse a wrong one
with one line, and a service given its secrets in files works and never logs them."""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path

import aiohttp

from tests.support import API_TOKEN, ServiceProcess, free_port, run_bot_cli, service_env
from tests.unit.test_settings_files import BASE, with_file


def run_cli(tmp_path: Path, env: dict[str, str], *command: str) -> subprocess.CompletedProcess[str]:
    return run_bot_cli(*command, env={"PATH": "/usr/bin:/bin"} | env, cwd=tmp_path)


def test_serve_refuses_a_secret_set_both_ways_with_one_line(tmp_path: Path) -> None:
    secret = tmp_path / "slack-bot-token"
    secret.write_text("xoxb-fake-token-in-the-file\n")
    env = BASE | {
        "SLACK_BOT_TOKEN": "xoxb-fake-token-in-the-environment",
        "SLACK_BOT_TOKEN_FILE": str(secret),
        "SLACK_SIGNING_SECRET": "fake-signing-secret",
    }
    done = run_cli(tmp_path, env, "serve")
    assert done.returncode == 2 and done.stdout == ""
    [line] = done.stderr.strip().splitlines()
    assert "SLACK_BOT_TOKEN and SLACK_BOT_TOKEN_FILE are both set" in line
    assert "fake-token" not in done.stderr


def test_serve_refuses_an_unreadable_secret_file_with_one_line(tmp_path: Path) -> None:
    secret = tmp_path / "absent-callback-secret"
    done = run_cli(tmp_path, with_file("CALLBACK_SECRET", secret), "serve")
    assert done.returncode == 2 and done.stdout == ""
    [line] = done.stderr.strip().splitlines()
    assert "CALLBACK_SECRET_FILE cannot be read" in line and str(secret) in line
    assert "CALLBACK_SECRET missing" not in line


def test_migrate_refuses_a_missing_database_url_file_with_one_line(tmp_path: Path) -> None:
    done = run_cli(tmp_path, {"DATABASE_URL_FILE": str(tmp_path / "absent")}, "migrate")
    assert done.returncode == 2
    [line] = done.stderr.strip().splitlines()
    assert "DATABASE_URL_FILE cannot be read" in line


async def test_a_service_with_its_secrets_in_files_works_and_never_logs_them(
    tmp_path: Path, database_url: str
) -> None:
    secrets = {
        "DATABASE_URL": database_url,
        "API_TOKENS": "fake-api-token-read-from-a-file",
        "CALLBACK_SECRET": "whsec_" + base64.b64encode(b"fake-callback-key-in-a-file").decode(),
        "LINK_SECRETS": "fake-link-secret-read-from-a-file",
        "INBOUND_WEBHOOK_SECRET": "fake-inbound-secret-read-from-a-file",
    }
    env = service_env(database_url, "http://127.0.0.1:9/callbacks", free_port(), LOG_LEVEL="DEBUG")
    for name, value in secrets.items():
        path = tmp_path / name.lower()
        path.write_text(value + "\n")
        env.pop(name, None)
        env[f"{name}_FILE"] = str(path)
    proc = ServiceProcess(env=env, log_path=tmp_path / "service.log")
    await proc.start()
    try:
        async with aiohttp.ClientSession() as session:
            url = proc.base_url + "/api/v1/approvals?workspace=acme"
            async with session.get(url, headers={"Authorization": "Bearer " + API_TOKEN}) as old:
                assert old.status == 401  # the environment's token is not the file's
            token = {"Authorization": "Bearer " + secrets["API_TOKENS"]}
            async with session.get(url, headers=token) as answer:
                assert answer.status == 200
    finally:
        assert await proc.terminate() == 0
    log = proc.log_path.read_text()
    assert "service.ready" in log and "service.stopped" in log
    for name, value in secrets.items():
        assert value not in log, name
