"""Benchmark harness: the bot as a real process, the stand-ins, signed clicks, load tools."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from bot.devkit.slack_requests import FORM, SlackRequests
from store import seed

__all__ = [
    "SIGNING_SECRET",
    "BotProcess",
    "click_body",
    "cpu_seconds",
    "free_port",
    "pending_tasks",
    "percentile",
    "postgres_cpu_seconds",
    "run_load",
    "settle",
    "sign",
]

SIGNING_SECRET = "bench-signing-secret"
CALLBACK_SECRET = "whsec_YmVuY2gtY2FsbGJhY2stc2VjcmV0LWtleQ=="
TEAM = "T0TASKJ01"
CLICKER = "U0LOAD0001"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


SLACK = SlackRequests(SIGNING_SECRET, team_id=TEAM, app_id="A0BENCH")


def sign(body: bytes, timestamp: int) -> dict[str, str]:
    """The headers of a signed click (form-encoded) with `body`."""
    return {"Content-Type": FORM} | SLACK.sign(body, timestamp=timestamp)


def click_body(task_id: str, content_hash: str = "hash", user: str = CLICKER) -> bytes:
    """A block_actions payload pressing Approve on a task, as Slack sends it."""
    value = json.dumps({"t": task_id, "r": 0, "h": content_hash}, separators=(",", ":"))
    message = {"ts": "1.000001", "channel": "D0LOAD0001"}
    body, _ = SLACK.block_actions(
        user=user,
        username="load",
        action_id="taskjuice_approve",
        value=value,
        message=message,
        trigger_id="1.2.3",
        with_message=False,
    )
    return body


async def pending_tasks(
    conn: asyncpg.Connection, count: int, *, approver: str = CLICKER
) -> list[str]:
    """`count` pending tasks whose one approver is the Slack user `approver`."""
    return await seed.pending_tasks(conn, count, approver=approver)


async def settle(conn: asyncpg.Connection, *, analyze: bool = True) -> None:
    """After a setup: vacuum, analyze and write its pages out now, so that neither autovacuum
    nor a checkpoint of the setup's writes lands inside the measured run. `analyze=False`
    only writes the pages out, leaving the statistics as they were."""
    if analyze:
        await conn.execute("VACUUM ANALYZE")
    with contextlib.suppress(asyncpg.InsufficientPrivilegeError):
        await conn.execute("CHECKPOINT")


@dataclass
class BotProcess:
    """`taskjuice-bot serve` (or the bare Bolt app) as a real process."""

    env: dict[str, str]
    argv: list[str]
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.env['PORT']}"

    async def start(self, ready_path: str = "/healthz") -> None:
        log = open(os.devnull, "wb")
        self.proc = subprocess.Popen(self.argv, env=self.env, stdout=log, stderr=log)
        deadline = time.monotonic() + 60
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                try:
                    async with http.get(self.url + ready_path) as response:
                        if response.status < 500:
                            return
                except OSError:
                    await asyncio.sleep(0.1)
        raise RuntimeError(f"{self.argv} did not start")

    def rss_mb(self) -> float:
        assert self.proc is not None
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        found = re.search(r"VmRSS:\s+(\d+) kB", status)
        return int(found.group(1)) / 1024 if found else 0.0

    def cpu_seconds(self) -> float:
        """CPU time (user + system) the process has used so far; 0 where /proc is missing."""
        return cpu_seconds(self.proc.pid) if self.proc is not None else 0.0

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of process `pid` so far; 0 where /proc is missing."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def postgres_cpu_seconds() -> float:
    """CPU time of every PostgreSQL process on this machine (the server under test, when it
    is local); 0 where /proc is missing."""
    total = 0.0
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            if (entry / "comm").read_text().strip() in ("postgres", "postmaster"):
                total += cpu_seconds(int(entry.name))
        except (OSError, ValueError):
            continue
    return total


def bot_env(database_url: str, slack_url: str, callback_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "SMTP_"))}
    env.update(
        DATABASE_URL=database_url,
        API_TOKENS="bench-token",
        CALLBACK_URL=callback_url,
        CALLBACK_SECRET=CALLBACK_SECRET,
        TASKJUICE_APP_URL="http://app.bench.test",
        HOST="127.0.0.1",
        PORT=str(free_port()),
        LOG_LEVEL="WARNING",
        SLACK_BOT_TOKEN="xoxb-test-token",
        SLACK_SIGNING_SECRET=SIGNING_SECRET,
        SLACK_API_URL=slack_url,
    )
    env.update(extra)
    return env


def bot_argv() -> list[str]:
    return [sys.executable, "-m", "bot.runtime.cli", "serve"]


# ---------------------------------------------------------------------------------------------
# Load generation: wrk (Debian's package) with pre-signed requests, else an aiohttp generator in
# its own process, so the server under test keeps its CPU.

_WRK_SCRIPT = """
local bodies, sigs, stamps = {}, {}, {}
local counter = 0
init = function(args)
  for line in io.lines(args[1]) do
    local ts, sig, body = line:match("^(%d+) (%S+) (.*)$")
    table.insert(stamps, ts); table.insert(sigs, sig); table.insert(bodies, body)
  end
  counter = tonumber(args[2]) or 0
end
request = function()
  counter = counter + 1
  local i = (counter % #bodies) + 1
  return wrk.format("POST", "/slack/events", {
    ["Content-Type"] = "application/x-www-form-urlencoded",
    ["X-Slack-Request-Timestamp"] = stamps[i], ["X-Slack-Signature"] = sigs[i]}, bodies[i])
end
"""


def _parse_wrk(out: str) -> dict[str, float]:
    def ms(text: str) -> float:
        found = re.match(r"([\d.]+)(us|ms|s|m|h)$", text)
        if found is None:
            return float("nan")
        value, unit = found.groups()
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1e3, "m": 6e4, "h": 3.6e6}[unit]

    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    # Anchored: "+/- Stdev" columns such as "65.50%" must not pass for the 50th percentile.
    p50 = ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    p99 = ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]

    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "rps": rps,
        "p50_ms": p50,
        "p99_ms": p99,
        "non_2xx": float(errors.group(1)) if errors else 0.0,
    }


def run_load(url: str, bodies: list[bytes], *, connections: int, seconds: float) -> dict[str, Any]:
    """Throughput and latency of POSTing the signed bodies to `url`/slack/events."""
    now = int(time.time())
    folder = Path(tempfile.mkdtemp(prefix="taskjuice-load-"))
    try:
        lines = []
        for body in bodies:
            signature = sign(body, now)["X-Slack-Signature"]
            lines.append(f"{now} {signature} {body.decode()}")
        (folder / "requests.txt").write_text("\n".join(lines) + "\n")
        if shutil.which("wrk"):
            (folder / "clicks.lua").write_text(_WRK_SCRIPT)
            out = subprocess.run(
                [
                    "wrk",
                    "-t1",
                    f"-c{connections}",
                    f"-d{seconds}s",
                    "--latency",
                    "-s",
                    str(folder / "clicks.lua"),
                    url + "/slack/events",
                    "--",
                    str(folder / "requests.txt"),
                    "0",
                ],
                capture_output=True,
                text=True,
                check=True,
                timeout=seconds + 60,
            ).stdout
            return _parse_wrk(out) | {"tool": "wrk"}
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "bench.loadgen",
                url + "/slack/events",
                str(folder / "requests.txt"),
                str(connections),
                str(seconds),
            ],
            capture_output=True,
            text=True,
            check=True,
            timeout=seconds + 60,
        ).stdout
        return json.loads(out) | {"tool": "aiohttp loadgen"}
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def median_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    keys = [k for k, v in runs[0].items() if isinstance(v, (int, float))]
    return {k: round(statistics.median(r[k] for r in runs), 2) for k in keys} | {
        "tool": runs[0].get("tool")
    }
