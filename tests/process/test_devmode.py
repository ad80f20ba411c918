"""`taskjuice-bot dev`: the whole loop in a browser, as a TaskJuice engineer would try it."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

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
        try:
            async with aiohttp.ClientSession() as http, http.get(base + "/dev") as response:
                return response.status == 200
        except OSError:
            return False

    try:
        await eventually(up, timeout=60, interval=0.1, what="dev mode up")
        assert "TaskJuice dev console: " in (tmp_path / "dev.log").read_text()
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
        await page.locator(".inbox a", has_text="Refund $55 to customer #8 (mail)").first.click()
        frame = page.frame_locator("iframe[title='Mail body']")
        async with page.expect_popup() as popup:
            await frame.get_by_role("link", name="Approve…").click()
        confirm = await popup.value
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


async def test_deny_with_a_reason_and_the_app_home_in_the_dev_console(dev: str) -> None:
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
