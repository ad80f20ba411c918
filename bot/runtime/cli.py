"""`taskjuice-bot`: serve the bot, or apply database migrations."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import os
import signal
import socket
import sys
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web

from bot.errors import SettingsError
from bot.runtime.app import SchemaBehind, build_app, prepare_database
from bot.runtime.config import Settings, load_settings
from bot.runtime.help import SETTINGS_HELP
from bot.runtime.logs import configure_logging
from bot.slack.tokens import TokenCipher, rotate_token_keys
from store.database import create_pool, embedded_database_url, recreate_database

if TYPE_CHECKING:
    from bot.runtime.devmode import DevWorld

__all__ = ["main"]

log = logging.getLogger(__name__)


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
            supply them (the environment wins). A secret may instead be read from a file:
            NAME_FILE=/path. A missing or malformed setting stops start-up with one line
            naming it.

            """
        )
        + table,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = commands.add_parser("serve", help="run the HTTP service and its workers")
    serve.add_argument(
        "--no-workers",
        action="store_true",
        help="serve HTTP (and Socket Mode, inbound SMTP) only; leave the outbox and the timeout "
        "sweeper to `taskjuice-bot worker` processes",
    )
    commands.add_parser(
        "worker",
        help="run only the outbox dispatcher and the timeout sweeper (with /healthz, /readyz "
        "and /metrics on PORT)",
    )
    commands.add_parser("migrate", help="apply database migrations and exit")
    commands.add_parser(
        "rotate-token-keys",
        help="re-encrypt every stored Slack token under the newest SLACK_TOKEN_KEYS key and "
        "exit (distributed mode; safe while the service runs)",
    )
    commands.add_parser(
        "dev",
        help="run the bot with stand-ins for Slack, mail and the platform, and a dev console "
        "(loopback only; never for production)",
    )
    return parser


def use_fast_event_loop() -> str:
    """uvloop when it is installed (it is, except on Windows): asyncpg and aiohttp spend about
    a fifth less CPU per Slack click on it. Returns the loop's name for the start-up log."""
    try:
        import uvloop
    except ImportError:
        return "asyncio"
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return "uvloop"


# A young collection every this many new container objects, instead of Python's 700.
YOUNG_COLLECTION_EVERY = 50_000


async def settle_heap(_: web.Application) -> None:
    """Once the service has started: everything alive then (modules, Bolt, slack-sdk, Jinja2,
    the pool) moves out of the garbage collector's sight, and young objects are collected less
    often. With Python's defaults the collector's passes, the full ones over that start-up heap
    above all, made the slowest Slack clicks (p99 at 32 concurrent clicks 51 ms, 32 ms without
    them). Cyclic garbage still goes, in larger sweeps; memory stays where it was (see README,
    Performance and reliability)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_COLLECTION_EVERY, *gc.get_threshold()[1:])


async def _rotate_token_keys(database_url: str, keys: tuple[str, ...]) -> int:
    """Re-encrypt the stored Slack tokens under the newest of `keys` (see
    docs/slack-distribution.md, "Rotating SLACK_TOKEN_KEYS")."""
    pool = await create_pool(database_url, max_size=2)
    try:
        return await rotate_token_keys(pool, TokenCipher(keys))
    finally:
        await pool.close()


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
    if args.command == "dev":
        return run_dev()

    try:
        settings = load_settings(service=args.command in ("serve", "worker", "rotate-token-keys"))
    except SettingsError as exc:
        print(f"taskjuice-bot: {exc.message}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    database_url = _database_url(settings)
    if args.command == "migrate":
        applied = asyncio.run(prepare_database(database_url))
        print(f"migrations applied: {', '.join(applied) or 'none (up to date)'}")
        return 0
    if args.command == "rotate-token-keys":
        if not settings.slack_token_keys:
            print("taskjuice-bot: SLACK_TOKEN_KEYS is not set", file=sys.stderr)
            return 2
        changed = asyncio.run(_rotate_token_keys(database_url, settings.slack_token_keys))
        print(f"Slack tokens re-encrypted under the newest key: {changed} row(s)")
        return 0
    log.info("event loop: %s", use_fast_event_loop(), extra={"event": "service.loop"})
    app = build_app(
        settings,
        database_url,
        workers=not getattr(args, "no_workers", False),
        edges=args.command == "serve",
    )
    app.on_startup.append(settle_heap)  # after the app's own start-up, which comes first
    try:
        web.run_app(
            app,
            host=settings.host,
            port=settings.port,
            access_log=None,
            print=None,
            shutdown_timeout=10,
        )
    except SchemaBehind as exc:
        print(f"taskjuice-bot: {exc.message}", file=sys.stderr)
        return 2
    return 0


def run_dev() -> int:
    """`taskjuice-bot dev`: everything on loopback, with a dev console at /dev."""
    from bot.runtime.devmode import ConnectFailed, require_loopback

    env = dict(os.environ)
    try:
        if env.get("PUBLIC_URL"):
            require_loopback(env["PUBLIC_URL"])
        port = int(env.get("PORT", "3000"))
    except (SettingsError, ValueError) as exc:
        print(f"taskjuice-bot: {exc}", file=sys.stderr)
        return 2
    configure_logging(env.get("LOG_LEVEL", "INFO").upper())
    use_fast_event_loop()
    try:
        asyncio.run(_serve_dev(env, port))
    except ConnectFailed as exc:
        print(f"taskjuice-bot: dev mode could not connect Slack: {exc}", file=sys.stderr)
        return 1
    return 0


async def _serve_dev(env: dict[str, str], port: int) -> None:
    """Serve the dev app until SIGINT or SIGTERM. The seeded workspaces are connected to
    Slack through the bot's own HTTP install flow, so that happens once it listens; the
    console's address is printed when they are connected and seeded."""
    from bot.runtime.devmode import connect_and_seed

    app, world = await _dev_app(env, port)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=5)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):  # no signal handlers on Windows
            loop.add_signal_handler(signum, stop.set)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", port).start()
        await connect_and_seed(app, world)
        print(f"TaskJuice dev console: http://127.0.0.1:{port}/dev", flush=True)
        await stop.wait()
    finally:
        await runner.cleanup()


async def _dev_app(env: dict[str, str], port: int) -> tuple[web.Application, DevWorld]:
    from bot.runtime.devmode import dev_environment, start_world
    from handlers import devconsole

    world = await start_world()
    settings = dev_environment(env, world, port, _free_port())
    # The stand-ins keep their state in memory, so the database starts afresh with them.
    server = settings.database_url or embedded_database_url(
        Path(env.get("TASKJUICE_DATA_DIR", ".taskjuice-dev"))
    )
    database_url = await recreate_database(server, "taskjuice_dev")

    app = build_app(settings, database_url)
    devconsole.add_routes(app, world)

    async def stop_world(_: web.Application) -> None:
        await world.slack.stop()
        await world.mail.stop()
        await world.platform.stop()

    app.on_cleanup.append(stop_world)
    return app, world


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


if __name__ == "__main__":
    sys.exit(main())
