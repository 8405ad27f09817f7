"""The built (smoke) book in headless Chromium: pages load offline, without errors, with figures,
and the kernel-free explorer redraws its heatmap on a click with the same cosine as numpy.

Chromium is driven through its DevTools protocol with `websocket-client` (installed with Jupyter);
`make test` installs Debian's chromium when missing. Screenshots go to `runs/browser/`.
"""

from __future__ import annotations

import base64
import functools
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from raddino.book import copy_book_sources
from raddino.book_html import offline_violations

REPO = Path(__file__).resolve().parents[1]
SCREENSHOTS = REPO / "runs" / "browser"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--remote-debugging-port=0",
    "--window-size=1280,1600",
]


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("chromium is not installed (`make browser` installs Debian's chromium as root)")


# ------------------------------------------------------------------------------ DevTools client


class Browser:
    """Minimal DevTools-protocol client for one page: navigate, evaluate, click, screenshot."""

    def __init__(self, executable: str, profile_dir: Path):
        import websocket

        self.process = subprocess.Popen(
            [executable, *CHROMIUM_FLAGS, f"--user-data-dir={profile_dir}", "about:blank"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        port = None
        deadline = time.time() + 30
        while time.time() < deadline and port is None:
            line = self.process.stderr.readline()
            match = re.search(r"DevTools listening on ws://[^:]+:(\d+)/", line)
            if match:
                port = int(match.group(1))
            elif not line and self.process.poll() is not None:
                break
        if port is None:
            self.process.kill()
            pytest.fail("chromium did not start its DevTools endpoint")
        # Keep draining stderr so that chromium never blocks on a full pipe.
        threading.Thread(target=self.process.stderr.read, daemon=True).start()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list") as response:
            pages = [t for t in json.load(response) if t["type"] == "page"]
        self.ws = websocket.create_connection(
            pages[0]["webSocketDebuggerUrl"], suppress_origin=True, timeout=60
        )
        self.next_id = 0
        self.events: list[dict] = []
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.call(f"{domain}.enable")

    def call(self, method: str, **params) -> dict:
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            self.events.append(message)

    def evaluate(self, expression: str):
        result = self.call(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression[:80]}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def open(self, url: str, settle_s: float = 2.0) -> None:
        self.events.clear()
        self.call("Page.navigate", url=url)
        deadline = time.time() + 60
        while time.time() < deadline:
            if self.evaluate("document.readyState") == "complete":
                break
            time.sleep(0.2)
        time.sleep(settle_s)  # MathJax and the widget manager render after load
        self.evaluate("1")  # collect events that arrived meanwhile

    def click(self, x: float, y: float) -> None:
        for kind in ("mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1)

    def screenshot(self, path: Path) -> None:
        """Whole page as PNG: the viewport is stretched to the page height, then restored."""
        height = int(self.evaluate("document.documentElement.scrollHeight"))
        self.call(
            "Emulation.setDeviceMetricsOverride",
            width=1280,
            height=min(height, 16000),
            deviceScaleFactor=1,
            mobile=False,
        )
        try:
            data = self.call("Page.captureScreenshot", format="png")
        finally:
            self.call("Emulation.clearDeviceMetricsOverride")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data["data"]))

    def errors(self) -> list[str]:
        """JS exceptions, console errors and error log entries seen since the last `open`."""
        found = []
        for event in self.events:
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.exceptionThrown":
                details = params["exceptionDetails"]
                found.append(f"exception: {details.get('exception', {}).get('description')}")
            elif method == "Runtime.consoleAPICalled" and params.get("type") == "error":
                found.append(f"console.error: {[a.get('value') for a in params['args']]}")
            elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
                entry = params["entry"]
                found.append(f"log: {entry.get('text')} {entry.get('url', '')}")
        return found

    def requested_urls(self) -> list[str]:
        return [
            e["params"]["request"]["url"]
            for e in self.events
            if e.get("method") == "Network.requestWillBeSent"
        ]

    def close(self) -> None:
        try:
            self.ws.close()
        finally:
            self.process.terminate()
            self.process.wait(timeout=10)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    executable = _chromium()
    session = Browser(executable, tmp_path_factory.mktemp("chromium-profile"))
    yield session
    session.close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def _serve(folder: Path):
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


# ------------------------------------------------------------------------------ the smoke book


@pytest.fixture(scope="module")
def smoke_book(tmp_path_factory):
    """Execute and build the smoke book in a scratch copy of the book sources (not the checkout's
    book/, which may hold a cpu build)."""
    root = copy_book_sources(REPO, tmp_path_factory.mktemp("book-root"))
    vendor_cache = REPO / "book" / "_build" / "vendor"
    if (vendor_cache / "vendor.json").is_file():  # saves the npm round trip
        shutil.copytree(vendor_cache, root / "book" / "_build" / "vendor")
    env = dict(os.environ)
    result = subprocess.run(
        [sys.executable, "-m", "raddino.cli", "book", "--profile", "smoke", "--root", str(root)],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, (
        f"smoke book failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    )
    html = root / "book" / "_build" / "html"
    server, base_url = _serve(html)
    yield html, base_url
    server.shutdown()


def test_built_html_loads_nothing_remote(smoke_book):
    """Every built page and stylesheet: no http(s) in <script src>, <link href>, @import, url()."""
    html, _ = smoke_book
    pages = list(html.glob("*.html"))
    assert len(pages) >= 4
    assert offline_violations(html) == []
    assert (html / "_static" / "vendor" / "mathjax" / "tex-chtml.js").is_file()
    assert (html / "_static" / "vendor" / "html-manager" / "embed-amd.js").is_file()


def _chapter_pages(html: Path) -> list[str]:
    names = sorted(p.stem for p in (REPO / "notebooks").glob("[0-9]*.py"))
    assert names, "no chapters found"
    return ["intro.html"] + [f"{name}.html" for name in names]


def test_every_page_loads_offline_without_errors(smoke_book, browser):
    html, base_url = smoke_book
    for page in _chapter_pages(html):
        assert (html / page).is_file(), f"{page} was not built"
        browser.open(base_url + page)
        browser.screenshot(SCREENSHOTS / page.replace(".html", ".png"))
        assert browser.errors() == [], f"{page}: JavaScript errors"
        remote = [
            u for u in browser.requested_urls() if not u.startswith((base_url, "data:", "blob:"))
        ]
        assert remote == [], f"{page} requested resources outside the book: {remote}"
        text = browser.evaluate("document.querySelector('main').innerText")
        assert "Traceback (most recent call last)" not in text, f"{page}: a cell raised"
        tracebacks = browser.evaluate(
            "document.querySelectorAll('.traceback, .output.error').length"
        )
        assert tracebacks == 0, f"{page}: error outputs"
        images = browser.evaluate(
            "Array.from(document.querySelectorAll('main img')).map("
            "i => [i.complete, i.naturalWidth, i.naturalHeight, i.src.slice(0, 60)])"
        )
        broken = [img for img in images if not (img[0] and img[1] > 0 and img[2] > 0)]
        assert broken == [], f"{page}: images that did not load: {broken}"
        if page.startswith("01_"):
            assert len(images) >= 4, f"{page}: expected the gallery and figures, got {images}"


def test_math_and_widgets_render_from_vendored_js(smoke_book, browser):
    html, base_url = smoke_book
    browser.open(base_url + "00_how_to_read.html", settle_s=3.0)
    assert browser.evaluate("document.querySelectorAll('mjx-container').length") >= 1
    browser.open(base_url + "01_phantom_world.html", settle_s=3.0)
    has_state = browser.evaluate(
        "!!document.querySelector('script[type=\"application/vnd.jupyter.widget-state+json\"]')"
    )
    if has_state:  # progress bars were recorded as widgets: the embed manager must draw them
        assert (
            browser.evaluate(
                "document.querySelectorAll('.jupyter-widgets.widget-hprogress').length"
            )
            >= 1
        )
    assert browser.errors() == []


def _canvas_pixels(browser, index: int) -> str:
    return browser.evaluate(
        f"document.querySelectorAll('[data-raddino-explorer] canvas')[{index}].toDataURL()"
    )


def _click_canvas(browser, index: int, fx: float, fy: float) -> None:
    """Scroll canvas `index` into view and click at fraction (fx, fy) of its box."""
    box = browser.evaluate(
        f"(() => {{ const c = document.querySelectorAll('[data-raddino-explorer] canvas')[{index}];"
        " c.scrollIntoView({block: 'center'}); const r = c.getBoundingClientRect();"
        " return [r.left, r.top, r.width, r.height]; })()"
    )
    browser.click(box[0] + fx * box[2], box[1] + fy * box[3])


def test_static_explorer_redraws_on_click_in_the_book(smoke_book, browser):
    html, base_url = smoke_book
    browser.open(base_url + "01_phantom_world.html")
    assert browser.evaluate("document.querySelectorAll('[data-raddino-explorer]').length") == 1
    assert (
        browser.evaluate("document.querySelectorAll('[data-raddino-explorer] canvas').length") >= 2
    )
    before = _canvas_pixels(browser, 1)
    _click_canvas(browser, 0, 0.5, 0.5)
    time.sleep(0.3)
    assert browser.evaluate("document.querySelector('[data-raddino-explorer]').dataset.query") != ""
    assert _canvas_pixels(browser, 1) != before, "the heatmap of the second image did not change"
    status = browser.evaluate(
        "document.querySelector('[data-raddino-explorer] .raddino-explorer-status').textContent"
    )
    assert "cosine" in status
    browser.screenshot(SCREENSHOTS / "01_phantom_world_explorer_clicked.png")
    assert browser.errors() == []


def test_explorer_javascript_matches_numpy_cosine(browser, tmp_path):
    """The in-page JavaScript finds the same best match with the same cosine as numpy."""
    from raddino.viz.explorer_static import quantize_patch_features, static_explorer_html

    rng = np.random.default_rng(3)
    features_bhwc = rng.normal(size=(2, 4, 5, 16)).astype(np.float32)
    images = [rng.random((56, 70)).astype(np.float32) for _ in range(2)]
    page = static_explorer_html(images, features_bhwc, ["a", "b"], display_px=200)
    head = '<head><link rel="icon" href="data:,"></head>'  # no favicon request
    (tmp_path / "index.html").write_text(f"<!doctype html><html>{head}<body>{page}</body></html>")
    server, base_url = _serve(tmp_path)
    try:
        browser.open(base_url + "index.html", settle_s=0.5)
        row, col = 2, 3  # click the centre of patch (2, 3) of image 0 (grid 4 x 5)
        _click_canvas(browser, 0, (col + 0.5) / 5, (row + 0.5) / 4)
        time.sleep(0.2)
        query = browser.evaluate("document.querySelector('[data-raddino-explorer]').dataset.query")
        status = browser.evaluate(
            "document.querySelector('[data-raddino-explorer] .raddino-explorer-status').textContent"
        )
        assert browser.errors() == []
    finally:
        server.shutdown()
    assert query == f"0,{row},{col}"
    quantized = quantize_patch_features(features_bhwc).astype(np.float64).reshape(2, 20, 16)
    unit = quantized / np.linalg.norm(quantized, axis=-1, keepdims=True)
    cosine_n = unit[1] @ unit[0, row * 5 + col]
    best = int(np.argmax(cosine_n))
    match = re.search(r"b: best match \(row (\d+), col (\d+)\), cosine (-?[\d.]+)", status)
    assert match, status
    assert (int(match.group(1)), int(match.group(2))) == divmod(best, 5)
    assert float(match.group(3)) == pytest.approx(cosine_n[best], abs=1e-3)
