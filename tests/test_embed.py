"""One tag, a live graph (issue 12, part 3): embed.js drawn in headless Chromium on pages of
another origin, against real Whales on a real Redis over real HTTP; and the dashboard's share
link and embed tag, opened read-only. Screenshots go to test-artifacts/."""

from __future__ import annotations

import contextlib
import html
import json
import shutil
import threading
import time
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest
import requests
import test_dashboard as dashboard
from test_dashboard import (
    ARTIFACTS,
    P1,
    P2,
    P3,
    PAYLOAD_PK,
    SECRET,
    _AdminPages,
    assert_no_script_ran,
    count_payloads,
    inked_pixels,
    watch_dialogs,
)

from hailwhale import auth

pytestmark = pytest.mark.e2e
# The dashboard tests' Chromium, pages and Whales (an open one, one with a SECRET).
browser, page = dashboard.browser, dashboard.page
whale, guarded_whale = dashboard.whale, dashboard.guarded_whale
JQUERY = Path(__file__).resolve().parent.parent / "node_modules" / "jquery" / "dist" / \
    "jquery.min.js"
LIBRARIES = ("/static/vendor/jquery.min.js", "/static/vendor/jquery.flot.js",
             "/static/jquery.hailwhale.js")


@contextlib.contextmanager
def host(folder: Path, pages: dict[str, str]):
    """A site of another origin (its own port) serving ``pages``; yields its address."""
    for name, text in pages.items():
        (folder / name).write_text(text)
    handler = lambda *a: _AdminPages(*a, directory=str(folder))  # noqa: E731
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        time.sleep(0.05)


def tag(whale_url: str, **data) -> str:
    """An embed tag as a page's author writes it, every attribute value HTML-escaped."""
    attributes = "".join(f' data-{name.replace("_", "-")}="{html.escape(str(value))}"'
                         for name, value in data.items())
    return f'<script src="{whale_url}/embed.js"{attributes}></script>'


def wait_for_embed_dimension(page, dimension: list[str], index: int = 0):
    """The embed graph number ``index`` drawn for ``dimension``."""
    page.wait_for_function("""([want, index]) => {
        const el = document.querySelectorAll('.hailwhale-embed-graph')[index];
        const graph = HailWhaleEmbed.jQuery(el).data('hailwhale');
        return graph.answer && JSON.stringify(graph.answer.dimension) === JSON.stringify(want)
            && el.getAttribute('data-hailwhale-state') === 'drawn';
    }""", arg=[dimension, index], timeout=10_000)


def record_requests(page) -> list[str]:
    urls: list[str] = []
    page.on("request", lambda request: urls.append(request.url))
    return urls


def embeds(page) -> list[dict]:
    """Each embed graph of the page: its state and the series its plugin holds."""
    return page.evaluate("""() => Array.from(
        document.querySelectorAll('.hailwhale-embed-graph')).map(el => {
            const graph = window.HailWhaleEmbed && HailWhaleEmbed.jQuery
                && HailWhaleEmbed.jQuery(el).data('hailwhale');
            return {state: el.getAttribute('data-hailwhale-state'),
                    status: (el.querySelector('.hailwhale-status') || {}).textContent || '',
                    series: graph ? graph.series.map(s => ({label: s.label,
                        dimension: s.dimension, total: s.total})) : []};
        })""")


def wait_for_states(page, states: list[str]):
    from playwright.sync_api import TimeoutError as Timeout

    try:
        page.wait_for_function("""(want) => {
            const have = Array.from(document.querySelectorAll('.hailwhale-embed-graph'))
                .map(el => el.getAttribute('data-hailwhale-state'));
            return JSON.stringify(have) === JSON.stringify(want);
        }""", arg=states, timeout=15_000)
    except Timeout:
        raise AssertionError(f"want {states}, have {embeds(page)}, console {page.problems}"
                             ) from None


def test_two_tags_draw_two_live_graphs_and_leave_the_pages_jquery_alone(page, whale,
                                                                        guarded_whale,
                                                                        tmp_path):
    """The README's tag on a page of another origin that has its own jQuery (and a plugin of
    its own on it): one tag against an open Whale, one with a read token against a Whale
    with a secret, one without a token there. Each draws where it stands, the libraries come
    once, and the page's jQuery is still the page's."""
    reader = auth.issue(SECRET, "read", ["shop"])
    shutil.copyfile(JQUERY, tmp_path / "host-jquery.js")
    shop_page = f"""<!DOCTYPE html><html>
      <head><link rel="icon" href="data:,"><title>Shop admin</title></head><body>
      <script src="/host-jquery.js"></script>
      <script>window.hostJQuery = jQuery; jQuery.fn.hostPlugin = function () {{}};</script>
      <h1>Shop</h1>
      <p id="before-revenue">Revenue, live</p>
      {tag(whale.url, metrics="dollars,dollars/hits", depth=1, since="1h", live=1,
           title="Revenue", width=900)}
      <p id="before-shop">Shop's hits</p>
      {tag(guarded_whale.url, pk="shop", metrics="hits", since="1h", token=reader,
           height=200)}
      <p id="before-refused">No token</p>
      {tag(guarded_whale.url, pk="shop", since="1h", height=120)}
      <p id="after">the end</p>
    </body></html>"""
    requested = record_requests(page)
    with host(tmp_path, {"shop.html": shop_page}) as site:
        page.goto(f"{site}/shop.html")
        wait_for_states(page, ["drawn", "drawn", "error"])
        revenue, shop, refused = embeds(page)

        labels = [s["label"] for s in revenue["series"]]
        assert labels[:2] == ["Overall: dollars", "Overall: dollars/hits"]
        assert "sales: dollars" in labels and "advertising: dollars/hits" in labels
        totals = {s["label"]: s["total"] for s in revenue["series"]}
        assert totals["Overall: dollars"] == 200
        assert totals["Overall: dollars/hits"] == pytest.approx(200 / 4)
        assert [(s["label"], s["total"]) for s in shop["series"]] == [("Overall", 4)]
        assert refused["status"].startswith("HailWhale: token")  # Whale's 401, said

        # Each graph stands where its tag is, sized by its attributes, the title as text.
        layout = page.evaluate("""() => Array.from(document.querySelectorAll(
            '.hailwhale-embed')).map(el => ({
                after: el.previousElementSibling.tagName + ' ' +
                       el.previousElementSibling.previousElementSibling.id,
                width: el.getBoundingClientRect().width,
                height: el.querySelector('.hailwhale-embed-graph')
                    .getBoundingClientRect().height,
                title: (el.querySelector('.hailwhale-embed-title') || {}).textContent}))""")
        assert [(e["after"], e["height"], e["title"]) for e in layout] == [
            ("SCRIPT before-revenue", 300, "Revenue"), ("SCRIPT before-shop", 200, None),
            ("SCRIPT before-refused", 120, None)]
        assert layout[0]["width"] == 900

        # A child's legend entry drills into it; the link above the graph leads back.
        back = page.locator(".hailwhale-embed-back").first
        assert not back.is_visible()
        page.locator(".hailwhale-embed .legendLayer text", has_text="sales: dollars").first.click()
        wait_for_embed_dimension(page, ["sales"])
        assert back.is_visible() and back.inner_text() == "\u2039 back to Overall"
        back.click()
        wait_for_embed_dimension(page, [])
        assert not back.is_visible()
        assert inked_pixels(page, ".hailwhale-embed-graph") > 5_000

        # Live: an event counted now shows up on the next poll, without a reload.
        whale.count(dimensions="partnerships", metrics='{"dollars": 5000}')
        page.wait_for_function("""() => HailWhaleEmbed.jQuery('.hailwhale-embed-graph')
            .first().data('hailwhale').series.some(s => s.label === 'partnerships: dollars')
            """, timeout=10_000)
        totals = {s["label"]: s["total"] for s in embeds(page)[0]["series"]}
        assert totals["Overall: dollars"] == 5200 and totals["partnerships: dollars"] == 5000
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "embed-two-tags.png"), full_page=True)

        # The three libraries were fetched once for the three tags (from the first tag's
        # Whale), and the page's jQuery is its own again, unchanged.
        for library in LIBRARIES:
            assert [url for url in requested if url.endswith(library)] == [
                whale.url + library], library
        assert page.evaluate("""() => ({
            same: window.jQuery === window.hostJQuery && window.$ === window.hostJQuery,
            plugin: typeof jQuery.fn.hostPlugin, hailwhale: typeof jQuery.fn.hailwhale,
            plot: typeof jQuery.plot, ours: HailWhaleEmbed.jQuery !== window.jQuery,
            version: HailWhaleEmbed.jQuery.fn.jquery, graphs: HailWhaleEmbed.graphs.length})
            """) == {"same": True, "plugin": "function", "hailwhale": "undefined",
                     "plot": "undefined", "ours": True, "version": "3.7.1", "graphs": 3}
    # The refused tag's 401 is the only console error the page may show.
    assert all("401" in problem for problem in page.problems), page.problems


def test_an_async_tag_under_a_strict_host_csp_on_a_page_without_jquery(page, whale, tmp_path):
    """The README's host CSP (script-src and connect-src Whale, style-src 'unsafe-inline')
    is enough, with nothing else allowed; an async tag finds itself; a page with no jQuery
    has none afterwards either."""
    policy = (f"default-src 'none'; script-src {whale.url}; connect-src {whale.url}; "
              "style-src 'unsafe-inline'")
    strict_page = f"""<!DOCTYPE html><html><head>
      <meta http-equiv="Content-Security-Policy" content="{policy}"></head><body>
      <h1>Status</h1>
      <div id="slot"><script async src="{whale.url}/embed.js" data-metrics="dollars"
        data-depth="1" data-since="1h" data-threshold="0" data-tz="UTC"></script></div>
    </body></html>"""
    requested = record_requests(page)
    with host(tmp_path, {"status.html": strict_page}) as site:
        page.goto(f"{site}/status.html")
        wait_for_states(page, ["drawn"])
        (graph,) = embeds(page)
        assert [s["label"] for s in graph["series"]] == [
            "Overall", "sales", "services", "advertising"]
        assert [url for url in requested if "/plotpoints?" in url][0].endswith(
            "&threshold=0&since=1h&tz=UTC")
        assert page.evaluate("() => [typeof window.jQuery, typeof window.$]") == [
            "undefined", "undefined"]
        assert page.evaluate("() => document.querySelector('#slot .hailwhale-embed') !== null")
        assert page.locator(".hailwhale-embed .legendLayer text").all_text_contents() == [
            "Overall", "sales", "services", "advertising"]
        assert inked_pixels(page, ".hailwhale-embed-graph") > 5_000
        assert page.problems == []  # a CSP violation would be a console error


def test_tags_are_found_where_the_browser_does_not_say_which_script_runs(page, whale,
                                                                         tmp_path):
    """Without document.currentScript (older browsers, loaders that run the file), a run
    takes every embed tag of the page not taken yet: with async tags, the first run takes
    both, the second none again."""
    page.add_init_script("Object.defineProperty(document, 'currentScript', "
                         "{get: () => null})")
    old_page = f"""<!DOCTYPE html><html><head><link rel="icon" href="data:,"></head><body>
      {tag(whale.url, metrics="dollars", since="1h", height=150)}
      <p>second</p>{tag(whale.url, metrics="hits", since="1h", height=150)}</body></html>
      """.replace("<script src=", "<script async src=")
    with host(tmp_path, {"old.html": old_page}) as site:
        page.goto(f"{site}/old.html")
        wait_for_states(page, ["drawn", "drawn"])
        assert [graph["series"][0]["total"] for graph in embeds(page)] == [200, 4]
        assert page.evaluate("() => document.currentScript") is None
        assert page.evaluate("() => document.querySelectorAll('.hailwhale-embed').length") == 2
        assert page.problems == []


def test_embed_names_are_shown_literally_and_never_run(page, whale, tmp_path):
    """Hostile dimension and pk names, a hostile title, in a page without CSP: text, always."""
    count_payloads(whale)
    watch_dialogs(page)
    hostile_page = f"""<!DOCTYPE html><html><head><link rel="icon" href="data:,"></head>
      <body>{tag(whale.url, pk=PAYLOAD_PK, depth=1, since="1h", title=P2)}
      {tag(whale.url, dimensions="[oops", height=80)}
      {tag(whale.url, metrics='["hits", 1]', height=80)}</body></html>"""
    with host(tmp_path, {"hostile.html": hostile_page}) as site:
        page.goto(f"{site}/hostile.html")
        wait_for_states(page, ["drawn", "error", "error"])
        page.wait_for_timeout(300)  # time for an image's error handler to run
        graph, broken, numbers = embeds(page)
        labels = [s["label"] for s in graph["series"]]
        assert sorted(labels) == sorted(["Overall", P1, P2, P3])
        assert page.locator(".hailwhale-embed .legendLayer text").all_text_contents() == labels
        assert page.locator(".hailwhale-embed-title").first.text_content() == P2
        assert page.locator(".hailwhale-embed img, .hailwhale-embed image, "
                            ".hailwhale-embed script").count() == 0
        assert broken["status"].startswith("HailWhale: data-dimensions is not a JSON list")
        assert numbers["status"] == ('HailWhale: data-metrics is not a JSON list: '
                                     '["hits", 1] is not a list of names')
        assert_no_script_ran(page)


def test_libraries_missing_on_whale_are_said_and_tried_again(page, whale, tmp_path,
                                                              monkeypatch):
    """A Whale that serves embed.js but not jQuery (npm ci not run yet): the graph says what
    it could not load, keeps trying, and draws once the libraries are there."""
    from whale import assets

    if assets.vendor_file("jquery.min.js") != assets.node_modules() / assets.VENDOR[
            "jquery.min.js"]:
        pytest.skip("this Whale serves a packaged copy of jQuery")
    monkeypatch.setenv("HAILWHALE_NODE_MODULES", str(tmp_path / "empty"))
    waiting_page = f"""<!DOCTYPE html><html><head><link rel="icon" href="data:,"></head>
      <body>{tag(whale.url, metrics="dollars", since="1h")}</body></html>"""
    with host(tmp_path, {"waiting.html": waiting_page}) as site:
        page.goto(f"{site}/waiting.html")
        wait_for_states(page, ["unreachable"])
        (graph,) = embeds(page)
        assert graph["status"] == (f"HailWhale: could not load {whale.url}"
                                   "/static/vendor/jquery.min.js; retrying in 1 s")
        monkeypatch.delenv("HAILWHALE_NODE_MODULES")
        wait_for_states(page, ["drawn"])
        assert [s["label"] for s in embeds(page)[0]["series"]][0] == "Overall"
    # The failed fetches are the only console errors the page may show.
    assert all("404" in problem for problem in page.problems), page.problems


def test_a_share_link_and_its_tag_open_the_same_view_read_only(browser, whale, guarded_whale,
                                                               tmp_path):
    """The dashboard's "share": a link carrying the view and the read token, which opens
    that view read-only in a fresh browser, and the embed tag that draws it on another
    origin; a token that is not a read token goes in neither."""
    from urllib.parse import unquote

    from test_dashboard import series, wait_for_dimension

    reader = auth.issue(SECRET, "read", ["shop"])
    viewport = {"width": 1400, "height": 760}
    ARTIFACTS.mkdir(exist_ok=True)

    # Someone with a read token picks a view and shares it.
    context = browser.new_context(viewport=viewport)
    page = context.new_page()
    try:
        page.goto(f"{guarded_whale.url}/#token={reader}")
        page.wait_for_selector('#graph[data-hailwhale-state="drawn"]', timeout=15_000)
        page.fill("#metrics", "dollars, dollars/hits")
        page.dispatch_event("#metrics", "change")
        page.click('#children a[data-name="sales"]')
        wait_for_dimension(page, ["sales"])
        page.wait_for_function("() => $('#graph').data('hailwhale').series.length === 6",
                               timeout=10_000)
        shown = series(page)
        page.click("#share")
        link = page.input_value("#share-link")
        snippet = page.input_value("#share-embed")
        note = page.text_content("#share-note")
        page.screenshot(path=str(ARTIFACTS / "share-panel.png"))
    finally:
        context.close()
    assert link.startswith(f"{guarded_whale.url}/#token={reader}&view=")
    view = json.loads(unquote(link.split("&view=", 1)[1]))
    assert (view["pk"], view["dimensions"], view["metrics"]) == (
        "shop", ["sales"], ["dollars", "dollars/hits"])
    assert note.startswith("Both carry your read token (pks: shop)")
    assert snippet.startswith(f'<script src="{guarded_whale.url}/embed.js" '
                              'data-metrics="dollars,dollars/hits" data-pk="shop" '
                              """data-dimensions='["sales"]'""")
    assert f'data-token="{reader}"></script>' in snippet

    # The link in a fresh browser: the same view at once, read-only, the token out of sight.
    context = browser.new_context(viewport=viewport)
    page = context.new_page()
    watch_dialogs(page)
    try:
        page.goto(link)
        page.wait_for_selector('#graph[data-hailwhale-state="drawn"]', timeout=15_000)
        wait_for_dimension(page, ["sales"])
        assert series(page) == shown
        assert reader not in page.url and "token" not in page.url
        opened = json.loads(unquote(page.url.split("#", 1)[1]))
        assert (opened["dimensions"], opened["metrics"]) == (["sales"],
                                                             ["dollars", "dollars/hits"])
        assert page.locator("#share-badge").inner_text() == "read-only link"
        assert page.locator("#breadcrumb").inner_text() == "Overall › sales"
        assert page.input_value("#metrics") == "dollars, dollars/hits"
        assert not page.locator("form#token-form").is_visible()
        assert page.evaluate("() => sessionStorage.getItem('hailwhale.token')") == reader
        assert page.evaluate("() => localStorage.getItem('hailwhale.token')") is None
        page.screenshot(path=str(ARTIFACTS / "share-link-view.png"))
        assert page.dialogs == []
    finally:
        context.close()
    # What it carries reads, and cannot write.
    denied = requests.get(f"{guarded_whale.url}/count", params={"pk": "shop"},
                          headers={"Authorization": f"Bearer {reader}"}, timeout=5)
    assert denied.status_code == 403

    # The tag, pasted as it is into a page of another origin, draws the same view.
    page = browser.new_page(viewport=viewport)
    page.problems = []
    page.on("console", lambda m: page.problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda error: page.problems.append(str(error)))
    try:
        with host(tmp_path, {"shared.html": f"<!DOCTYPE html><html><head><link rel=icon "
                             f'href="data:,"></head><body>{snippet}</body></html>'}) as site:
            page.goto(f"{site}/shared.html")
            wait_for_states(page, ["drawn"])
            assert embeds(page)[0]["series"] == shown
            page.screenshot(path=str(ARTIFACTS / "share-embed-tag.png"))
            assert page.problems == []
    finally:
        page.close()

    # An admin's token is never shared; an open Whale's link is the view alone.
    admin = auth.issue(SECRET, "admin", ["*"])
    context = browser.new_context(viewport=viewport)
    page = context.new_page()
    try:
        page.goto(f"{guarded_whale.url}/")
        page.locator("form#token-form").wait_for(state="visible", timeout=10_000)
        page.fill("input#token", admin)
        page.press("input#token", "Enter")
        page.wait_for_selector('#graph[data-hailwhale-state="drawn"]', timeout=15_000)
        page.click("#share")
        assert "token" not in page.input_value("#share-link")
        assert "data-token" not in page.input_value("#share-embed")
        assert page.text_content("#share-note").startswith(
            "Your token is not a read token (it can admin), so neither carries it")
        page.goto(f"{whale.url}/")
        page.wait_for_selector('#graph[data-hailwhale-state="drawn"]', timeout=15_000)
        page.click("#share")
        assert page.input_value("#share-link") == page.evaluate(
            "() => window.location.href")
        assert page.text_content("#share-note").startswith(
            "No token in either: this HailWhale asks for none.")
    finally:
        context.close()


def test_embed_js_is_served_as_a_script_to_any_origin(whale):
    answer = requests.get(f"{whale.url}/embed.js", timeout=5)
    assert answer.status_code == 200
    assert answer.headers["Content-Type"].split(";")[0] in ("application/javascript",
                                                            "text/javascript")
    assert answer.headers["X-Content-Type-Options"] == "nosniff"
    assert answer.headers["Access-Control-Allow-Origin"] == "*"
    assert "Last-Modified" in answer.headers  # so browsers keep it between pages
    # embed.js writes no markup: every string it puts in the page goes in as text.
    assert "innerHTML" not in answer.text and "insertAdjacentHTML" not in answer.text
    assert "document.write" not in answer.text
