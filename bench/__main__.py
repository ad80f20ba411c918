"""`python -m bench [--quick]`: run the benchmarks, print a table, write bench/results.json."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
from pathlib import Path
from typing import Any

from bench import slack_load, sweeper
from bench.database import fresh_database, server_url


def _rows(prefix: str, value: Any) -> list[tuple[str, str]]:
    if isinstance(value, dict):
        return [row for key, item in value.items() for row in _rows(f"{prefix}.{key}", item)]
    return [(prefix.lstrip("."), f"{value:,.2f}" if isinstance(value, float) else str(value))]


def _table(results: dict[str, Any]) -> str:
    rows = [
        row
        for key in ("sweeper", "interactivity", "pipeline", "fan_out", "memory")
        if key in results
        for row in _rows(key, results[key])
    ]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value:>14}" for name, value in rows)


async def main(quick: bool, only: str | None) -> dict[str, Any]:
    server = server_url()
    results: dict[str, Any] = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "mode": "quick" if quick else "full",
    }
    if only in (None, "sweeper"):
        url = await fresh_database(server)
        results["sweeper"] = await sweeper.run(
            url, tasks=20_000 if quick else 100_000, repeats=1 if quick else 3
        )
    if only in (None, "slack"):
        url = await fresh_database(server)
        results |= await slack_load.run(url, quick=quick)
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller runs, under 3 minutes")
    parser.add_argument("--only", choices=["sweeper", "slack"], help="run one group")
    args = parser.parse_args()
    results = asyncio.run(main(args.quick, args.only))
    print(_table(results))
    out = Path(__file__).resolve().parent / "results.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"written: {out}")
