"""Every test in this folder checks the benchmark: marked `bench` (`pytest -m bench` runs them
alone, `-m "not bench"` leaves them out; the default command runs them)."""

from __future__ import annotations

from pathlib import Path

import pytest

_HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _HERE in item.path.resolve().parents:
            item.add_marker(pytest.mark.bench)
