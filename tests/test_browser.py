"""The web page in a real browser: uvicorn on loopback, headless Chromium driven by Playwright.

Skips (with the reason) where Playwright's Python package or a Chromium binary is missing;
`.ci/run` installs Debian's `chromium`. Screenshots go to `$SOUNDSEARCH_SCREENSHOTS` if set, else
to the test's temporary folder.
"""

from __future__ import annotations

import base64
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from api.app import create_app
from api.settings import Settings
from storage.catalog import Catalog
from storage.schema import FileRow
from tests.live_server import serving
from tests.planted import PlantedEncoder, tone
from tests.test_api import build_catalog, build_library, wav_bytes

sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright's Python package is not installed")


def find_chromium() -> str | None:
    for candidate in (os.environ.get("CHROMIUM"), "/usr/lib/chromium/chromium", shutil.which("chromium")):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


CHROMIUM = find_chromium()
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no Chromium found (apt-get install chromium)")

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--autoplay-policy=no-user-gesture-required",
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    base = tmp_path_factory.mktemp("browser")
    library = build_library(base / "lib")
    build_catalog(base / "home", library, None)
    with Catalog.open(base / "home") as catalog:  # tags and captions, as tagging and captioning would leave
        by_name = {f.path.name: f.id for f in catalog.files()}
        tags = {by_name["take_001.wav"]: [("whistle", 0.9)], by_name["chord.wav"]: [("bell", 0.8)]}
        catalog.set_tags("zeroshot", tags)
        with catalog.session() as s:
            s.execute(
                update(FileRow)
                .where(FileRow.id == by_name["Street_Ambience_Long.wav"])
                .values(caption="traffic passes on a wet street, a whistle blows")
            )
    settings = Settings(home=base / "home")
    with serving(create_app(settings, encoder=PlantedEncoder()), settings) as url:
        yield url


@pytest.fixture(scope="module")
def page(server: str) -> Iterator[Any]:
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1320, "height": 860})
        pg = context.new_page()
        pg.set_default_timeout(15_000)
        pg.goto(server)
        yield pg
        browser.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = Path(os.environ.get("SOUNDSEARCH_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def names(page: Any) -> list[str]:
    result: list[str] = page.locator(".result .name").all_inner_texts()
    return result


def player(page: Any) -> dict[str, Any]:
    state: dict[str, Any] = page.evaluate(
        "() => { const p = document.getElementById('player');"
        " return {src: p.src, readyState: p.readyState, time: p.currentTime, paused: p.paused}; }"
    )
    return state


def drop_file(page: Any, name: str, data: bytes) -> None:
    """Drag a file from the desktop onto the page, as the browser would deliver it."""
    page.evaluate(
        """([name, b64]) => {
            const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
            const dt = new DataTransfer();
            dt.items.add(new File([bytes], name, {type: "audio/wav"}));
            for (const type of ["dragenter", "dragover", "drop"]) {
                window.dispatchEvent(new DragEvent(type, {dataTransfer: dt, bubbles: true, cancelable: true}));
            }
        }""",
        [name, base64.b64encode(data).decode()],
    )


def test_search_play_example_classify_caption(page: Any, shots: Path, tmp_path: Path) -> None:
    expect = sync_api.expect
    expect(page.locator("#status")).to_contain_text("8 sounds")

    # Type a query, press Enter: ranked results with waveforms.
    page.locator("#q").fill("whistle")
    page.locator("#mode").select_option("vector")
    page.locator("#q").press("Enter")
    expect(page.locator("#message")).to_contain_text("results for “whistle”")
    ranked = names(page)
    assert ranked[0] == "take_001.wav" and "Street_Ambience_Long.wav" in ranked[:3]
    long_row = page.locator(".result", has_text="Street_Ambience_Long.wav")
    expect(long_row.locator(".where")).to_have_text("match 0:20.0–0:30.0")
    expect(long_row.locator(".caption")).to_contain_text("a whistle blows")
    expect(page.locator(".result").first.locator(".tag")).to_have_text(["whistle"])
    page.wait_for_function(  # waveforms drawn: the canvases have pixels
        "() => [...document.querySelectorAll('.wave')].every(c => c.width > 0)"
    )

    # Play the long file: it starts at the matching segment, and the audio element plays.
    long_row.locator(".play").click()
    page.wait_for_function(
        "() => { const p = document.getElementById('player'); return p.readyState >= 2 && !p.paused }"
    )
    first = player(page)
    assert "/api/files/" in first["src"] and first["time"] >= 20.0
    page.wait_for_function(f"() => document.getElementById('player').currentTime > {first['time'] + 0.2}")
    expect(long_row).to_have_class("result selected playing")
    page.screenshot(path=str(shots / "search.png"))

    # Keyboard: Space pauses the selected row; arrows move the selection; Space plays the new one.
    page.locator("#q").press("Escape")
    page.keyboard.press(" ")
    page.wait_for_function("() => document.getElementById('player').paused")
    selected = page.locator(".result.selected .name").inner_text()
    page.keyboard.press("ArrowDown")
    assert page.locator(".result.selected .name").inner_text() != selected
    page.keyboard.press(" ")
    page.wait_for_function("() => !document.getElementById('player').paused")
    expect(page.locator(".result.playing")).to_have_count(1)
    page.keyboard.press(" ")

    # Search by example: drop a recording anywhere on the page; and with the file picker.
    engine_like = wav_bytes(tone(2, 2.0))
    drop_file(page, "my_engine.wav", engine_like)
    expect(page.locator("#message")).to_contain_text("results for sounds like my_engine.wav")
    assert names(page)[0] == "Engine_Idle_01.wav"
    whistle = tmp_path / "whistle_take.wav"
    whistle.write_bytes(wav_bytes(tone(6, 1.5)))
    page.locator("#example-file").set_input_files(str(whistle))
    expect(page.locator("#message")).to_contain_text("results for sounds like whistle_take.wav")
    assert names(page)[0] == "take_001.wav"
    page.screenshot(path=str(shots / "example.png"))

    # "More like this" on a result.
    page.locator(".result", has_text="chord.wav").first.locator(".more").click()
    expect(page.locator("#message")).to_contain_text("results for sounds like chord.wav")
    assert names(page)[0] == "chord.flac"

    # Classify the selected result with labels typed now: a bar chart, best first.
    page.locator("#labels").fill("whistle, engine, chime, rumble")
    page.locator(".result").first.click()
    page.locator("#classify-button").click()
    expect(page.locator(".bar")).to_have_count(4)
    assert page.locator(".bar .label").all_inner_texts()[0] == "chime"
    # ... and an uploaded recording.
    engine_file = tmp_path / "idle.wav"
    engine_file.write_bytes(engine_like)
    page.locator("#classify-file").set_input_files(str(engine_file))
    expect(page.locator("#classify-source")).to_have_text("idle.wav (upload)")
    expect(page.locator(".bar").first).to_have_attribute("data-label", "engine")
    width = page.locator(".bar .fill").first.evaluate("el => parseFloat(el.style.width)")
    assert width > 50

    # Caption: no captioning model on this server, and the page says so.
    page.locator("#caption-file").set_input_files(str(whistle))
    expect(page.locator("#caption-out")).to_have_text(
        "Captions are not available on this server: no captioning model is configured."
    )

    # Errors from the API reach the user as sentences.
    page.locator("#q").fill("-thunder")
    page.locator("#q").press("Enter")
    expect(page.locator("#message")).to_contain_text("only says what to avoid")
    page.locator("#q").fill("whistle")
    page.locator("#q").press("Enter")
    expect(page.locator("#message")).to_contain_text("results for “whistle”")
    page.screenshot(path=str(shots / "classify.png"))
