"""The page in a real browser: load an example, type a query, separate, see the players.

Headless Chromium from the system (Debian's ``chromium``; ``QUERYSEP_CHROMIUM`` names another
executable), driven by Playwright's Python API; no browser is downloaded. Skipped, with the
reason, only when there is no Chromium. ``QUERYSEP_SCREENSHOT=docs/images/app.png`` also
saves the screenshot there (the README's picture).
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from .conftest import RunningApp


def _chromium() -> str | None:
    for name in (os.environ.get("QUERYSEP_CHROMIUM"), "chromium", "chromium-browser"):
        if name and (found := shutil.which(name)):
            return found
    return None


def test_the_page_separates_an_example(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    chromium = _chromium()
    if chromium is None:
        pytest.skip("no Chromium on this machine (Debian: apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    app: RunningApp = request.getfixturevalue("app_server")

    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(600_000)  # a busy CI machine
            sync_api.expect.set_options(timeout=600_000)
            page.goto(app.url)
            queries = page.locator("#queries textarea")

            page.locator("#examples").get_by_text("dog-and-rain.wav").click()
            sync_api.expect(queries).to_have_value("a dog barking\nrain")
            sync_api.expect(page.locator("#recording")).to_contain_text("0:05")
            queries.fill("a dog barking")
            page.locator("#separate-button").click()

            track = page.locator("#track-0")
            sync_api.expect(track).to_contain_text("0:05")  # the player, with its length
            sync_api.expect(track.locator("audio").first).to_be_attached()
            sync_api.expect(page.locator("#figure-0 img")).to_be_visible()
            sync_api.expect(page.locator("#track-1")).to_contain_text("everything else")
            sync_api.expect(page.locator("#track-2")).to_have_count(0)
            ats = page.get_by_text(re.compile(r"ATS -?\d\.\d{3} \(esc50-clap\)"))
            sync_api.expect(ats).to_have_count(1)
            files = page.locator("#files")
            sync_api.expect(files).to_contain_text("dog-and-rain__a-dog-barking")
            sync_api.expect(files).to_contain_text("dog-and-rain__residual")
            download = track.locator("a[download]")
            assert download.get_attribute("download") == "dog-and-rain__a-dog-barking.wav"
            wav = page.request.get(download.get_attribute("href"))
            assert wav.ok and wav.body()[:4] == b"RIFF"

            shot = page.screenshot(path=tmp_path / "app.png", full_page=True)
            assert shot[:4] == b"\x89PNG"
            if os.environ.get("QUERYSEP_SCREENSHOT"):
                Path(os.environ["QUERYSEP_SCREENSHOT"]).write_bytes(shot)

            # a bad request shows the command line's message in the page, and the page works on
            queries.fill("")
            page.locator("#separate-button").click()
            error = page.get_by_text("empty query: describe a sound, e.g. 'a dog barking'")
            sync_api.expect(error).to_be_visible()

            # a query for a sound the model never learnt: separated, and marked as far
            queries.fill("the stock market")
            page.locator("#separate-button").click()
            far = page.get_by_text("(far from every text the model was trained on)")
            sync_api.expect(far).to_be_visible()
        finally:
            browser.close()
