"""`taskjuice-bot`: serve the bot, or apply database migrations."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import textwrap

from aiohttp import web

from bot.app import build_app, prepare_database
from bot.config import SETTINGS_HELP, Settings, load_settings
from bot.errors import SettingsError
from bot.logs import configure_logging
from store.database import embedded_database_url

__all__ = ["main"]

log = logging.getLogger("taskjuice.cli")


def _parser() -> argparse.ArgumentParser:
    width = max(len(name) for name, _ in SETTINGS_HELP)
    table = "\n".join(f"  {name:<{width}}  {meaning}" for name, meaning in SETTINGS_HELP)
    parser = argparse.ArgumentParser(
        prog="taskjuice-bot",
        description="TaskJuice ChatOps bot: approvals and alerts in Slack and email.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=textwrap.dedent(
            """\
            Settings come from the environment; a .env file in the working directory may
            supply them (the environment wins). A missing or malformed setting stops start-up
            with one line naming it.

            """
        )
        + table,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("serve", help="run the HTTP service and its workers")
    commands.add_parser("migrate", help="apply database migrations and exit")
    return parser


def _database_url(settings: Settings) -> str:
    if settings.database_url:
        return settings.database_url
    log.info(
        "DATABASE_URL is unset: using the embedded PostgreSQL",
        extra={"event": "database.embedded", "data_dir": str(settings.data_dir)},
    )
    return embedded_database_url(settings.data_dir)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings(service=args.command == "serve")
    except SettingsError as exc:
        print(f"taskjuice-bot: {exc.message}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    database_url = _database_url(settings)
    if args.command == "migrate":
        applied = asyncio.run(prepare_database(database_url))
        print(f"migrations applied: {', '.join(applied) or 'none (up to date)'}")
        return 0
    web.run_app(
        build_app(settings, database_url),
        host=settings.host,
        port=settings.port,
        access_log=None,
        print=None,
        shutdown_timeout=10,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
