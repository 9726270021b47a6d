"""The web page in a real browser: uvicorn on loopback, headless Chromium driven by Playwright.

Skips (with the reason) where Playwright's Python package or a Chromium binary is missing;
`.ci/run` installs Debian's `chromium`. Screenshots go to `$SOUNDSEARCH_SCREENSHOTS` if set, else
to the test's temporary folder.
"""

from __future__ import annotations

import base64
import io
import os
import shutil
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from sqlalchemy import update

from api.app import create_app
from api.settings import Settings
from storage.catalog import Catalog
from storage.schema import FileRow
from tests.live_server import serving
from tests.planted import BAND_HZ, SR, PlantedEncoder, tone
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
def playwright() -> Iterator[Any]:
    with sync_api.sync_playwright() as pw:
        yield pw


@pytest.fixture(scope="module")
def browser(playwright: Any) -> Iterator[Any]:
    chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    yield chromium
    chromium.close()


def open_page(browser: Any, server: str, **context: Any) -> Any:
    """A new page on the server; the page's uncaught script errors are collected in `pg.script_errors`."""
    pg = browser.new_context(viewport={"width": 1320, "height": 860}, **context).new_page()
    pg.set_default_timeout(15_000)
    errors: list[Any] = []
    pg.script_errors = errors
    pg.on("pageerror", lambda error: errors.append(error))
    pg.goto(server)
    return pg


@pytest.fixture(scope="module")
def page(browser: Any, server: str) -> Any:
    return open_page(browser, server)


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


def search(page: Any, query: str, mode: str = "vector") -> None:
    page.locator("#q").fill(query)
    page.locator("#mode").select_option(mode)
    page.locator("#q").press("Enter")
    sync_api.expect(page.locator("#message")).to_contain_text(f"results for “{query}”")
    page.wait_for_function("() => [...document.querySelectorAll('.wave')].every(c => c.width > 0)")


def drag_out(row: Any) -> tuple[str, str, str]:
    """Start dragging the row's export handle, as a drag towards the desktop would: its DownloadURL data."""
    data: str = row.locator(".export").evaluate(
        """link => {
            const data = new DataTransfer();
            link.dispatchEvent(new DragEvent("dragstart", {dataTransfer: data, bubbles: true, cancelable: true}));
            return data.getData("DownloadURL");
        }"""
    )
    mime, name, url = data.split(":", 2)
    return mime, name, url


def frames(data: bytes | Path) -> tuple[np.ndarray, tuple[str, str, int, int]]:
    """Decoded integer samples (exact for the 16-bit test files) and container, subtype, rate, channels."""
    with sf.SoundFile(io.BytesIO(data) if isinstance(data, bytes) else data) as f:
        return f.read(dtype="int16"), (f.format, f.subtype, f.samplerate, f.channels)


def assert_cut(cut: bytes | Path, source: Path, start_s: float, end_s: float) -> None:
    """The cut holds exactly the source's frames [start, end), in the source's own format."""
    got, layout = frames(cut)
    whole, source_layout = frames(source)
    assert layout == source_layout
    rate = source_layout[2]
    np.testing.assert_array_equal(got, whole[round(start_s * rate) : round(end_s * rate)])


def test_region_select_loop_export_drag_out(page: Any, shots: Path) -> None:
    expect = sync_api.expect
    search(page, "whistle")
    row = page.locator(".result", has_text="Street_Ambience_Long.wav")
    source = Path(row.locator(".name").get_attribute("title"))

    # Without a region, Export and a drag out give the whole file.
    expect(row.locator(".export")).to_have_text("Export file")
    mime, name, url = drag_out(row)
    assert (mime, name) == ("audio/wav", "Street_Ambience_Long.wav")
    assert url.startswith("http://127.0.0.1:") and url.endswith("/audio")

    # Drag across the waveform from a quarter to three quarters of the 40 s file: a region, in seconds.
    box = row.locator(".wave").bounding_box()
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + box["width"] * 0.25, y)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.5, y, steps=4)
    page.mouse.move(box["x"] + box["width"] * 0.75, y, steps=4)
    page.mouse.up()
    expect(row.locator(".region")).to_be_visible()
    start = float(row.locator(".region-start").input_value())
    end = float(row.locator(".region-end").input_value())
    assert abs(start - 10) < 0.2 and abs(end - 30) < 0.2, (start, end)
    assert player(page)["paused"], "a drag selects; it does not play"
    expect(row.locator(".export")).to_have_text("Export region")
    page.screenshot(path=str(shots / "region.png"))

    # Exact times typed in: the region is the planted whistle, 22-28 s.
    row.locator(".region-start").fill("22")
    row.locator(".region-start").press("Tab")
    row.locator(".region-end").fill("28")
    row.locator(".region-end").press("Tab")
    expect(row.locator(".region-length")).to_have_text("6.000 s")
    expect(row.locator(".region-start")).to_have_value("22.000")

    # Loop it: Web Audio loops the server's cut of the region, and the playhead moves inside it.
    row.locator(".loop").click()
    page.wait_for_function("() => state.audition && state.audition.source !== null")
    expect(row.locator(".loop")).to_have_attribute("aria-pressed", "true")
    looped = page.evaluate("() => state.audition.buffer.duration")
    assert abs(looped - 6.0) < 0.001
    page.wait_for_function("() => audioContext().currentTime > state.audition.startedAt + 0.3")
    assert 22.0 <= page.evaluate("() => loopPosition(state.audition)") <= 28.0
    page.screenshot(path=str(shots / "loop.png"))
    page.keyboard.press("l")  # the key stops the loop
    expect(row.locator(".loop")).to_have_attribute("aria-pressed", "false")
    assert page.evaluate("() => state.audition") is None

    # Export: the download is the region at the source's own rate, depth and channels, sample for sample.
    with page.expect_download() as download_info:
        row.locator(".export").click()
    download = download_info.value
    assert download.suggested_filename == "Street_Ambience_Long_22-28.wav"
    assert_cut(Path(download.path()), source, 22.0, 28.0)

    # Drag out: the DownloadURL names the cut, and fetching it gives the same frames.
    mime, name, url = drag_out(row)
    assert (mime, name) == ("audio/wav", "Street_Ambience_Long_22-28.wav")
    with urllib.request.urlopen(url) as response:
        assert response.headers["Content-Disposition"].startswith("attachment")
        assert_cut(response.read(), source, 22.0, 28.0)

    # Escape clears the region; the export goes back to the whole file.
    page.locator("body").press("Escape")
    expect(row.locator(".region")).to_be_hidden()
    expect(row.locator(".export")).to_have_text("Export file")
    # A click on the waveform, without a drag, plays from there (here the middle: 20 s).
    row.locator(".wave").click()
    page.wait_for_function(
        "() => { const p = document.getElementById('player'); return !p.paused && p.currentTime > 0 }"
    )
    assert 19.5 <= player(page)["time"] <= 21.0
    expect(row.locator(".region")).to_be_hidden()
    page.keyboard.press(" ")

    # A FLAC result, its region set from the keyboard (i: start at the playhead) and typed: a FLAC cut.
    search(page, "chime")
    flac = page.locator(".result", has_text="chord.flac")
    flac.locator(".name").click()
    page.keyboard.press("i")
    expect(flac.locator(".region")).to_be_visible()
    flac.locator(".region-start").fill("1")
    flac.locator(".region-start").press("Tab")
    flac.locator(".region-end").fill("2.5")
    flac.locator(".region-end").press("Tab")
    mime, name, url = drag_out(flac)
    assert (mime, name) == ("audio/flac", "chord_1-2.5.flac")
    with urllib.request.urlopen(url) as response:
        assert_cut(response.read(), Path(flac.locator(".name").get_attribute("title")), 1.0, 2.5)

    # Bad times typed in are refused with a sentence, and the region stays as it was.
    flac.locator(".region-end").fill("0.5")
    flac.locator(".region-end").press("Tab")
    expect(page.locator("#message")).to_contain_text("A region needs a start before its end")
    expect(flac.locator(".region-end")).to_have_value("2.500")
    page.locator("body").press("Escape")

    # A lossy source cannot be cut sample-exactly: its region comes as a WAV re-encode, and says so.
    search(page, "engine")
    ogg = page.locator(".result", has_text="Engine_Rev_02.ogg")
    ogg.locator(".name").click()
    page.keyboard.press("i")
    ogg.locator(".region-end").fill("1.5")
    ogg.locator(".region-end").press("Tab")
    expect(ogg.locator(".export")).to_have_text("Export region (WAV)")
    mime, name, url = drag_out(ogg)
    assert (mime, name) == ("audio/wav", "Engine_Rev_02_0-1.5.wav")
    with urllib.request.urlopen(url) as response:
        info = sf.info(io.BytesIO(response.read()))
    assert (info.format, info.subtype, info.samplerate, info.frames) == ("WAV", "FLOAT", SR, round(1.5 * SR))
    assert page.script_errors == []


def whistle_capture(path: Path) -> Path:
    """What the fake microphone plays (on a loop): the planted whistle band, at a capture device's rate."""
    rate = 48_000
    t = np.arange(3 * rate) / rate
    sf.write(path, 0.5 * np.sin(2 * np.pi * 6.5 * BAND_HZ * t), rate, subtype="PCM_16")
    return path


def test_microphone_search(playwright: Any, server: str, shots: Path, tmp_path: Path) -> None:
    expect = sync_api.expect
    capture = whistle_capture(tmp_path / "mic.wav")
    fake_mic = [*CHROMIUM_ARGS, "--use-fake-device-for-media-stream", f"--use-file-for-fake-audio-capture={capture}"]
    mic = playwright.chromium.launch(executable_path=CHROMIUM, args=fake_mic)
    try:
        page = open_page(mic, server, permissions=["microphone"])
        record = page.locator("#record-button")
        record.click()
        expect(record).to_have_attribute("aria-pressed", "true")
        expect(page.locator("#recording")).to_be_visible()
        # The level meter follows the sound, and the clock runs.
        page.wait_for_function("() => parseFloat(document.getElementById('level').style.width) > 20")
        page.wait_for_function("() => performance.now() - state.recording.startedAt > 1500")
        expect(page.locator("#record-clock")).not_to_have_text("0:00.0")
        page.screenshot(path=str(shots / "recording.png"))
        record.click()  # Stop: the recording is the search
        expect(page.locator("#message")).to_contain_text("results for sounds like your recording")
        assert names(page)[0] == "take_001.wav"
        expect(record).to_have_attribute("aria-pressed", "false")
        expect(page.locator("#recording")).to_be_hidden()
        page.screenshot(path=str(shots / "recorded.png"))

        # Escape cancels a recording: no search.
        record.click()
        expect(record).to_have_attribute("aria-pressed", "true")
        page.keyboard.press("Escape")
        expect(page.locator("#message")).to_have_text("Recording cancelled.")
        expect(record).to_have_attribute("aria-pressed", "false")
        assert page.script_errors == []

        # Permission refused: the page says so and how to fix it.
        denied = open_page(mic, server)
        denied.locator("#record-button").click()
        expect(denied.locator("#message")).to_have_text(
            "Microphone access was denied: allow it in the browser's site settings to search by a recording."
        )
        expect(denied.locator("#message")).to_have_class("message error")
        expect(denied.locator("#record-button")).to_have_attribute("aria-pressed", "false")
        denied.screenshot(path=str(shots / "microphone-denied.png"))
    finally:
        mic.close()


def test_microphone_missing(browser: Any, server: str) -> None:
    page = open_page(browser, server, permissions=["microphone"])  # this browser has no capture device
    page.locator("#record-button").click()
    sync_api.expect(page.locator("#message")).to_have_text(
        "No microphone found: connect one, or search with a recorded file (By example…)."
    )
    page.context.close()


def test_readable_scores(page: Any, shots: Path) -> None:
    """Each hit says how well its sound matched (a meter) and which of the query's words it holds (marked)."""
    expect = sync_api.expect
    search(page, "whistle", "hybrid")
    first = page.locator(".result").first
    expect(first.locator(".name")).to_have_text("take_001.wav")
    meter = first.locator(".sound-match")
    expect(meter).to_have_attribute("role", "meter")
    assert int(meter.get_attribute("aria-valuenow")) >= 95  # a pure tone in the whistle band
    expect(meter).to_contain_text("%")
    expect(first.locator(".word-match mark")).to_have_text(["whistle"])
    expect(first.locator(".tag mark")).to_have_text(["whistle"])
    assert first.locator(".score").get_attribute("title").startswith("fused rank score")
    street = page.locator(".result", has_text="Street_Ambience_Long.wav")
    expect(street.locator(".caption mark")).to_have_text(["whistle"])
    referee = page.locator(".result", has_text="Whistle_Referee_02.flac")
    expect(referee.locator(".name mark")).to_have_text(["Whistle"])
    page.screenshot(path=str(shots / "scores.png"))

    # Found by its words alone: no sound meter, only the words.
    search(page, "whistle", "text")
    first = page.locator(".result").first
    expect(first.locator(".sound-match")).to_have_count(0)
    expect(first.locator(".word-match mark")).to_have_text(["whistle"])
    assert page.script_errors == []
