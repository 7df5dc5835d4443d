"""The page at `/` in real headless Chromium and Firefox against a real `moodscope serve`:
upload a synthesized piece and a text file, wait for the charts, compare what the page
shows with the API's JSON, use it from the keyboard and at phone width; Chromium also saves
the README's screenshot (docs/serve.png)."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile as sf

from live_server import start_server, stop_server
from moodscope.demo.synth import synthesize_piece
from moodscope.inference.calibration import confidence_words

SCREENSHOT = Path(__file__).resolve().parents[1] / "docs" / "serve.png"

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    live = start_server(tmp_path_factory.mktemp("web"), "--workers", "1")
    try:
        yield live
    finally:
        stop_server(live)


@pytest.fixture
def browser(chromium, tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary, driver_path = chromium
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--hide-scrollbars",
        "--force-device-scale-factor=1",
        "--lang=en-US",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        "--window-size=1100,900",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(tmp_path / "chromium-profile", ignore_errors=True)


def _piece(path: Path) -> Path:
    """Calm pads, then a distorted riff, then a bright arpeggio: a timeline that moves."""
    parts = [
        synthesize_piece(name, duration=12.0, seed=1)
        for name in ("calm_pads", "distorted_riff", "bright_arpeggio")
    ]
    sf.write(path, np.concatenate(parts), 22050)
    return path


@dataclass
class Answers:
    """The files the page is given, and what the API says of them."""

    piece: Path
    notes: Path
    huge: Path
    api: dict  # the piece's JSON, with its timeline
    rejected: str  # the API's detail for the text file


@pytest.fixture(scope="module")
def answers(server, tmp_path_factory) -> Answers:
    folder = tmp_path_factory.mktemp("page-files")
    piece = _piece(folder / "three moods.wav")
    notes = folder / "notes.mp3"
    notes.write_text("not music at all\n" * 30)
    huge = folder / "huge.wav"
    with huge.open("wb") as f:
        f.truncate(101 * 2**20)  # over the server's 100 MB; sparse: costs no disk
    with piece.open("rb") as f:
        api = httpx.post(
            server.url + "/v1/predict?timeline=true", files={"file": f}, timeout=120
        ).json()
    with notes.open("rb") as f:
        rejected = httpx.post(server.url + "/v1/predict", files={"file": f}, timeout=60)
    assert rejected.status_code == 415
    return Answers(piece, notes, huge, api, rejected.json()["detail"])


def _wait(driver, css: str, timeout: float = 120.0):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(
        ec.presence_of_element_located((By.CSS_SELECTOR, css))
    )


def test_page_shows_the_api_answer(browser, server, answers):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    piece, notes, api = answers.piece, answers.notes, answers.api
    browser.get(server.url + "/")
    assert browser.title.startswith("moodscope")
    # Keyboard: the first Tab reaches the file chooser.
    browser.find_element(By.TAG_NAME, "body").send_keys(Keys.TAB)
    assert browser.switch_to.active_element.get_attribute("id") == "files"
    _wait(browser, "#model-info:not(:empty)")

    browser.find_element(By.ID, "files").send_keys(f"{piece}\n{notes}")
    done = _wait(browser, 'article[data-state="done"] svg[data-chart="timeline"]')
    card = done.find_element(By.XPATH, "ancestor::article")
    assert card.get_attribute("data-file") == "three moods.wav"
    shown = card.find_element(By.CSS_SELECTOR, ".top-emotion")
    assert shown.get_attribute("data-emotion") == api["top_emotion"]
    assert shown.text == api["top_emotion"].replace("_", " ")
    bars = card.find_elements(By.CSS_SELECTOR, 'svg[data-chart="bars"] rect')
    assert [b.get_attribute("data-emotion") for b in bars] == list(api["emotions"])
    areas = card.find_elements(By.CSS_SELECTOR, 'svg[data-chart="timeline"] polygon')
    assert len(areas) == len(api["emotions"])
    # How sure, in words and with the number, and the GEMS factor: the API's, as said.
    sure = card.find_element(By.CSS_SELECTOR, ".confidence")
    assert api["confidence"] is not None  # the shipped model is calibrated
    assert float(sure.get_attribute("data-confidence")) == pytest.approx(api["confidence"])
    assert sure.get_attribute("data-words") == confidence_words(api["confidence"])
    assert sure.text.startswith(confidence_words(api["confidence"]) + " (")
    assert f"{round(api['confidence'] * 100)} %" in sure.text
    factor = card.find_element(By.CSS_SELECTOR, ".factor")
    assert factor.get_attribute("data-factor") == api["top_factor"]
    circumplex = card.find_element(By.CSS_SELECTOR, ".circumplex")  # arousal and valence
    assert float(circumplex.get_attribute("data-arousal")) == pytest.approx(api["arousal"])
    assert float(circumplex.get_attribute("data-valence")) == pytest.approx(api["valence"])
    listeners = httpx.get(server.url + "/v1/model").json()["held_out"]["listeners_words"]
    info = browser.find_element(By.ID, "model-info")
    assert listeners and listeners in info.text

    error = _wait(browser, 'article[data-state="error"] .error')
    assert error.get_attribute("data-status") == "415"
    assert answers.rejected in error.text

    # Nothing on the page came from anywhere but this server.
    origins = browser.execute_script(
        "return performance.getEntriesByType('resource').map(e => new URL(e.name).origin)"
    )
    assert set(origins) <= {server.url}

    # The README's screenshot: the whole page at desktop width, nothing focused.
    browser.execute_script("document.activeElement.blur()")
    height = browser.execute_script("return document.documentElement.scrollHeight")
    metrics = {"width": 1000, "height": height, "deviceScaleFactor": 1, "mobile": False}
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
    SCREENSHOT.parent.mkdir(exist_ok=True)
    assert browser.save_screenshot(str(SCREENSHOT))
    browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})

    # Over the server's limit: refused with the API's words, without being sent.
    browser.find_element(By.ID, "files").send_keys(str(answers.huge))
    error = _wait(browser, 'article[data-file="huge.wav"] .error')
    assert error.get_attribute("data-status") == "413"
    assert "larger than the server's limit of 100 MB" in error.text

    # Phone width: nothing wider than the screen, charts scaled to fit.
    browser.set_window_size(390, 844)
    overflow = browser.execute_script(
        "return document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 0
    chart_width = browser.execute_script(
        "return document.querySelector('svg[data-chart=\"bars\"]').getBoundingClientRect().width"
    )
    assert 0 < chart_width <= 390


def test_page_works_in_firefox(firefox, server, answers, tmp_path):
    from bidi import Firefox

    def find(name: str, css: str = "", every: bool = False) -> str:
        """A JS expression: the element(s) matching ``css`` in the card of file ``name``."""
        query = "querySelectorAll" if every else "querySelector"
        found = f"document.{query}('article[data-file={json.dumps(name)}] {css}')"
        return f"[...{found}]" if every else found

    piece, api = answers.piece.name, answers.api
    browser = Firefox(firefox, tmp_path / "firefox-profile")
    try:
        browser.viewport(1100, 900)
        browser.get(server.url + "/")
        assert browser.evaluate("document.title").startswith("moodscope")
        browser.press("\ue004")  # Tab: the first stop is the file chooser
        assert browser.evaluate("document.activeElement.id") == "files"
        browser.wait_for("document.querySelector('#model-info:not(:empty)')")

        browser.set_files("#files", [answers.piece, answers.notes])
        browser.wait_for(find(piece, 'svg[data-chart="timeline"]'))
        assert browser.evaluate(find(piece) + ".dataset.state") == "done"
        top = find(piece, ".top-emotion")
        assert browser.evaluate(top + ".dataset.emotion") == api["top_emotion"]
        assert browser.evaluate(top + ".textContent.trim()") == api["top_emotion"].replace("_", " ")
        bars = find(piece, 'svg[data-chart="bars"] rect', every=True)
        assert browser.evaluate(bars + ".map(r => r.dataset.emotion)") == list(api["emotions"])
        areas = find(piece, 'svg[data-chart="timeline"] polygon', every=True)
        assert browser.evaluate(areas + ".length") == len(api["emotions"])

        error = find(answers.notes.name, ".error")
        browser.wait_for(error)
        assert browser.evaluate(error + ".dataset.status") == "415"
        assert answers.rejected in browser.evaluate(error + ".textContent")
        origins = browser.evaluate(
            "performance.getEntriesByType('resource').map(e => new URL(e.name).origin)"
        )
        assert set(origins) <= {server.url}

        browser.set_files("#files", [answers.huge])
        error = find(answers.huge.name, ".error")
        browser.wait_for(error)
        assert browser.evaluate(error + ".dataset.status") == "413"
        text = browser.evaluate(error + ".textContent")
        assert "larger than the server's limit of 100 MB" in text

        browser.viewport(390, 844)  # phone width
        overflow = browser.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0
        chart = find(piece, 'svg[data-chart="bars"]') + ".getBoundingClientRect().width"
        assert 0 < browser.evaluate(chart) <= 390
    finally:
        browser.quit()
