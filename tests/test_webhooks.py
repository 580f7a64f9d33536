"""Webhooks against real HTTP receivers on 127.0.0.1 (one that answers, one that fails first,
one that always fails, one that never answers) and the real API server."""

from __future__ import annotations

import hashlib
import hmac
import os
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import orjson
import pytest
from api_server import api
from helpers import order, reading

from chainsight.api.auth import TokenStore
from chainsight.api.webhooks import Retry, Webhooks
from chainsight.config import load_settings
from chainsight.engine.core import Engine

NDJSON = {"content-type": "application/x-ndjson"}
FENCES = {"type": "FeatureCollection", "features": [{
    "type": "Feature", "geometry": {"type": "Point", "coordinates": [4.0, 52.0]},
    "properties": {"fence_id": "HUB-1", "kind": "hub", "radius_m": 500}}]}
SECRET = "test-secret-0123456789"
RETRY = Retry(attempts=3, base_s=0.2, timeout_s=1.0)


class Receiver:
    """An HTTP server in a thread. By path prefix: `/fail` answers 500, `/flaky` 500 to a
    delivery's first attempt, `/hang` never answers; anything else 200. Deliveries whose
    signature checks out (with `secrets[path]`, else SECRET) are recorded by path."""

    def __init__(self) -> None:
        self.secrets: dict[str, str] = {}
        self.got: dict[str, list[dict]] = defaultdict(list)
        self.headers: dict[str, list[dict]] = defaultdict(list)
        self.attempts: Counter[str] = Counter()
        self.bad_signatures = 0
        self.release = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                path = self.path
                receiver.attempts[path] += 1
                if path.startswith("/hang"):
                    receiver.release.wait(30)
                    return
                secret = receiver.secrets.get(path, SECRET)
                expected = "sha256=" + hmac.new(secret.encode(), body,
                                                hashlib.sha256).hexdigest()
                if not hmac.compare_digest(self.headers["X-ChainSight-Signature"], expected):
                    receiver.bad_signatures += 1
                    status = 401
                elif path.startswith("/fail") or (path.startswith("/flaky")
                                                  and receiver.attempts[path] % 2 == 1):
                    status = 500
                else:
                    receiver.got[path].append(orjson.loads(body))
                    receiver.headers[path].append(dict(self.headers))
                    status = 200
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def server(tmp_path):
    store = TokenStore(tmp_path)
    tokens = {role: store.create(role, f"{role}-user") for role in
              ("admin", "dispatcher", "quality", "sales", "device")}
    tokens["c1"] = store.create("quality", "carol", customers=["C1"])
    engine = Engine(load_settings(allowed_lateness_min=0.05), live=True)
    with api(tmp_path, engine, fences=FENCES, webhook_retry=RETRY) as (url, runtime, app):
        yield url, tokens, tmp_path, app
        app.state.webhooks.close()


def client(server, who: str = "admin") -> httpx.Client:
    url, tokens, *_ = server
    return httpx.Client(base_url=url, headers={"Authorization": f"Bearer {tokens[who]}"},
                        timeout=30)


def subscribe(server, url: str, who: str = "admin", **body: object) -> dict:
    answer = client(server, who).post("/v1/webhooks", json={"url": url, "secret": SECRET,
                                                            **body})
    assert answer.status_code == 201, answer.text
    return answer.json()


def send(server, shipment: str, customer: str = "C9", minutes: int = 20) -> float:
    """An order and `minutes` above 8 °C: a temperature_excursion (warning) opens at minute
    15, unacknowledged it is escalated at 20 (a notification, critical). The seconds the POST
    took."""
    device = f"T-{shipment}"
    lines = [order(shipment, customer_id=customer, devices=(device,))]
    lines += [reading(m, 5 if m == 0 else 11, device=device) for m in range(minutes + 1)]
    start = time.monotonic()
    answer = client(server).post("/v1/events", content=b"\n".join(lines), headers=NDJSON)
    assert answer.status_code == 200 and answer.json()["accepted"] == len(lines), answer.text
    return time.monotonic() - start


def until(check: Callable[[], object], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def kinds_of(deliveries: list[dict], shipment: str) -> set[str]:
    return {d[d["type"]]["kind"] for d in deliveries if d[d["type"]]["shipment_id"] == shipment}


def metric(server, name: str, webhook: str) -> float:
    text = httpx.get(server[0] + "/metrics").text
    prefix = f'chainsight_webhook_{name}{{webhook="{webhook}"}} '
    return next(float(m.removeprefix(prefix)) for m in text.splitlines()
                if m.startswith(prefix))


def one_line_error(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert list(body) == ["error"] and "\n" not in body["error"] and body["error"]
    return body["error"]


def test_roles(server, receiver):
    for role, status in (("admin", 201), ("quality", 201), ("dispatcher", 403),
                         ("sales", 403), ("device", 403)):
        answer = client(server, role).post("/v1/webhooks", json={"url": receiver.url + "/x"})
        assert answer.status_code == status, (role, answer.text)
        listed = client(server, role).get("/v1/webhooks")
        assert listed.status_code == (200 if status == 201 else 403), role
    assert "role dispatcher" in one_line_error(
        client(server, "dispatcher").delete("/v1/webhooks/abc"), 403)
    one_line_error(httpx.get(server[0] + "/v1/webhooks"), 401)


@pytest.mark.parametrize("body,status,says", [
    ({"url": "ftp://example.com/x"}, 422, "url"),
    ({"url": "not a url"}, 422, "url"),
    ({"url": "http://127.0.0.1:9/x", "kinds": ["fire"]}, 422, "kinds"),
    ({"url": "http://127.0.0.1:9/x", "min_severity": "huge"}, 422, "min_severity"),
    ({"url": "http://127.0.0.1:9/x", "min_severity": "info", "severities": ["info"]}, 422,
     "not both"),
    ({"url": "http://127.0.0.1:9/x", "secret": "short"}, 422, "secret"),
    ({"url": "http://127.0.0.1:9/x", "colour": "red"}, 422, "colour"),
    ({}, 422, "url"),
    (b"{nope", 400, "malformed JSON"),
])
def test_bad_bodies_are_refused_on_one_line(server, body, status, says):
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    answer = client(server).post("/v1/webhooks", content=content,
                                 headers={"content-type": "application/json"})
    assert says in one_line_error(answer, status)
    assert client(server).get("/v1/webhooks").json() == []


def test_subscriptions_persist_without_showing_secrets(server, receiver):
    created = client(server).post("/v1/webhooks", json={"url": receiver.url + "/gen"}).json()
    assert len(created["secret"]) >= 32
    given = subscribe(server, receiver.url + "/given", min_severity="warning")
    assert given["severities"] == ["warning", "critical"] and given["secret"] == SECRET
    listed = client(server).get("/v1/webhooks").json()
    assert {w["id"] for w in listed} == {created["id"], given["id"]}
    assert all("secret" not in w for w in listed)
    path = server[2] / "webhooks.json"
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert created["secret"] in path.read_text() and SECRET in path.read_text()
    assert client(server).delete(f"/v1/webhooks/{created['id']}").status_code == 204
    assert [w["id"] for w in client(server).get("/v1/webhooks").json()] == [given["id"]]
    assert created["id"] not in path.read_text()
    one_line_error(client(server).delete(f"/v1/webhooks/{created['id']}"), 404)
    reloaded = Webhooks(server[2], RETRY)  # as at a restart
    assert [(e.sub.id, e.sub.secret) for e in reloaded.endpoints.values()] == [
        (given["id"], SECRET)]
    reloaded.close()


def test_deliveries_are_signed_and_filtered(server, receiver):
    generated = client(server).post("/v1/webhooks", json={
        "url": receiver.url + "/gen", "kinds": ["temperature_excursion", "sensor_silent"]}).json()
    receiver.secrets["/gen"] = generated["secret"]
    warnings = subscribe(server, receiver.url + "/warn", severities=["info", "warning"])
    subscribe(server, receiver.url + "/geo", kinds=["geofence_enter"])
    subscribe(server, receiver.url + "/critical", min_severity="critical")
    send(server, "S1")
    until(lambda: receiver.got["/gen"] and receiver.got["/warn"])
    time.sleep(0.3)
    assert kinds_of(receiver.got["/gen"], "S1") == {"temperature_excursion"}
    assert kinds_of(receiver.got["/warn"], "S1") == {"temperature_excursion"}
    assert receiver.attempts["/geo"] == receiver.attempts["/critical"] == 0
    assert receiver.bad_signatures == 0
    first = receiver.got["/warn"][0]
    assert first["webhook_id"] == warnings["id"] and first["type"] == "alert"
    ids = [h["X-ChainSight-Delivery"] for hs in receiver.headers.values() for h in hs]
    assert len(set(ids)) == len(ids) == 2 and first["delivery_id"] in ids
    assert metric(server, "deliveries_total", warnings["id"]) == len(receiver.got["/warn"])


def test_notifications_are_delivered_too(server, receiver):
    subscribe(server, receiver.url + "/critical", min_severity="critical")
    subscribe(server, receiver.url + "/all")
    send(server, "S1", minutes=25)
    until(lambda: receiver.got["/critical"] and len(receiver.got["/all"]) >= 2, 10)
    (note,) = receiver.got["/critical"]
    assert note["type"] == "notification" and note["notification"]["shipment_id"] == "S1"
    assert note["notification"]["details"]["transition"] == "escalated"
    assert {(d["type"], d[d["type"]]["severity"]) for d in receiver.got["/all"]} == {
        ("alert", "warning"), ("notification", "critical")}


def test_a_failed_delivery_is_retried(server, receiver):
    hook = subscribe(server, receiver.url + "/flaky")
    send(server, "S1")
    until(lambda: receiver.got["/flaky"])
    assert receiver.attempts["/flaky"] == 2
    assert kinds_of(receiver.got["/flaky"], "S1") == {"temperature_excursion"}
    assert metric(server, "failures_total", hook["id"]) == 1
    assert metric(server, "deliveries_total", hook["id"]) == 1
    assert metric(server, "dead_lettered_total", hook["id"]) == 0


def test_a_delivery_always_refused_is_dead_lettered(server, receiver):
    hook = subscribe(server, receiver.url + "/fail")
    send(server, "S1")
    dead = server[2] / "webhooks-dead.jsonl"
    until(lambda: dead.exists() and dead.read_bytes().endswith(b"\n"))  # created, then written
    (entry,) = [orjson.loads(line) for line in dead.read_bytes().splitlines()]
    assert receiver.attempts["/fail"] == RETRY.attempts
    assert entry["webhook_id"] == hook["id"] and entry["reason"] == "HTTP 500"
    assert entry["attempts"] == RETRY.attempts and entry["alert"]["shipment_id"] == "S1"
    assert os.stat(dead).st_mode & 0o777 == 0o600
    assert metric(server, "dead_lettered_total", hook["id"]) == 1
    assert metric(server, "failures_total", hook["id"]) == RETRY.attempts
    assert metric(server, "deliveries_total", hook["id"]) == 0


def test_a_hanging_receiver_slows_neither_the_engine_nor_other_endpoints(server, receiver):
    hung = subscribe(server, receiver.url + "/hang")
    subscribe(server, receiver.url + "/ok")
    for n in range(5):
        took = send(server, f"S{n}")
        assert took < 0.5, took
        start = time.monotonic()
        until(lambda n=n: kinds_of(receiver.got["/ok"], f"S{n}"), 1.0)
        assert time.monotonic() - start < 1.0
        time.sleep(0.2)
    assert receiver.attempts["/hang"] >= 1
    assert metric(server, "queue", hung["id"]) >= 1
    until(lambda: metric(server, "failures_total", hung["id"]) >= 1)


def test_a_customer_scoped_webhook_gets_only_its_customers_alerts(server, receiver):
    mine = subscribe(server, receiver.url + "/c1", who="c1")
    theirs = subscribe(server, receiver.url + "/all")
    assert mine["customers"] == ["C1"]
    send(server, "S1", customer="C1")
    send(server, "S2", customer="C2")
    until(lambda: {"S1", "S2"} <= {d["alert"]["shipment_id"] for d in receiver.got["/all"]})
    time.sleep(0.3)
    assert {d["alert"]["shipment_id"] for d in receiver.got["/c1"]} == {"S1"}
    assert [w["id"] for w in client(server, "c1").get("/v1/webhooks").json()] == [mine["id"]]
    one_line_error(client(server, "c1").delete(f"/v1/webhooks/{theirs['id']}"), 404)
