"""Fixtures for integration tests against the real local Kafka and Redis.

Start the services first with ``scripts/services.sh start``. A service that cannot be
reached makes the tests fail (never skip).
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator

import pytest
import redis
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

DEFAULT_KAFKA_BOOTSTRAP = "127.0.0.1:9093"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6390/0"
START_HINT = "Start the local services with `scripts/services.sh start` (from the repo root)."


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    """Bootstrap address of a reachable Kafka broker (CHAINSIGHT_KAFKA_BOOTSTRAP)."""
    bootstrap = os.environ.get("CHAINSIGHT_KAFKA_BOOTSTRAP", DEFAULT_KAFKA_BOOTSTRAP)
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
    problem = None
    try:
        if not admin.list_topics(timeout=10).brokers:
            problem = "reports no brokers"
    except KafkaException as exc:
        problem = f"is not reachable ({exc.args[0].str()})"
    if problem:
        pytest.fail(f"Kafka at {bootstrap} {problem}. {START_HINT}", pytrace=False)
    return bootstrap


@pytest.fixture(scope="session")
def redis_url() -> str:
    """URL of a reachable Redis server (CHAINSIGHT_REDIS_URL)."""
    url = os.environ.get("CHAINSIGHT_REDIS_URL", DEFAULT_REDIS_URL)
    client = redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=5)
    problem = None
    try:
        client.ping()
    except redis.RedisError as exc:
        problem = f"is not reachable ({exc})"
    finally:
        client.close()
    if problem:
        pytest.fail(f"Redis at {url} {problem}. {START_HINT}", pytrace=False)
    return url


@pytest.fixture
def name_prefix(request: pytest.FixtureRequest) -> str:
    """Unique, Kafka-safe prefix for this test's topics, groups and Redis keys."""
    test = re.sub(r"[^A-Za-z0-9._-]+", "-", request.node.name)[:80]
    return f"cs-it.{test}.{uuid.uuid4().hex[:8]}"


@pytest.fixture
def topic_prefix(name_prefix: str, kafka_bootstrap: str) -> Iterator[str]:
    """Like ``name_prefix``; topics named with it are deleted after the test."""
    yield name_prefix
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    ours = [t for t in admin.list_topics(timeout=10).topics if t.startswith(name_prefix)]
    if ours:
        for future in admin.delete_topics(ours, operation_timeout=30).values():
            future.result()


@pytest.fixture
def deployment(topic_prefix: str, kafka_bootstrap: str, redis_url: str, tmp_path):
    """Topics, Redis keys and worker processes of one test (see `test_worker.Deployment`)."""
    from test_worker import Deployment

    dep = Deployment(topic_prefix, kafka_bootstrap, redis_url, tmp_path)
    yield dep
    dep.close()
