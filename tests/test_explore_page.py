"""bin/explore's page in a real browser: headless Chromium (Debian's chromium and chromium-driver) driven
by Selenium, as a user would use it: the page loads, a slider moved with the keyboard changes the decoded
picture (its pixels read back from the page, compared with the decoder's own for that code), the sample,
next-frame and walk buttons do what they say, and the decode time is shown.

Without a browser here the test is skipped, saying why once; with SCRATCHVAE_BROWSER_TEST=required (set by
.ci/run, which installs one) it fails instead. SCRATCHVAE_EXPLORE_CHECKPOINT (and _DATA) point it at a trained
run instead of the tiny one it trains, and SCRATCHVAE_SCREENSHOT=FILE saves the page as it looks after the
slider moved (docs/img/explore.png is one, of a trained checkpoint)."""
import json
import os
import re
import shutil
import signal

import numpy as np
import pytest
from runs import pixels, request, start_explore, trained_run

pytestmark = pytest.mark.slow
WALK_STEPS = 24                                         # scratchvae/page/explore.js
START = int(os.environ.get("SCRATCHVAE_EXPLORE_FRAME", "4")) - 1    # the frame the page is opened at (#frame=N: 1 … n)


def browser_missing():
    """Why no browser test can run here, or None."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[test]')"
    for name in ("chromium", "chromedriver"):
        if shutil.which(name) is None:
            return (f"no {name} on the PATH: the browser test needs Debian's chromium and chromium-driver "
                    "(apt-get install chromium chromium-driver)")
    return None


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    why = browser_missing()
    if why:
        if os.environ.get("SCRATCHVAE_BROWSER_TEST") == "required":
            pytest.fail(f"SCRATCHVAE_BROWSER_TEST=required, but {why}")
        pytest.skip(why)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1180,960", f"--user-data-dir={tmp_path_factory.mktemp('chromium')}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(shutil.which("chromedriver")))
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def page(tmp_path_factory, data):
    """(URL, /api/info) of bin/explore serving a trained run: the one named by SCRATCHVAE_EXPLORE_CHECKPOINT,
    else a tiny one trained here."""
    checkpoint = os.environ.get("SCRATCHVAE_EXPLORE_CHECKPOINT")
    frames = os.environ.get("SCRATCHVAE_EXPLORE_DATA", data if checkpoint is None else None)
    if checkpoint is None:
        checkpoint = trained_run(tmp_path_factory, data, steps=30)
    proc, url = start_explore("--checkpoint", checkpoint, *(["--data", frames] if frames else []))
    yield url, json.loads(request(url + "api/info")[2])
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=30)


READ_PIXELS = """
const img = document.getElementById(arguments[0]);
const canvas = document.createElement("canvas");
canvas.width = img.naturalWidth;
canvas.height = img.naturalHeight;
const g = canvas.getContext("2d");
g.drawImage(img, 0, 0);
return Array.from(g.getImageData(0, 0, canvas.width, canvas.height).data);
"""


def test_the_page_in_a_browser(browser, page):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait
    url, info = page
    d = info["latent_dim"]
    h, w = info["size"]

    def read(img_id):
        """uint8 (H, W, 3) of an <img> as the page drew it."""
        rgba = np.array(browser.execute_script(READ_PIXELS, img_id), np.uint8).reshape(h, w, 4)
        return rgba[..., :3]

    def state(key):
        return browser.execute_script(f"return state.{key};")

    def settled(past=0):
        """Wait until more than `past` pictures were decoded and no button's work and no decode is under way;
        the number decoded so far."""
        WebDriverWait(browser, 60).until(lambda b: b.execute_script(
            "const s = document.body.dataset; return s.ready === '1' && !s.busy && !state.inFlight && "
            "Number(s.decodes) > arguments[0];", past))
        return int(browser.find_element(By.TAG_NAME, "body").get_attribute("data-decodes"))

    def api(path, body=None):
        status, _, text = request(url + path, body)
        assert status == 200, text
        return json.loads(text)

    def decoded_by_server(z):
        return pixels(api("api/decode", {"z": z})["image"])

    browser.get(f"{url}#frame={START + 1}")
    settled()
    assert browser.find_element(By.ID, "status").text == ""
    assert f"step {info['step']}" in browser.find_element(By.ID, "about").text
    sliders = browser.find_elements(By.CSS_SELECTOR, "#sliders input[type=range]")
    assert [s.get_attribute("id") for s in sliders] == [f"z{k}" for k in info["order"]]     # ordered by KL
    labels = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#sliders label")]
    assert labels == [f"z[{k}]" for k in info["order"]]
    timing = browser.find_element(By.ID, "timing").text
    assert re.fullmatch(r"decoded in \d+\.\d ms on the CPU · \d+ ms from request to picture", timing), timing

    first = api(f"api/frame?i={START}")                     # the page starts at the frame named, z = its μ
    assert np.array_equal(read("frame"), pixels(first["frame"]))
    assert state("z") == first["mu"]
    before = read("decoded")
    assert np.array_equal(before, pixels(first["image"]))

    # the slider of the dimension with the most KL, moved to its right end with the keyboard
    count = settled()
    sliders[0].send_keys(Keys.END)
    settled(past=count)
    z = state("z")
    top = info["order"][0]
    assert z[top] == 4 and [v for k, v in enumerate(z) if k != top] == [v for k, v in enumerate(first["mu"]) if k != top]
    after = read("decoded")
    assert not np.array_equal(after, before)                 # the picture changed…
    assert np.array_equal(after, decoded_by_server(z))       # …to the decoder's picture of the new code
    assert browser.find_element(By.ID, f"v{top}").text == "4.00"
    if os.environ.get("SCRATCHVAE_SCREENSHOT"):
        browser.save_screenshot(os.environ["SCRATCHVAE_SCREENSHOT"])

    browser.find_element(By.ID, "sample").click()            # a code from the prior, seed 1
    settled()
    sample = api("api/sample?seed=1")
    assert state("z") == sample["z"] and np.array_equal(read("decoded"), pixels(sample["image"]))
    assert not browser.find_element(By.ID, "frame").is_displayed()
    assert "prior" in browser.find_element(By.ID, "frame-caption").text

    browser.find_element(By.ID, "next").click()              # the frame after the one the page was at
    settled()
    following = api(f"api/frame?i={START + 1}")
    assert state("z") == following["mu"] and np.array_equal(read("frame"), pixels(following["frame"]))
    assert browser.find_element(By.ID, "frame-caption").text == f"frame {START + 2} of {info['frames']}"
    assert browser.current_url.endswith(f"#frame={START + 2}")

    count = settled()
    browser.find_element(By.ID, "walk").click()              # to another frame's μ, a picture a step
    assert settled() - count == WALK_STEPS
    caption = browser.find_element(By.ID, "frame-caption").text
    to = int(re.fullmatch(rf"frame (\d+) of {info['frames']}", caption).group(1)) - 1
    target = api(f"api/frame?i={to}")
    assert to != START + 1 and state("z") == target["mu"] and state("frame") == to
    assert np.array_equal(read("decoded"), pixels(target["image"]))
    assert np.array_equal(read("frame"), pixels(target["frame"]))

    problems = [e["message"] for e in browser.get_log("browser") if e["level"] in ("SEVERE", "WARNING")]
    assert problems == []                                    # no script error, nothing the page's policy blocked
    assert d == len(sliders)
