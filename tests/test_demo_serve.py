"""`chainsight demo` serves the API and the pages over its simulated fleet, with a working link
per role."""

from __future__ import annotations

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
        assert any(" alert transitions" in line for line in demo.proc.stderr.read().splitlines())
    tokens = (tmp_path / "tokens.json").read_text()
    assert tokens.count('"demo-') == 4 and demo.tokens["admin"] not in tokens  # hashed only


def test_the_demos_line_for_a_retraction_says_what_it_withdraws_and_why():
    opened = {"alert_id": "a1", "kind": "sensor_silent", "state": "open", "shipment_id": "SHP-1",
              "device_id": "RFR-1", "at": "2026-11-25T06:22:41.419Z",
              "details": {"transition": "opened", "last_reading_at": "2026-11-25T06:12:41.419Z"}}
    line = describe(retraction(opened, 1795587501371, "not confirmed"))
    assert line.startswith("2026-11-25T06:18:21.371Z  retracted    sensor_silent")
    assert line.endswith("withdraws open at 2026-11-25T06:22:41.419Z: not confirmed")
