"""A real headless browser (Debian's chromium, driven by Playwright) for page tests."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

# Chromium's own background traffic would only meet this machine's closed network.
_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@asynccontextmanager
async def browser_page() -> AsyncIterator[Any]:
    """A fresh page in a new headless Chromium (skips when chromium is not installed)."""
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (.ci/run installs it)")
    from playwright.async_api import async_playwright

    profile = tempfile.mkdtemp(prefix="taskjuice-chromium-")
    async with async_playwright() as pw:
        context = await pw.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, args=_ARGS, headless=True
        )
        try:
            page = context.pages[0] if context.pages else await context.new_page()
            yield page
        finally:
            await context.close()
            shutil.rmtree(profile, ignore_errors=True)
