"""The HTTP API against a real uvicorn server, called with a real HTTP client (httpx)."""

from __future__ import annotations

import subprocess
import sys
import time

import httpx
import orjson
import pytest
from api_server import api, auth, eventually, kafka_api, role_tokens
from helpers import at, fix, line, order, reading

from chainsight.api.auth import RIGHTS, ROLES
from chainsight.api.kafka import KafkaBackend
from chainsight.config import load_settings
from chainsight.contract.events import EventDecoder
from chainsight.engine.core import Engine

NDJSON = {"content-type": "application/x-ndjson"}
FENCES = {"type": "FeatureCollection", "features": [{
    "type": "Feature", "geometry": {"type": "Point", "coordinates": [4.0, 52.0]},
    "properties": {"fence_id": "HUB-1", "kind": "hub", "radius_m": 500}}]}


def excursion(shipment: str, customer: str, temp_device: str, gps_device: str,
              lat: float = 52.0, lon: float = 4.0) -> list[bytes]:
    """An order, then 20 minutes above 8 °C (an excursion opens at 15) with GPS fixes along."""
    lines = [order(shipment, customer_id=customer, devices=(temp_device, gps_device))]
    for minute in range(21):
        lines.append(reading(minute, 5 if minute == 0 else 11, device=temp_device))
        lines.append(fix(minute, lat, lon, device=gps_device))
    return lines


@pytest.fixture(scope="module", params=["embedded", "kafka"])
def server(request, tmp_path_factory):
    """The API over the embedded runtime, or over Kafka with a real worker (`serve --kafka`)."""
    data = tmp_path_factory.mktemp("data")
    tokens = role_tokens(data, c1={"role": "quality", "name": "carol", "customers": ["C1"]},
                         bound={"role": "device", "name": "truck-1", "devices": ["T1", "G1"]})
    if request.param == "kafka":
        serving = kafka_api(data, FENCES, lateness_min=0.05)
    else:
        engine = Engine(load_settings(allowed_lateness_min=0.05), live=True)  # settles in 3 s
        serving = api(data, engine, fences=FENCES)
    with serving as (url, _, app):
        backend = app.state.context.backend
        admin = httpx.Client(base_url=url, headers=auth(tokens["admin"]), timeout=30)
        for shipment, customer, t, g, lat in (("S1", "C1", "T1", "G1", 52.0),
                                              ("S2", "C2", "T2", "G2", 40.0)):
            lines = excursion(shipment, customer, t, g, lat)
            answer = admin.post("/v1/events", content=b"\n".join(lines), headers=NDJSON)
            assert answer.json() == {"accepted": len(lines), "duplicates": 0, "rejected": []}
        eventually(lambda: len(backend.alerts(kind="temperature_excursion")) == 2)
        yield url, tokens, data, backend


def on_kafka(server) -> bool:
    return isinstance(server[3], KafkaBackend)


def client(server, who: str = "admin") -> httpx.Client:
    url, tokens, *_ = server
    return httpx.Client(base_url=url, headers=auth(tokens[who]), timeout=30)


def alert_of(server, shipment: str) -> dict:
    (alert,) = client(server).get("/v1/alerts", params={
        "shipment_id": shipment, "kind": "temperature_excursion"}).json()
    return alert


def refused(response: httpx.Response, status: int) -> str:
    """The one-line error of a refusal with this status."""
    assert response.status_code == status, response.text
    body = response.json()
    assert list(body) == ["error"] and "\n" not in body["error"] and body["error"]
    return body["error"]


# --- roles -------------------------------------------------------------------------------

ROUTES = [  # (method, path, right); bodies are refused or harmless for the roles allowed
    ("POST", "/v1/events", "events:write"),
    ("GET", "/v1/shipments", "shipments:read"),
    ("GET", "/v1/shipments/S2", "shipments:read"),
    ("GET", "/v1/alerts", "alerts:read"),
    ("POST", "/v1/alerts/unknown/acknowledge", "alerts:act"),
    ("POST", "/v1/alerts/unknown/resolve", "alerts:act"),
    ("GET", "/v1/alerts/unknown/audit", "alerts:act"),
    ("GET", "/v1/fences", "fences:read"),
    ("PUT", "/v1/fences", "fences:write"),
    ("GET", "/v1/webhooks", "webhooks"),
    ("DELETE", "/v1/webhooks/unknown", "webhooks"),
    ("GET", "/v1/shipments/S2/record", "records:read"),
    ("GET", "/v1/shipments/S2/epcis", "records:read"),
    ("GET", "/v1/shipments/S2/trace-link", "trace-link"),
]


@pytest.mark.parametrize("method,path,right", ROUTES)
def test_every_route_follows_the_roles_table(server, method, path, right):
    url, tokens, *_ = server
    body = {"POST": b"[]", "PUT": orjson.dumps(FENCES)}.get(method)
    if "/alerts/" in path and method == "POST":
        body = b'{"comment": "checked"}'
    for role in ROLES:
        response = httpx.request(method, url + path, content=body, headers={
            **auth(tokens[role]), "content-type": "application/json"})
        if role in RIGHTS[right]:
            assert response.status_code in (200, 404), (role, response.text)
        else:
            assert f"role {role}" in refused(response, 403)
    refused(httpx.request(method, url + path, content=body), 401)
    refused(httpx.request(method, url + path, content=body, headers=auth("cs_nope")), 401)
    refused(httpx.request(method, url + path, content=body,
                          headers={"Authorization": "Basic abc"}), 401)


def test_open_routes_need_no_token(server):
    url = server[0]
    assert httpx.get(url + "/healthz").json() == {"status": "ok"}
    assert httpx.get(url + "/docs").status_code == 200
    spec = httpx.get(url + "/openapi.json").json()
    assert {"/v1/events", "/v1/shipments", "/v1/alerts/{alert_id}/resolve",
            "/v1/fences"} <= set(spec["paths"])
    metrics = httpx.get(url + "/metrics").text
    assert 'chainsight_open_alerts{kind="temperature_excursion"}' in metrics
    events = next(float(m.split()[1]) for m in metrics.splitlines()
                  if m.startswith("chainsight_events_total "))
    assert events >= 86
    refused(httpx.get(url + "/nowhere"), 404)


def test_the_admin_token_from_the_environment(server, monkeypatch):
    monkeypatch.setenv("CHAINSIGHT_ADMIN_TOKEN", "s3cret-admin")
    url = server[0]
    assert httpx.get(url + "/v1/fences", headers=auth("s3cret-admin")).status_code == 200
    refused(httpx.get(url + "/v1/fences", headers=auth("s3cret-admin-not")), 401)


def test_token_cli_prints_the_token_alone_and_stores_only_its_hash(server):
    url, _, data, _ = server
    run = subprocess.run([sys.executable, "-m", "chainsight.cli", "token", "create", "--role",
                          "sales", "--name", "sam", "--data-dir", str(data)],
                         capture_output=True, text=True, check=True)
    token = run.stdout.strip()
    assert run.stdout == token + "\n" and token not in (data / "tokens.json").read_text()
    assert httpx.get(url + "/v1/shipments", headers=auth(token)).status_code == 200
    refused(httpx.get(url + "/v1/fences", headers=auth(token)), 403)  # sales
    subprocess.run([sys.executable, "-m", "chainsight.cli", "token", "revoke", "sam",
                    "--data-dir", str(data)], check=True)
    refused(httpx.get(url + "/v1/shipments", headers=auth(token)), 401)


# --- events ------------------------------------------------------------------------------

def test_events_answer_per_event_with_the_engines_reasons(server):
    admin = client(server)
    good = {"type": "gps", "device_id": "G9", "ts": at(30), "lat": 10.0, "lon": 10.0}
    bad = {"type": "gps", "device_id": "G9", "ts": at(31), "lat": 100.0, "lon": 10.0}
    answer = admin.post("/v1/events", json=[good, bad, {"type": "scan"}, 7]).json()
    assert answer["accepted"] == 1 and answer["duplicates"] == 0
    decoder = EventDecoder()
    assert answer["rejected"] == [
        {"index": i, "reason": decoder.decode_many([orjson.dumps(e)])[1][0]["reason"]}
        for i, e in ((1, bad), (2, {"type": "scan"}), (3, 7))]
    duplicates = server[3].metrics()["duplicates"]
    again = admin.post("/v1/events", json=[good]).json()
    if on_kafka(server):  # stored; its partition's engine finds it a duplicate, and counts it
        assert again == {"accepted": 1, "duplicates": 0, "rejected": []}
        eventually(lambda: server[3].metrics()["duplicates"] == duplicates + 1)
    else:
        assert again == {"accepted": 0, "duplicates": 1, "rejected": []}


def test_ndjson_indexes_count_non_empty_lines(server):
    body = b"\n\n" + line(type="gps", device_id="G8", ts=at(1), lat=1, lon=1) + b"\n\r\n" \
        + b'{"type": "gps", NaN}\n' + line(type="gps", device_id="G8", ts=at(2), lat=1, lon=1)
    answer = client(server).post("/v1/events", content=body, headers=NDJSON).json()
    assert answer["accepted"] == 2
    assert [r["index"] for r in answer["rejected"]] == [1]
    assert answer["rejected"][0]["reason"].startswith("malformed JSON")


def test_bad_bodies_are_4xx_never_500(server):
    admin = client(server)
    refused(admin.post("/v1/events", content=b"[{", headers={"content-type":
                                                            "application/json"}), 400)
    refused(admin.post("/v1/events", json={"type": "gps"}), 400)  # not an array
    refused(admin.post("/v1/events", content=b"[" * 100_000 + b"]" * 100_000), 400)
    deep = {"type": "gps", "device_id": "G7", "ts": at(3), "lat": 1, "lon": 1, "x": []}
    node = deep["x"]
    for _ in range(200):
        node.append([])
        node = node[0]
    answer = admin.post("/v1/events", json=[deep]).json()  # an unknown field, deeply nested
    assert answer["accepted"] + len(answer["rejected"]) == 1
    refused(admin.post("/v1/events", content=b"x", headers={
        "content-type": "application/ld+json"}), 400)
    assert "EPCISDocument" in refused(admin.post("/v1/events", json=[], headers={
        "content-type": "application/ld+json"}), 400)
    refused(admin.put("/v1/fences", content=b"{"), 400)
    refused(admin.put("/v1/fences", json=[1]), 422)
    assert "feature 0" in refused(admin.put("/v1/fences", json={
        "type": "FeatureCollection", "features": [{}]}), 422)
    refused(admin.get("/v1/shipments", params={"bbox": "1,2,3"}), 400)
    refused(admin.get("/v1/shipments", params={"bbox": "1,2,nan,4"}), 400)
    refused(admin.get("/v1/shipments", params={"has_alerts": "maybe"}), 422)
    refused(admin.post("/v1/alerts/x/resolve", json={"comment": 5}), 422)
    refused(admin.post("/v1/alerts/x/resolve", content=b"{", headers={
        "content-type": "application/json"}), 400)


def test_a_body_beyond_10_mib_is_413_whatever_its_declared_length(server):
    admin = client(server)
    big = b"[" + b" " * (10 * 1024 * 1024) + b"]"
    refused(admin.post("/v1/events", content=big), 413)

    def chunks():  # no Content-Length: chunked transfer
        for _ in range(11):
            yield b" " * (1024 * 1024)

    refused(admin.post("/v1/events", content=chunks()), 413)


def test_device_tokens_send_only_their_devices_events(server):
    bound = client(server, "bound")
    mine = {"type": "gps", "device_id": "G1", "ts": at(22), "lat": 52.0, "lon": 4.0}
    other = {"type": "gps", "device_id": "G2", "ts": at(22), "lat": 40.0, "lon": 4.0}
    scan = {"type": "scan", "shipment_id": "S2", "ts": at(22), "site_id": "X",
            "step": "delivered"}
    answer = bound.post("/v1/events", json=[other, mine, scan]).json()
    assert answer["accepted"] == 1
    assert [r["index"] for r in answer["rejected"]] == [0, 2]
    assert "G2" in answer["rejected"][0]["reason"]
    refused(bound.get("/v1/shipments"), 403)


# --- shipments -----------------------------------------------------------------------------

def test_shipments_list_and_filters(server):
    admin = client(server)
    listed = {s["shipment_id"]: s for s in admin.get("/v1/shipments").json()}
    assert {"S1", "S2"} <= set(listed)
    s1 = listed["S1"]
    assert s1["status"] == "in_transit" and s1["profile"] == "pharma_2_8"
    assert s1["last_temp_c"] == 11 and s1["last_seen"] >= at(20) and s1["open_alerts"]

    def ids(**params):
        return {s["shipment_id"] for s in admin.get("/v1/shipments", params=params).json()}

    assert ids(bbox="3,51,5,53") == {"S1"}
    assert ids(bbox="3,39,5,41") == {"S2"}
    assert {"S1", "S2"} <= ids(has_alerts="true")
    assert not {"S1", "S2"} & ids(has_alerts="false")
    assert ids(profile="frozen") == set()
    assert {"S1", "S2"} <= ids(status="in_transit")


def test_a_shipment_with_its_recent_history(server):
    s1 = client(server).get("/v1/shipments/S1").json()
    assert s1["shipment_id"] == "S1"
    history = s1["history"]
    assert history[0]["type"] == "order" and history[0]["customer_id"] == "C1"
    assert all(e.get("device_id") in ("T1", "G1", None) for e in history)
    assert history[-1]["ts"] >= history[1]["ts"]  # newest last
    refused(client(server).get("/v1/shipments/NOPE"), 404)


# --- alerts --------------------------------------------------------------------------------

def test_alerts_list_newest_first_and_filters(server):
    admin = client(server)
    alerts = admin.get("/v1/alerts").json()
    assert [a["at"] for a in alerts] == sorted((a["at"] for a in alerts), reverse=True)
    assert admin.get("/v1/alerts", params={"kind": "no_such_kind"}).json() == []
    excursions = admin.get("/v1/alerts", params={"kind": "temperature_excursion"}).json()
    assert {a["shipment_id"] for a in excursions} == {"S1", "S2"}
    assert all(a["provisional"] in (True, False) for a in excursions)


def test_acknowledge_and_resolve_are_recorded_with_the_users_name(server):
    quality = client(server, "quality")
    alert = alert_of(server, "S2")
    aid = alert["alert_id"]
    record = quality.post(f"/v1/alerts/{aid}/acknowledge", json={"comment": "on it"}).json()
    assert record["state"] == "acknowledged" and record["details"]["user"] == "quality-user"
    assert record["details"]["comment"] == "on it"
    assert alert_of(server, "S2")["state"] == "acknowledged"
    # the audit trail shows it before event time settles it (3 s of allowed lateness)
    last = eventually(lambda: (t := quality.get(f"/v1/alerts/{aid}/audit").json())
                      and t[-1]["state"] == "acknowledged" and t[-1], timeout=1.5)
    assert last["provisional"] is True and last["details"]["user"] == "quality-user"
    assert "acknowledged" in refused(quality.post(f"/v1/alerts/{aid}/acknowledge"), 409)
    refused(quality.post(f"/v1/alerts/{aid}/resolve", json={}), 422)
    refused(quality.post(f"/v1/alerts/{aid}/resolve", json={"comment": ""}), 422)
    record = quality.post(f"/v1/alerts/{aid}/resolve", json={"comment": "reefer fixed"}).json()
    assert record["state"] == "resolved" and record["details"]["user"] == "quality-user"
    refused(quality.post(f"/v1/alerts/{aid}/resolve", json={"comment": "again"}), 409)
    refused(quality.post("/v1/alerts/0000/acknowledge"), 404)
    refused(quality.get("/v1/alerts/0000/audit"), 404)
    deadline = time.monotonic() + 15  # the audit trail is written as the actions settle
    while True:
        trail = quality.get(f"/v1/alerts/{aid}/audit").json()
        users = [entry["details"].get("user") for entry in trail]
        if users.count("quality-user") >= 2 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert users.count("quality-user") == 2, trail


# --- customer scope ------------------------------------------------------------------------

def test_customer_tokens_see_only_their_customers(server):
    carol = client(server, "c1")
    assert {s["shipment_id"] for s in carol.get("/v1/shipments").json()} == {"S1"}
    assert carol.get("/v1/shipments/S1").status_code == 200
    assert {a["shipment_id"] for a in carol.get("/v1/alerts").json()} == {"S1"}
    other = alert_of(server, "S2")["alert_id"]
    for response in (carol.get("/v1/shipments/S2"),
                     carol.get(f"/v1/alerts/{other}/audit"),
                     carol.post(f"/v1/alerts/{other}/acknowledge"),
                     carol.post(f"/v1/alerts/{other}/resolve", json={"comment": "x"}),
                     carol.get("/v1/shipments/S2/record"), carol.get("/v1/shipments/S2/epcis"),
                     carol.get("/v1/shipments/S2/trace-link")):
        refused(response, 404)  # as for an id that does not exist: existence not revealed
    assert carol.get("/v1/alerts", params={"shipment_id": "S2"}).json() == []
    mine = alert_of(server, "S1")["alert_id"]
    assert carol.get(f"/v1/alerts/{mine}/audit").status_code == 200


# --- fences --------------------------------------------------------------------------------

def test_fences_are_shown_and_replaced_live(server):
    admin, published = client(server), []
    server[3].subscribe(lambda out: published.extend(out.alerts))  # the live alert stream
    assert admin.get("/v1/fences").json() == FENCES
    new = {"type": "FeatureCollection", "features": [{
        "type": "Feature", "geometry": {"type": "Point", "coordinates": [4.0, 40.0]},
        "properties": {"fence_id": "HUB-2", "kind": "hub", "radius_m": 500}}]}
    answer = admin.put("/v1/fences", json=new).json()
    assert answer["fences"] == 1 and answer["version"] >= 1
    assert client(server, "dispatcher").get("/v1/fences").json() == new
    answer = admin.post("/v1/events", json=[  # S2's truck, already inside the new fence
        {"type": "gps", "device_id": "G2", "ts": at(23), "lat": 40.0, "lon": 4.0}]).json()
    assert answer["accepted"] == 1
    eventually(lambda: any("fence_id" in a for a in published))
    assert [(a["kind"], a["fence_id"]) for a in published if "fence_id" in a] \
        == [("geofence_enter", "HUB-2")]
