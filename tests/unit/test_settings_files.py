"""Secrets from files: NAME_FILE names a file (a mounted Kubernetes or Docker secret) whose
content becomes NAME, and every way of getting that wrong stops start-up with one line."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from bot.errors import SettingsError
from bot.runtime.config import Settings, load_settings
from bot.runtime.environment import SECRET_SETTINGS
from tests.support import API_TOKEN, CALLBACK_SECRET

BASE = {
    "API_TOKENS": API_TOKEN,
    "CALLBACK_URL": "http://platform.test/callbacks",
    "CALLBACK_SECRET": CALLBACK_SECRET,
    "TASKJUICE_APP_URL": "http://app.taskjuice.test",
    "SLACK_SIGNING_SECRET": "fake-signing-secret",  # so a bot token alone is well-formed
}

# A well-formed, obviously fake value for each secret; any other gets a plain fake string.
FAKE = {
    "DATABASE_URL": "postgresql://bot:fake-db-password@db.invalid:5432/taskjuice",
    "API_TOKENS": "fake-api-token-one,fake-api-token-two",
    "CALLBACK_SECRET": "whsec_" + base64.b64encode(b"fake-callback-key-from-file").decode(),
    "SLACK_BOT_TOKEN": "xoxb-fake-bot-token-from-file",
    "SLACK_SIGNING_SECRET": "fake-signing-secret-from-file",
    "SLACK_APP_TOKEN": "xapp-fake-app-token-from-file",
    "SLACK_TOKEN_KEYS": base64.urlsafe_b64encode(b"fake-fernet-key-of-32-bytes-long").decode(),
    "LINK_SECRETS": "fake-link-secret-old,fake-link-secret-new",
}


def fake(name: str) -> str:
    return FAKE.get(name, f"fake-{name.lower().replace('_', '-')}-from-file")


def with_file(name: str, path: Path | str, env: dict[str, str] = BASE) -> dict[str, str]:
    """`env` with NAME given by NAME_FILE instead."""
    return {k: v for k, v in env.items() if k != name} | {f"{name}_FILE": str(path)}


def outcome(env: dict[str, str]) -> Settings | str:
    """The settings, or the one-line refusal: two ways of giving a secret must agree."""
    try:
        return load_settings(env, env_file=None)
    except SettingsError as exc:
        return exc.message


def refusal(env: dict[str, str], env_file: Path | None = None) -> str:
    with pytest.raises(SettingsError) as caught:
        load_settings(env, env_file=env_file)
    return caught.value.message


@pytest.mark.parametrize("name", SECRET_SETTINGS)
def test_a_secret_from_its_file_is_the_same_as_from_the_environment(
    tmp_path: Path, name: str
) -> None:
    secret = tmp_path / "secret"
    secret.write_text(fake(name) + "\n")
    assert outcome(with_file(name, secret)) == outcome(BASE | {name: fake(name)})


@pytest.mark.parametrize(
    ("name", "attribute", "expected"),
    [
        ("DATABASE_URL", "database_url", FAKE["DATABASE_URL"]),
        ("API_TOKENS", "api_tokens", ("fake-api-token-one", "fake-api-token-two")),
        ("CALLBACK_SECRET", "callback_secret", FAKE["CALLBACK_SECRET"]),
        ("SLACK_BOT_TOKEN", "slack_bot_token", FAKE["SLACK_BOT_TOKEN"]),
        ("SLACK_SIGNING_SECRET", "slack_signing_secret", FAKE["SLACK_SIGNING_SECRET"]),
        ("SLACK_APP_TOKEN", "slack_app_token", FAKE["SLACK_APP_TOKEN"]),
        ("LINK_SECRETS", "link_secrets", ("fake-link-secret-old", "fake-link-secret-new")),
        ("SMTP_PASSWORD", "smtp_password", fake("SMTP_PASSWORD")),
        ("INBOUND_WEBHOOK_SECRET", "inbound_webhook_secret", fake("INBOUND_WEBHOOK_SECRET")),
        ("MAILGUN_SIGNING_KEY", "mailgun_signing_key", fake("MAILGUN_SIGNING_KEY")),
    ],
)
def test_each_secret_setting_takes_its_files_content(
    tmp_path: Path, name: str, attribute: str, expected: object
) -> None:
    secret = tmp_path / "secret"
    secret.write_text(fake(name) + "\n")
    settings = load_settings(with_file(name, secret), env_file=None)
    assert getattr(settings, attribute) == expected


def test_only_one_trailing_newline_is_stripped(tmp_path: Path) -> None:
    secret = tmp_path / "smtp-password"
    secret.write_text(" fake smtp pass \n\n")
    settings = load_settings(with_file("SMTP_PASSWORD", secret), env_file=None)
    assert settings.smtp_password == " fake smtp pass \n"
    secret.write_text("fake-windows-pass\r\n")
    settings = load_settings(with_file("SMTP_PASSWORD", secret), env_file=None)
    assert settings.smtp_password == "fake-windows-pass"


@pytest.mark.parametrize("name", SECRET_SETTINGS)
def test_a_secret_set_both_ways_is_refused(tmp_path: Path, name: str) -> None:
    secret = tmp_path / "secret"
    secret.write_text("fake-value-in-the-file\n")
    env = BASE | {name: "fake-value-in-the-environment", f"{name}_FILE": str(secret)}
    message = refusal(env)
    assert f"{name} and {name}_FILE are both set" in message
    assert "fake-value-in" not in message


@pytest.mark.parametrize("name", SECRET_SETTINGS)
def test_a_secret_file_that_cannot_be_read_is_refused(tmp_path: Path, name: str) -> None:
    missing = tmp_path / "no-such-secret"
    message = refusal(with_file(name, missing))
    assert f"{name}_FILE cannot be read (No such file or directory: {missing})" in message
    # ... and not reported a second time as missing, for the required ones
    assert f"{name} missing" not in message


def test_an_empty_secret_file_is_refused(tmp_path: Path) -> None:
    secret = tmp_path / "api-tokens"
    secret.write_text("\n")
    assert "API_TOKENS_FILE names an empty file" in refusal(with_file("API_TOKENS", secret))


def test_a_directory_is_not_a_secret_file(tmp_path: Path) -> None:
    message = refusal(with_file("CALLBACK_SECRET", tmp_path))
    assert "CALLBACK_SECRET_FILE cannot be read (Is a directory" in message


def test_a_malformed_secret_from_a_file_is_named_without_its_value(tmp_path: Path) -> None:
    secret = tmp_path / "callback-secret"
    secret.write_text("fake-not-a-whsec-value\n")
    message = refusal(with_file("CALLBACK_SECRET", secret))
    assert "CALLBACK_SECRET malformed" in message and "fake-not-a-whsec" not in message


def test_the_env_file_may_name_secret_files(tmp_path: Path) -> None:
    secret = tmp_path / "api-tokens"
    secret.write_text("fake-token-via-dotenv\n")
    dotenv = tmp_path / ".env"
    dotenv.write_text(f"API_TOKENS_FILE={secret}\n")
    env = {k: v for k, v in BASE.items() if k != "API_TOKENS"}
    assert load_settings(env, env_file=dotenv).api_tokens == ("fake-token-via-dotenv",)
    # the environment's API_TOKENS and the .env file's API_TOKENS_FILE together are refused
    assert "API_TOKENS and API_TOKENS_FILE are both set" in refusal(BASE, env_file=dotenv)


def test_migrate_reads_only_the_database_secret_from_a_file(tmp_path: Path) -> None:
    secret = tmp_path / "database-url"
    secret.write_text(FAKE["DATABASE_URL"] + "\n")
    env = {"DATABASE_URL_FILE": str(secret), "API_TOKENS_FILE": str(tmp_path / "absent")}
    settings = load_settings(env, env_file=None, service=False)
    assert settings.database_url == FAKE["DATABASE_URL"]


def test_secrets_are_kept_out_of_the_settings_repr(tmp_path: Path) -> None:
    secret = tmp_path / "database-url"
    secret.write_text(FAKE["DATABASE_URL"] + "\n")
    settings = load_settings(with_file("DATABASE_URL", secret), env_file=None)
    assert "fake-db-password" not in repr(settings)


# --- a real `taskjuice-bot` process ----------------------------------------------------------
