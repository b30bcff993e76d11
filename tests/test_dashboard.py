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

from hailwhale.store import Store, connect
from hailwhale_web.server import make
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


def test_timings_and_gauges_are_offered_and_drawn(page, whale):
    """A timing's percentiles and a gauge's value, drawn like any metric; a window before
    the gauge's first value is a gap (null), shown as a dash in the totals."""
    for ms in (12, 15, 40, 900):
        whale.count(dimensions="api", metrics=json.dumps({"latency": {"timing": ms}}))
    whale.count(dimensions="api", metrics='{"queue": {"gauge": 7}}')
    whale.count(dimensions="web", metrics='{"latency": {"timing": 30}}')
    open_dashboard(page, whale, metrics=["latency:p99", "queue"], since="15m", depth=1,
                   threshold=0)
    drawn = {(s["label"]): s["total"] for s in series(page)}
    assert drawn["Overall: queue"] == 7 and drawn["api: queue"] == 7
    assert abs(drawn["Overall: latency:p99"] - 40) <= 0.4  # rank 2 of 0..3, within 1%
    assert inked_pixels(page) > 1_000
    chips = [a.get_attribute("data-metric") for a in page.locator("#metric-chips a").all()]
    assert {"latency:p50", "latency:p99", "latency:mean", "queue"} <= set(chips)
    rows = [r.split("\t") for r in page.locator("#totals tbody tr").all_inner_texts()]
    by_label = {row[0]: row[1:] for row in rows}
    assert by_label["web"][1] == "–"  # no queue gauge was ever set under web
    assert page.problems == []


def test_a_decision_shows_its_options_classes_and_choices(page, whale):
    """Issue 12: the dashboard shows a decision, its options' classes, scores and how often
    each was chosen; an option named like HTML is text."""
    hostile = "<img src=x onerror=alert(1)>"
    for option, dollars, visitors in (("a", 5000, 1000), ("b", 0, 2000), (hostile, 50, 10)):
        answer = requests.get(f"{whale.url}/count_decision", timeout=5, params={
            "decision": "slogan", "option": option,
            "metrics": json.dumps({"dollars": dollars, "visitors": visitors})})
        assert answer.ok, answer.text
    for _ in range(3):  # three choices made by an application
        requests.get(f"{whale.url}/decide", timeout=5, params={
            "decision": "slogan", "options": json.dumps(["a", "b", hostile]),
            "metrics": "dollars/visitors", "test_idea_threshold": 0,
            "bad_idea_threshold": 0}).raise_for_status()
    dialogs = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    open_dashboard(page, whale, metrics=["dollars"], since="1h")
    page.wait_for_selector("#decisions:not([hidden])", timeout=10_000)
    page.fill("#decision-metrics", "dollars/visitors")
    page.dispatch_event("#decision-metrics", "change")
    page.wait_for_function(
        """() => $('#decision-scores tbody tr.good').length === 1""", timeout=10_000)
    rows = [r.split("\t") for r in page.locator("#decision-scores tbody tr").all_inner_texts()]
    by_option = {row[0]: row[1:] for row in rows}
    assert by_option["a"][0] == "good" and by_option["a"][4] == "3"
    assert by_option["b"][0] == "bad" and by_option[hostile][0] == "test"
    assert page.locator("#decision-scores img").count() == 0 and dialogs == []
    # Looking is not choosing: the dashboard's reads counted no choice.
    again = requests.get(f"{whale.url}/decide", timeout=5, params={
        "decision": "slogan", "options": '["a"]', "record": 0}).json()
    assert again["scores"]["a"]["chosen_recently"] == 3
    assert page.problems == []


def test_days_in_the_viewers_time_zone(browser, whale):
    """The dashboard offers the viewer's own zone for day buckets; chosen, the plugin asks
    with tz= and the day buckets start at the viewer's midnights (folded from hours)."""
    context = browser.new_context(viewport={"width": 1400, "height": 760},
                                  timezone_id="America/New_York")
    page = context.new_page()
    try:
        open_dashboard(page, whale, metrics=["dollars"], period="1d:1y", since="3d", depth=0)
        assert page.locator("#tz option").all_inner_texts() == [
            "Whale's zone (UTC)", "yours (America/New_York)"]
        with page.expect_request(lambda r: "/plotpoints" in r.url and "tz=America" in r.url):
            page.select_option("#tz", "America/New_York")
        page.wait_for_function("""() => $('#graph').data('hailwhale').answer.tz ===
                                  'America/New_York'""", timeout=10_000)
        starts = page.evaluate("""() => $('#graph').data('hailwhale').series[0].data.map(
            p => new Date(p[0]).toLocaleString('en-US', {timeZone: 'America/New_York',
                                                          hour: '2-digit', hour12: false}))""")
        assert starts and set(starts) <= {"00", "24"}, starts  # ICU writes midnight either way
        assert sum(v for _, v in page.evaluate(
            "() => $('#graph').data('hailwhale').series[0].data")) == 200
        assert "tz" in page.evaluate("() => decodeURIComponent(window.location.hash)")
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "test_days_in_the_viewers_time_zone.png"))
    finally:
        context.close()


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

    port = free_port(pair=True)
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


# Dimension and pk names that run script wherever they are pasted into HTML or SVG markup.
P1 = '<img src=x onerror="window.__xss=1">'
P2 = '"><script>window.__xss=2</script>'
P3 = '</tspan><image href=x onerror="window.__xss=3"/>'
PAYLOAD_PK = P1 + P2
PAYLOAD_EVENTS = [
    {"dimensions": json.dumps({P1: P3}), "metrics": '{"hits": 1000}'},
    {"dimensions": json.dumps({P2: P1}), "metrics": '{"hits": 1000}'},
    {"dimensions": json.dumps([P3]), "metrics": '{"hits": 1000}'},
]


def count_payloads(whale):
    for event in PAYLOAD_EVENTS:
        whale.count(pk=PAYLOAD_PK, **event)


def watch_dialogs(page):
    page.dialogs = []
    page.on("dialog", lambda dialog: (page.dialogs.append(dialog.message), dialog.dismiss()))


def assert_no_script_ran(page):
    assert page.evaluate("() => window.__xss") is None
    assert page.dialogs == []
    assert page.problems == []  # a blocked inline script would be a CSP console error


def legend_texts(page):
    return page.locator("#graph .legendLayer text").all_text_contents()


def drawn_labels(page):
    """The labels in the order the graph has them (equal totals rank in any order)."""
    return [s["label"] for s in series(page)]


def wait_for_dimension(page, dimension):
    page.wait_for_function("""(want) => {
        const g = $('#graph').data('hailwhale');
        return g.answer && JSON.stringify(g.answer.dimension) === JSON.stringify(want);
    }""", arg=dimension, timeout=10_000)
    page.wait_for_selector('#graph[data-hailwhale-state="drawn"]', timeout=10_000)


def test_xss_payload_names_are_shown_literally_and_never_run(page, whale):
    import urllib.parse

    count_payloads(whale)
    watch_dialogs(page)
    state = {"pk": PAYLOAD_PK, "metrics": ["hits"], "since": "1h", "depth": 1}
    page.goto(f"{whale.url}/#" + urllib.parse.quote(json.dumps(state)))
    page.wait_for_selector('#graph[data-hailwhale-state="drawn"]', timeout=15_000)
    labels = drawn_labels(page)
    assert labels[0] == "Overall" and sorted(labels[1:]) == sorted([P1, P2, P3])
    assert legend_texts(page) == labels
    assert PAYLOAD_PK in page.locator("#pk option").all_text_contents()
    assert page.locator("#pk").input_value() == PAYLOAD_PK
    page.wait_for_selector("#children a.child")
    assert sorted(page.locator("#children a").all_text_contents()) == sorted([P1, P2, P3])
    page.wait_for_function("() => $('#totals tbody tr').length === 4", timeout=5_000)
    assert [row.split("\t")[0] for row in page.locator("#totals tbody tr").all_inner_texts()
            ] == labels
    assert_no_script_ran(page)

    # Into P1 through the children list: its child P3 in the legend, breadcrumb, totals.
    page.locator("#children a.child").get_by_text(P1, exact=True).click()
    wait_for_dimension(page, [P1])
    assert legend_texts(page) == [P1, f"{P1} / {P3}"]
    assert page.locator("#breadcrumb").inner_text() == f"Overall › {P1}"
    page.wait_for_function("(name) => $('#children a.child').text() === name", arg=P3,
                           timeout=5_000)
    page.wait_for_function("() => $('#totals tbody tr').length === 2", timeout=5_000)
    assert page.locator("#totals tbody tr td:first-child").all_text_contents() == [
        P1, f"{P1} / {P3}"]
    assert_no_script_ran(page)

    # Back up, then into P2 by a click on its legend entry (matched by its index).
    page.click("#breadcrumb a:text('Overall')")
    wait_for_dimension(page, [])
    index = [s["dimension"] for s in series(page)].index([P2])
    page.locator("#graph .legendLayer g").nth(index).locator("text").click()
    wait_for_dimension(page, [P2])
    assert legend_texts(page) == [P2, f"{P2} / {P1}"]
    assert page.locator("#breadcrumb").inner_text() == f"Overall › {P2}"
    # And on into P2's child P1, by its legend entry too: the last level.
    page.locator("#graph .legendLayer g").nth(1).locator("text").click()
    wait_for_dimension(page, [P2, P1])
    assert page.locator("#breadcrumb").inner_text() == f"Overall › {P2} › {P1}"
    assert legend_texts(page) == [f"{P2} / {P1}"]
    assert_no_script_ran(page)


def test_xss_plugin_escapes_labels_in_a_page_without_csp(page, whale, tmp_path):
    """Where no Content-Security-Policy would stop an injected handler, the escaping alone
    keeps the payloads text."""
    count_payloads(whale)
    watch_dialogs(page)
    pk_js = json.dumps(PAYLOAD_PK).replace("</", "<\\/")  # no </script> inside the script
    (tmp_path / "admin.html").write_text(f"""<!DOCTYPE html><html>
      <head><link rel="icon" href="data:,"></head><body>
      <div id="graph" style="width: 900px; height: 320px"></div>
      <script src="{whale.url}/static/vendor/jquery.min.js"></script>
      <script src="{whale.url}/static/vendor/jquery.flot.js"></script>
      <script src="{whale.url}/static/jquery.hailwhale.js"></script>
      <script>
        $('#graph').hailwhale({{url: '{whale.url}', pk: {pk_js},
                               depth: 1, since: '1h'}});
      </script></body></html>""")
    handler = lambda *a: _AdminPages(*a, directory=str(tmp_path))  # noqa: E731
    admin = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=admin.serve_forever, daemon=True).start()
    try:
        page.goto(f"http://127.0.0.1:{admin.server_port}/admin.html")
        page.wait_for_selector('#graph[data-hailwhale-state="drawn"]', timeout=15_000)
        page.wait_for_timeout(300)  # time for an image's error handler to run
        labels = [s["label"] for s in series(page)]
        assert sorted(labels) == sorted(["Overall", P1, P2, P3])
        assert legend_texts(page) == labels
        assert page.locator("#graph .legendLayer image, #graph .legendLayer img, "
                            "#graph script").count() == 0
        # The tooltip keeps the raw label.
        assert P1 in page.evaluate(
            "() => $('#graph').data('hailwhale').series.map(s => s.label)")
        assert_no_script_ran(page)
    finally:
        admin.shutdown()
        time.sleep(0.05)


@pytest.mark.parametrize("path", ["/", "/static/jquery.hailwhale.js",
                                  "/static/dashboard.js", "/static/vendor/jquery.flot.js"])
def test_dashboard_assets_carry_csp_and_nosniff(whale, path):
    answer = requests.get(whale.url + path, timeout=5)
    assert answer.status_code == 200
    csp = answer.headers["Content-Security-Policy"]
    assert "script-src 'self';" in csp and "object-src 'none'" in csp
    assert "unsafe-inline" not in csp.split("script-src", 1)[1].split(";")[0]
    assert csp == ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
                   "img-src 'self' data:; object-src 'none'; base-uri 'none'")
    assert answer.headers["X-Content-Type-Options"] == "nosniff"
    if path == "/":
        import re

        # No inline script: every <script> has a src, no on...= handler attributes.
        assert re.findall(r"<script(?![^>]*\ssrc=)", answer.text) == []
        assert re.findall(r"\son[a-z]+\s*=", answer.text) == []


def test_dashboard_api_answers_carry_nosniff(whale):
    for path in ("/pks", "/plotpoints?since=1h", "/no-such-page"):
        answer = requests.get(whale.url + path, timeout=5)
        assert answer.headers["X-Content-Type-Options"] == "nosniff", path


SECRET = "a-test-secret-of-more-than-32-characters"


@pytest.fixture
def guarded_whale(redis_server):
    from hailwhale.config import load_settings

    settings = load_settings(environ={"HAILWHALE_SECRET": SECRET})
    client = connect(redis_server.url.rsplit("/", 1)[0] + "/8")
    client.flushdb()
    store = Store(client, settings)
    service = Whale(store)
    from hailwhale import auth

    writer = auth.issue(SECRET, "write", ["shop", "other"])
    for pk in ("shop", "other"):
        for event in SEED_EVENTS:
            answer = requests.get(f"{service.url}/count", params={"pk": pk, **event},
                                  headers={"Authorization": f"Bearer {writer}"}, timeout=5)
            assert answer.ok, answer.text
    yield service
    service.stop()


def test_dashboard_token_form_and_share_link(browser, guarded_whale, request):
    from hailwhale import auth

    reader = auth.issue(SECRET, "read", ["shop"])
    context = browser.new_context(viewport={"width": 1400, "height": 760})
    page = context.new_page()
    watch_dialogs(page)
    ARTIFACTS.mkdir(exist_ok=True)
    try:
        page.goto(f"{guarded_whale.url}/")
        form = page.locator("form#token-form")
        form.wait_for(state="visible", timeout=10_000)
        assert "This HailWhale needs a read token" in form.inner_text()
        page.screenshot(path=str(ARTIFACTS / "token-form.png"))
        page.fill("input#token", reader)
        page.press("input#token", "Enter")
        page.wait_for_selector('#graph[data-hailwhale-state="drawn"]', timeout=15_000)
        assert not form.is_visible()
        assert page.evaluate("() => localStorage.getItem('hailwhale.token')") == reader
        assert page.locator("#pk option").all_text_contents() == ["shop"]
        assert page.evaluate("() => $('#graph').data('hailwhale').series[0].total") == 4
        assert page.locator("#forget-token").is_visible()
        assert not page.locator("#share-badge").is_visible()
        page.screenshot(path=str(ARTIFACTS / "token-entered.png"))
        # Forgetting it asks again.
        page.click("#forget-token")
        form.wait_for(state="visible", timeout=10_000)
        assert page.evaluate("() => localStorage.getItem('hailwhale.token')") is None
        assert page.dialogs == []
    finally:
        context.close()

    # A share link in a fresh browser: draws at once, and the address forgets the token.
    context = browser.new_context(viewport={"width": 1400, "height": 760})
    page = context.new_page()
    watch_dialogs(page)
    try:
        page.goto(f"{guarded_whale.url}/#token={reader}")
        page.wait_for_selector('#graph[data-hailwhale-state="drawn"]', timeout=15_000)
        assert reader not in page.url and "token" not in page.url
        assert not page.locator("form#token-form").is_visible()
        assert page.locator("#share-badge").is_visible()
        assert page.locator("#share-badge").inner_text() == "read-only link"
        assert page.locator("#pk option").all_text_contents() == ["shop"]
        assert page.locator("#pk").input_value() == "shop"
        assert page.evaluate("() => sessionStorage.getItem('hailwhale.token')") == reader
        assert page.evaluate("() => localStorage.getItem('hailwhale.token')") is None
        page.screenshot(path=str(ARTIFACTS / "share-link.png"))
        assert page.dialogs == []
    finally:
        context.close()


def test_plugin_token_option_and_a_refused_token(page, guarded_whale):
    from hailwhale import auth

    other = auth.issue(SECRET, "read", ["other"])
    page.goto(f"{guarded_whale.url}/")  # its jQuery and plugin, on the same origin
    page.locator("form#token-form").wait_for(state="visible", timeout=10_000)
    page.evaluate("""(token) => {
        window.__errors = [];
        $('#graph').off().removeData('hailwhale').empty()
          .on('hailwhale:error', (e, reason, status) => window.__errors.push([reason, status]))
          .hailwhale({pk: 'shop', token: token, live: 1});
    }""", other)
    page.wait_for_selector('#graph[data-hailwhale-state="error"]', timeout=10_000)
    status = page.locator("#graph .hailwhale-status")
    assert status.is_visible() and status.inner_text().startswith("HailWhale: ")
    page.wait_for_timeout(2_500)  # live: 1 would have polled again
    errors = page.evaluate("() => window.__errors")
    assert len(errors) == 1 and errors[0][1] == 403
