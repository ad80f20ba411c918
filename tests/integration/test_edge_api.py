"""The API's trust boundary over real HTTP: only the OpenAPI route is public, and no body,
query or path the platform (or anyone) sends earns a 500 or stores what cannot be delivered."""

from __future__ import annotations

import json
from typing import Any

import asyncpg
import pytest

from tests.conftest import Service, approval_body


async def count(pool: asyncpg.Pool, table: str) -> int:
    async with pool.acquire() as conn:
        value: int = await conn.fetchval(f"SELECT count(*) FROM {table}")
        return value


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("PUT", "/api/v1/workspaces/openapi.json"),
        ("GET", "/api/v1/approvals/openapi.json"),
        ("POST", "/api/v1/approvals/openapi.json/cancel"),
        ("GET", "/api/v1/nowhere/openapi.json"),
    ],
)
async def test_a_path_ending_in_openapi_json_still_needs_a_token(
    service: Service, pool: asyncpg.Pool, method: str, path: str
) -> None:
    status, body = await service.request(method, path, json={}, token=None)
    assert status == 401 and body["error"]
    assert await count(pool, "workspaces") == 0
    status, _ = await service.request("GET", "/api/v1/openapi.json", token=None)
    assert status == 200


async def test_a_workspace_named_openapi_json_is_set_with_a_token(service: Service) -> None:
    status, body = await service.request(
        "PUT", "/api/v1/workspaces/openapi.json", json={"thresholds": [50]}
    )
    assert status == 200 and body["workspace"] == "openapi.json"


def _raw(marker_value: str, **changes: Any) -> bytes:
    """A create body whose `summary` (or the field changed to "MARK") holds raw JSON text."""
    body = approval_body(**({"summary": "MARK"} | changes))
    return json.dumps(body).replace('"MARK"', marker_value).encode()


@pytest.mark.parametrize(
    ("raw", "field", "words"),
    [
        (_raw("1" * 5000), "summary", "digits"),
        (_raw("9" * 400, required_approvals="MARK"), "required_approvals", "digits"),
        (_raw("NaN"), "summary", "finite"),
        (_raw("Infinity"), "summary", "finite"),
        (_raw("-Infinity"), "summary", "finite"),
        (_raw("1e999"), "summary", "finite"),
        (_raw('"\\ud800 lone"'), "summary", "Unicode"),
        (_raw('"low \\udfff"', step="MARK"), "step", "Unicode"),
        (_raw('{"a\\u0000": "1"}', details="MARK"), "details", "NUL"),
        (_raw('{"amount": "\\u0000"}', details="MARK"), "details.amount", "NUL"),
        (_raw("[" * 1000 + "]" * 1000, details="MARK"), "body", "levels deep"),
        (_raw("[" * 100 + "]" * 100, details="MARK"), "body", "levels deep"),
        (b'{"workspace": "acme"' + b', "x": {"y": 1e400}}', "x.y", "finite"),
    ],
    ids=[
        "5000-digit-int",
        "400-digit-int",
        "NaN",
        "Infinity",
        "-Infinity",
        "1e999",
        "high-surrogate",
        "low-surrogate",
        "nul-in-key",
        "nul-in-value",
        "1000-deep",
        "100-deep",
        "overflowing-float",
    ],
)
async def test_hostile_json_gets_a_422_naming_the_problem(
    service: Service, pool: asyncpg.Pool, raw: bytes, field: str, words: str
) -> None:
    status, body = await service.request("POST", "/api/v1/approvals", data=raw)
    assert status == 422, body
    assert words in body["fields"][field], body
    assert await count(pool, "tasks") == 0


@pytest.mark.parametrize(
    "path",
    ["/api/v1/events/spend", "/api/v1/events/throughput", "/api/v1/workspaces/acme"],
)
@pytest.mark.parametrize("value", ["NaN", "1" * 4400, "[" * 2000 + "]" * 2000, '"\\udc80"'])
async def test_every_json_body_is_read_by_the_same_strict_loader(
    service: Service, pool: asyncpg.Pool, path: str, value: str
) -> None:
    method = "PUT" if "workspaces" in path else "POST"
    raw = ('{"workspace": "acme", "thresholds": ' + value + "}").encode()
    status, body = await service.request(method, path, data=raw)
    assert status == 422 and body["fields"], body
    assert await count(pool, "alert_events") == 0
    assert await count(pool, "workspaces") == 0


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/api/v1/approvals?workspace=%00", "workspace"),
        ("/api/v1/approvals?workspace=acme%0A", "workspace"),
        ("/api/v1/approvals?limit=%C2%B2", "limit"),
        ("/api/v1/approvals?limit=" + "1" * 5000, "limit"),
        ("/api/v1/approvals?cursor=%C2%B2", "cursor"),
        ("/api/v1/approvals?cursor=%00", "cursor"),
        ("/api/v1/outbox?cursor=%C2%B2", "cursor"),
        ("/api/v1/outbox?cursor=9223372036854775808", "cursor"),
        ("/api/v1/outbox?cursor=" + "9" * 5000, "cursor"),
        ("/api/v1/outbox?limit=%C2%B2%C2%B2", "limit"),
    ],
)
async def test_bad_query_parameters_get_a_422_naming_them(
    service: Service, path: str, field: str
) -> None:
    status, body = await service.request("GET", path)
    assert status == 422, body
    assert field in body["fields"], body


async def test_the_largest_outbox_cursor_is_still_a_cursor(service: Service) -> None:
    status, body = await service.request("GET", "/api/v1/outbox?cursor=9223372036854775807")
    assert status == 200 and body == {"items": [], "next_cursor": None}


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/outbox/%C2%B2/retry",
        "/api/v1/outbox/9223372036854775808/retry",
        "/api/v1/outbox/" + "9" * 5000 + "/retry",
    ],
)
async def test_impossible_outbox_ids_are_404(service: Service, path: str) -> None:
    status, body = await service.request("POST", path)
    assert status == 404 and body["error"]


@pytest.mark.parametrize(
    "email",
    [
        "dänа@acme.test",  # non-ASCII local part: needs SMTPUTF8, refused by most servers
        "dana@bücher.test",  # an internationalised domain not in its IDNA form
        "dana@acme.test\n",  # Python's `$` matches before a final newline
        "da\x01na@acme.test",
        "da na@acme.test",
    ],
)
async def test_approver_addresses_must_be_deliverable_ascii(
    service: Service, pool: asyncpg.Pool, email: str
) -> None:
    status, body = await service.request(
        "POST", "/api/v1/approvals", json=approval_body(approvers=[{"email": email}])
    )
    assert status == 422 and body["fields"] == {"approvers[0].email": "is not an email address"}
    status, body = await service.request(
        "PUT", "/api/v1/workspaces/acme", json={"alert_emails": [email]}
    )
    assert status == 422 and "alert_emails[0]" in body["fields"]
    assert await count(pool, "tasks") == 0


async def test_an_idna_domain_in_its_ascii_form_is_accepted(service: Service) -> None:
    status, task = await service.request(
        "POST",
        "/api/v1/approvals",
        json=approval_body(approvers=[{"email": "o'brien+ops@xn--bcher-kva.test"}]),
    )
    assert status == 201 and task["approvers"] == [{"email": "o'brien+ops@xn--bcher-kva.test"}]


@pytest.mark.parametrize("workspace", ["acme\n", "acme\u2028"])
async def test_a_workspace_with_a_line_break_is_refused(service: Service, workspace: str) -> None:
    status, body = await service.request(
        "POST", "/api/v1/approvals", json=approval_body(workspace=workspace)
    )
    assert status == 422 and "workspace" in body["fields"]


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"rate": int("9" * 400)}, "rate"),
        ({"rate": 1e13}, "rate"),
        ({"cap": 10**13}, "cap"),
    ],
)
async def test_throughput_figures_beyond_any_real_one_are_refused(
    service: Service, pool: asyncpg.Pool, changes: dict[str, Any], field: str
) -> None:
    event = {"workspace": "acme", "workflow": {"id": "wf", "name": "Loop"}, "state": "tripped"}
    status, body = await service.request(
        "POST", "/api/v1/events/throughput", json=event | {"rate": 10, "cap": 5} | changes
    )
    assert status == 422 and field in body["fields"], body
    assert await count(pool, "alert_events") == 0


async def test_paused_runs_beyond_any_real_count_are_refused(service: Service) -> None:
    event = {
        "workspace": "acme",
        "connection": {"id": "c1", "app": "Gmail", "name": "ops@acme"},
        "state": "error",
        "paused_runs": 10**20,
    }
    status, body = await service.request("POST", "/api/v1/events/connection", json=event)
    assert status == 422 and "paused_runs" in body["fields"]
