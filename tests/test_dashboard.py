"""The dashboard and the jQuery plugin in real headless Chromium (Debian's), against a real
Whale on a real Redis. Screenshots go to test-artifacts/ for people to look at."""

from __future__ import annotations

import json
import shutil
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

from hailwhale.server import make
from hailwhale.store import Store, connect
from whale import create_app

pytestmark = pytest.mark.e2e
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
SEED_EVENTS = [
    {"dimension": "services", "metric": '{"dollars": 200}'},
    {"dimension": "advertising", "metric": '{"dollars": -2000}'},
    {"dimensions": '{"sales": "p123"}', "metric": '{"dollars": 500}'},
    {"dimensions": '{"sales": "p200"}', "metric": '{"dollars": 1500}'},
]


class Whale:
    """A Whale on a threaded HTTP server that can be stopped and started on its port."""

    def __init__(self, store: Store):
        self.app = create_app(store)
        self.server = make(self.app, "127.0.0.1", 0)
        self.port = self.server.server_port
        self._serve()

    def _serve(self):
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    def start(self):
        self.server = make(self.app, "127.0.0.1", self.port)
        self._serve()

    def count(self, **params):
        answer = requests.get(f"{self.url}/count", params=params, timeout=5)
        assert answer.ok, answer.text


@pytest.fixture
def whale(redis_server, settings):
    client = connect(redis_server.url.rsplit("/", 1)[0] + "/7")
    client.flushdb()
    service = Whale(Store(client, settings))
    for event in SEED_EVENTS:
        service.count(**event)
    yield service
    service.stop()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        pytest.fail("Chromium is not installed: ./run-tests installs Debian's chromium")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium,
                                              args=["--no-sandbox", "--disable-gpu"])
        yield launched
        launched.close()


@pytest.fixture
def page(browser, request):
    """A page that records console errors and uncaught exceptions, and leaves a screenshot
    named after the test."""
    context = browser.new_context(viewport={"width": 1400, "height": 760})
    page = context.new_page()
    page.problems = []
    page.on("console", lambda m: page.problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda error: page.problems.append(str(error)))
    yield page
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"))
    context.close()


def open_dashboard(page, whale, **state):
    page.goto(f"{whale.url}/#" + json.dumps(state) if state else f"{whale.url}/")
    page.wait_for_selector('#graph[data-hailwhale-state="drawn"]', timeout=15_000)


def series(page, selector="#graph"):
    return page.evaluate(f"""() => $('{selector}').data('hailwhale').series.map(
        s => ({{label: s.label, dimension: s.dimension, total: s.total}}))""")


def inked_pixels(page, selector="#graph") -> int:
    """How many pixels of the graph's canvas are drawn on."""
    return page.evaluate(f"""() => {{
        const canvas = document.querySelector('{selector} canvas.flot-base');
        const data = canvas.getContext('2d').getImageData(0, 0, canvas.width,
                                                         canvas.height).data;
        let inked = 0;
        for (let i = 3; i < data.length; i += 4) if (data[i] > 0) inked++;
        return inked;
    }}""")


def test_dashboard_loads_and_draws_the_overall_and_children(page, whale):
    open_dashboard(page, whale, metrics=["dollars"], since="1h")
    drawn = series(page)
    assert [s["label"] for s in drawn] == ["Overall", "sales", "services", "advertising"]
    assert [s["total"] for s in drawn] == [200, 2000, 200, -2000]
    assert inked_pixels(page) > 5_000
    # The legend is readable (flot 4 draws it in SVG), the totals table follows the graph.
    assert page.locator("#graph .legendLayer text").all_text_contents() == [
        "Overall", "sales", "services", "advertising"]
    rows = page.locator("#totals tbody tr").all_inner_texts()
    assert rows[0].split("\t") == ["Overall", "200"]
    assert [c.get_attribute("data-name") for c in page.locator("#children a").all()] == [
        "advertising", "sales", "services"]
    assert page.problems == []


def test_tooltip_shows_the_value_under_the_pointer(page, whale):
    open_dashboard(page, whale, metrics=["dollars"], since="15m", depth=0)
    point = page.evaluate("""() => {
        const plot = $('#graph').data('hailwhale').plot;
        const data = plot.getData()[0].data;
        const last = data.filter(p => p[1] !== 0).pop();
        const offset = plot.offset();
        return {x: offset.left + plot.getAxes().xaxis.p2c(last[0]),
                y: offset.top + plot.getAxes().yaxis.p2c(last[1])};
    }""")
    page.mouse.move(point["x"], point["y"])
    tooltip = page.locator(".hailwhale-tooltip")
    tooltip.wait_for(state="visible", timeout=5_000)
    assert tooltip.inner_text().startswith("Overall: 200 at ")
    assert page.problems == []


def test_new_events_show_up_on_the_next_live_update(page, whale):
    open_dashboard(page, whale, metrics=["dollars"], since="1h", live=1)
    whale.count(dimensions="partnerships", metrics='{"dollars": 5000}')
    page.wait_for_function(
        """() => $('#graph').data('hailwhale').series.some(s => s.label === 'partnerships')""",
        timeout=10_000)
    drawn = {s["label"]: s["total"] for s in series(page)}
    assert drawn["Overall"] == 5200 and drawn["partnerships"] == 5000
    page.wait_for_function(
        """() => $('#totals tbody tr:first td:last').text() === '5,200'""", timeout=5_000)
    assert page.problems == []


def test_drill_down_from_the_list_and_from_the_graph(page, whale):
    open_dashboard(page, whale, metrics=["dollars"], since="1h")
    page.click('#children a[data-name="sales"]')
    page.wait_for_function("""() => {
        const g = $('#graph').data('hailwhale');
        return g.answer && g.answer.dimension.join('/') === 'sales';
    }""", timeout=10_000)
    assert [s["dimension"] for s in series(page)] == [["sales"], ["sales", "p200"],
                                                      ["sales", "p123"]]
    assert page.locator("#breadcrumb").inner_text() == "Overall › sales"
    page.wait_for_selector('#children a[data-name="p123"]')
    # Clicking a child's legend entry in the graph drills into it too.
    page.locator("#graph .legendLayer text", has_text="sales / p123").click()
    page.wait_for_function("""() => $('#graph').data('hailwhale').answer.dimension.length
                              === 2""", timeout=10_000)
    assert page.locator("#breadcrumb").inner_text() == "Overall › sales › p123"
    assert json.loads(page.evaluate("() => decodeURIComponent(location.hash.slice(1))"))[
        "dimensions"] == ["sales", "p123"]
    # And back up through the breadcrumb.
    page.click("#breadcrumb a:text('Overall')")
    page.wait_for_function("""() => $('#graph').data('hailwhale').answer.dimension.length
                              === 0""", timeout=10_000)
    assert page.problems == []


def test_unreachable_whale_is_said_on_the_graph_and_retried(page, whale):
    open_dashboard(page, whale, metrics=["dollars"], since="1h", live=1)
    whale.stop()
    page.wait_for_selector('#graph[data-hailwhale-state="unreachable"]', timeout=10_000)
    status = page.locator("#graph .hailwhale-status")
    assert status.is_visible()
    assert "Whale cannot be reached" in status.inner_text()
    assert "retrying in" in status.inner_text()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "unreachable-state.png"))
    whale.start()  # back on the same port: the graph recovers by itself
    page.wait_for_selector('#graph[data-hailwhale-state="drawn"]', timeout=20_000)
    assert not status.is_visible()
    # The failed requests are the only console errors the page may show.
    assert all("Failed to load resource" in p or "ERR_CONNECTION_REFUSED" in p
               for p in page.problems), page.problems


class _AdminPages(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def test_plugin_in_an_admin_page_on_another_origin(page, whale, tmp_path):
    """The README's few lines, in a page served from somewhere else than Whale."""
    (tmp_path / "admin.html").write_text(f"""<!DOCTYPE html><html>
      <head><link rel="icon" href="data:,"></head><body>
      <h1>Revenue</h1>
      <div id="graph" style="width: 900px; height: 320px"></div>
      <script src="{whale.url}/static/vendor/jquery.min.js"></script>
      <script src="{whale.url}/static/vendor/jquery.flot.js"></script>
      <script src="{whale.url}/static/jquery.hailwhale.js"></script>
      <script>
        $('#graph').hailwhale({{url: '{whale.url}', metrics: ['dollars', 'dollars/hits'],
                               depth: 1, since: '1h', live: true}});
      </script></body></html>""")
    handler = lambda *a: _AdminPages(*a, directory=str(tmp_path))  # noqa: E731
    admin = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=admin.serve_forever, daemon=True).start()
    try:
        page.goto(f"http://127.0.0.1:{admin.server_port}/admin.html")
        page.wait_for_selector('#graph[data-hailwhale-state="drawn"]', timeout=15_000)
        labels = [s["label"] for s in series(page)]
        assert labels[:2] == ["Overall: dollars", "Overall: dollars/hits"]
        assert "sales: dollars" in labels and "advertising: dollars/hits" in labels
        ratio = {s["label"]: s["total"] for s in series(page)}["Overall: dollars/hits"]
        assert ratio == pytest.approx(200 / 4)
        assert inked_pixels(page) > 5_000
        assert page.problems == []
    finally:
        admin.shutdown()
        time.sleep(0.05)


def test_a_new_user_sees_the_demo_move_within_seconds(page, tmp_path):
    """`hailwhale demo` as the README starts it: the dashboard it prints shows graphs that
    move with the sample traffic."""
    import os
    import subprocess
    import sys

    from hailwhale.embedded import free_port

    port = free_port()
    demo = subprocess.Popen(
        [str(Path(sys.executable).parent / "hailwhale"), "demo", "--port", str(port)],
        env={**os.environ, "WHALE_REDIS_URL": "", "HOME": str(tmp_path)},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        dashboard = None
        for _ in range(50):
            line = demo.stdout.readline()
            if line.startswith("dashboard: http"):
                dashboard = line.split(" ", 1)[1].strip()
                break
        assert dashboard == f"http://127.0.0.1:{port}/"
        page.goto(dashboard)
        page.wait_for_selector('#graph[data-hailwhale-state="drawn"]', timeout=15_000)
        first = page.evaluate("() => $('#graph').data('hailwhale').series[0].total")
        assert first > 0  # the backfilled hour
        page.wait_for_function(
            f"() => $('#graph').data('hailwhale').series[0].total > {first}", timeout=20_000)
        labels = [s["label"] for s in series(page)]
        assert labels[0] == "Overall" and "pageviews" in labels
        assert inked_pixels(page) > 5_000
        assert page.problems == []
    finally:
        demo.terminate()
        demo.wait(10)
