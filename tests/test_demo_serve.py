"""`chainsight demo` serves the API and the pages over its simulated fleet, with a working link
per role."""

from __future__ import annotations

import time

import httpx
from demo_server import running_demo

from chainsight.api.auth import RIGHTS
from chainsight.demo import ROLE_PAGES, describe
from chainsight.engine.live import retraction


def test_demo_prints_a_link_per_role_that_works_while_it_runs(tmp_path):
    with running_demo(tmp_path, "--duration", "8", "--shipments", "30") as demo:
        assert set(demo.links) == {"admin", "dispatcher", "quality", "sales"}
        assert demo.pages == ROLE_PAGES
        assert demo.pages["dispatcher"] == "/map" and demo.pages["quality"] == "/console"
        assert httpx.get(f"{demo.base}/docs").status_code == 200  # still there
        for role, link in demo.links.items():
            page = httpx.get(link.split("#")[0])
            assert page.status_code == 200 and "text/html" in page.headers["content-type"]
            headers = {"Authorization": f"Bearer {demo.tokens[role]}"}
            shipments = httpx.get(f"{demo.base}/v1/shipments", headers=headers)
            assert shipments.status_code == 200 and isinstance(shipments.json(), list)
            fences = httpx.get(f"{demo.base}/v1/fences", headers=headers)
            assert fences.status_code == (200 if role in RIGHTS["fences:read"] else 403), role
            if fences.status_code == 200:  # the simulated network's sites
                kinds = {f["properties"]["kind"] for f in fences.json()["features"]}
                assert {"hub", "cold_store"} <= kinds
        assert demo.proc.wait(30) == 0
        assert any(" alert transitions" in line for line in demo.stderr().splitlines())
    tokens = (tmp_path / "tokens.json").read_text()
    assert tokens.count('"demo-') == 4 and demo.tokens["admin"] not in tokens  # hashed only


def test_the_demo_serves_on_after_its_scenario_ends_with_its_time_stopped(tmp_path):
    """4 hours of 5 shipments at 3,000x: about 5 s of stream, then the last state is served
    until Ctrl-C, and idle time does not make every sensor silent."""
    with running_demo(tmp_path, "--shipments", "5", "--speedup", "3000") as demo:
        headers = {"Authorization": f"Bearer {demo.tokens['quality']}"}
        deadline = time.monotonic() + 60
        while "stream ended" not in (err := demo.stderr()):
            assert time.monotonic() < deadline and demo.proc.poll() is None, err
            time.sleep(0.5)
        first = httpx.get(f"{demo.base}/v1/alerts", headers=headers).json()
        time.sleep(3)  # 2.5 hours of simulated time, were the clock still moving it
        assert httpx.get(f"{demo.base}/healthz").status_code == 200
        assert httpx.get(f"{demo.base}/v1/alerts", headers=headers).json() == first
        assert demo.proc.poll() is None


def test_the_demos_line_for_a_retraction_says_what_it_withdraws_and_why():
    opened = {"alert_id": "a1", "kind": "sensor_silent", "state": "open", "shipment_id": "SHP-1",
              "device_id": "RFR-1", "at": "2026-11-25T06:22:41.419Z",
              "details": {"transition": "opened", "last_reading_at": "2026-11-25T06:12:41.419Z"}}
    line = describe(retraction(opened, 1795587501371, "not confirmed"))
    assert line.startswith("2026-11-25T06:18:21.371Z  retracted    sensor_silent")
    assert line.endswith("withdraws open at 2026-11-25T06:22:41.419Z: not confirmed")
