"""Headless Chromium (Debian's `chromium` and `chromium-driver`) driven by Selenium: sizes,
screenshots kept as test artefacts, and every request the browser made, from its NetLog (which,
unlike the DevTools log of the page, also sees what the pages' workers request)."""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

ARTEFACTS = Path(__file__).resolve().parents[2] / "artefacts" / "browser"
CHROMIUM = "/usr/bin/chromium"
DRIVER = "/usr/bin/chromedriver"
DESKTOP = (1440, 900)
PHONE = (390, 844)
# WebGL without a GPU runs on SwiftShader, which recent Chromium enables only when asked.
FLAGS = ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--enable-unsafe-swiftshader",
         "--use-angle=swiftshader", "--window-size=1440,900", "--no-first-run",
         # the browser's own background traffic, as little as flags allow (it is not the pages')
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-features=AutofillServerCommunication,NetworkTimeServiceQuerying,"
         "OptimizationHints,MediaRouter", "--no-pings", "--disable-domain-reliability")
BROWSER_ITSELF = "not an origin"  # a NetLog request's initiator when no page asked for it


class Browser:
    def __init__(self, extra_flags: tuple[str, ...] = ()) -> None:
        missing = [p for p in (CHROMIUM, DRIVER) if not shutil.which(p)]
        assert not missing, f"{missing} missing: scripts/bootstrap.sh --browser installs them"
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for flag in FLAGS + extra_flags:
            options.add_argument(flag)
        self.netlog = Path(tempfile.mkdtemp(prefix="chainsight-netlog-")) / "netlog.json"
        options.add_argument(f"--log-net-log={self.netlog}")
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        self.driver = webdriver.Chrome(service=Service(DRIVER), options=options)
        self.console: list[dict] = []

    def size(self, width: int, height: int) -> None:
        """The page's viewport, exactly; a phone's is a touch device."""
        mobile = width < 700
        self.driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
            "width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile})
        self.driver.execute_cdp_cmd("Emulation.setTouchEmulationEnabled", {"enabled": mobile})

    def screenshot(self, name: str) -> Path:
        ARTEFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTEFACTS / f"{name}.png"
        self.driver.save_screenshot(str(path))
        return path

    def js(self, script: str, *args: Any) -> Any:
        return self.driver.execute_script(script, *args)

    def wait(self, condition: Callable[[], Any], timeout_s: float = 30, what: str = "") -> Any:
        deadline = time.monotonic() + timeout_s
        while True:
            value = condition()
            if value:
                return value
            assert time.monotonic() < deadline, f"timed out waiting for {what or condition}"
            time.sleep(0.2)

    def requested(self) -> list[tuple[str, str]]:
        """Every request the browser has started so far, as (initiator, url): the initiator is
        the origin of the page or worker that asked, or BROWSER_ITSELF. The NetLog is written
        one event a line while the browser runs."""
        requests = []
        for line in self.netlog.read_text().splitlines():
            try:
                params = json.loads(line.rstrip(",")).get("params", {})
            except ValueError:
                continue  # the log's header and a line being written
            if "url" in params and "initiator" in params:
                requests.append((params["initiator"], params["url"]))
        return requests

    def errors(self) -> list[str]:
        """The browser console's errors so far (besides refused API calls: a probe's 403)."""
        self.console += self.driver.get_log("browser")
        return [e["message"] for e in self.console if e["level"] == "SEVERE"
                and "Failed to load resource" not in e["message"]]

    def quit(self) -> None:
        self.driver.quit()
        shutil.rmtree(self.netlog.parent, ignore_errors=True)


def foreign(requests: list[tuple[str, str]], origin: str) -> list[str]:
    """The URLs that pages (or their workers) asked for anywhere but `origin` (http or ws)."""
    own = (origin + "/", origin.replace("http://", "ws://", 1) + "/")
    return [url for initiator, url in requests
            if initiator != BROWSER_ITSELF and not url.startswith(own)]
