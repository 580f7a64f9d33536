"""`chainsight worker` against the real broker: a fresh deployment's start-up, poison records.

Uses the deployment helpers of test_worker.py (same topics, Redis keys and worker subprocesses).
"""

from __future__ import annotations

from pathlib import Path

from test_worker import Deployment, assert_same_alerts, expected, scenario, wait_for

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
