"""`POST /v1/ask` against a real server, called with a real HTTP client: answers match the
filters of the other routes, roles and customer scope hold, bad input is a clear 4xx or a
question not understood, never a 500."""

from __future__ import annotations

import httpx
import pytest
from api_server import api, auth, eventually, kafka_api, role_tokens
from helpers import at, fix, order, reading

from chainsight.api.auth import ROLES
from chainsight.engine.core import Engine

NDJSON = {"content-type": "application/x-ndjson"}
FENCES = {"type": "FeatureCollection", "features": [{
    "type": "Feature", "geometry": {"type": "Point", "coordinates": [4.0, 52.0]},
    "properties": {"fence_id": "HUB-1", "name": "Hub Rotterdam Waalhaven", "kind": "hub",
                   "radius_m": 500}}]}


def trip(shipment: str, customer: str, profile: str, temps: tuple[float, float], lat: float,
         temp_device: str, gps_device: str) -> list[bytes]:
    """An order, then 20 minutes of readings (the first one in range) and GPS fixes."""
    lines = [order(shipment, customer_id=customer, profile=profile,
                   devices=(temp_device, gps_device))]
    for minute in range(21):
        lines.append(reading(minute, temps[0] if minute == 0 else temps[1], temp_device))
        lines.append(fix(minute, lat, 4.0, gps_device))
    return lines


@pytest.fixture(scope="module", params=["embedded", "kafka"])
def server(request, tmp_path_factory):
    """The API over the embedded runtime, or over Kafka with a real worker (`serve --kafka`)."""
    data = tmp_path_factory.mktemp("data")
    tokens = role_tokens(data, c1={"role": "sales", "name": "carol", "customers": ["C1"]})
    serving = kafka_api(data, FENCES) if request.param == "kafka" \
        else api(data, Engine(live=True), fences=FENCES)
    with serving as (url, _, app):
        admin = httpx.Client(base_url=url, headers=auth(tokens["admin"]), timeout=30)
        lines = (trip("SHP-000001", "C1", "pharma_2_8", (5, 11), 52.0, "T1", "G1")
                 + trip("SHP-000002", "C2", "frozen", (-20, -10), 40.0, "T2", "G2")
                 + trip("SHP-000003", "C2", "ambient", (20, 20), 45.0, "T3", "G3"))
        answer = admin.post("/v1/events", content=b"\n".join(lines), headers=NDJSON)
        assert answer.json()["accepted"] == len(lines)
        backend = app.state.context.backend  # on Kafka: once the worker has processed them
        eventually(lambda: all(s["last_seen"] == at(20) for s in backend.shipments().values())
                   and len(backend.shipments()) == 3 and backend.alerts())
        yield url, tokens


def ask(server, question: object, who: str = "admin", **body) -> httpx.Response:
    url, tokens = server
    return httpx.post(url + "/v1/ask", json={"q": question, **body},
                      headers=auth(tokens[who]), timeout=30)


def refused(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert list(body) == ["error"] and "\n" not in body["error"] and body["error"]
    return body["error"]


def test_roles_that_read_shipments_may_ask(server):
    url, tokens = server
    for role in ROLES:
        response = ask(server, "how many shipments are there?", role)
        if role == "device":
            assert "role device" in refused(response, 403)
        else:
            assert response.status_code == 200 and response.json()["count"] == 3, role
    refused(httpx.post(url + "/v1/ask", json={"q": "hi"}), 401)
    refused(httpx.post(url + "/v1/ask", json={"q": "hi"}, headers=auth("cs_nope")), 401)


def test_answers_are_what_the_filters_give(server):
    url, tokens = server
    admin = httpx.Client(base_url=url, headers=auth(tokens["admin"]), timeout=30)
    listed = admin.get("/v1/alerts", params={"kind": "temperature_excursion",
                                             "state": "open"}).json()
    got = ask(server, "how many temperature alerts are open?").json()
    assert got["understood"] and got["count"] == len(listed) == 2
    assert sorted(got["shipment_ids"]) == sorted(a["shipment_id"] for a in listed)
    assert got["interpretation"]["filters"] == {"kind": ["temperature_excursion"],
                                                "state": ["open"]}
    cold = ask(server, "哪些冷链订单现在温度异常?").json()
    assert cold["shipment_ids"] == ["SHP-000001", "SHP-000002"]
    assert cold["answer"].startswith("共 2 个订单")
    frozen = ask(server, "冷冻货有温度超标的吗").json()
    assert frozen["shipment_ids"] == ["SHP-000002"]
    transit = admin.get("/v1/shipments", params={"status": "in_transit"}).json()
    assert ask(server, "how many shipments are in transit").json()["count"] == len(transit)


def test_places_times_status_and_temperature_history(server):
    near = ask(server, "which shipments are at the Rotterdam hub?").json()
    assert near["shipment_ids"] == ["SHP-000001"]
    assert near["interpretation"]["filters"] == {"place": ["HUB-1"]}
    today = ask(server, "how many alerts today?").json()  # the stream's day: 2026-11-20
    assert today["interpretation"]["time_range"]["from"] == "2026-11-20T00:00:00Z"
    assert today["count"] == 2
    status = ask(server, "SHP-000001 什么时候到?").json()
    assert status["shipment_ids"] == ["SHP-000001"] and status["count"] == 1
    assert "运输中" in status["answer"] or "in transit" in status["answer"]
    history = ask(server, "temperature history of SHP-000002").json()
    assert history["shipment_ids"] == ["SHP-000002"]
    assert "21 temperature readings" in history["answer"] and "-10" in history["answer"]


def test_customer_tokens_are_answered_from_their_shipments_only(server):
    mine = ask(server, "how many shipments are there?", "c1").json()
    assert (mine["count"], mine["shipment_ids"]) == (1, ["SHP-000001"])
    alerts = ask(server, "list all temperature alerts", "c1").json()
    assert alerts["shipment_ids"] == ["SHP-000001"]
    hidden = ask(server, "where is SHP-000002?", "c1").json()
    unknown = ask(server, "where is SHP-000009?", "c1").json()
    assert hidden["shipment_ids"] == [] and hidden["count"] == 0
    assert hidden["answer"].replace("000002", "") == unknown["answer"].replace("000009", "")


@pytest.mark.parametrize("question", [
    "🚚🚀🔥" * 10, "'; DROP TABLE shipments; --", "SELECT * FROM alerts WHERE 1=1",
    "<script>alert(1)</script>", "\u0000\u202e", "   ?   ", "明天上海天气怎么样"])
def test_nonsense_is_a_question_not_understood(server, question):
    got = ask(server, question).json()
    assert got["understood"] is False and got["shipment_ids"] == [] and got["count"] == 0
    assert got["answer"]


def test_bad_requests_are_clear_4xx(server):
    url, tokens = server
    headers = {**auth(tokens["admin"]), "content-type": "application/json"}

    def post(content: bytes) -> httpx.Response:
        return httpx.post(url + "/v1/ask", content=content, headers=headers, timeout=30)

    assert "q" in refused(ask(server, ""), 422)
    assert "500" in refused(ask(server, "how many alerts " * 700), 422)  # 10 KB of text
    refused(post(b"x" * 100_000), 413)
    refused(post(b"{"), 400)
    refused(post(b"\xff\xfe{}"), 400)
    refused(post(b"[]"), 422)
    refused(post(b'{"question": "hi"}'), 422)
    refused(ask(server, 5), 422)
    refused(ask(server, None), 422)
    assert "tz" in refused(ask(server, "alerts today", tz="Mars/Olympus"), 422)
    assert ask(server, "alerts today", tz="Asia/Shanghai").status_code == 200
