"""The websocket channels against a real uvicorn server, with real `websockets` clients."""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import time

import httpx
import orjson
import pytest
from api_server import api, eventually, kafka_api
from helpers import at, fix, order, reading
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from chainsight.api.auth import TokenStore

NDJSON = {"content-type": "application/x-ndjson"}


@pytest.fixture(scope="module", params=["embedded", "kafka"])
def server(request, tmp_path_factory):
    """The API over the embedded runtime, or over Kafka with a real worker (`serve --kafka`)."""
    data = tmp_path_factory.mktemp("data")
    store = TokenStore(data)
    tokens = {"admin": store.create("admin", "root"), "sales": store.create("sales", "sam"),
              "c1": store.create("dispatcher", "dan", customers=["C1"]),
              "device": store.create("device", "truck")}
    serving = kafka_api if request.param == "kafka" else api
    with serving(data, keepalive_s=0.5) as (url, _, app):
        yield url, tokens, app


def post(server, lines: list[bytes]) -> dict:
    url, tokens, _ = server
    answer = httpx.post(url + "/v1/events", content=b"\n".join(lines), timeout=30,
                        headers={**NDJSON, "Authorization": f"Bearer {tokens['admin']}"})
    assert answer.status_code == 200, answer.text
    return answer.json()


def ws_url(server, path: str, who: str = "admin", **query: str) -> str:
    url, tokens, _ = server
    params = "&".join(f"{k}={v}" for k, v in {"token": tokens[who], **query}.items())
    return url.replace("http", "ws", 1) + f"{path}?{params}"


async def next_of(ws, kind: str, timeout: float = 5.0) -> dict:
    """The next message of this type (keepalives and others skipped)."""
    deadline = time.monotonic() + timeout
    while True:
        message = orjson.loads(await asyncio.wait_for(ws.recv(), deadline - time.monotonic()))
        if message["type"] == kind:
            return message


def test_snapshot_then_updates_alerts_and_keepalives(server):
    post(server, [order("L1", customer_id="C1", devices=("LT1", "LG1")),
                  fix(0, 52.0, 4.0, device="LG1"),
                  order("L2", customer_id="C2", devices=("LT2", "LG2")),
                  fix(0, 40.0, 4.0, device="LG2")])
    backend = server[2].state.context.backend
    eventually(lambda: len(backend.shipments(["L1", "L2"])) == 2)  # on Kafka: once processed

    async def scenario():
        async with connect(ws_url(server, "/v1/live")) as ws, \
                connect(ws_url(server, "/v1/live", bbox="3,51,5,53")) as boxed, \
                connect(ws_url(server, "/v1/live", "c1")) as scoped, \
                connect(ws_url(server, "/v1/alerts/live", "sales")) as alerts:
            snapshot = await next_of(ws, "snapshot")
            assert {"L1", "L2"} <= {s["shipment_id"] for s in snapshot["shipments"]}
            assert {s["shipment_id"] for s in (await next_of(boxed, "snapshot"))["shipments"]} \
                == {"L1"}
            assert {s["shipment_id"] for s in (await next_of(scoped, "snapshot"))["shipments"]} \
                == {"L1"}
            await next_of(ws, "keepalive", 2)
            readings = [reading(m, 11, device="LT2") for m in range(17)]
            readings += [fix(m, 40.0, 4.0, device="LG2") for m in range(1, 17)]
            post(server, readings)  # L2: an excursion opens at minute 15
            while True:  # on Kafka the worker may take the readings in several batches
                update = await next_of(ws, "update")
                (l2,) = [s for s in update["shipments"] if s["shipment_id"] == "L2"] or [None]
                if l2 is not None and l2["last_seen"] == at(16):
                    break
            assert l2["last_temp_c"] == 11
            alert = (await next_of(ws, "alert"))["alert"]
            assert (alert["kind"], alert["shipment_id"]) == ("temperature_excursion", "L2")
            assert (await next_of(alerts, "alert"))["alert"]["alert_id"] == alert["alert_id"]
            post(server, [fix(17, 52.0, 4.1, device="LG1")])
            seen = [s["shipment_id"] for s in (await next_of(boxed, "update"))["shipments"]]
            assert seen == ["L1"]  # L2's update and alert never reached the bbox client
            seen = [s["shipment_id"] for s in (await next_of(scoped, "update"))["shipments"]]
            assert seen == ["L1"]  # nor the other customer's client

    asyncio.run(scenario())


def test_websockets_need_a_token_with_the_right(server):
    async def scenario():
        for path, who, status in (("/v1/live", "device", 403),
                                  ("/v1/alerts/live", "device", 403)):
            with pytest.raises(InvalidStatus) as refused:
                async with connect(ws_url(server, path, who)):
                    pass
            assert refused.value.response.status_code == status
        url = server[0].replace("http", "ws", 1)
        for bad in ("/v1/live", "/v1/live?token=nope"):
            with pytest.raises(InvalidStatus) as refused:
                async with connect(url + bad):
                    pass
            assert refused.value.response.status_code == 401
        with pytest.raises(InvalidStatus) as refused:
            async with connect(ws_url(server, "/v1/live", bbox="1,2")):
                pass
        assert refused.value.response.status_code == 400

    asyncio.run(scenario())


def stalled_client(server) -> socket.socket:
    """A websocket client that completes the handshake and then never reads."""
    url, tokens, _ = server
    host, port = url.removeprefix("http://").split(":")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((host, int(port)))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(f"GET /v1/live?token={tokens['admin']} HTTP/1.1\r\nHost: {host}\r\n"
                 f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                 "Sec-WebSocket-Version: 13\r\n\r\n".encode())
    assert b"101" in sock.recv(12)
    return sock


def test_a_stalled_client_slows_neither_the_engine_nor_other_clients(server):
    fleet = 400  # shipments, so that every update is some 100 KB
    post(server, [order(f"F{i}", devices=(f"FG{i}",)) for i in range(fleet)])
    stalled = stalled_client(server)
    app = server[2]

    async def scenario():
        async with connect(ws_url(server, "/v1/live"), max_size=None) as ws:
            await next_of(ws, "snapshot", 10)
            delays = []
            for minute in range(40):
                batch = [fix(minute, 52.0 + i / 1000, 4.0, device=f"FG{i}")
                         for i in range(fleet)]
                sent = time.monotonic()
                await asyncio.to_thread(post, server, batch)
                while True:  # until the update with this minute's positions arrives
                    update = await next_of(ws, "update")
                    if any(s["last_seen"] == at(minute) for s in update["shipments"]):
                        break
                delays.append(time.monotonic() - sent)
            return delays

    try:
        delays = asyncio.run(scenario())
        (stuck,) = app.state.hub.clients  # the healthy client has left
        time.sleep(0.5)
        print(f"update delays: max {max(delays):.3f} s, pending for the stalled client: "
              f"{stuck.pending()}")
        assert stuck.pending() > 0  # its sender is blocked on the network: updates wait...
        assert stuck.pending() <= 2 * fleet  # ...coalesced, the latest state per shipment
        assert max(delays) < 1.0, delays
    finally:
        stalled.close()
