"""A fallback load generator (when wrk is missing): N connections POSTing pre-signed bodies."""

from __future__ import annotations

import asyncio
import json
import sys
import time

import aiohttp


async def main(url: str, path: str, connections: int, seconds: float) -> None:
    rows = [line.rstrip("\n").split(" ", 2) for line in open(path)]
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds
    counter = iter(range(10**9))

    async def worker(http: aiohttp.ClientSession) -> None:
        nonlocal errors
        while time.perf_counter() < deadline:
            ts, signature, body = rows[next(counter) % len(rows)]
            started = time.perf_counter()
            async with http.post(
                url,
                data=body.encode(),
                headers={
                    "Content-Type": "application/x-www-form-urlencoded",
                    "X-Slack-Request-Timestamp": ts,
                    "X-Slack-Signature": signature,
                },
            ) as response:
                await response.read()
                errors += response.status >= 300
            latencies.append(time.perf_counter() - started)

    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector) as http:
        await asyncio.gather(*(worker(http) for _ in range(connections)))
    latencies.sort()
    print(
        json.dumps(
            {
                "rps": len(latencies) / seconds,
                "p50_ms": latencies[len(latencies) // 2] * 1000,
                "p99_ms": latencies[int(len(latencies) * 0.99)] * 1000,
                "non_2xx": errors,
            }
        )
    )


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])))
