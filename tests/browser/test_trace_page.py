"""The customer's trace page in headless Chromium at phone size, opened from a trace link of a
running `chainsight demo`, as a customer scanning the parcel's QR code would. Screenshots are
kept in artefacts/browser/."""

from __future__ import annotations

import time

import httpx
import pytest
from browser import DESKTOP, PHONE, Browser, foreign
from demo_server import running_demo
from selenium.webdriver.common.by import By

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def link(tmp_path_factory):
    """A trace link of a shipment whose record has blocks and readings, and the demo's base."""
    with running_demo(tmp_path_factory.mktemp("demo"), "--shipments", "12",
                      "--speedup", "120") as demo:
        sales = httpx.Client(base_url=demo.base, timeout=30,
                             headers={"Authorization": f"Bearer {demo.tokens['sales']}"})
        quality = httpx.Client(base_url=demo.base, timeout=30,
                               headers={"Authorization": f"Bearer {demo.tokens['quality']}"})
        deadline = time.monotonic() + 90
        while True:  # blocks are made every 10 minutes of stream time: 5 s at 120x
            shipments = [s["shipment_id"] for s in sales.get("/v1/shipments").json()]
            recorded = [s for s in shipments if len(
                quality.get(f"/v1/shipments/{s}/record").json()["entries"]) >= 2]
            if recorded:
                break
            assert time.monotonic() < deadline, "no shipment record grew two blocks"
            time.sleep(1)
        yield sales.get(f"/v1/shipments/{recorded[0]}/trace-link").json(), demo.base


def test_a_customer_opens_the_trace_link_on_a_phone(link):
    answer, base = link
    browser = Browser()
    try:
        browser.size(*PHONE)
        browser.driver.get(answer["url"])
        body = browser.wait(lambda: browser.driver.find_element(By.TAG_NAME, "body").text, 30)
        assert "Verified" in body and "Journey" in body and "Carbon footprint" in body
        assert browser.driver.find_elements(By.CSS_SELECTOR, "svg[aria-label=temperature]")
        width = browser.js("return document.documentElement.scrollWidth")
        assert width <= PHONE[0], "the page scrolls sideways on a phone"
        browser.screenshot("trace-phone")
        browser.js("window.scrollTo(0, document.body.scrollHeight)")
        browser.screenshot("trace-phone-end")
        browser.size(*DESKTOP)
        browser.screenshot("trace-desktop")
        browser.size(*PHONE)
        browser.driver.get(answer["url"][:-3] + "xyz")  # a changed token
        refused = browser.wait(lambda: browser.driver.find_element(By.TAG_NAME, "body").text, 30)
        assert "cannot be opened" in refused
        browser.screenshot("trace-refused-phone")
        assert foreign(browser.requested(), base) == []
        assert browser.errors() == [] or all("403" in e for e in browser.errors())
    finally:
        browser.quit()


def test_a_customer_whose_phone_speaks_chinese_reads_the_page_in_chinese(link):
    answer, base = link
    browser = Browser()
    try:
        browser.size(*PHONE)
        browser.driver.execute_cdp_cmd("Network.setUserAgentOverride", {
            "userAgent": browser.js("return navigator.userAgent"),
            "acceptLanguage": "zh-CN,zh;q=0.9"})
        browser.driver.get(answer["url"])
        body = browser.wait(lambda: browser.driver.find_element(By.TAG_NAME, "body").text, 30)
        assert "已验证" in body and "温度" in body and "Verified" not in body
        assert browser.js("return document.documentElement.lang").startswith("zh")
        browser.screenshot("trace-phone-zh")
        assert foreign(browser.requested(), base) == []
    finally:
        browser.quit()
