"""`chainsight serve --kafka` as a process, with a worker, the real broker and a Redis of its own
(the API tests run its app in-process: tests/test_api.py, tests/test_api_live.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import zlib

import httpx
from helpers import order, reading
from test_webhooks import SECRET, Receiver
from test_worker import PARTITIONS, REPO, Deployment, free_port, start_redis, wait_for

from chainsight.api.auth import TokenStore


def test_serve_kafka_answers_delivers_and_reports_redis_outages(topic_prefix, kafka_bootstrap,
                                                                tmp_path):
    redis_port = free_port()
    redis_server = start_redis(redis_port, tmp_path)
    dep = Deployment(topic_prefix, kafka_bootstrap, f"redis://127.0.0.1:{redis_port}/0", tmp_path)
    token = TokenStore(tmp_path).create("admin", "root")
    port = free_port()
    serve, receiver = None, Receiver()
    try:
        dep.start_worker("--allowed-lateness", "0")
        env = {**os.environ, "CHAINSIGHT_KAFKA_BOOTSTRAP": kafka_bootstrap,
               "CHAINSIGHT_REDIS_URL": dep.config.redis_url,
               "CHAINSIGHT_TOPIC_PREFIX": topic_prefix}
        with open(tmp_path / "serve.log", "wb") as log:
            serve = subprocess.Popen([sys.executable, "-m", "chainsight.cli", "serve", "--kafka",
                                      "--port", str(port), "--data-dir", str(tmp_path)],
                                     cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        api = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30,
                           headers={"Authorization": f"Bearer {token}"})

        def healthy() -> bool:
            assert serve.poll() is None, (tmp_path / "serve.log").read_text()
            try:
                return api.get("/healthz").status_code == 200
            except httpx.TransportError:
                return False

        wait_for(healthy, 60, dep.log_text)
        # The order comes through another producer: the API routes the device's readings
        # (without shipment_id) by the link the worker saw, to the shipment's partition.
        assert zlib.crc32(b"K1") % PARTITIONS != zlib.crc32(b"KT1") % PARTITIONS
        dep.produce([order("K1", customer_id="C1", devices=("KT1",))], end_of_stream=False)
        wait_for(lambda: api.get("/v1/shipments/K1").status_code == 200, 60, dep.log_text)
        hook = api.post("/v1/webhooks", json={"url": receiver.url + "/hook", "secret": SECRET})
        assert hook.status_code == 201, hook.text
        lines = [reading(m, 11, device="KT1") for m in range(16)]
        assert api.post("/v1/events", content=b"\n".join(lines), headers={
            "content-type": "application/x-ndjson"}).json()["accepted"] == len(lines)

        def opened() -> list[dict]:
            return api.get("/v1/alerts", params={"shipment_id": "K1"}).json()

        wait_for(lambda: len(opened()) == 1, 60, dep.log_text)
        (alert,) = opened()
        wait_for(lambda: receiver.got["/hook"], 30)  # signed, from the changes channel
        assert receiver.got["/hook"][0]["alert"]["alert_id"] == alert["alert_id"]
        answer = api.post(f"/v1/alerts/{alert['alert_id']}/acknowledge", json={"comment": "ok"})
        assert answer.json()["state"] == "acknowledged", answer.text
        assert api.get("/v1/shipments/K1").json()["history"][0]["type"] == "order"

        redis_server.kill()
        redis_server.wait(timeout=30)
        down = api.get("/healthz")
        assert down.status_code == 503 and "Redis" in down.json()["error"]
        refused = api.get("/v1/alerts")
        assert refused.status_code == 503 and list(refused.json()) == ["error"]

        redis_server = start_redis(redis_port, tmp_path)  # empty: the worker re-publishes
        wait_for(lambda: api.get("/v1/shipments/K1").status_code == 200, 60, dep.log_text)
        assert opened()[0]["state"] == "acknowledged"
    finally:
        if serve is not None:
            serve.terminate()
            serve.wait(timeout=30)
        receiver.close()
        dep.close()
        redis_server.kill()
        redis_server.wait(timeout=30)
