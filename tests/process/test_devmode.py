"""`taskjuice-bot dev`: the whole loop in a browser, as a TaskJuice engineer would try it."""

from __future__ import annotations

import html
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.browser import browser_page
from tests.support import eventually, free_port, run_bot_cli


@pytest.fixture
async def dev(tmp_path: Path, server_url: str) -> AsyncIterator[str]:
    """A real `taskjuice-bot dev` process; yields its base URL."""
    port = free_port()
    env = {
        "PATH": "/usr/bin:/bin",
        "PORT": str(port),
        "DATABASE_URL": server_url,
        "HOME": str(tmp_path),
        "SWEEP_INTERVAL": "0.2",
    }
    log = (tmp_path / "dev.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "bot.runtime.cli", "dev"],
        cwd=tmp_path,
        env=env,
        stdout=log,
        stderr=log,
    )
    base = f"http://127.0.0.1:{port}"

    async def up() -> bool:
        if proc.poll() is not None:
            raise AssertionError((tmp_path / "dev.log").read_text()[-3000:])
        # The address is printed once the seeded workspaces are connected and seeded.
        return "TaskJuice dev console: " in (tmp_path / "dev.log").read_text()

    try:
        await eventually(up, timeout=60, interval=0.1, what="dev mode up")
        async with aiohttp.ClientSession() as http, http.get(base + "/dev") as response:
            assert response.status == 200
        yield base
    finally:
        proc.terminate()
        proc.wait(15)


def test_dev_mode_refuses_a_public_url_that_is_not_loopback(tmp_path: Path) -> None:
    done = run_bot_cli(
        "dev", env={"PATH": "/usr/bin:/bin", "PUBLIC_URL": "https://bot.example.com"}, cwd=tmp_path
    )
    assert done.returncode == 2 and "loopback" in done.stderr


async def test_serve_has_no_dev_console(
    tmp_path: Path, database_url: str, receiver: object
) -> None:
    from tests.conftest import make_settings, start_service

    svc = await start_service(make_settings(receiver.url), database_url)  # type: ignore[attr-defined]
    try:
        status, _ = await svc.request("GET", "/dev", token=None)
        assert status == 404
    finally:
        await svc.close()


async def test_the_whole_loop_in_the_dev_console(dev: str) -> None:
    async with browser_page() as page:
        await page.set_viewport_size({"width": 1400, "height": 1600})
        await page.goto(dev + "/dev?user=U0DANA001&c=D0DANA001")
        # the seeds are there, so the console is never empty
        await page.locator(".message", has_text="Refund $4,000 to customer #881").wait_for()

        # the platform asks for an approval; it arrives as Dana's DM
        await page.fill("input[name=summary]", "Refund $99 to customer #7 (browser)")
        await page.click("text=Create request")
        message = page.locator(".message", has_text="Refund $99 to customer #7 (browser)")
        await message.wait_for()
        await message.get_by_role("button", name="Approve").click()
        await (
            page.locator(".message", has_text="Refund $99 to customer #7 (browser)")
            .filter(has_text="Approved")
            .wait_for()
        )
        row = page.locator(".callbacks tr", has_text="approval.approved")
        await row.wait_for()
        assert "verified" in await row.inner_text() and "NOT" not in await row.inner_text()

        # another request, decided from its email's magic link
        await page.fill("input[name=summary]", "Refund $55 to customer #8 (mail)")
        await page.click("text=Create request")
        confirm = await open_link_from_mail(page, "Refund $55 to customer #8 (mail)")
        await confirm.get_by_text("You are acting as").wait_for()
        await confirm.get_by_role("button", name="Approve").click()
        await confirm.get_by_role("heading", name="Thank you").wait_for()
        await confirm.close()

        # the Slack message shows the email decision too
        await page.goto(dev + "/dev?user=U0DANA001&c=D0DANA001")
        updated = page.locator(".message", has_text="Refund $55 to customer #8 (mail)")
        await updated.filter(has_text="via email link").wait_for()
        text = await updated.inner_text()
        assert re.search(r"Approved\s+by @dana via email link", text), text


async def open_link_from_mail(page: Any, subject: str) -> Any:
    """The Approve link of the mail about `subject`, opened as the person would. The console
    redraws the mail panel (and its frame) whenever another mail arrives, which can swallow a
    click made in that instant: the person clicks again, and so does this."""
    from playwright.async_api import TimeoutError as PlaywrightTimeout

    for attempt in range(3):
        await page.locator(".inbox a", has_text=subject).first.click()
        frame = page.frame_locator("iframe[title='Mail body']")
        try:
            async with page.expect_popup(timeout=10_000) as popup:
                await frame.get_by_role("link", name="Approve…").click(timeout=10_000)
            return await popup.value
        except PlaywrightTimeout:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


async def test_deny_with_a_reason_the_app_home_and_connect_slack_in_the_dev_console(
    dev: str,
) -> None:
    async with browser_page() as page:
        await page.set_viewport_size({"width": 1400, "height": 1600})
        await page.goto(dev + "/dev?user=U0DANA001&c=D0DANA001")
        await page.fill("input[name=summary]", "Refund $12 to customer #9 (denied)")
        await page.click("text=Create request")
        message = page.locator(".message", has_text="Refund $12 to customer #9 (denied)")
        await message.wait_for()
        await message.get_by_role("button", name="Deny").click()

        # Deny asks for a reason in a modal first
        modal = page.locator("form.modal", has_text="Deny request")
        await modal.wait_for()
        await modal.locator("textarea[name=reason]").fill("Duplicate of #881")
        await modal.get_by_role("button", name="Deny").click()
        denied = page.locator(".message", has_text="Refund $12 to customer #9 (denied)")
        await denied.filter(has_text="Duplicate of #881").wait_for()
        assert re.search(r"Denied\s*\*?\s*by @dana", await denied.inner_text())
        await page.locator(".callbacks tr", has_text="approval.denied").wait_for()

        # the App Home lists what still waits for Dana, and not the request she denied
        await page.get_by_role("button", name="Open App Home").click()
        home = page.locator(".home")
        await home.get_by_text("Refund $4,000 to customer #881").wait_for()
        assert "customer #9" not in await home.inner_text()

        # Connect Slack for a new workspace: the consent page opens beside the console.
        await page.fill("form.new-workspace input[name=workspace]", "initech")
        async with page.expect_popup() as popup:
            await page.locator("form.new-workspace").get_by_role("button").click()
        consent = await popup.value
        await consent.select_option("select[name=team]", "T0INITEC1")
        await consent.select_option("select[name=user]", "U0BILL001")
        await consent.select_option("select[name=channel]", "C0INITAL1")
        await consent.get_by_role("button", name="Allow").click()
        await consent.get_by_role("heading", name="Slack is connected").wait_for()
        await consent.close()
        row = page.locator("tr[data-workspace=initech]")
        await row.filter(has_text="Initech (T0INITEC1)").wait_for()


ACME, GLOBEX, INITECH = "T0ACME001", "T0GLOBEX1", "T0INITEC1"
DEV_API = {"Authorization": "Bearer dev-api-token"}


async def get(http: aiohttp.ClientSession, url: str) -> tuple[int, str]:
    async with http.get(url, allow_redirects=False) as response:
        return response.status, await response.text()


async def workspace_view(http: aiohttp.ClientSession, dev: str, workspace: str) -> Any:
    async with http.get(f"{dev}/api/v1/workspaces/{workspace}", headers=DEV_API) as response:
        assert response.status == 200
        return await response.json()


def hidden_fields(page: str) -> dict[str, str]:
    found = re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', page)
    return {name: html.unescape(value) for name, value in found}


async def test_connect_slack_in_the_console_binds_a_new_workspace_end_to_end(dev: str) -> None:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
        # Both seeded workspaces were connected at start, through the same flow.
        for workspace, team in (("acme", ACME), ("globex", GLOBEX)):
            slack = (await workspace_view(http, dev, workspace))["slack"]
            assert slack["team_id"] == team and slack["status"] == "active"
        assert (await workspace_view(http, dev, "initech"))["slack"] is None

        # A name the API refuses opens nothing and lists nothing.
        async with http.post(
            f"{dev}/dev/platform/connect", data={"workspace": "no such/name"}, allow_redirects=False
        ) as refused:
            assert refused.status == 303 and refused.headers["Location"].startswith("/dev")
        _, panel = await get(http, f"{dev}/dev/panel/platform")
        assert "no such" not in panel.split("Callbacks received")[0]
        assert "install link: API said 4" in panel

        # Connect Slack: the console asks the API for an install link and opens it.
        async with http.post(
            f"{dev}/dev/platform/connect", data={"workspace": "initech"}, allow_redirects=False
        ) as connect:
            assert connect.status == 303
            link = connect.headers["Location"]
        assert link.startswith(f"{dev}/slack/install?state=")
        async with http.get(link, allow_redirects=False) as opened:
            assert opened.status == 302
            cookie = opened.headers["Set-Cookie"].split(";")[0]
            consent_url = opened.headers["Location"]
        # The double's consent page: pick the team, who installs and the alerts channel.
        status, consent = await get(http, consent_url)
        assert status == 200 and "Initech (T0INITEC1)" in consent and "tps-reports" in consent
        form = hidden_fields(consent) | {
            "team": INITECH,
            "user": "U0BILL001",
            "channel": "C0INITAL1",
            "decision": "allow",
        }
        async with http.post(consent_url, data=form, allow_redirects=False) as allowed:
            assert allowed.status == 302
            back = allowed.headers["Location"]
        assert back.startswith(f"{dev}/slack/oauth_redirect?")
        async with http.get(back, headers={"Cookie": cookie}) as landed:
            page = await landed.text()
            assert landed.status == 200 and "Slack is connected" in page and "initech" in page

        view = await workspace_view(http, dev, "initech")
        assert view["slack"]["team_id"] == INITECH and view["slack_channel"] == "C0INITAL1"
        assert view["slack"]["installed_by"] == {
            "slack_user_id": "U0BILL001",
            "email": "bill@initech.test",
        }
        _, panel = await get(http, f"{dev}/dev/panel/platform")
        row = re.search(r'<tr data-workspace="initech">.*?</tr>', panel, re.S)
        assert row is not None and "Initech (T0INITEC1)" in row[0] and "Disconnect" in row[0]

        # Disconnect: the API forgets the binding, and the panel says so.
        async with http.post(
            f"{dev}/dev/platform/disconnect", data={"workspace": "initech"}, allow_redirects=False
        ) as gone:
            assert gone.status == 303
        assert (await workspace_view(http, dev, "initech"))["slack"] is None
        _, panel = await get(http, f"{dev}/dev/panel/platform")
        row = re.search(r'<tr data-workspace="initech">.*?</tr>', panel, re.S)
        assert row is not None and "not connected" in row[0] and "Disconnect" not in row[0]
        assert (await workspace_view(http, dev, "acme"))["slack"]["team_id"] == ACME


async def test_the_console_spans_both_teams_and_each_gets_its_own_requests(dev: str) -> None:
    async with aiohttp.ClientSession() as http:
        _, console = await get(http, f"{dev}/dev")
        groups = dict(re.findall(r'<optgroup label="([^"]+)">(.*?)</optgroup>', console, re.S))
        acme, globex = groups[f"Acme ({ACME})"], groups[f"Globex ({GLOBEX})"]
        assert "dana" in acme and "ada · admin" in acme and "hank" not in acme
        assert "hank" in globex and "gina · admin" in globex and "eve" in globex
        assert "dana" not in globex

        # The Slack panel lists both teams' channels and DMs, under their team.
        _, panel = await get(http, f"{dev}/dev/panel/slack?user=U0HANK001&c=D0HANK001")
        acme_part, _, globex_part = panel.partition(f"<h4>Globex ({GLOBEX})</h4>")
        assert "#alerts" in acme_part and "DM · dana" in acme_part
        assert "#globex-alerts" in globex_part and "DM · hank" in globex_part
        assert "#acme-globex · Acme, shared" in globex_part

        # The seeded request of globex reaches Hank's DM in Globex, and no one in Acme.
        async def in_hanks_dm() -> bool:
            _, panel = await get(http, f"{dev}/dev/panel/slack?user=U0HANK001&c=D0HANK001")
            return "Ship 300 units to the Springfield warehouse" in panel

        await eventually(in_hanks_dm, timeout=20, interval=0.2, what="globex's request")
        _, danas = await get(http, f"{dev}/dev/panel/slack?user=U0DANA001&c=D0DANA001")
        assert "Springfield" not in danas

        # The Platform panel says whom each request reached, by which channel and when, as
        # the API's `reach` has it.
        async def shipment_reached() -> dict[str, Any] | None:
            url = f"{dev}/api/v1/approvals?workspace=globex&limit=50"
            async with http.get(url, headers=DEV_API) as listed:
                items = (await listed.json())["items"]
            task = next(i for i in items if i["run_id"] == "run_seed_shipment")
            async with http.get(f"{dev}/api/v1/approvals/{task['id']}", headers=DEV_API) as one:
                view: dict[str, Any] = await one.json()
            return view if view["reach"] and view["reach"][0]["reached"] else None

        shipment = await eventually(shipment_reached, timeout=20, interval=0.2, what="reach")
        hank = shipment["reach"][0]
        assert hank["approver"]["email"] == "hank@globex.test"
        clock = datetime.fromisoformat(hank["at"].replace("Z", "+00:00")).strftime("%H:%M")
        _, platform = await get(http, f"{dev}/dev/panel/platform")
        block = re.search(
            rf'<div class="request" data-request="{shipment["id"]}">.*?</ul>', platform, re.S
        )
        assert block is not None and "Ship 300 units" in block[0]
        line = re.search(r"<li[^>]*>(.*?)</li>", block[0], re.S)
        assert line is not None
        assert line[1].strip().startswith(f"hank@globex.test — reached by {hank['via']} {clock}")


def approve_form(panel: str, summary: str) -> dict[str, str]:
    """The Approve button's form of the message that says `summary`."""
    article = next(a for a in re.findall(r"<article.*?</article>", panel, re.S) if summary in a)
    form = next(
        f for f in re.findall(r"<form.*?</form>", article, re.S) if "taskjuice_approve" in f
    )
    return {k: html.unescape(v) for k, v in re.findall(r'name="(\w+)" value="([^"]*)"', form)}


async def test_a_cross_team_click_in_the_console_is_refused(dev: str) -> None:
    from bot.slack.interactions import FOREIGN_TEXT

    summary = "Renew the Globex supply contract"
    shared = f"{dev}/dev/panel/slack?c=C0PARTNR1&user="
    async with aiohttp.ClientSession() as http:

        async def posted() -> str | None:
            _, panel = await get(http, shared + "U0EVE0001")
            return panel if summary in panel else None

        panel = await eventually(posted, timeout=20, interval=0.2, what="the shared post")
        # Eve, of Globex, sees Acme's request in the shared channel and presses Approve.
        async with http.post(
            f"{dev}/dev/slack/click", data=approve_form(panel, summary), allow_redirects=False
        ) as clicked:
            assert clicked.status == 303

        async def refused() -> bool:
            _, panel = await get(http, shared + "U0EVE0001")
            return FOREIGN_TEXT in panel

        await eventually(refused, timeout=20, interval=0.2, what="the refusal")
        _, panel = await get(http, shared + "U0DANA001")
        assert "taskjuice_approve" in approve_form(panel, summary).values()

        # Dana, of Acme, decides the same request in the same channel.
        async with http.post(
            f"{dev}/dev/slack/click", data=approve_form(panel, summary), allow_redirects=False
        ) as clicked:
            assert clicked.status == 303

        async def approved() -> bool:
            _, panel = await get(http, shared + "U0DANA001")
            article = next(
                a for a in re.findall(r"<article.*?</article>", panel, re.S) if summary in a
            )
            return "Approved" in article and "taskjuice_approve" not in article

        await eventually(approved, timeout=20, interval=0.2, what="Dana's approval")
