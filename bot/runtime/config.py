"""Settings: read once from the environment (and a `.env` file) at start-up, then passed down."""

from __future__ import annotations

import base64
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.runtime import parsers
from bot.runtime.environment import SECRET_SETTINGS, Reader, read_dotenv, read_secret_files

__all__ = ["Settings", "load_settings"]

_REQUIRED = ("API_TOKENS", "CALLBACK_URL", "CALLBACK_SECRET", "TASKJUICE_APP_URL")


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """Everything the service is configured with; built once by `load_settings`."""

    database_url: str | None = field(default=None, repr=False)
    data_dir: Path = Path(".taskjuice")
    api_tokens: tuple[str, ...] = ()
    callback_url: str = ""
    callback_secret: str = field(default="", repr=False)
    taskjuice_app_url: str = ""
    public_url: str = ""
    slack_bot_token: str | None = field(default=None, repr=False)
    slack_signing_secret: str | None = field(default=None, repr=False)
    slack_app_token: str | None = field(default=None, repr=False)
    slack_api_url: str = "https://slack.com/api/"
    slack_post_interval: float = 1.0
    # SLACK_RATE_LIMITS: (method, count, seconds) over the published defaults
    slack_rate_limits: tuple[tuple[str, int, float], ...] = ()
    slack_subscribe_anyone: bool = False
    slack_client_id: str | None = None
    slack_client_secret: str | None = field(default=None, repr=False)
    slack_token_keys: tuple[str, ...] = field(default=(), repr=False)
    slack_oauth_url: str = "https://slack.com/oauth/v2/authorize"
    link_secrets: tuple[str, ...] = field(default=(), repr=False)
    smtp_host: str | None = None
    smtp_port: int = 587
    smtp_username: str | None = None
    smtp_password: str | None = field(default=None, repr=False)
    smtp_tls: str = "starttls"
    mail_from: str | None = None
    reply_domain: str | None = None
    inbound_smtp_port: int | None = None
    inbound_smtp_host: str = "127.0.0.1"
    inbound_webhook_secret: str | None = field(default=None, repr=False)
    inbound_authserv_id: str | None = None
    mailgun_signing_key: str | None = field(default=None, repr=False)
    host: str = "127.0.0.1"
    port: int = 3000
    allow_proceed_irreversible: bool = False
    outbox_max_age: float = 86400.0
    outbox_lease: float = 60.0
    outbox_retry_base: float = 1.0
    sweep_interval: float = 1.0
    delivery_grace: float = 600.0
    callback_timeout: float = 10.0
    max_body_bytes: int = 262144
    log_level: str = "INFO"
    migrate_on_start: bool = True
    ready_max_outbox_age: float = 300.0

    @property
    def slack_enabled(self) -> bool:
        """Single-workspace mode: one bot token for one Slack team."""
        return bool(self.slack_bot_token)

    @property
    def slack_distributed(self) -> bool:
        """Distributed mode: installed by OAuth in many Slack teams."""
        return bool(self.slack_client_id)

    @property
    def email_enabled(self) -> bool:
        return bool(self.smtp_host)

    @property
    def callback_key(self) -> bytes:
        """The raw HMAC key behind the `whsec_` callback secret."""
        return base64.b64decode(self.callback_secret.removeprefix("whsec_"))


def load_settings(
    environ: Mapping[str, str] | None = None,
    *,
    env_file: Path | None = Path(".env"),
    service: bool = True,
) -> Settings:
    """Build Settings from the environment over an optional `.env` file.

    `service=False` reads only what the database needs (for `taskjuice-bot migrate`).
    A secret setting may come from the file its NAME_FILE names (see SECRET_SETTINGS).
    Raises SettingsError whose one-line message names every missing or malformed setting;
    it never carries a setting's value.
    """
    env = read_dotenv(env_file)
    env.update(os.environ if environ is None else environ)
    env = {k: v.strip() for k, v in env.items() if v is not None and v.strip() != ""}
    reader = Reader(env)
    read_secret_files(reader, SECRET_SETTINGS if service else ("DATABASE_URL",))
    values: dict[str, Any] = {
        "database_url": reader.get("DATABASE_URL", parsers.postgres_url),
        "data_dir": Path(env.get("TASKJUICE_DATA_DIR", ".taskjuice")),
        "log_level": reader.get("LOG_LEVEL", parsers.log_level, "INFO"),
        "migrate_on_start": reader.get("MIGRATE_ON_START", parsers.boolean, True),
    }
    if service:
        values |= _service_values(reader, env)
    reader.raise_problems()
    return Settings(**{k: v for k, v in values.items() if v is not None})


def _service_values(reader: Reader, env: dict[str, str]) -> dict[str, Any]:
    for name in _REQUIRED:
        reader.require(name)
    host = reader.get("HOST", str, "127.0.0.1")
    port = reader.get("PORT", parsers.port, 3000)
    smtp_tls = reader.get("SMTP_TLS", parsers.choice("none", "starttls", "tls"), "starttls")
    values: dict[str, Any] = {
        "api_tokens": reader.get("API_TOKENS", parsers.token_list),
        "callback_url": reader.get("CALLBACK_URL", parsers.http_url),
        "callback_secret": reader.get("CALLBACK_SECRET", parsers.whsec),
        "taskjuice_app_url": reader.get("TASKJUICE_APP_URL", parsers.http_url),
        "public_url": reader.get("PUBLIC_URL", parsers.http_url, f"http://{host}:{port}"),
        "slack_bot_token": env.get("SLACK_BOT_TOKEN"),
        "slack_signing_secret": env.get("SLACK_SIGNING_SECRET"),
        "slack_app_token": reader.get("SLACK_APP_TOKEN", parsers.prefixed("xapp-")),
        "slack_api_url": reader.get("SLACK_API_URL", parsers.slash_url, "https://slack.com/api/"),
        "slack_post_interval": reader.get("SLACK_POST_INTERVAL", parsers.positive, 1.0),
        "slack_rate_limits": reader.get("SLACK_RATE_LIMITS", parsers.rate_limits, ()),
        "slack_subscribe_anyone": reader.get("SLACK_SUBSCRIBE_ANYONE", parsers.boolean, False),
        "slack_client_id": env.get("SLACK_CLIENT_ID"),
        "slack_client_secret": env.get("SLACK_CLIENT_SECRET"),
        "slack_token_keys": reader.get("SLACK_TOKEN_KEYS", parsers.fernet_keys),
        "slack_oauth_url": reader.get(
            "SLACK_OAUTH_URL", parsers.http_url, "https://slack.com/oauth/v2/authorize"
        ),
        "link_secrets": reader.get("LINK_SECRETS", parsers.token_list),
        "smtp_host": env.get("SMTP_HOST"),
        "smtp_port": reader.get("SMTP_PORT", parsers.port, 465 if smtp_tls == "tls" else 587),
        "smtp_username": env.get("SMTP_USERNAME"),
        "smtp_password": env.get("SMTP_PASSWORD"),
        "smtp_tls": smtp_tls,
        "mail_from": env.get("MAIL_FROM"),
        "reply_domain": env.get("REPLY_DOMAIN"),
        "inbound_smtp_port": reader.get("INBOUND_SMTP_PORT", parsers.port),
        "inbound_smtp_host": reader.get("INBOUND_SMTP_HOST", str, "127.0.0.1"),
        "inbound_webhook_secret": env.get("INBOUND_WEBHOOK_SECRET"),
        "inbound_authserv_id": env.get("INBOUND_AUTHSERV_ID"),
        "mailgun_signing_key": env.get("MAILGUN_SIGNING_KEY"),
        "host": host,
        "port": port,
        "allow_proceed_irreversible": reader.get(
            "ALLOW_PROCEED_IRREVERSIBLE", parsers.boolean, False
        ),
        "outbox_max_age": reader.get("OUTBOX_MAX_AGE", parsers.positive, 86400.0),
        "outbox_lease": reader.get("OUTBOX_LEASE", parsers.positive, 60.0),
        "outbox_retry_base": reader.get("OUTBOX_RETRY_BASE", parsers.positive, 1.0),
        "sweep_interval": reader.get("SWEEP_INTERVAL", parsers.positive, 1.0),
        "delivery_grace": reader.get("DELIVERY_GRACE", parsers.positive, 600.0),
        "callback_timeout": reader.get("CALLBACK_TIMEOUT", parsers.positive, 10.0),
        "max_body_bytes": reader.get("MAX_BODY_BYTES", parsers.port_like_int, 262144),
        "ready_max_outbox_age": reader.get("READY_MAX_OUTBOX_AGE", parsers.positive, 300.0),
    }
    if env.get("SLACK_BOT_TOKEN") and not env.get("SLACK_APP_TOKEN"):
        reader.require("SLACK_SIGNING_SECRET", "needed with SLACK_BOT_TOKEN in HTTP mode")
    _slack_mode(reader, env, values)
    if env.get("SMTP_HOST"):
        reader.require("MAIL_FROM", "needed with SMTP_HOST")
        reader.require("LINK_SECRETS", "needed with SMTP_HOST for magic links")
    timeout, lease = values["callback_timeout"], values["outbox_lease"]
    if timeout is not None and lease is not None and timeout >= lease:
        reader.problem("OUTBOX_LEASE", "must be longer than CALLBACK_TIMEOUT")
    return values


def _slack_mode(reader: Reader, env: dict[str, str], values: dict[str, Any]) -> None:
    """Single-workspace mode (SLACK_BOT_TOKEN) or distributed mode (SLACK_CLIENT_ID), never
    both; distributed mode needs its credentials and the keys that encrypt stored tokens."""
    if not env.get("SLACK_CLIENT_ID"):
        return
    if env.get("SLACK_BOT_TOKEN"):
        reader.problem(
            "SLACK_BOT_TOKEN",
            "and SLACK_CLIENT_ID are both set (single-workspace and distributed mode; set one)",
        )
    for name in ("SLACK_CLIENT_SECRET", "SLACK_SIGNING_SECRET", "SLACK_TOKEN_KEYS"):
        reader.require(name, "needed with SLACK_CLIENT_ID")
    if values["slack_subscribe_anyone"]:
        reader.problem("SLACK_SUBSCRIBE_ANYONE", "is for single-workspace mode only")
