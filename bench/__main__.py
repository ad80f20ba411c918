"""`python -m bench [--quick]`: run the benchmarks, print a table, write bench/results.json."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
from pathlib import Path
from typing import Any

from bench import egress, slack_load, sweeper
from bench.database import fresh_database, server_url


def _rows(prefix: str, value: Any) -> list[tuple[str, str]]:
    if isinstance(value, dict):
        return [row for key, item in value.items() for row in _rows(f"{prefix}.{key}", item)]
    return [(prefix.lstrip("."), f"{value:,.2f}" if isinstance(value, float) else str(value))]


def _table(results: dict[str, Any]) -> str:
    rows = [
        row
        for key in ("sweeper", "interactivity", "pipeline", "fan_out", "memory", "egress")
        if key in results
        for row in _rows(key, results[key])
    ]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value:>14}" for name, value in rows)


def _targets(results: dict[str, Any]) -> str:
    """The egress figures that have a target, beside it, and whether it was met."""
    rows = egress.verdicts(results.get("egress", {}))
    if not rows:
        return ""
    width = max(len(name) for name, *_ in rows)
    lines = [f"{'egress figure':<{width}}  {'measured':>10}  {'target':>8}  verdict"]
    lines += [f"{n:<{width}}  {v:>10}  {t:>8}  {verdict}" for n, v, t, verdict in rows]
    return "\n".join(lines)


async def main(
    quick: bool, only: str | None, tiny: bool = False, scenarios: list[str] | None = None
) -> dict[str, Any]:
    server = server_url()
    results: dict[str, Any] = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "mode": "tiny" if tiny else "quick" if quick else "full",
    }
    if only in (None, "sweeper"):
        url = await fresh_database(server)
        results["sweeper"] = await sweeper.run(
            url, tasks=20_000 if quick else 100_000, repeats=1 if quick else 3
        )
    if only in (None, "slack"):
        url = await fresh_database(server)
        results |= await slack_load.run(url, quick=quick)
    if only in (None, "egress"):
        results["egress"] = await egress.run(
            server, mode=results["mode"], scenarios=scenarios or egress.SCENARIOS
        )
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller runs, under 3 minutes")
    parser.add_argument("--only", choices=["sweeper", "slack", "egress"], help="run one group")
    parser.add_argument(
        "--tiny", action="store_true", help="with --only egress: the smallest pass (a check)"
    )
    parser.add_argument("--out", type=Path, help="where to write the results (bench/results.json)")
    parser.add_argument(
        "--scenario",
        action="append",
        choices=egress.SCENARIOS,
        help="with --only egress: run this scenario (repeat for more; default all)",
    )
    args = parser.parse_args()
    if (args.tiny or args.scenario) and args.only != "egress":
        parser.error("--tiny and --scenario go with --only egress")
    results = asyncio.run(main(args.quick, args.only, args.tiny, args.scenario))
    print(_table(results))
    print(_targets(results))
    out = args.out or Path(__file__).resolve().parent / "results.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"written: {out}")
