"""One person, one vote, never their own approver: whatever name (email or Slack user) they use."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from uuid import UUID

import asyncpg
import pytest
from slack_sdk.web.async_client import AsyncWebClient

from bot import approvals, people
from bot.decisions import Verdict, decide
from bot.devkit.slack_api import Fault, SlackApiDouble
from bot.domain import Actor, Channel, NewTier, Outcome, TaskStatus
from bot.errors import ValidationFailed
from bot.platform.validation import parse_new_approval
from bot.wording import PLAIN, explain
from store import slack as slack_store
from tests.conftest import Service, TaskFactory, approval_body
from tests.slack_support import CFO, OPS, TEAM, SlackUserAgent
from tests.support import eventually

CFO_BY_SLACK = Actor(slack_user_id=CFO, slack_team_id=TEAM)
CFO_BY_EMAIL = Actor(email="cfo@acme.test")
OPS_BY_SLACK = Actor(slack_user_id=OPS, slack_team_id=TEAM)
OPS_BY_EMAIL = Actor(email="ops@acme.test")


@pytest.fixture
async def directory(pool: asyncpg.Pool, slack: SlackApiDouble) -> AsyncIterator[None]:
    """Decisions through `pool` may ask the Slack double (over HTTP) who people are."""
    client = AsyncWebClient(token=slack.token, base_url=slack.url, retry_handlers=[])
    people.attach(people.SlackDirectory(client=client, pool=pool))
    yield
    people.detach(pool)


async def cache(pool: asyncpg.Pool, user: str, email: str) -> None:
    async with pool.acquire() as conn:
        await slack_store.cache_user(conn, TEAM, user, email, None)


async def vote(pool: asyncpg.Pool, task_id: UUID, actor: Actor, via: Channel) -> Any:
    return await decide(pool, task_id=task_id, actor=actor, outcome=Outcome.APPROVE, via=via)


async def count(pool: asyncpg.Pool, sql: str) -> int:
    async with pool.acquire() as conn:
        return int(await conn.fetchval(sql))


CFO_TWICE = [{"slack_user_id": CFO}, {"email": "cfo@acme.test"}, {"email": "dana@acme.test"}]


@pytest.mark.parametrize("first", ["slack", "link"])
async def test_a_slack_click_and_a_link_of_one_person_fill_no_quorum_of_two(
    pool: asyncpg.Pool,
    slack: SlackApiDouble,
    directory: None,
    first: str,
    task_factory: TaskFactory,
) -> None:
    task_id = await task_factory.stored(approvers=CFO_TWICE, required_approvals=2)
    order = [(CFO_BY_SLACK, Channel.SLACK), (CFO_BY_EMAIL, Channel.EMAIL_LINK)]
    if first == "link":
        order.reverse()
    counted = await vote(pool, task_id, *order[0])
    assert counted.verdict is Verdict.COUNTED
    again = await vote(pool, task_id, *order[1])
    assert again.verdict is Verdict.ALREADY_VOTED and again.task.status is TaskStatus.PENDING
    assert again.decision is not None and again.decision.via is order[0][1]
    assert "You already approved this request" in explain(
        again, await approvals.get(pool, task_id), PLAIN
    )
    assert await count(pool, "SELECT count(*) FROM decisions") == 1
    asked = slack.calls_to("users.info") + slack.calls_to("users.lookupByEmail")
    assert 1 <= len(asked) <= 3  # asked once, at most three people, for the second vote
    dana = await vote(pool, task_id, Actor(email="dana@acme.test"), Channel.EMAIL_LINK)
    assert dana.verdict is Verdict.DECIDED and dana.task.status is TaskStatus.APPROVED


async def test_the_cache_alone_tells_the_two_names_apart_without_asking_slack(
    pool: asyncpg.Pool, slack: SlackApiDouble, directory: None, task_factory: TaskFactory
) -> None:
    task_id = await task_factory.stored(approvers=CFO_TWICE, required_approvals=2)
    await vote(pool, task_id, CFO_BY_EMAIL, Channel.EMAIL_LINK)
    await cache(pool, CFO, "cfo@acme.test")
    again = await vote(pool, task_id, CFO_BY_SLACK, Channel.SLACK)
    assert again.verdict is Verdict.ALREADY_VOTED
    assert slack.calls == []


@pytest.mark.parametrize("known_by", ["cache", "slack"])
async def test_a_requester_named_by_slack_id_cannot_approve_by_email_link(
    pool: asyncpg.Pool,
    slack: SlackApiDouble,
    directory: None,
    known_by: str,
    task_factory: TaskFactory,
) -> None:
    task_id = await task_factory.stored(
        requested_by={"slack_user_id": OPS},
        approvers=[{"email": "ops@acme.test"}, {"email": "dana@acme.test"}],
    )
    if known_by == "cache":
        await cache(pool, OPS, "ops@acme.test")
    refused = await vote(pool, task_id, OPS_BY_EMAIL, Channel.EMAIL_LINK)
    assert refused.verdict is Verdict.SELF_APPROVAL
    assert (slack.calls_to("users.lookupByEmail") != []) is (known_by == "slack")
    assert await count(pool, "SELECT count(*) FROM decisions") == 0


async def test_a_requester_named_by_email_cannot_approve_by_slack_click(
    pool: asyncpg.Pool, slack: SlackApiDouble, directory: None, task_factory: TaskFactory
) -> None:
    task_id = await task_factory.stored(
        requested_by={"email": "ops@acme.test"},
        approvers=[{"slack_user_id": OPS}, {"email": "dana@acme.test"}],
    )
    refused = await vote(pool, task_id, OPS_BY_SLACK, Channel.SLACK)
    assert refused.verdict is Verdict.SELF_APPROVAL
    assert [c.args["user"] for c in slack.calls_to("users.info")] == [OPS]
    denied = await decide(
        pool, task_id=task_id, actor=OPS_BY_SLACK, outcome=Outcome.DENY, via=Channel.SLACK
    )
    assert denied.verdict is Verdict.DECIDED  # the requester may still stop their own request


@pytest.mark.parametrize(
    "fault", [Fault(kind="http", times=9), Fault(kind="error", times=9, error="ratelimited")]
)
async def test_a_failed_slack_lookup_does_not_let_one_person_vote_twice(
    pool: asyncpg.Pool,
    slack: SlackApiDouble,
    directory: None,
    fault: Fault,
    task_factory: TaskFactory,
) -> None:
    task_id = await task_factory.stored(approvers=CFO_TWICE, required_approvals=2)
    await vote(pool, task_id, CFO_BY_EMAIL, Channel.EMAIL_LINK)
    slack.fail("users.info", fault)
    slack.fail("users.lookupByEmail", fault)
    refused = await vote(pool, task_id, CFO_BY_SLACK, Channel.SLACK)
    assert refused.verdict is Verdict.UNRESOLVED and not refused.changed
    assert "not counted" in explain(refused, await approvals.get(pool, task_id), PLAIN)
    assert refused.task.status is TaskStatus.PENDING
    assert await count(pool, "SELECT count(*) FROM decisions") == 1
    asked = slack.calls_to("users.info") + slack.calls_to("users.lookupByEmail")
    assert 1 <= len(asked) <= 3  # a few calls per decision, never a retry storm


async def test_without_slack_a_person_the_cache_cannot_place_is_not_counted(
    pool: asyncpg.Pool, task_factory: TaskFactory
) -> None:
    task_id = await task_factory.stored(approvers=CFO_TWICE, required_approvals=2)
    await vote(pool, task_id, CFO_BY_EMAIL, Channel.EMAIL_LINK)
    refused = await vote(pool, task_id, CFO_BY_SLACK, Channel.SLACK)
    assert refused.verdict is Verdict.UNRESOLVED
    assert await count(pool, "SELECT count(*) FROM decisions") == 1


async def test_email_only_requests_need_no_slack_at_all(
    pool: asyncpg.Pool, task_factory: TaskFactory
) -> None:
    task_id = await task_factory.stored(
        approvers=[{"email": "dana@acme.test"}, {"email": "cfo@acme.test"}]
    )
    result = await vote(pool, task_id, CFO_BY_EMAIL, Channel.EMAIL_LINK)
    assert result.verdict is Verdict.DECIDED


async def test_creation_refuses_an_email_and_slack_id_the_cache_knows_are_one_person(
    service: Service, pool: asyncpg.Pool
) -> None:
    await cache(pool, CFO, "cfo@acme.test")
    status, body = await service.request(
        "POST", "/api/v1/approvals", json=approval_body(approvers=CFO_TWICE)
    )
    assert status == 422 and set(body) == {"error", "fields"}
    assert "same person as approvers[0]" in body["fields"]["approvers[1]"]
    status, body = await service.request(
        "POST",
        "/api/v1/approvals",
        json=approval_body(approvers=CFO_TWICE, required_approvals=3),
    )
    assert status == 422
    assert "only 2 distinct person(s)" in body["fields"]["approvers"]
    assert await count(pool, "SELECT count(*) FROM tasks") == 0


async def test_creation_refuses_a_quorum_that_merged_people_cannot_reach(
    service: Service, pool: asyncpg.Pool
) -> None:
    await cache(pool, OPS, "ops@acme.test")
    status, body = await service.request(
        "POST",
        "/api/v1/approvals",
        json=approval_body(
            requested_by={"slack_user_id": OPS},
            approvers=[{"email": "ops@acme.test"}, {"email": "dana@acme.test"}],
            required_approvals=2,
        ),
    )
    assert status == 422
    assert "only 1 distinct person(s) other than the requester" in body["fields"]["approvers"]
    allowed = approval_body(
        requested_by={"slack_user_id": OPS},
        approvers=[{"email": "ops@acme.test"}, {"email": "dana@acme.test"}],
        required_approvals=2,
        allow_self_approval=True,
    )
    status, _ = await service.request("POST", "/api/v1/approvals", json=allowed)
    assert status == 201


async def test_creation_refuses_the_same_name_twice_in_a_tier(pool: asyncpg.Pool) -> None:
    new = parse_new_approval(approval_body(), allow_proceed_irreversible=False)
    for twice in (
        (Actor(email="dana@acme.test"), Actor(email="Dana@acme.test".lower())),
        (Actor(slack_user_id=CFO), Actor(slack_user_id=CFO)),
    ):
        doubled = type(new)(**{**_fields(new), "tiers": (NewTier(approvers=twice, expires_in=60),)})
        with pytest.raises(ValidationFailed) as refused:
            await approvals.create(pool, doubled)
        assert "approvers[1]" in refused.value.fields
    assert await count(pool, "SELECT count(*) FROM tasks") == 0


async def test_the_api_refuses_a_name_given_twice_instead_of_trimming_it(
    service: Service, pool: asyncpg.Pool
) -> None:
    for twice in (
        [{"email": "dana@acme.test"}, {"email": "DANA@acme.test"}],
        [{"slack_user_id": CFO}, {"email": "cfo@acme.test", "slack_user_id": CFO}],
    ):
        status, body = await service.request(
            "POST", "/api/v1/approvals", json=approval_body(approvers=twice)
        )
        assert status == 422, body
        assert body["fields"]["approvers[1]"] == "names the same person as approvers[0]"
    assert await count(pool, "SELECT count(*) FROM tasks") == 0


def _fields(new: Any) -> dict[str, Any]:
    return {name: getattr(new, name) for name in new.__dataclass_fields__}


async def test_a_slack_click_by_the_requester_named_by_email_is_refused_end_to_end(
    slack_service: Service, slack: SlackApiDouble, slack_user: SlackUserAgent
) -> None:
    status, task = await slack_service.request(
        "POST",
        "/api/v1/approvals",
        json=approval_body(
            approvers=[{"slack_user_id": OPS}, {"email": "dana@acme.test"}],
            reversibility="safe",
        ),
    )
    assert status == 201
    dm = slack.dm_channel(OPS)
    [message] = await eventually(lambda: slack.messages.get(dm), what="the requester's DM")
    status, _ = await slack_user.click(message, "taskjuice_approve", OPS)
    assert status == 200
    texts = await eventually(
        lambda: [e["text"] for e in slack.ephemeral if e.get("user") == OPS],
        what="an explanation",
    )
    assert "cannot approve it yourself" in texts[0]
    _, view = await slack_service.request("GET", f"/api/v1/approvals/{task['id']}")
    assert view["status"] == "pending" and view["decisions"] == []
