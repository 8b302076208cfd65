"""A real browser for the web app's end-to-end tests: Debian's Chromium driven by
Playwright, headless, with a fake camera and microphone, one fresh profile per
launch, and screenshots kept as test artifacts.

Nothing is downloaded: Playwright's own browser builds are not used, the system's
`/usr/bin/chromium` is (`make test` installs it with apt).
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from playwright.async_api import Browser, BrowserContext, Page, async_playwright

__all__ = [
    "ARTIFACTS",
    "CHROMIUM",
    "CHROMIUM_ARGS",
    "DIST",
    "chromium",
    "require_built_app",
    "screenshot",
    "signed_in",
]

ROOT = Path(__file__).resolve().parents[2]
DIST = ROOT / "web" / "dist"
CHROMIUM = os.environ.get("LUMALIVE_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(os.environ.get("LUMALIVE_ARTIFACTS", ROOT / "tests" / "artifacts"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",  # root in CI containers
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",  # nothing leaves the machine
    "--disable-component-update",
    "--disable-sync",
    "--use-fake-device-for-media-stream",  # a synthetic camera and microphone
    "--use-fake-ui-for-media-stream",  # and the permission prompt answered yes
    "--autoplay-policy=no-user-gesture-required",  # players start without a click
]


def require_built_app() -> None:
    """Fail (never skip) with what to run when the app is not built."""
    assert (DIST / "index.html").is_file(), (
        f"the web app is not built ({DIST} has no index.html): run `make web` "
        "(npm ci and npm run build in web/) before these tests; `make test` does it"
    )
    assert shutil.which(CHROMIUM) or Path(CHROMIUM).is_file(), (
        f"no Chromium at {CHROMIUM}: apt-get install -y chromium (`make test` does it)"
    )


@asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    """One headless Chromium; each `new_context()` is a separate person (own
    storage, cookies, permissions), and Playwright gives the launch a fresh
    temporary profile, removed when it closes."""
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            await browser.close()


@asynccontextmanager
async def signed_in(browser: Browser, base_url: str, token: str | None) -> AsyncIterator[Page]:
    """A new person's page, signed in as the app does it: the first page is opened
    with `?token=`, which the app keeps (localStorage) and removes from the URL."""
    context: BrowserContext = await browser.new_context(
        base_url=base_url, viewport={"width": 1366, "height": 900}
    )
    await context.grant_permissions(["camera", "microphone"], origin=base_url)
    page = await context.new_page()
    try:
        if token:
            await page.goto(f"/signin?token={token}")
            await page.wait_for_function("() => !location.search.includes('token=')")
        yield page
    except BaseException:
        # What the page showed when the test failed: the first thing to look at.
        with contextlib.suppress(Exception):
            await screenshot(page, f"failed-{token[-8:] if token else 'anonymous'}")
        raise
    finally:
        await context.close()


async def screenshot(page: Page, name: str) -> Path:
    """Save the page as `<ARTIFACTS>/<name>.png` and print where it is."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    print(f"screenshot: {path}")
    return path
