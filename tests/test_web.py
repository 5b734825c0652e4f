"""The web page in a real headless browser (Debian's chromium driven by Playwright)."""

import os
import shutil

import pytest

from reslab.infer.predictor import Predictor
from reslab.modelfile import save_model_file
from reslab.models import load_model_file

from .servers import RunningServer, stopped_cleanly
from .videos import counting_video, needs_ffmpeg, video_model_file

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        if os.environ.get("RESLAB_REQUIRE_BROWSER"):
            pytest.fail("chromium is not installed (apt-get install chromium), and RESLAB_REQUIRE_BROWSER is set")
        pytest.skip("chromium is not installed (apt-get install chromium; .ci/run installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def server(trained_model):
    running = RunningServer(trained_model, "--backend", "onnxruntime")
    yield running
    assert stopped_cleanly(running.stop())


@pytest.mark.parametrize("width", [1280, 390])  # a desktop window and a phone
def test_page_uploads_photos_and_shows_topk_bars(browser, server, trained_model, photos, tmp_path, width):
    notes = tmp_path / "notes.jpg"
    notes.write_text("not an image")
    page = browser.new_page(viewport={"width": width, "height": 900})
    page.goto(f"{server.url}/")
    page.wait_for_function("document.getElementById('model').textContent.includes('resnet20')")
    assert "onnxruntime fp32" in page.locator("#model").inner_text()  # the runtime and precision in use
    page.set_input_files("#picker", [str(photos["chelsea"]), str(notes)])
    page.wait_for_selector(".card.done .bar")
    page.wait_for_selector(".card.failed .error")
    labels = page.locator(".card.done .bar").evaluate_all("bars => bars.map(b => b.dataset.label)")
    expected = [p.label for p in Predictor.from_file(trained_model, "onnxruntime").predict([photos["chelsea"]])[0]]
    assert labels == expected
    percents = page.locator(".card.done .pct").all_inner_texts()
    assert len(percents) == 5 and all(t.endswith("%") for t in percents)
    assert "not an image" in page.locator(".card.failed .error").inner_text()
    # "why?" swaps the thumbnail for the Grad-CAM overlay of the top class (224 px), and back
    thumbnail = page.locator(".card.done img")
    photo = thumbnail.get_attribute("src")
    page.click(".card.done .why")
    page.wait_for_selector(".card.done .why[aria-pressed='true']")
    assert thumbnail.get_attribute("src") != photo
    page.wait_for_function("document.querySelector('.card.done img').naturalWidth === 224")
    page.click(".card.done .why")
    assert thumbnail.get_attribute("src") == photo
    assert page.locator(".card.failed .why").count() == 0
    assert page.evaluate("document.documentElement.scrollWidth") <= width  # nothing wider than the screen
    page.screenshot(path=str(tmp_path / f"page-{width}.png"), full_page=True)
    page.close()


@pytest.mark.slow
def test_page_asks_for_the_api_key_and_keeps_it_for_the_tab(browser, trained_model, photos):
    key = "team-key-0123456789"
    running = RunningServer(trained_model, "--backend", "onnxruntime", env={"RESLAB_API_KEY": key})
    try:
        page = browser.new_page()
        page.goto(f"{running.url}/")
        page.wait_for_selector("#keyform", state="visible")
        page.fill("#apikey", "wrong-key-0000")
        page.click("#keyform button")
        page.wait_for_function("document.getElementById('keywhy').textContent.includes('Wrong API key')")
        page.fill("#apikey", key)
        page.click("#keyform button")
        page.wait_for_function("document.getElementById('model').textContent.includes('resnet20')")
        assert page.evaluate("sessionStorage.getItem('reslab-api-key')") == key
        page.set_input_files("#picker", [str(photos["chelsea"])])
        page.wait_for_selector(".card.done .bar")
        page.reload()  # the key lasts as long as the tab
        page.wait_for_function("document.getElementById('model').textContent.includes('resnet20')")
        assert page.locator("#keyform").is_hidden()
        page.close()
    finally:
        assert stopped_cleanly(running.stop())


@pytest.mark.slow
def test_page_offers_the_models_of_the_server(browser, trained_model, photos, tmp_path):
    renamed = tmp_path / "renamed.safetensors"
    network, info = load_model_file(trained_model)
    info.classes = [f"{c}-renamed" for c in info.classes]
    save_model_file(renamed, network, info)
    running = RunningServer([trained_model, renamed], "--backend", "torch", "--precision", "fp32")
    try:
        page = browser.new_page()
        page.goto(f"{running.url}/")
        page.wait_for_selector("#choice", state="visible")
        assert page.locator("#choice option").all_inner_texts() == [trained_model.stem, "renamed"]
        page.select_option("#choice", "renamed")
        page.wait_for_function("document.getElementById('model').textContent.startsWith('renamed')")
        page.set_input_files("#picker", [str(photos["chelsea"])])
        page.wait_for_selector(".card.done .bar")
        assert page.locator(".card.done").get_attribute("data-model") == "renamed"
        assert page.locator(".card.done .bar").first.get_attribute("data-label").endswith("-renamed")
        page.close()
    finally:
        assert stopped_cleanly(running.stop())


@pytest.mark.slow
def test_page_shows_every_label_over_its_threshold(browser, multilabel_model, mosaic_folder):
    """A multi-label model: the labels over their thresholds are listed, and each bar marks its label's
    threshold, green over it and grey under it."""
    picture = sorted((mosaic_folder / "test").glob("*.png"))[0]
    expected = Predictor.from_file(multilabel_model, backend="torch", precision="fp32").predict_files([picture])[0]
    running = RunningServer(multilabel_model, "--backend", "torch", "--precision", "fp32")
    try:
        page = browser.new_page()
        page.goto(f"{running.url}/")
        page.set_input_files("#picker", [str(picture)])
        page.wait_for_selector(".card.done .bar")
        bars = page.locator(".card.done .bar")
        assert bars.evaluate_all("bars => bars.map(b => b.dataset.label)") == [
            p["label"] for p in expected["predictions"]]
        assert page.locator(".card.done .bar .threshold").count() == bars.count()
        positive = page.locator(".card.done .bar.positive").evaluate_all("bars => bars.map(b => b.dataset.label)")
        assert positive == expected["labels"]
        listed = page.locator(".card.done .labels").inner_text()
        assert all(label in listed for label in expected["labels"]) and listed.startswith("labels:")
        left = page.locator(".card.done .bar .threshold").first.evaluate("m => parseFloat(m.style.left)")
        assert left == pytest.approx(100 * expected["predictions"][0]["threshold"], abs=0.06)
        page.close()
    finally:
        assert stopped_cleanly(running.stop())


@needs_ffmpeg
@pytest.mark.slow
def test_page_plays_an_uploaded_video_beside_its_topk(browser, tmp_path):
    model_file = video_model_file(tmp_path)
    video = counting_video(tmp_path / "clip.mp4", frames=30, fps=10)
    expected = Predictor.from_file(model_file, backend="torch", precision="fp32").predict_files([video], topk=2)[0]
    running = RunningServer(model_file, "--backend", "torch", "--precision", "fp32")
    try:
        page = browser.new_page()
        page.goto(f"{running.url}/")
        page.wait_for_function("document.getElementById('model').textContent.includes('resnet20-3d')")
        page.fill("#topk", "2")
        page.set_input_files("#picker", [str(video)])
        page.wait_for_selector(".card.done .bar")
        assert page.locator(".card.done video").count() == 1  # the clip itself, playable, not a broken image
        labels = page.locator(".card.done .bar").evaluate_all("bars => bars.map(b => b.dataset.label)")
        assert labels == [p["label"] for p in expected["predictions"]]
        assert "3.0 s" in page.locator(".card.done .name").inner_text()
        page.click(".card.done .why")  # the heat-map of the middle clip: a strip of frames in the player's place
        page.wait_for_selector(".card.done img.strip")
        assert page.locator(".card.done video").count() == 0
        assert page.locator(".card.done img.strip").evaluate("i => i.naturalWidth / i.naturalHeight") == 4
        page.click(".card.done .why")  # and the video again
        assert page.locator(".card.done video").count() == 1 and page.locator(".card.done img.strip").count() == 0
        page.close()
    finally:
        assert stopped_cleanly(running.stop())
