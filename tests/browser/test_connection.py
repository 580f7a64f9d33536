"""The live map says plainly when its connection to the server is lost, and when it is back:
the server stops under it and starts again on the same address."""

from __future__ import annotations

import orjson
import pytest
from api_server import free_port, running
from browser import DESKTOP, Browser
from selenium.webdriver.common.by import By

from chainsight.api.app import create_app
from chainsight.api.auth import TokenStore
from chainsight.contract.times import now_ms
from chainsight.engine.core import Engine
from chainsight.runtimes.embedded import EmbeddedRuntime

pytestmark = pytest.mark.timeout(120)


def test_the_map_says_when_the_connection_is_lost_and_when_it_is_back(tmp_path):
    runtime = EmbeddedRuntime(Engine(live=True)).start()
    token = TokenStore(tmp_path).create("dispatcher", "dana")
    runtime.process([orjson.dumps({"type": "gps", "device_id": f"G{i}", "shipment_id": f"S{i}",
                                   "ts": now_ms(), "lat": 52 + i / 100, "lon": 4.5})
                     for i in range(5)])
    app = create_app(runtime, TokenStore(tmp_path))
    port = free_port()
    browser = Browser()
    badge = lambda: browser.driver.find_element(By.ID, "connection").text  # noqa: E731
    try:
        browser.size(*DESKTOP)
        with running(app, port) as url:
            browser.driver.get(f"{url}/map#token={token}")
            browser.wait(lambda: badge() == "Live", 30, "the map live")
            browser.wait(lambda: "5 of 5 shown" in browser.driver.find_element(
                By.ID, "counts").text, 10, "the shipments on the map")
        browser.wait(lambda: badge().startswith("Connection lost"), 15, "the loss said plainly")
        browser.screenshot("map-connection-lost")
        with running(app, port):
            browser.wait(lambda: badge() == "Connection is back", 20, "the return said")
            browser.wait(lambda: badge() == "Live", 10, "live again")
        # besides the reconnection attempts refused while the server was away
        assert [e for e in browser.errors() if "ERR_CONNECTION_REFUSED" not in e] == []
    finally:
        browser.quit()
        runtime.stop()
