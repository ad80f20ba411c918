"""The settings table: what `taskjuice-bot --help` prints and the README repeats."""

from __future__ import annotations

__all__ = ["SETTINGS_HELP"]

# name, meaning — the table `taskjuice-bot --help` prints and the README repeats.
SETTINGS_HELP: tuple[tuple[str, str], ...] = (
    (
        "DATABASE_URL",
        "PostgreSQL URL; unset -> embedded PostgreSQL under ./.taskjuice/ (query parameters"
        " asyncpg does not know are set on every connection)",
    ),
    ("API_TOKENS", "required: comma-separated bearer tokens accepted by /api/v1"),
    ("CALLBACK_URL", "required: where decisions are POSTed (Standard Webhooks)"),
    ("CALLBACK_SECRET", "required: callback signing secret, whsec_<base64>"),
    ("TASKJUICE_APP_URL", "required: TaskJuice web app base, for Adjust cap/Reconnect/inbox links"),
    ("PUBLIC_URL", "the bot's public base URL for magic links (default http://HOST:PORT)"),
    ("SLACK_BOT_TOKEN", "xoxb-... bot token; unset -> Slack delivery off"),
    ("SLACK_SIGNING_SECRET", "Slack signing secret (required in HTTP mode with a bot token)"),
    ("SLACK_APP_TOKEN", "xapp-... app token: use Socket Mode instead of /slack/events"),
    ("SLACK_API_URL", "Slack Web API base (default https://slack.com/api/)"),
    ("SLACK_POST_INTERVAL", "seconds between posts to one Slack channel (default 1)"),
    (
        "SLACK_RATE_LIMITS",
        "Slack egress limits per team over Slack's published tiers, all replicas together:"
        " method=count/seconds,... (e.g. chat.update=50/60; chat.postMessage sets the team cap)",
    ),
    (
        "SLACK_SUBSCRIBE_ANYONE",
        "single-workspace mode only: true lets any member run /taskjuice subscribe;"
        " default admins/owners",
    ),
    (
        "SLACK_CLIENT_ID",
        "the Slack app's OAuth client id; set -> distributed mode (many Slack workspaces,"
        " each installed from an install link); not with SLACK_BOT_TOKEN",
    ),
    ("SLACK_CLIENT_SECRET", "the Slack app's OAuth client secret (required with SLACK_CLIENT_ID)"),
    (
        "SLACK_TOKEN_KEYS",
        "comma-separated Fernet keys encrypting stored Slack tokens, oldest first; the last"
        " encrypts, all decrypt (required with SLACK_CLIENT_ID)",
    ),
    (
        "SLACK_OAUTH_URL",
        "Slack's OAuth authorize page (default https://slack.com/oauth/v2/authorize)",
    ),
    ("LINK_SECRETS", "comma-separated magic-link secrets, oldest first; the last signs"),
    ("SMTP_HOST", "outgoing mail server; unset -> email delivery off"),
    ("SMTP_PORT", "outgoing mail port (default 587, or 465 with SMTP_TLS=tls)"),
    ("SMTP_USERNAME", "SMTP login"),
    ("SMTP_PASSWORD", "SMTP password"),
    ("SMTP_TLS", "none | starttls | tls (default starttls)"),
    ("MAIL_FROM", "From address of the bot's mail (required with SMTP_HOST)"),
    ("REPLY_DOMAIN", "catch-all domain for per-approver Reply-To; unset -> reply-by-email off"),
    ("INBOUND_SMTP_PORT", "port of the built-in inbound SMTP listener; unset -> off"),
    (
        "INBOUND_SMTP_HOST",
        "listen address of the inbound SMTP listener (default 127.0.0.1: behind the site's MTA)",
    ),
    ("INBOUND_WEBHOOK_SECRET", "bearer secret for POST /email/inbound; unset -> endpoint off"),
    ("INBOUND_AUTHSERV_ID", "trusted Authentication-Results authserv-id; set -> DMARC must pass"),
    ("MAILGUN_SIGNING_KEY", "Mailgun webhook signing key; set -> POST /email/inbound/mailgun"),
    ("HOST", "HTTP listen address (default 127.0.0.1)"),
    ("PORT", "HTTP listen port (default 3000)"),
    ("ALLOW_PROCEED_IRREVERSIBLE", "true lets timeout_policy=proceed gate irreversible actions"),
    ("OUTBOX_MAX_AGE", "seconds an outbox item is retried before dead-lettering (default 86400)"),
    ("OUTBOX_LEASE", "seconds a claimed outbox item is held before another replica may retry (60)"),
    ("OUTBOX_RETRY_BASE", "seconds before the first retry; doubles each time (default 1)"),
    ("SWEEP_INTERVAL", "seconds between timeout sweeps (default 1)"),
    (
        "DELIVERY_GRACE",
        "seconds to reach an approver of a tier before approval.undeliverable (600)",
    ),
    ("CALLBACK_TIMEOUT", "seconds to wait for the platform's callback endpoint (default 10)"),
    ("MAX_BODY_BYTES", "largest accepted request body in bytes (default 262144)"),
    ("TASKJUICE_DATA_DIR", "where the embedded PostgreSQL keeps its data (default ./.taskjuice)"),
    ("LOG_LEVEL", "DEBUG | INFO | WARNING | ERROR (default INFO)"),
    (
        "MIGRATE_ON_START",
        "false -> do not migrate at start-up; refuse to start if the schema is behind (run"
        " `taskjuice-bot migrate` first); default true",
    ),
    (
        "READY_MAX_OUTBOX_AGE",
        "worker processes: /readyz is 503 while due outbox work has waited longer than this"
        " many seconds (default 300)",
    ),
    (
        "NAME_FILE",
        "for each secret (DATABASE_URL, API_TOKENS, CALLBACK_SECRET, SLACK_*_TOKEN,"
        " SLACK_SIGNING_SECRET, LINK_SECRETS, SMTP_PASSWORD, ...): read NAME from this file"
        " (one trailing newline stripped); NAME and NAME_FILE together stop start-up",
    ),
)
