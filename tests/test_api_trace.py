"""Traceability over HTTP: records, EPCIS out and in, trace links and the customer page."""

from __future__ import annotations

import json
import time

import httpx
import orjson
import pytest
from api_server import api, auth, role_tokens
from helpers import at, fix, order, reading
from test_trace import SCHEMA, SSCC, epcis_validator

from chainsight.config import load_settings
from chainsight.engine.core import Engine
from chainsight.trace.anchor import leaf, verify_inclusion
from chainsight.trace.links import KeyRing
from chainsight.trace.record import alert_records, business_events, readings

NDJSON = {"content-type": "application/x-ndjson"}
GTIN = "10614141123452"


def trip(shipment: str, sscc: str | None, customer: str, temp: str, gps: str) -> list[bytes]:
    """An order with its lot and certificates, scans, and 20 minutes of readings (11 °C from
    minute 1: an excursion) and fixes along a meridian."""
    extra = {"sscc": sscc, "gtin": GTIN} if sscc else {}
    lines = [order(shipment, customer_id=customer, devices=(temp, gps), weight_kg=8000,
                   mode="road", origin={"lat": 52.0, "lon": 4.0},
                   destination={"lat": 52.3, "lon": 4.0},
                   lot={"lot_id": "LOT-7", "certificates": [
                       {"kind": "GDP", "issuer": "Bureau Veritas", "id": "GDP-123"}]}, **extra),
             orjson.dumps({"type": "scan", "shipment_id": shipment, "ts": at(-30),
                           "site_id": "HUB-1", "step": "received"}),
             orjson.dumps({"type": "scan", "shipment_id": shipment, "ts": at(-5),
                           "site_id": "HUB-1", "step": "loaded"})]
    for minute in range(21):
        lines.append(reading(minute, 5 if minute == 0 else 11, device=temp, humidity_pct=60))
        lines.append(fix(minute, 52.0 + minute * 0.01, 4.0, device=gps))
    return lines


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    data = tmp_path_factory.mktemp("data")
    tokens = role_tokens(data, c1={"role": "sales", "name": "sally", "customers": ["C1"]})
    engine = Engine(load_settings(allowed_lateness_min=0.05, record_block_min=0.05), live=True)
    with api(data, engine, public_url="https://trace.example") as (url, runtime, app):
        admin = httpx.Client(base_url=url, headers=auth(tokens["admin"]), timeout=30)
        for args in (("S1", SSCC, "C1", "T1", "G1"), ("S2", None, "C2", "T2", "G2")):
            lines = trip(*args)
            answer = admin.post("/v1/events", content=b"\n".join(lines), headers=NDJSON)
            assert answer.json()["accepted"] == len(lines)
        deadline = time.monotonic() + 20  # settled: the excursion is in the records
        while not any(e["alerts"] for e in admin.get(
                "/v1/shipments/S1/record").json()["entries"]):
            assert time.monotonic() < deadline, "the excursion never settled"
            time.sleep(0.2)
        yield url, tokens, data, runtime


def client(server, who: str = "admin") -> httpx.Client:
    return httpx.Client(base_url=server[0], headers=auth(server[1][who]), timeout=30)


def test_the_record_verifies_and_is_anchored(server):
    quality = client(server, "quality")
    body = quality.get("/v1/shipments/S1/record").json()
    assert body["verification"]["intact"] and body["verification"]["first_broken"] is None
    entries = body["entries"]
    assert business_events(entries) and alert_records(entries) and len(readings(entries).ts)
    assert body["verification"]["head"] == body["entries"][-1]["hash"]
    runtime = server[3]
    with runtime.lock:
        runtime.calls.anchors.anchor(runtime.engine.record_heads(), int(time.time() * 1000))
    anchored = quality.get("/v1/shipments/S1/record").json()["anchor"]
    assert anchored["matches_record"]
    assert verify_inclusion(leaf(*anchored["leaf"]), anchored["proof"],
                            anchored["anchor"]["root"])
    assert quality.get("/v1/shipments/NOPE/record").status_code == 404


def test_epcis_export_is_valid_and_capture_feeds_the_engine(server):
    admin = client(server)
    doc = admin.get("/v1/shipments/S1/epcis")
    assert doc.headers["content-type"].startswith("application/ld+json")
    assert list(epcis_validator().iter_errors(doc.json())) == []
    assert doc.json()["epcisBody"]["eventList"][0]["epcList"] == [
        "urn:epc:id:sscc:0614141.1234567890"]
    each = admin.get("/v1/shipments/S1/epcis", params={"readings": "each"}).json()
    capture = {**each, "epcisBody": {"eventList": [
        {**e, "eventTime": at(25), "eventID": e["eventID"] + "-again"}
        for e in each["epcisBody"]["eventList"] if e["bizStep"] == "loading"] + [
        {"type": "AggregationEvent", "eventTime": at(25), "eventTimeZoneOffset": "+00:00"}]}}
    answer = admin.post("/v1/events", content=json.dumps(capture),
                        headers={"content-type": "application/ld+json"}).json()
    assert answer["accepted"] == 1 and answer["rejected"][0]["index"] == 1
    assert "AggregationEvent" in answer["rejected"][0]["reason"]
    again = admin.post("/v1/events", content=json.dumps(capture),
                       headers={"content-type": "application/ld+json"}).json()
    assert again["duplicates"] == 1  # the eventID deduplicates a re-sent capture
    refused = admin.post("/v1/events", content=b'{"type": "EPCISDocument"}',
                         headers={"content-type": "application/ld+json"})
    assert refused.status_code == 400 and "eventList" in refused.json()["error"]


def test_a_trace_link_opens_the_customer_page(server):
    link = client(server, "sales").get("/v1/shipments/S1/trace-link").json()
    assert link["url"].startswith(f"https://trace.example/00/{SSCC}?t=")
    assert link["qr_svg"].startswith("<svg") and link["expires_at"].endswith("Z")
    path = link["url"].removeprefix("https://trace.example")
    page = httpx.get(server[0] + path, headers={"accept-language": "en"})
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "Verified" in page.text and "GDP" in page.text and "kg CO₂e" in page.text
    assert "<script" not in page.text and "http" not in page.text.split("<body>")[1]
    chinese = httpx.get(server[0] + path, headers={"accept-language": "zh-CN,zh;q=0.9,en;q=0.8"})
    assert "已验证" in chinese.text and "温度" in chinese.text
    token = path.split("t=")[1]
    data = httpx.get(f"{server[0]}/trace/{token}", headers={"accept": "application/json"}).json()
    assert data["shipment_id"] == "S1" and data["record"]["intact"]
    assert data["excursions"] and data["excursions"][0]["kind"] == "temperature_excursion"
    assert data["carbon"]["kg_co2e"] > 0 and data["carbon"]["distance_basis"] == "GPS track"
    assert len(data["journey"]) == 21 and data["profile"]["max_c"] == 8
    plain = client(server, "sales").get("/v1/shipments/S2/trace-link").json()
    assert plain["url"].startswith("https://trace.example/trace/")


def test_bad_links_are_refused_with_403(server):
    url, _, data, _ = server
    keys = KeyRing(data)
    good = keys.sign("S1", int(time.time()) + 60)
    other = keys.sign("S2", int(time.time()) + 60)
    expired = keys.sign("S1", int(time.time()) - 1)
    for path in (f"/trace/{good[:-3]}abc", f"/trace/{expired}", "/trace/garbage",
                 f"/trace/{good.split('.')[0]}.{other.split('.')[1]}",
                 f"/00/{SSCC}?t={other}",  # S2's link on S1's parcel
                 f"/00/{SSCC}", f"/trace/{KeyRing(data / 'x').sign('S1', 2 ** 31)}",
                 f"/trace/{keys.sign('NOPE', int(time.time()) + 60)}"):
        page = httpx.get(url + path)
        assert page.status_code == 403 and "cannot be opened" in page.text, path
        as_json = httpx.get(url + path, headers={"accept": "application/json"})
        assert as_json.status_code == 403 and list(as_json.json()) == ["error"]
    assert "expired" in httpx.get(f"{url}/trace/{expired}").text
    assert httpx.get(f"{url}/trace/{good}").status_code == 200
    page = httpx.get(f"{url}/trace/{other}", headers={"accept": "application/json"}).json()
    assert page["shipment_id"] == "S2"


def test_the_schema_comes_from_the_front_end_build():
    assert SCHEMA.is_file(), "run scripts/bootstrap.sh: it installs the front-end packages"
