"""`python -m bench [--quick]`: run the benchmarks, print a table, write bench/results.json."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
from pathlib import Path
from typing import Any

from bench import sweeper
from bench.database import fresh_database, server_url


def _table(results: dict[str, Any]) -> str:
    lines = ["benchmark                  figure                       value"]
    sweep = results["sweeper"]
    for workers in (1, 2):
        fig = sweep[f"workers_{workers}"]
        lines.append(
            f"sweeper ({sweep['tasks']} overdue)  {workers} worker(s) tasks/s"
            f"{fig['tasks_per_s']:>20,.0f}"
        )
        lines.append(
            f"{'':27}{workers} worker(s) longest batch{fig['longest_batch_ms_max']:>12.1f} ms"
        )
    return "\n".join(lines)


async def main(quick: bool) -> dict[str, Any]:
    url = await fresh_database(server_url())
    results: dict[str, Any] = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "mode": "quick" if quick else "full",
    }
    results["sweeper"] = await sweeper.run(
        url, tasks=20_000 if quick else 100_000, repeats=1 if quick else 3
    )
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller runs, under 3 minutes")
    args = parser.parse_args()
    results = asyncio.run(main(args.quick))
    print(_table(results))
    out = Path(__file__).resolve().parent / "results.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"written: {out}")
