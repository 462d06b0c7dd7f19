"""The page's layout in headless Chromium: the avatar is the main view, seen without
scrolling on a laptop screen (1280×720) and a phone (390×844), with Start beside it.

No media flows here (nothing is started), so no network namespace is needed; the
media path in a real browser is tests/test_browser.py. ``MIRAGE_SCREENSHOTS=DIR``
keeps the screenshots to look at.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.server_fixtures import StartServer, base_url

CHROMIUM = Path("/usr/bin/chromium")
VIEWPORTS = {"laptop": (1280, 720), "phone": (390, 844)}

pytestmark = pytest.mark.browser

BOXES = """() => Object.fromEntries(['avatar', 'self', 'start', 'status'].map((id) => {
  const r = document.getElementById(id).getBoundingClientRect();
  return [id, { x: r.x, y: r.y, w: r.width, h: r.height }];
}))"""


def inside(box: dict[str, float], width: int, height: int) -> bool:
    return (
        box["w"] > 0
        and box["x"] >= 0
        and box["y"] >= 0
        and box["x"] + box["w"] <= width + 0.5
        and box["y"] + box["h"] <= height + 0.5
    )


@pytest.fixture
def chromium() -> str:
    if not CHROMIUM.exists():
        if os.geteuid() == 0:
            pytest.fail("Debian chromium is missing: make test installs it (as root)")
        pytest.skip("SKIPPED LOUDLY: /usr/bin/chromium is not installed and we are not root")
    return str(CHROMIUM)


@pytest.mark.parametrize("viewport", VIEWPORTS, ids=list(VIEWPORTS))
async def test_the_avatar_is_in_view_without_scrolling(
    start_server: StartServer, chromium: str, viewport: str, tmp_path: Path
) -> None:
    from playwright.async_api import async_playwright

    width, height = VIEWPORTS[viewport]
    server = await start_server()
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=chromium,
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--use-fake-ui-for-media-stream"],
        )
        try:
            page = await browser.new_page(viewport={"width": width, "height": height})
            await page.goto(f"{base_url(server)}/")
            await page.wait_for_function("document.getElementById('face').options.length > 0")
            boxes: dict[str, Any] = await page.evaluate(BOXES)
            scroll_y = await page.evaluate("window.scrollY")
            consent = await page.evaluate("document.querySelector('.consent')?.textContent")
            shot = tmp_path / f"layout-{viewport}.png"
            await page.screenshot(path=str(shot))
        finally:
            await browser.close()
    keep = os.environ.get("MIRAGE_SCREENSHOTS")
    if keep:
        shutil.copy(shot, Path(keep) / shot.name)
    avatar = boxes["avatar"]
    assert scroll_y == 0
    assert inside(avatar, width, height), f"the avatar is not fully in view: {avatar}"
    assert avatar["w"] * avatar["h"] >= 0.3 * width * height, f"the avatar is small: {avatar}"
    assert avatar["w"] >= 3 * boxes["self"]["w"], "the self view is as big as the avatar"
    for control in ("self", "start", "status"):
        assert inside(boxes[control], width, height), f"{control} out of view: {boxes[control]}"
    assert consent and "consent" in consent  # the upload says it needs the person's consent
