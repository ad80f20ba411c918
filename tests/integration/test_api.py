"""The platform API over real HTTP on 127.0.0.1, against a real PostgreSQL."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest

from tests.conftest import Service, approval_body

HOSTILE = [
    "Robert'); DROP TABLE tasks;--",
    "\"double\" 'single' `back`",
    "<!channel> <!here> <@U024BE7LH> <https://evil.test|click me>",
    "\u202eRTL override\u202c and \u200f mark",
    "emoji 💸 & ampersand <b>bold</b>",
    "back\\slash, tab\tand newline\nend",
]


async def count(pool: asyncpg.Pool, table: str) -> int:
    async with pool.acquire() as conn:
        value: int = await conn.fetchval(f"SELECT count(*) FROM {table}")
        return value


async def test_create_returns_the_task_with_its_expiry(service: Service) -> None:
    status, task = await service.request("POST", "/api/v1/approvals", json=approval_body())
    assert status == 201
    assert task["status"] == "pending" and task["resolution"] is None
    assert task["approvers"] == [{"email": "dana@acme.test"}, {"slack_user_id": "U024BE7LH"}]
    assert task["expires_at"].endswith("Z")
    assert service.last_headers["Location"] == f"/api/v1/approvals/{task['id']}"
    status, fetched = await service.request("GET", f"/api/v1/approvals/{task['id']}")
    assert status == 200 and fetched["id"] == task["id"] and fetched["decisions"] == []


async def test_same_idempotency_key_creates_once(service: Service, pool: asyncpg.Pool) -> None:
    headers = {"Idempotency-Key": "create-run_8f2-step-1"}
    results = await asyncio.gather(
        *[
            service.request("POST", "/api/v1/approvals", json=approval_body(), headers=headers)
            for _ in range(5)
        ]
    )
    assert {status for status, _ in results} == {201}
    assert len({task["id"] for _, task in results}) == 1
    assert await count(pool, "tasks") == 1


async def test_idempotency_key_with_another_body_is_refused(
    service: Service, pool: asyncpg.Pool
) -> None:
    headers = {"Idempotency-Key": "k-1"}
    await service.request("POST", "/api/v1/approvals", json=approval_body(), headers=headers)
    status, body = await service.request(
        "POST", "/api/v1/approvals", json=approval_body(summary="Other"), headers=headers
    )
    assert status == 409 and "Idempotency-Key" in body["error"]
    assert await count(pool, "tasks") == 1


@pytest.mark.parametrize(
    ("changes", "field", "words"),
    [
        ({"workspace": "has space"}, "workspace", "slug"),
        ({"run_id": ""}, "run_id", "empty"),
        ({"workflow": {"id": "wf"}}, "workflow.name", "required"),
        ({"summary": 42}, "summary", "string"),
        ({"reversibility": "maybe"}, "reversibility", "one of"),
        ({"approvers": []}, "approvers", "at least 1"),
        ({"approvers": [{"email": "not-an-email"}]}, "approvers[0].email", "email"),
        ({"approvers": [{"slack_user_id": "bob"}]}, "approvers[0].slack_user_id", "Slack user"),
        ({"approvers": [{"name": "x"}]}, "approvers[0]", "email or a slack_user_id"),
        ({"required_approvals": 0}, "required_approvals", "at least 1"),
        ({"required_approvals": 3}, "approvers", "distinct approver"),
        ({"expires_in": 0}, "expires_in", "at least 1"),
        ({"expires_in": 10**9}, "expires_in", "at most"),
        ({"timeout_policy": "later"}, "timeout_policy", "one of"),
        ({"timeout_policy": "escalate"}, "escalation", "required"),
        ({"timeout_policy": "proceed"}, "timeout_policy", "irreversible"),
        ({"deliver": {"slack_channel": "#general"}}, "deliver.slack_channel", "channel"),
        ({"details": {"nested": {"a": 1}}}, "details.nested", "string"),
        ({"requested_by": {"email": "x@y"}}, "requested_by.email", "email"),
        ({"remind_before": -5}, "remind_before", "at least 0"),
    ],
)
async def test_each_bad_field_is_named(
    service: Service, pool: asyncpg.Pool, changes: dict[str, Any], field: str, words: str
) -> None:
    status, body = await service.request("POST", "/api/v1/approvals", json=approval_body(**changes))
    assert status == 422, body
    assert field in body["fields"], body
    assert words.lower() in body["fields"][field].lower(), body
    assert await count(pool, "tasks") == 0


async def test_several_bad_fields_are_all_named(service: Service) -> None:
    body = approval_body(summary="", reversibility="x", approvers=[{"email": "nope"}])
    del body["run_id"]
    status, answer = await service.request("POST", "/api/v1/approvals", json=body)
    assert status == 422
    assert {"summary", "reversibility", "approvers[0].email", "run_id"} <= set(answer["fields"])


async def test_expiry_in_the_past_or_too_far_is_refused(service: Service) -> None:
    body = approval_body()
    del body["expires_in"]
    for when, words in [
        ("2020-01-01T00:00:00Z", "past"),
        ("2099-01-01T00:00:00Z", "30 days"),
        ("2026-12-01T00:00:00", "time zone"),
        ("tomorrow", "RFC 3339"),
    ]:
        status, answer = await service.request(
            "POST", "/api/v1/approvals", json=body | {"expires_at": when}
        )
        assert status == 422 and words in answer["fields"]["expires_at"], answer
    status, answer = await service.request(
        "POST",
        "/api/v1/approvals",
        json=body | {"expires_in": 60, "expires_at": "2099-01-01T00:00:00Z"},
    )
    assert status == 422 and "exactly one" in answer["fields"]["expires_in"]


async def test_proceed_on_irreversible_is_allowed_when_the_operator_says_so(
    database_url: str, receiver: Any
) -> None:
    from tests.conftest import make_settings, start_service

    svc = await start_service(
        make_settings(receiver.url, allow_proceed_irreversible=True), database_url, workers=False
    )
    try:
        status, task = await svc.request(
            "POST", "/api/v1/approvals", json=approval_body(timeout_policy="proceed")
        )
        assert status == 201 and task["timeout_policy"] == "proceed"
    finally:
        await svc.close()


async def test_body_that_is_not_json_is_refused(service: Service) -> None:
    status, body = await service.request("POST", "/api/v1/approvals", data=b"{not json")
    assert status == 422 and body["fields"] == {"body": "must be a JSON document"}
    status, body = await service.request("POST", "/api/v1/approvals", json=[1, 2])
    assert status == 422 and body["fields"] == {"body": "must be an object"}


async def test_oversized_body_is_refused_with_413(service: Service, pool: asyncpg.Pool) -> None:
    huge = approval_body(summary="x" * 400_000)
    status, body = await service.request("POST", "/api/v1/approvals", json=huge)
    assert status == 413 and "larger than" in body["error"]
    assert await count(pool, "tasks") == 0


@pytest.mark.parametrize("token", [None, "", "wrong-token", "test-api-token-but-longer"])
async def test_requests_without_the_right_token_get_401(
    service: Service, pool: asyncpg.Pool, token: str | None
) -> None:
    status, body = await service.request(
        "POST", "/api/v1/approvals", json=approval_body(), token=token
    )
    assert status == 401 and body["error"]
    assert service.last_headers["WWW-Authenticate"].startswith("Bearer")
    status, _ = await service.request("GET", "/api/v1/approvals", token=token)
    assert status == 401
    assert await count(pool, "tasks") == 0


async def test_hostile_strings_round_trip_unchanged(service: Service) -> None:
    for text in HOSTILE:
        body = approval_body(
            summary=text,
            step=text,
            run_id=text[:200],
            workflow={"id": "wf", "name": text},
            details={text[:50]: text},
        )
        status, created = await service.request("POST", "/api/v1/approvals", json=body)
        assert status == 201, created
        _, task = await service.request("GET", f"/api/v1/approvals/{created['id']}")
        assert task["summary"] == text and task["step"] == text
        assert task["workflow"]["name"] == text and task["details"] == {text[:50]: text}
        assert task["run_id"] == text[:200]


async def test_nul_characters_are_refused_not_crashed_on(service: Service) -> None:
    status, body = await service.request(
        "POST", "/api/v1/approvals", json=approval_body(summary="nul \u0000 inside")
    )
    assert status == 422 and "summary" in body["fields"]


async def test_unknown_or_malformed_task_ids_are_404(service: Service) -> None:
    for path in [
        "/api/v1/approvals/00000000-0000-0000-0000-000000000000",
        "/api/v1/approvals/not-a-uuid",
        "/api/v1/approvals/'%20OR%201=1",
    ]:
        status, body = await service.request("GET", path)
        assert status == 404 and body["error"]
    status, _ = await service.request("POST", "/api/v1/approvals/not-a-uuid/cancel")
    assert status == 404


async def test_list_pages_through_every_task_once(service: Service) -> None:
    created = set()
    for i in range(7):
        ws = "acme" if i % 2 == 0 else "globex"
        _, task = await service.request(
            "POST", "/api/v1/approvals", json=approval_body(workspace=ws, run_id=f"r{i}")
        )
        created.add(task["id"])
    seen: list[str] = []
    cursor = None
    while True:
        query = "?limit=3" + (f"&cursor={cursor}" if cursor else "")
        status, page = await service.request("GET", "/api/v1/approvals" + query)
        assert status == 200
        seen += [t["id"] for t in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == 7 and set(seen) == created
    _, page = await service.request("GET", "/api/v1/approvals?workspace=globex&status=pending")
    assert len(page["items"]) == 3 and {t["workspace"] for t in page["items"]} == {"globex"}


async def test_list_rejects_bad_query_parameters(service: Service) -> None:
    status, body = await service.request(
        "GET", "/api/v1/approvals?status=finished&limit=0&cursor=%%%"
    )
    assert status == 422
    assert set(body["fields"]) == {"status", "limit", "cursor"}


async def test_cancel_ends_the_task_and_is_idempotent(service: Service) -> None:
    _, task = await service.request("POST", "/api/v1/approvals", json=approval_body())
    path = f"/api/v1/approvals/{task['id']}/cancel"
    status, cancelled = await service.request("POST", path, json={"reason": "run cancelled"})
    assert status == 200 and cancelled["status"] == "cancelled"
    assert cancelled["resolution"] == "deny"
    assert [d["action"] for d in cancelled["decisions"]] == ["cancel"]
    status, again = await service.request("POST", path)
    assert status == 200 and len(again["decisions"]) == 1


async def test_routing_is_set_and_partially_updated(service: Service) -> None:
    status, routing = await service.request(
        "PUT",
        "/api/v1/workspaces/acme",
        json={
            "slack_channel": "C0123ABC",
            "alert_emails": ["Ops@Acme.test"],
            "thresholds": [90, 75],
        },
    )
    assert status == 200
    assert routing == {
        "workspace": "acme",
        "slack_channel": "C0123ABC",
        "slack_team_id": None,
        "alert_emails": ["ops@acme.test"],
        "thresholds": [75, 90],
    }
    status, routing = await service.request(
        "PUT", "/api/v1/workspaces/acme", json={"thresholds": [50]}
    )
    assert routing["slack_channel"] == "C0123ABC" and routing["thresholds"] == [50]
    status, body = await service.request(
        "PUT", "/api/v1/workspaces/acme", json={"thresholds": [150], "colour": "red"}
    )
    assert status == 422 and set(body["fields"]) == {"thresholds[0]", "colour"}
    status, body = await service.request("PUT", "/api/v1/workspaces/a%20b", json={})
    assert status == 422 and "workspace" in body["fields"]


async def test_health_readiness_and_metrics(service: Service) -> None:
    assert await service.request("GET", "/healthz", token=None) == (200, {"status": "ok"})
    status, body = await service.request("GET", "/readyz", token=None)
    assert status == 200 and body["database"] == "ok"
    status, text = await service.request("GET", "/metrics", token=None)
    assert status == 200
    for name in (
        "taskjuice_outbox_depth",
        "taskjuice_outbox_oldest_age_seconds",
        "taskjuice_outbox_dead_letters",
    ):
        assert name in text


async def test_openapi_document_lists_every_endpoint(service: Service) -> None:
    status, doc = await service.request("GET", "/api/v1/openapi.json", token=None)
    assert status == 200 and doc["openapi"] == "3.1.0"
    assert set(doc["paths"]) >= {
        "/approvals",
        "/approvals/{id}",
        "/approvals/{id}/cancel",
        "/events/spend",
        "/events/connection",
        "/events/throughput",
        "/workspaces/{workspace}",
    }
    create = doc["components"]["schemas"]["ApprovalCreate"]
    assert set(create["required"]) >= {"workspace", "approvers", "summary"}
