"""The app factory: one pool, one HTTP client session, the workers, and every route."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import asyncpg
from aiohttp import web
from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from bot import people
from bot.errors import BotError
from bot.failover import DeliveryWatch
from bot.mail.delivery import EmailChannel, MailSender
from bot.outbox import consequences
from bot.outbox.consequences import ChannelPlugin, Fanout
from bot.outbox.dispatcher import Dispatcher, Handler, UnattendedWatch
from bot.platform.callbacks import CallbackBodies, CallbackSender
from bot.runtime.config import Settings
from bot.runtime.keys import BACKGROUND_POOL, METRICS, POOL, SETTINGS, TEAMS
from bot.runtime.metrics import Metrics
from bot.slack.delivery import SlackChannel, SlackSender
from bot.slack.egress import SlackBudget, limits_with
from bot.slack.install_flow import TeamsAuthorize, install_flow
from bot.slack.installations import PostgresInstallationStore, PostgresOAuthStateStore
from bot.slack.revocation import RevokedTeamWork
from bot.slack.teams import SlackTeams
from bot.slack.tokens import TokenCipher
from bot.timeouts import Sweeper
from handlers import health, links, mail
from handlers.api import api_app
from handlers.health import READINESS, Readiness
from handlers.slack import build_bolt, oauth_route, slack_route
from handlers.smtp import start_listener
from store.database import (
    UNAVAILABLE,
    Connections,
    PoolShare,
    connect,
    create_pool,
    wait_for_database,
)
from store.migrate import apply_migrations
from store.outbox import OutboxItem
from store.readiness import missing_migrations

__all__ = ["BOLT", "DISPATCHER", "SchemaBehind", "build_app", "prepare_database", "require_schema"]

log = logging.getLogger(__name__)

# The pool's connections: background work (the outbox dispatcher and the sweeper) holds at
# most BACKGROUND_CONNECTIONS of them at a time, so the rest always serve requests (Slack, the
# API, links, inbound mail).
REQUEST_CONNECTIONS = 10
BACKGROUND_CONNECTIONS = 6

DISPATCHER = web.AppKey("dispatcher", Dispatcher)
BOLT = web.AppKey("bolt", AsyncApp)


class SchemaBehind(BotError):
    """The database schema is older than this version needs: run `taskjuice-bot migrate`."""


async def prepare_database(database_url: str) -> list[str]:
    """Wait for PostgreSQL, then apply missing migrations (safe from many replicas)."""
    await wait_for_database(database_url)
    conn = await connect(database_url)
    try:
        return await apply_migrations(conn)
    finally:
        await conn.close()


async def require_schema(database_url: str) -> None:
    """With MIGRATE_ON_START=false: wait for PostgreSQL, change nothing, and refuse to run on
    a schema that lacks a migration this version needs (newer ones are fine)."""
    await wait_for_database(database_url)
    conn = await connect(database_url)
    try:
        missing = await missing_migrations(conn)
    finally:
        await conn.close()
    if missing:
        raise SchemaBehind(
            f"the database schema lacks {len(missing)} migration(s) this version needs"
            f" ({', '.join(missing)}) and MIGRATE_ON_START is false:"
            " run `taskjuice-bot migrate` first"
        )


def build_app(
    settings: Settings, database_url: str, *, workers: bool = True, edges: bool = True
) -> web.Application:
    """The whole service as one aiohttp application.

    `workers=False` leaves out the outbox dispatcher and the sweeper (another process runs
    them); `edges=False` leaves out everything that receives work — the API, Slack, links,
    inbound mail — so only health and metrics are served (a worker process).
    """
    app = web.Application(client_max_size=settings.max_body_bytes, middlewares=[_unavailable])
    app[SETTINGS] = settings
    app[METRICS] = Metrics()
    # Only a worker-only process answers for the outbox: a web process that is behind on
    # sending must still take requests.
    app[READINESS] = Readiness(outbox_max_age=None if edges else settings.ready_max_outbox_age)
    app.cleanup_ctx.append(_lifecycle(database_url, workers, edges))
    health.add_routes(app)
    if not edges:
        return app
    app.add_subapp("/api/v1", api_app())
    if settings.slack_enabled and not settings.slack_app_token:
        app.router.add_post("/slack/events", _slack_events)
    if settings.slack_distributed:
        if settings.slack_app_token is None:
            app.router.add_post("/slack/events", _slack_events)
        app.router.add_get("/slack/install", _slack_oauth, allow_head=False)
        app.router.add_get("/slack/oauth_redirect", _slack_oauth, allow_head=False)
    if settings.link_secrets:
        links.add_routes(app)
    mail.add_routes(app)
    return app


@web.middleware
async def _unavailable(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """A database that is away or restarting answers 503 (retry), never a bare 500."""
    try:
        return await handler(request)
    except UNAVAILABLE as exc:
        log.warning(
            "database unavailable",
            extra={"event": "http.db_unavailable", "error": type(exc).__name__},
        )
        return web.Response(
            status=503,
            text="The service is briefly unavailable; please try again in a minute.\n",
            headers={"Retry-After": "5"},
        )


async def _slack_events(request: web.Request) -> web.Response:
    handle = slack_route(request.app[BOLT], request.app[SETTINGS].slack_signing_secret or "")

    response: web.Response = await handle(request)
    return response


async def _slack_oauth(request: web.Request) -> web.Response:
    response: web.Response = await oauth_route(request.app[BOLT])(request)
    return response


async def keep_running(
    name: str, run: Callable[[], Awaitable[None]], metrics: Metrics, *, pause: float = 1.0
) -> None:
    """Run a background worker until it returns; a crash is logged, counted and followed by
    a fresh start, so one unforeseen error never silently stops deliveries or timeouts."""
    while True:
        try:
            await run()
            return
        except Exception:
            metrics.worker_restarts.labels(name).inc()
            log.exception(
                "background worker crashed; restarting it",
                extra={"event": "worker.crashed", "worker": name},
            )
            await asyncio.sleep(pause)


def _lifecycle(database_url: str, workers: bool, edges: bool):  # type: ignore[no-untyped-def]
    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        settings = app[SETTINGS]
        if settings.migrate_on_start:
            await prepare_database(database_url)
        else:
            await require_schema(database_url)
        pool = await create_pool(
            database_url, max_size=REQUEST_CONNECTIONS + BACKGROUND_CONNECTIONS
        )
        app[POOL] = pool
        background = PoolShare(pool, BACKGROUND_CONNECTIONS)
        app[BACKGROUND_POOL] = background
        session = aiohttp.ClientSession()
        slack = _slack(app, pool, background, session) if settings.slack_enabled else None
        if settings.slack_distributed:
            slack = _distributed(app, pool, background, session)
        elif slack is None:
            log.info(
                "Slack delivery is off: SLACK_BOT_TOKEN is not set",
                extra={"event": "slack.disabled"},
            )
        mailer = MailSender(pool=background, settings=settings) if settings.email_enabled else None
        if mailer is None:
            log.info(
                "Email delivery is off: SMTP_HOST is not set", extra={"event": "mail.disabled"}
            )
        dispatcher = _dispatcher(app, background, database_url, session, slack, mailer)
        app[DISPATCHER] = dispatcher
        sweeper = Sweeper(
            pool=background,
            metrics=app[METRICS],
            interval=settings.sweep_interval,
            deliveries=DeliveryWatch(
                pool=background,
                metrics=app[METRICS],
                slack=slack is not None,
                mail=mailer is not None,
            )
            if slack is not None or mailer is not None
            else None,
        )
        # A web-only process sends nothing; it warns when nobody else does either.
        watch = UnattendedWatch(pool=background)
        running = (
            [
                asyncio.create_task(keep_running("outbox", dispatcher.run, app[METRICS])),
                asyncio.create_task(keep_running("sweeper", sweeper.run, app[METRICS])),
            ]
            if workers
            else [asyncio.create_task(keep_running("outbox-watch", watch.run, app[METRICS]))]
        )
        socket_mode = None
        if (
            edges
            and slack is not None
            and settings.slack_app_token
            and not settings.slack_distributed
        ):
            from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler

            socket_mode = AsyncSocketModeHandler(app[BOLT], settings.slack_app_token)
            await socket_mode.connect_async()  # type: ignore[no-untyped-call]
            app[READINESS].slack_socket = socket_mode.client
        listener = None
        if edges and settings.inbound_smtp_port is not None:
            listener = await start_listener(pool, settings, app[METRICS])
        log.info(
            "taskjuice-bot ready",
            extra={
                "event": "service.ready",
                "host": settings.host,
                "port": settings.port,
                "workers": workers,
                "edges": edges,
            },
        )
        try:
            yield
        finally:
            if socket_mode is not None:
                await socket_mode.close_async()  # type: ignore[no-untyped-call]
            if listener is not None:
                listener.close()
                await listener.wait_closed()
            sweeper.stop()
            dispatcher.stop()
            watch.stop()
            await asyncio.gather(*running, return_exceptions=True)
            await session.close()
            people.detach(pool)
            await pool.close()
            log.info("taskjuice-bot stopped", extra={"event": "service.stopped"})

    return lifecycle


def _slack(
    app: web.Application,
    pool: asyncpg.Pool,
    background: Connections,
    session: aiohttp.ClientSession,
) -> SlackSender:
    """The one Web API client, the Bolt app and the sender that share it."""
    settings = app[SETTINGS]
    client = AsyncWebClient(
        token=settings.slack_bot_token,
        base_url=settings.slack_api_url,
        session=session,  # one HTTP session, its connections kept, rather than one per call
        timeout=10,
        retry_handlers=[],  # the outbox owns retries, so a blind retry never posts twice
    )
    teams = app[TEAMS] = SlackTeams(
        pool=pool, session=session, api_url=settings.slack_api_url, single=client
    )
    app[BOLT] = build_bolt(settings, pool, client, app[METRICS], teams=app[TEAMS])
    people.attach(people.SlackDirectory(client=client, pool=pool))
    return _sender(app, background, teams)


def _distributed(
    app: web.Application,
    pool: asyncpg.Pool,
    background: Connections,
    session: aiohttp.ClientSession,
) -> SlackSender:
    """Distributed mode: the teams' installations, the install flow, the Bolt app that
    authorizes each request with its own team's token (never Bolt's refresh, which would
    spend a refresh token outside the team's lock), and the sender that speaks to each team
    with its own token. A revoked installation gives up its team's Slack work."""
    settings = app[SETTINGS]
    teams = SlackTeams(
        pool=pool,
        session=session,
        api_url=settings.slack_api_url,
        store=PostgresInstallationStore(pool, TokenCipher(settings.slack_token_keys)),
        states=PostgresOAuthStateStore(pool),
        client_id=settings.slack_client_id,
        client_secret=settings.slack_client_secret,
    )
    app[TEAMS] = teams
    teams.revocation_hooks.append(RevokedTeamWork(mail=settings.email_enabled))
    flow = install_flow(
        teams,
        client_id=settings.slack_client_id or "",
        client_secret=settings.slack_client_secret or "",
        public_url=settings.public_url,
        authorize_url=settings.slack_oauth_url,
    )
    app[BOLT] = build_bolt(
        settings,
        pool,
        teams.new_client(None),
        app[METRICS],
        teams=teams,
        oauth_flow=flow,
        authorize=TeamsAuthorize(teams),
    )
    people.attach(people.SlackDirectory(client=teams.new_client(None), pool=pool, teams=teams))
    log.info(
        "Slack is in distributed mode: each workspace connects by an install link",
        extra={"event": "slack.distributed"},
    )
    return _sender(app, background, teams)


def _sender(app: web.Application, background: Connections, teams: SlackTeams) -> SlackSender:
    """The Slack outbox sender of either mode: each call with its team's token, within the
    team's shared egress budget (contract §7)."""
    settings = app[SETTINGS]
    return SlackSender(
        pool=background,
        teams=teams,
        app_url=settings.taskjuice_app_url,
        budget=SlackBudget(
            pool=background,
            metrics=app[METRICS],
            limits=limits_with(settings.slack_rate_limits),
            post_interval=settings.slack_post_interval,
        ),
    )


def _dispatcher(
    app: web.Application,
    pool: Connections,
    database_url: str,
    session: aiohttp.ClientSession,
    slack: SlackSender | None,
    mailer: MailSender | None,
) -> Dispatcher:
    settings = app[SETTINGS]
    callbacks = CallbackSender(
        session,
        url=settings.callback_url,
        key=settings.callback_key,
        timeout=settings.callback_timeout,
    )
    channels: list[ChannelPlugin] = []
    if slack is not None:
        channels.append(SlackChannel(pool, distributed=slack.teams.distributed))
    if mailer is not None:
        channels.append(EmailChannel())
    fanout = Fanout(pool, channels=channels, grace=settings.delivery_grace)

    bodies = CallbackBodies(pool)

    async def send_callback(item: OutboxItem) -> None:
        await callbacks.send(item.message_id, await bodies.body(item.payload))

    handlers: dict[str, Handler] = {
        consequences.CALLBACK: send_callback,
        consequences.TASK_CHANGED: fanout.task,
        consequences.ALERT_CHANGED: fanout.alert,
    }
    if slack is not None:
        handlers |= slack.handlers()
    if mailer is not None:
        handlers |= mailer.handlers()
    return Dispatcher(
        pool=pool,
        database_url=database_url,
        handlers=handlers,
        metrics=app[METRICS],
        lease=settings.outbox_lease,
        max_age=settings.outbox_max_age,
        retry_base=settings.outbox_retry_base,
    )
