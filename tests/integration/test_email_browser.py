"""The magic-link confirmation page in a real browser, as a person (and a scanner) uses it."""

from __future__ import annotations

import re
from typing import Any

from bot.devkit.mail_catcher import MailCatcher
from tests.browser import browser_page
from tests.conftest import Service, approval_body
from tests.support import eventually


async def test_a_person_approves_an_irreversible_action_in_a_browser(
    mail_service: Service, catcher: MailCatcher, receiver: Any
) -> None:
    _, task = await mail_service.request(
        "POST", "/api/v1/approvals", json=approval_body(approvers=[{"email": "dana@acme.test"}])
    )
    mail = await eventually(lambda: catcher.to("dana@acme.test"), what="the request mail")
    url = re.search(r"(http://\S+/d/\S+\?do=approve)", mail[0].text()).group(1)  # type: ignore[union-attr]
    async with browser_page() as page:
        response = await page.goto(url)
        assert response.status == 200
        await page.get_by_text("You are acting as").wait_for()
        assert await page.title() == "Review and decide · TaskJuice"
        # a scanner that clicks the button without typing the word decides nothing
        await page.get_by_role("button", name="Approve").click(no_wait_after=True)
        _, view = await mail_service.request("GET", f"/api/v1/approvals/{task['id']}")
        assert view["status"] == "pending"
        word = await page.locator(".word").inner_text()
        await page.get_by_label(re.compile("Type .* to confirm")).fill(word)
        await page.get_by_role("button", name="Approve").click()
        await page.get_by_role("heading", name="Thank you").wait_for()
        assert "Approved. The workflow will continue." in await page.content()
    _, view = await mail_service.request("GET", f"/api/v1/approvals/{task['id']}")
    assert view["status"] == "approved" and view["decisions"][0]["via"] == "email_link"
    await eventually(lambda: receiver.delivered, what="the callback")


async def test_the_confirmation_page_fits_a_phone(
    mail_service: Service, catcher: MailCatcher
) -> None:
    await mail_service.request(
        "POST",
        "/api/v1/approvals",
        json=approval_body(approvers=[{"email": "dana@acme.test"}], summary="A " * 200),
    )
    mail = await eventually(lambda: catcher.to("dana@acme.test"), what="the request mail")
    url = re.search(r"(http://\S+/d/\S+)\?do=deny", mail[0].text()).group(1)  # type: ignore[union-attr]
    async with browser_page() as page:
        await page.set_viewport_size({"width": 360, "height": 740})
        await page.goto(url)
        width = await page.evaluate("document.documentElement.scrollWidth")
        assert width <= 360
        assert await page.get_by_label("Reason (optional)").is_visible()
