"""The pages in headless Chromium against `chainsight demo`: the dispatcher's live map, the
quality console, the sign-in page and the roles; every request stays on the app's origin.
Screenshots (desktop 1440x900, phone 390x844) are kept in artefacts/browser/."""

from __future__ import annotations

import math
import time

import httpx
import pytest
from browser import DESKTOP, PHONE, Browser, foreign
from demo_server import running_demo
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    with running_demo(tmp_path_factory.mktemp("demo"), "--shipments", "40",
                      "--speedup", "60") as demo:
        yield demo


@pytest.fixture(scope="module")
def browser():
    browser = Browser()
    browser.size(*DESKTOP)
    yield browser
    browser.quit()


def points(browser, pixels: bool = False) -> dict[str, tuple[float, float]]:
    """The shipments drawn as single points: shipment id -> (lon, lat), or where on the
    screen (x, y)."""
    found = browser.js("""
        const map = window.chainsightMap && window.chainsightMap.map;
        if (!map || !map.getLayer('points')) return [];
        return map.queryRenderedFeatures({layers: ['points']}).map(f => [f.properties.sid,
            arguments[0] ? Object.values(map.project(f.geometry.coordinates))
                         : f.geometry.coordinates]);""", pixels)
    return {sid: tuple(xy[:2]) for sid, xy in found}


def click_map(browser, x: float, y: float) -> None:
    """A click on the map at pixel (x, y) of its canvas."""
    canvas = browser.driver.find_element(By.CSS_SELECTOR, "#map canvas")
    size = canvas.size
    ActionChains(browser.driver).move_to_element_with_offset(
        canvas, int(x - size["width"] / 2), int(y - size["height"] / 2)).click().perform()


def open_map(browser, demo) -> None:
    browser.driver.get(demo.links["dispatcher"])
    browser.wait(lambda: browser.js("return window.chainsightMap && "
                                    "window.chainsightMap.stats.updates > 0"), 60,
                 "live updates on the map")


def test_the_map_shows_the_fleet_and_its_markers_move(browser, demo):
    open_map(browser, demo)
    browser.wait(lambda: len(points(browser)) >= 5, 30, "the fleet on the map")
    assert "of 40 shown" in browser.driver.find_element(By.ID, "counts").text or \
        browser.js("return document.getElementById('counts').textContent").endswith("silent")
    assert browser.driver.find_element(By.ID, "connection").text == "Live"
    map_zoom = browser.js("return window.chainsightMap.map.getZoom()")
    assert map_zoom > 5  # fitted to the fleet, not the whole world
    deadline = time.monotonic() + 90  # the demo's trucks leave their hubs over time
    while True:
        first, shot1 = points(browser, pixels=True), browser.screenshot("map-desktop-1")
        time.sleep(2)
        second, shot2 = points(browser, pixels=True), browser.screenshot("map-desktop-2")
        moved = [sid for sid in first.keys() & second.keys()
                 if math.dist(first[sid], second[sid]) >= 3]  # pixels
        if moved or time.monotonic() > deadline:
            break
    assert moved, "no marker moved (3 pixels or more) on the map of a live fleet"
    assert shot1.read_bytes() != shot2.read_bytes()


def test_clicking_a_shipment_opens_its_panel_with_a_chart(browser, demo):
    headers = {"Authorization": f"Bearer {demo.tokens['dispatcher']}"}
    shipments = httpx.get(f"{demo.base}/v1/shipments", headers=headers,
                          params={"status": "in_transit"}).json()
    moving = [s for s in shipments if s["last_temp_c"] is not None and s["last_position"]]
    assert moving, "no shipment in transit with a temperature in the demo"
    target = moving[0]
    position = target["last_position"]
    browser.js("window.chainsightMap.map.jumpTo({center: [arguments[0], arguments[1]], zoom: 14})",
               position["lon"], position["lat"])
    drawn = browser.wait(lambda: points(browser).get(target["shipment_id"]), 20,
                         "the shipment drawn as a point")
    x, y = browser.js("const p = window.chainsightMap.map.project(arguments[0]);"
                      "return [p.x, p.y];", list(drawn))
    click_map(browser, x, y)
    panel = browser.driver.find_element(By.ID, "panel")
    browser.wait(panel.is_displayed, 10, "the shipment's panel")
    assert browser.driver.find_element(By.ID, "panel-title").text == target["shipment_id"]
    browser.wait(lambda: browser.driver.find_elements(By.CSS_SELECTOR, "#p-chart canvas"), 30,
                 "the temperature chart")
    assert "°C" in browser.driver.find_element(By.ID, "p-temp").text
    assert browser.driver.find_element(By.ID, "p-seen").text != "—"
    browser.screenshot("map-desktop-panel")
    browser.size(*PHONE)
    time.sleep(1.5)
    browser.screenshot("map-phone-panel")
    browser.size(*DESKTOP)


def test_search_finds_a_shipment_and_filters_narrow_the_map(browser, demo):
    wanted = next(iter(points(browser)), None) or "SHP-000001"
    search = browser.driver.find_element(By.ID, "search")
    search.clear()
    search.send_keys(wanted, Keys.ENTER)
    browser.wait(lambda: browser.driver.find_element(By.ID, "panel-title").text == wanted, 10,
                 "the panel of the shipment searched for")
    profile = browser.wait(lambda: browser.js(
        "const o = document.getElementById('profile').options; return o.length > 1 && o[1].value"),
        10, "the profiles to filter by")
    browser.js("const box = document.getElementById('profile'); box.value = arguments[0];"
               "box.dispatchEvent(new Event('change'));", profile)
    headers = {"Authorization": f"Bearer {demo.tokens['dispatcher']}"}

    def shown_as_filtered() -> bool:
        counts = browser.driver.find_element(By.ID, "counts").text
        wanted = [s for s in httpx.get(f"{demo.base}/v1/shipments", headers=headers,
                                       params={"profile": profile}).json() if s["last_position"]]
        return counts.startswith(f"{len(wanted)} of ")

    browser.wait(shown_as_filtered, 10, f"only {profile} shipments on the map")
    browser.js("const box = document.getElementById('profile'); box.value = '';"
               "box.dispatchEvent(new Event('change'));")


def test_a_cluster_that_cannot_split_lists_its_members(browser, demo):
    browser.driver.find_element(By.ID, "panel-close").click()
    admin = {"Authorization": f"Bearer {demo.tokens['admin']}"}
    now = max(s["last_seen"] for s in httpx.get(f"{demo.base}/v1/shipments", headers=admin).json()
              if s["last_seen"])
    together = [{"type": "gps", "device_id": f"GPS-{name}", "shipment_id": name, "ts": now,
                 "lat": 50.5, "lon": 5.0} for name in ("SHP-TOGETHER-A", "SHP-TOGETHER-B")]
    assert httpx.post(f"{demo.base}/v1/events", json=together, headers=admin).json()[
        "accepted"] == 2  # two trucks in one yard
    browser.js("window.chainsightMap.map.jumpTo({center: [5.0, 50.5], zoom: 10})")
    cluster = browser.wait(lambda: browser.js("""
        const map = window.chainsightMap.map;
        return map.queryRenderedFeatures({layers: ['clusters']}).map(f => [
            f.properties.point_count,
            Object.values(map.project(f.geometry.coordinates)).slice(0, 2)]);"""), 20,
        "the two trucks as one cluster")
    (x, y) = cluster[0][1]
    click_map(browser, x, y)
    members = browser.driver.find_element(By.ID, "members")
    browser.wait(members.is_displayed, 10, "the cluster's members listed")
    listed = members.find_elements(By.CSS_SELECTOR, "li button")
    assert sorted(b.text for b in listed) == ["SHP-TOGETHER-A", "SHP-TOGETHER-B"]
    browser.screenshot("map-desktop-cluster-members")
    listed[0].click()
    browser.wait(lambda: browser.driver.find_element(By.ID, "panel").is_displayed(), 10)
    assert browser.driver.find_element(By.ID, "panel-title").text.startswith("SHP-TOGETHER-")


def test_the_console_receives_an_alert_and_a_click_acknowledges_it(browser, demo):
    browser.driver.get(demo.links["quality"])
    browser.wait(lambda: browser.js("return window.chainsightConsole && "
                                    "window.chainsightConsole.live > 0"), 60,
                 "an alert on the live channel")
    def state_of(alert_id: str) -> str:
        """The state the list shows for an alert ('' once it has left the list)."""
        return browser.js("const cell = document.querySelector("
                          "`tr[data-id='${arguments[0]}'] .state`);"
                          "return cell ? cell.textContent : '';", alert_id)

    acknowledged = None
    for _ in range(8):  # an alert may be resolved before the click lands
        # a settled one: a provisional alert's audit trail (the settled record) shows the
        # acknowledgement only once it is settled
        alert_id = browser.wait(lambda: browser.js(  # found and clicked in one step: the live
            "const button = document.querySelector("  # list may be redrawn at any time
            "'tr:not(:has(.provisional)) button[data-act=acknowledge]');"
            "if (button) button.click(); return button && button.dataset.id;"), 90,
            "a settled alert to acknowledge")
        state = browser.wait(lambda a=alert_id: state_of(a) != "open" and (state_of(a) or "gone"),
                             10, "the acknowledgement")
        if state == "acknowledged":
            acknowledged = alert_id
            break
    assert acknowledged, "no alert could be acknowledged"
    browser.js("const state = document.getElementById('f-state'); state.value = '';"
               "state.dispatchEvent(new Event('input'));")  # all: it may be resolved by now
    browser.wait(lambda: browser.js(
        "const row = document.querySelector(`tr[data-id='${arguments[0]}'] td:nth-child(4)`);"
        "if (row) row.click(); return row !== null;", acknowledged),  # in one step: the live
        10, "the acknowledged alert in the list")  # list may be redrawn at any time
    browser.wait(lambda: "demo-quality" in browser.driver.find_element(By.ID, "d-audit").text,
                 20, "the audit trail naming the user")
    assert "acknowledged" in browser.driver.find_element(By.ID, "d-audit").text
    details = browser.driver.find_element(By.ID, "d-details").text
    assert "demo-quality" in details and "null" not in details  # no comment: not shown
    browser.screenshot("console-desktop")
    browser.size(*PHONE)
    time.sleep(1)
    browser.screenshot("console-phone")
    # at phone width every alert is a card: nothing (state, tags, suggested action) off screen
    assert browser.js("const list = document.querySelector('.list-wrap');"
                      "return list.scrollWidth <= list.clientWidth"
                      " && document.documentElement.scrollWidth <= window.innerWidth")
    browser.size(*DESKTOP)


def test_the_console_acknowledges_in_bulk_and_resolves_with_a_comment(browser, demo):
    browser.driver.get(demo.links["quality"])
    browser.wait(lambda: browser.js("return window.chainsightConsole && "
                                    "window.chainsightConsole.live > 0"), 60, "live alerts")
    quality = httpx.Client(base_url=demo.base, timeout=30,
                           headers={"Authorization": f"Bearer {demo.tokens['quality']}"})
    # two settled open alerts ticked (in one step: the live list may be redrawn any time)
    ticked = browser.wait(lambda: browser.js(
        "const boxes = [...document.querySelectorAll("
        "'tr:not(:has(.provisional)) input[data-check]:not([disabled])')].slice(0, 2);"
        "if (boxes.length < 2) return null;"
        "for (const box of boxes) box.click();"
        "return boxes.map((box) => box.dataset.check);"), 90, "two settled open alerts")
    browser.wait(lambda: browser.js("return !document.getElementById('bulk-ack').disabled"), 10,
                 "the bulk button enabled")
    browser.js("document.getElementById('bulk-ack').click()")
    toast = browser.wait(lambda: (t := browser.driver.find_element(By.ID, "toast").text)
                         .startswith("Acknowledged") and t, 20, "the bulk answer")
    assert toast.endswith("of 2")

    def record_of(alert_id: str) -> dict:
        (record,) = [a for a in quality.get("/v1/alerts").json() if a["alert_id"] == alert_id]
        return record

    def acknowledged_by_quality(alert_id: str) -> bool:
        trail = [e["details"] for e in quality.get(f"/v1/alerts/{alert_id}/audit").json()]
        acks = [e for e in trail if e.get("transition") == "acknowledged"]
        assert all(e["user"] == "demo-quality" for e in acks)
        return bool(acks)

    done = int(toast.split()[1])  # an alert may have been resolved before the click
    # the audit trail is the settled record: the acknowledgement shows there once event time
    # has passed it by the allowed lateness (not at all if late data resolved the alert first)
    acknowledged = browser.wait(lambda: [i for i in ticked if acknowledged_by_quality(i)], 30,
                                "an acknowledgement in the audit trails")
    assert 1 <= len(acknowledged) <= done
    resolving = next((a for a in acknowledged
                      if record_of(a)["state"] == "acknowledged"), None)
    if resolving is None:
        pytest.fail("both acknowledged alerts were resolved by the engine before the test could")
    browser.js("const state = document.getElementById('f-state'); state.value = '';"
               "state.dispatchEvent(new Event('input'));")
    browser.wait(lambda: browser.js(
        "const row = document.querySelector(`tr[data-id='${arguments[0]}'] td:nth-child(4)`);"
        "if (row) row.click(); return row !== null;", resolving), 10, "the alert in the list")
    browser.wait(lambda: browser.driver.find_element(By.ID, "d-resolve").is_displayed(), 10,
                 "the resolve form")
    comment = "moved the pallets to cold store 04"
    browser.driver.find_element(By.ID, "d-comment").send_keys(comment, Keys.ENTER)
    record = browser.wait(lambda: (r := record_of(resolving))["state"] == "resolved" and r, 20,
                          "the resolution")
    assert record["details"]["comment"] == comment
    assert record["details"]["user"] == "demo-quality"
    browser.wait(lambda: comment in browser.driver.find_element(By.ID, "d-audit").text, 20,
                 "the comment in the audit trail")


def test_the_console_answers_a_question_and_highlights_its_shipments(browser, demo):
    browser.driver.get(demo.links["quality"])
    browser.wait(lambda: browser.js("return window.chainsightConsole && "
                                    "window.chainsightConsole.live > 0"), 60, "live alerts")
    question = "which shipments have alerts?"

    def answer_ids() -> set[str]:
        return set(httpx.post(f"{demo.base}/v1/ask", json={"q": question}, timeout=30,
                              headers={"Authorization": f"Bearer {demo.tokens['quality']}"},
                              ).json()["shipment_ids"])

    ids = answer_ids()  # the fleet moves on: the page's answer lies between these two
    asked = browser.driver.find_element(By.ID, "ask-q")
    asked.clear()
    asked.send_keys(question, Keys.ENTER)
    answer = browser.wait(lambda: (t := browser.driver.find_element(By.ID, "ask-answer").text)
                          and t != "…" and t, 30, "the answer")
    assert "Understood as" in answer
    ids |= answer_ids()
    shown = set(browser.wait(lambda: browser.js(  # in one step: the list may be redrawn
        "return [...document.querySelectorAll('tr.asked td:nth-child(5)')]"
        ".map((td) => td.textContent)"), 10, "highlighted rows"))
    assert shown and shown <= ids | {"—"}
    browser.screenshot("console-asked-desktop")
    asked.clear()
    asked.send_keys("谁是世界上最好的足球运动员?", Keys.ENTER)  # not about shipments
    browser.wait(lambda: browser.driver.find_element(By.ID, "ask-answer").get_attribute(
        "data-understood") == "false", 30, "a not-understood answer")
    browser.wait(lambda: not browser.driver.find_elements(By.CSS_SELECTOR, "tr.asked"), 10,
                 "the highlight cleared")  # the list is redrawn on the next animation frame
    browser.screenshot("console-not-understood-desktop")


def test_a_dispatcher_token_cannot_open_the_console(browser, demo):
    browser.driver.get(f"{demo.base}/console#token={demo.tokens['dispatcher']}")
    denied = browser.driver.find_element(By.ID, "denied")
    browser.wait(denied.is_displayed, 10, "the console refusing a dispatcher")
    assert not browser.driver.find_element(By.ID, "alerts").is_displayed()
    nav = browser.driver.find_element(By.CSS_SELECTOR, "header nav").text
    assert "Live map" in nav and "Quality console" not in nav
    browser.screenshot("console-denied-dispatcher")
    alerts = httpx.get(f"{demo.base}/v1/alerts", headers={
        "Authorization": f"Bearer {demo.tokens['quality']}"}).json()
    answer = httpx.post(f"{demo.base}/v1/alerts/{alerts[0]['alert_id']}/acknowledge",
                        headers={"Authorization": f"Bearer {demo.tokens['dispatcher']}"})
    assert answer.status_code == 403


def test_sign_in_shows_only_the_pages_a_role_may_use(browser, demo):
    def token_field():  # on the sign-in page loaded anew (signing out reloads it)
        return browser.wait(lambda: [f for f in browser.driver.find_elements(By.ID, "token")
                                     if f.is_displayed()], 10, "the token field")[0]

    browser.driver.get(demo.links["admin"])  # the sign-in page
    browser.wait(lambda: browser.driver.find_element(By.ID, "choose").is_displayed(), 10)
    assert browser.driver.find_element(By.ID, "pages").text.split("\n") == [
        "Live map", "Quality console"]
    browser.screenshot("signin-admin")
    browser.driver.find_element(By.ID, "signout").click()
    token_field().send_keys(demo.tokens["sales"], Keys.ENTER)
    browser.wait(lambda: browser.driver.find_element(By.ID, "choose").is_displayed(), 10)
    assert browser.driver.find_element(By.ID, "pages").text.split("\n") == ["Live map"]
    browser.driver.get(f"{demo.base}/")
    browser.wait(lambda: browser.driver.find_element(By.ID, "signout").is_displayed(), 10)
    browser.driver.find_element(By.ID, "signout").click()
    token_field().send_keys("cs_not_a_token", Keys.ENTER)
    browser.wait(lambda: "not known" in browser.driver.find_element(By.ID, "message").text, 10)
    browser.size(*PHONE)
    browser.screenshot("signin-phone")
    browser.size(*DESKTOP)


def test_every_request_went_to_the_apps_own_origin(browser, demo):
    requests = browser.requested()
    urls = [url for initiator, url in requests if initiator == demo.base]
    ws = demo.base.replace("http", "ws")
    assert any(u.startswith(f"{ws}/v1/live?") for u in urls)  # from the map's worker
    assert any(u.startswith(f"{ws}/v1/alerts/live?") for u in urls)  # the console
    assert any(u.endswith("/static/land.geojson") for u in urls)
    assert any(u.endswith("/static/maplibre-gl-worker.mjs") for u in urls)
    assert foreign(requests, demo.base) == []
    assert browser.errors() == []
