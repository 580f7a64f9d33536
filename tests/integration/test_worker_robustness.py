"""`chainsight worker` against the real broker: a fresh deployment's start-up, poison records.

Uses the deployment helpers of test_worker.py (same topics, Redis keys and worker subprocesses).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from confluent_kafka import KafkaError, KafkaException
from helpers import at, line, ms, order, reading
from test_worker import Deployment, assert_same_alerts, expected, scenario, wait_for

from chainsight.runtimes.kafka import control
from chainsight.runtimes.kafka.admin import retry_transient

ROUNDS = 3


def start_two_on_new_topics(prefix: str, bootstrap: str, redis_url: str, logs: Path,
                            lines: list[bytes], want: dict) -> None:
    """Two workers started at once before any topic exists; both must live and together
    process the stream as `replay` does."""
    dep = Deployment(prefix, bootstrap, redis_url, logs, create_topics=False)
    try:
        first, second = dep.start_worker(), dep.start_worker()
        exited = lambda: first.poll() is not None or second.poll() is not None  # noqa: E731
        wait_for(lambda: exited() or dep.assignments() == 2, 90, dep.log_text)
        assert not exited(), dep.log_text()
        dep.produce(lines)
        dep.wait_processed()
        wait_for(lambda: dep.shipments() == want["state"]["shipments"], 30, dep.log_text)
        assert first.poll() is None and second.poll() is None, dep.log_text()
        assert {info["worker"] for info in dep.progress().values()} == {"w0", "w1"}
        dep.stop(first)
        dep.stop(second)
        assert "Traceback" not in dep.log_text(), dep.log_text()
        assert_same_alerts(dep.alerts(), want["alerts"])
        dead = dep.read(dep.config.dead_letter_topic)
        assert sorted(d["payload"] for d in dead) == sorted(d["payload"] for d in want["dead"])
    finally:
        dep.close()


def test_two_workers_started_together_on_new_topics_both_survive(topic_prefix, kafka_bootstrap,
                                                                  redis_url, tmp_path):
    lines = scenario(seed=13, shipments=6, minutes=40)
    want = expected(tmp_path, lines)
    assert want["alerts"] and want["dead"]
    for n in range(ROUNDS):
        logs = tmp_path / f"round-{n}"
        logs.mkdir()
        start_two_on_new_topics(f"{topic_prefix}.r{n}", kafka_bootstrap, redis_url, logs,
                                lines, want)


def test_poison_records_are_dead_lettered_with_their_offsets_and_the_partition_goes_on(
        deployment, tmp_path):
    cfg = deployment.config
    tick, flush = (control.HEADER, control.TICK), (control.HEADER, control.FLUSH)
    poison = [  # (key, value, headers, what the reason must say), at offsets 1.. of partition 0
        (b"S1", b"{not json", None, "malformed JSON"),
        (b"S1", line(type="teleport", device_id="T1", ts=at(0)), None, "invalid event"),
        (b"S1", b"\x01" * 900_000, None, "cut to"),  # escaped, 5.4 MB: cannot be kept whole
        (b"S1", b'{"now": 1}', [(control.HEADER, b"reboot")], "unknown control kind"),
        (None, b'{"now": 1}', [(control.HEADER, None)], "unknown control kind"),
        (None, b"{not json", [tick], "not JSON"),
        (None, b'{"clock": "soon"}', [flush], "'clock'"),
        (None, b'{"now": 1e300}', [tick], "'now'"),
        (None, None, [tick], "not JSON"),
        (b"S1", None, None, "tombstone"),
    ]
    first = [order("S1", devices=("T1",))]
    after = [reading(m, 9.5 if 10 <= m < 40 else 5.0, shipment_id="S1") for m in range(60)]
    keyless = reading(60, 5.5, shipment_id="S1")  # a valid event without a key is processed
    producer = deployment.sink.producer
    for value in first:
        producer.send(cfg.events_topic, b"S1", value, partition=0)
    for key, value, headers, _ in poison:
        producer.send(cfg.events_topic, key, value, partition=0, headers=headers)
    for value in after:
        producer.send(cfg.events_topic, b"S1", value, partition=0)
    producer.send(cfg.events_topic, None, keyless, partition=0)
    headers, value = control.flush(ms(60))
    producer.send(cfg.events_topic, None, value, partition=0, headers=headers)
    assert producer.flush(30) == 0 and producer.errors == 0

    want = expected(tmp_path, first + after + [keyless])
    assert {(a["kind"], a["state"]) for a in want["alerts"]} >= {
        ("temperature_excursion", "open"), ("temperature_excursion", "resolved")}
    worker = deployment.start_worker()
    deployment.wait_processed()
    wait_for(lambda: deployment.shipments() == want["state"]["shipments"], 30,
             deployment.log_text)
    assert worker.poll() is None, deployment.log_text()
    deployment.stop(worker)
    assert "Traceback" not in deployment.log_text(), deployment.log_text()
    assert_same_alerts(deployment.alerts(), want["alerts"])

    dead = {d["offset"]: d for d in deployment.read(cfg.dead_letter_topic)}
    assert sorted(dead) == list(range(1, len(poison) + 1))
    for offset, (key, value, _, says) in enumerate(poison, start=1):
        d = dead[offset]
        assert d["partition"] == d["_partition"] == 0 and d["topic"] == cfg.events_topic
        assert says in d["reason"] and "\n" not in d["reason"], d["reason"]
        assert d["key"] == (key and key.decode())
        text = (value or b"").decode()
        if offset == 3:
            assert text.startswith(d["payload"]) and 0 < len(d["payload"]) < 100_000
        else:
            assert d["payload"] == text


def test_transient_kafka_errors_are_retried_and_others_raised(caplog):
    """No broker needed: which errors `retry_transient` waits out."""
    calls: list[int] = []

    def settles_on_third_call() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise KafkaException(KafkaError(KafkaError.NOT_LEADER_FOR_PARTITION))
        return "done"

    def denied() -> None:
        calls.append(1)
        raise KafkaException(KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED))

    assert retry_transient(settles_on_third_call, "reading") == "done" and len(calls) == 3
    assert caplog.text.count("reading: NOT_LEADER_FOR_PARTITION") == 2
    calls.clear()
    with pytest.raises(KafkaException):
        retry_transient(denied, "reading")
    assert len(calls) == 1
    calls.clear()
    with pytest.raises(KafkaException):  # stopping: no more retries
        retry_transient(settles_on_third_call, "reading", lambda: True)
    assert len(calls) == 1
