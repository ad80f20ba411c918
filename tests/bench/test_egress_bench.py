"""The egress benchmark runs end to end, as its one command runs it (`python -m bench --only
egress`, here in its tiny mode, in a process of its own), and what it counts holds: every DM
and mail of the fan-out delivered exactly once, every newcomer and probe answered, every voted
message in its final state. Its speed figures are the benchmark's business, not this test's."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

from tests.support import ROOT


async def test_the_egress_bench_completes_with_nothing_lost_or_doubled(
    server_url: str, tmp_path: Path
) -> None:
    out = tmp_path / "results.json"
    env = os.environ | {"DATABASE_URL": server_url}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench",
        "--only",
        "egress",
        "--tiny",
        "--out",
        str(out),
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        printed, _ = await asyncio.wait_for(process.communicate(), timeout=120)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0, printed.decode()[-3000:]

    results = json.loads(out.read_text())
    assert results["mode"] == "tiny"
    runs = results["egress"]
    assert runs, "no process count was run"
    for figures in runs.values():
        fan_out = figures["fan_out"]
        assert fan_out["lost"] == 0 and fan_out["posted_twice"] == 0, fan_out
        assert fan_out["dms"] == fan_out["mails"] == fan_out["requests"] > 0
        assert fan_out["bound_seconds"] > 0
        noisy = figures["noisy_neighbour"]
        assert noisy["b_reached"] == noisy["b_requests"] > 0, noisy
        votes = figures["vote_burst"]
        assert votes["unfinished_messages"] == 0, votes
        assert votes["final_state_messages"] == votes["messages"] == 3 * votes["requests"]
        assert votes["clicks_answered_200"] == votes["messages"]
        urgent = figures["urgent_first"]
        assert urgent["private_answers"] == urgent["new_dms"] == urgent["probes"] > 0, urgent
    # The table beside the targets is printed in the same run.
    assert "egress figure" in printed.decode()
