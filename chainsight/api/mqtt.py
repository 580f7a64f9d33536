"""`chainsight serve --mqtt URL`: devices' MQTT messages into the served engine.

Each batch goes through the same path as `POST /v1/events` (`routes.events.ingest`: processed
and durable in the engine's store, then in the shipments' history); dead letters are appended,
fsync'ed, to `mqtt-dead.jsonl` in the data directory before the messages are acknowledged.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import orjson
from fastapi import FastAPI

from chainsight.api.auth import Principal
from chainsight.api.routes.events import Body, ingest
from chainsight.ingest.mqtt import ROOT, Broker, MqttIngest

MQTT = Principal(name="mqtt", role="admin")  # devices are checked against their topics instead


class DeadLetterFile:
    """JSON Lines, appended and fsync'ed."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def write(self, records: list[dict]) -> None:
        data = b"".join(orjson.dumps(r) + b"\n" for r in records)
        with self._lock:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                os.write(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)


def mqtt_ingest(app: FastAPI, broker: Broker, client_id: str, data_dir: Path,
                root: str = ROOT) -> MqttIngest:
    """An MQTT ingest (not started) feeding the app's runtime."""
    ctx = app.state.context

    def write(lines: list[bytes]) -> list[tuple[int, str]]:
        answer = ingest(ctx, MQTT, Body(lines, [None] * len(lines), list(range(len(lines)))))
        return [(r["index"], r["reason"]) for r in answer["rejected"]]

    dead = DeadLetterFile(data_dir / "mqtt-dead.jsonl")
    devices = MqttIngest(broker, client_id, write, dead.write, root=root)
    ctx.checks.append(devices.problem)  # /healthz: 503 while it takes no messages
    return devices
