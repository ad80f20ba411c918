"""The unit tier needs no database: a test here that asks for one is refused at collection,
so `pytest tests/unit` never starts PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest

_HERE = Path(__file__).resolve().parent
_DATABASE = {"embedded_server", "server_url", "template_url", "database_url", "pool"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _HERE in item.path.resolve().parents:
            wanted = _DATABASE & set(getattr(item, "fixturenames", ()))
            if wanted:
                raise pytest.UsageError(f"{item.nodeid} is a unit test but uses {wanted}")
