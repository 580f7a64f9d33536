"""A real uvicorn server on a free port of 127.0.0.1, in a background thread, for API tests:
over an embedded runtime, or over a Kafka deployment with a real worker."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import orjson
import redis
import uvicorn
from confluent_kafka.admin import AdminClient

from chainsight.api.app import create_app
from chainsight.api.auth import ROLES, TokenStore
from chainsight.api.kafka import KafkaBackend
from chainsight.config import load_profiles, load_settings
from chainsight.engine.core import Engine
from chainsight.outputs.redis import Keys
from chainsight.runtimes.embedded import EmbeddedRuntime
from chainsight.runtimes.kafka.admin import ensure_topics
from chainsight.runtimes.kafka.config import DEFAULT_BOOTSTRAP, DEFAULT_REDIS_URL, StreamsConfig

T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running(app, port: int | None = None) -> Iterator[str]:
    """Serve `app` (on `port`, else a free one); yields its base URL."""
    port = port or free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@contextmanager
def api(data_dir, engine=None, **options) -> Iterator[tuple[str, EmbeddedRuntime, object]]:
    """A live engine in an embedded runtime (wall clock) behind the API: (url, runtime, app)."""
    runtime = EmbeddedRuntime(engine or Engine(live=True)).start()
    app = create_app(runtime, TokenStore(data_dir), **options)
    try:
        with running(app) as url:
            yield url, runtime, app
    finally:
        runtime.stop()


@contextmanager
def kafka_api(data_dir: Path, fences: dict | None = None, lateness_min: float | None = None,
              **options) -> Iterator[tuple[str, KafkaBackend, object]]:
    """`serve --kafka`'s app over a deployment of its own (topics and Redis keys under a unique
    prefix) with one real `chainsight worker` process: (url, backend, app). The broker and Redis
    are the local ones (`scripts/services.sh`), or CHAINSIGHT_KAFKA_BOOTSTRAP/_REDIS_URL."""
    config = StreamsConfig(
        bootstrap=os.environ.get("CHAINSIGHT_KAFKA_BOOTSTRAP", DEFAULT_BOOTSTRAP),
        redis_url=os.environ.get("CHAINSIGHT_REDIS_URL", DEFAULT_REDIS_URL),
        topic_prefix=f"cs-api.{uuid.uuid4().hex[:10]}", partitions=2)
    ensure_topics(config.bootstrap, config.topics(), configs=config.topic_configs())
    args = ["--allowed-lateness", str(lateness_min)] if lateness_min is not None else []
    if fences is not None:
        (data_dir / "fences.geojson").write_bytes(orjson.dumps(fences))
        args += ["--fences", str(data_dir / "fences.geojson")]
    env = {**os.environ, "CHAINSIGHT_KAFKA_BOOTSTRAP": config.bootstrap,
           "CHAINSIGHT_REDIS_URL": config.redis_url, "CHAINSIGHT_TOPIC_PREFIX":
           config.topic_prefix, "CHAINSIGHT_PARTITIONS": "2", "CHAINSIGHT_TICK_S": "0.5"}
    log = data_dir / "worker.log"
    with open(log, "wb") as out:
        worker = subprocess.Popen([sys.executable, "-m", "chainsight.cli", "worker", *args],
                                  env=env, stdout=out, stderr=subprocess.STDOUT)
    settings = load_settings(**({} if lateness_min is None else
                                {"allowed_lateness_min": lateness_min}))
    backend = KafkaBackend(config, settings, load_profiles(), fences)
    try:
        deadline = time.monotonic() + 60  # until the worker owns both partitions
        while backend.redis.hlen(Keys(config.redis_prefix).partitions) < 2:
            assert worker.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        app = create_app(backend, TokenStore(data_dir), **options)
        with running(app) as url:
            yield url, backend, app
    finally:
        worker.terminate()
        worker.wait(30)
        backend.close()
        remove(config)


def remove(config: StreamsConfig) -> None:
    """Delete a deployment's topics and Redis keys."""
    admin = AdminClient({"bootstrap.servers": config.bootstrap})
    for future in admin.delete_topics(list(config.topics()), operation_timeout=30).values():
        future.result()
    client = redis.Redis.from_url(config.redis_url)
    keys = list(client.scan_iter(f"{config.redis_prefix}*"))
    if keys:
        client.delete(*keys)
    client.close()


def eventually(condition: Callable[[], T], timeout: float = 30.0) -> T:
    """Wait until `condition()` is true (the Kafka runtime answers after the API does); its
    value."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)
    return value


def role_tokens(data: Path, **scoped: dict) -> dict[str, str]:
    """A token for every role (user `ROLE-user`) in the data directory's token store, and one
    per `scoped` entry: its name -> `TokenStore.create` arguments (role, name, customers...)."""
    store = TokenStore(data)
    tokens = {role: store.create(role, f"{role}-user") for role in ROLES}
    tokens.update({key: store.create(**args) for key, args in scoped.items()})
    return tokens


def auth(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}
