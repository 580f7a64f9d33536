"""`chainsight worker --runtime faust` against the real Kafka broker and Redis: the same
alerts, dead letters and state as `replay`, as the default worker gives them (the scenarios and
checks of test_worker.py and test_worker_commands.py, run on the Faust runtime).
"""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from collections import Counter

import orjson
import pytest
from test_worker import (
    PARTITIONS,
    Deployment,
    assert_records_intact,
    assert_same_alerts,
    expected,
    scenario,
    wait_for,
)
from test_worker import (
    test_two_workers_give_the_same_alerts_as_one as two_workers_same_as_one,
)
from test_worker import (
    test_worker_gives_the_same_alerts_state_and_dead_letters_as_replay as same_as_replay,
)
from test_worker_commands import (
    test_acknowledge_and_resolve_in_band_survive_a_kill_and_the_audit_verifies as commands,
)

from chainsight.runtimes.kafka.snapshots import Checkpoint, PartitionReader


class FaustDeployment(Deployment):
    """Workers run `chainsight worker --runtime faust`, each with its own data directory."""

    def start_worker(self, *args: str, **env: object) -> subprocess.Popen:
        data_dir = self.logs / f"faust-data-{len(self.workers)}"
        return super().start_worker("--runtime", "faust", "--data-dir", str(data_dir), *args,
                                    **env)

    @property
    def changelog(self) -> str:
        """The snapshot table's changelog topic (Faust's name for it)."""
        cfg = self.config
        return f"{cfg.app_id}-{cfg.topic_prefix}.snapshots-changelog"

    def checkpoints(self) -> dict[int, Checkpoint]:
        """The newest checkpoint of each partition in the table's changelog."""
        reader = PartitionReader(self.config.bootstrap)
        try:
            return {p: found for p in range(PARTITIONS)
                    if (found := reader.latest_checkpoint(self.changelog, p)) is not None}
        finally:
            reader.close()


@pytest.fixture
def faust_deployment(topic_prefix, kafka_bootstrap, redis_url, tmp_path):
    dep = FaustDeployment(topic_prefix, kafka_bootstrap, redis_url, tmp_path)
    yield dep
    dep.close()


def test_faust_gives_the_same_alerts_state_and_dead_letters_as_replay(faust_deployment,
                                                                      tmp_path):
    same_as_replay(faust_deployment, tmp_path)
    log = (tmp_path / "worker-0.log").read_text()
    assert "(Faust)" in log and "now owning [0, 1, 2, 3]" in log
    assert set(faust_deployment.checkpoints()) == set(range(PARTITIONS))  # snapshot on stop


def test_faust_worker_killed_and_restarted_loses_and_duplicates_nothing(faust_deployment,
                                                                        tmp_path):
    dep = faust_deployment
    lines = scenario(seed=3)
    want = expected(tmp_path, lines)
    third = len(lines) // 3
    worker = dep.start_worker(CHAINSIGHT_SNAPSHOT_S=1)
    dep.produce(lines[:third], end_of_stream=False)
    dep.wait_processed()
    wait_for(lambda: len(dep.checkpoints()) == PARTITIONS, 30, dep.log_text)

    def send_second_third() -> None:  # over ~2 s; the worker dies in the middle of it
        for i in range(third, 2 * third, 50):
            dep.produce(lines[i:min(i + 50, 2 * third)], end_of_stream=False)
            time.sleep(0.03)

    sender = threading.Thread(target=send_second_third)
    sender.start()
    done = sum(p["offset"] for p in dep.progress().values())
    wait_for(lambda: sum(p["offset"] for p in dep.progress().values()) > done + third // 2,
             60, dep.log_text)
    worker.send_signal(signal.SIGKILL)
    worker.wait(timeout=30)
    sender.join()
    killed_at = dep.checkpoints()

    restarted = dep.start_worker()
    dep.produce(lines[2 * third:])
    dep.wait_processed()
    dep.stop(restarted)
    log = (tmp_path / "worker-1.log").read_text()
    assert "snapshot of" in log, log
    assert any(c.offset < dep.progress()[p]["offset"] for p, c in killed_at.items())
    assert_same_alerts(dep.alerts(), want["alerts"])
    assert dep.shipments() == want["state"]["shipments"]
    assert_records_intact(dep, lines)
    dead = dep.read(dep.config.dead_letter_topic)
    assert Counter(d["offset"] for d in dead).most_common(1)[0][1] == 1  # none written twice
    assert sorted(d["payload"] for d in dead) == sorted(d["payload"] for d in want["dead"])


def test_faust_commands_reach_the_partition_owning_the_alert(faust_deployment, tmp_path):
    commands(faust_deployment, tmp_path)
    dep = faust_deployment
    alerts = dep.read(dep.config.alerts_topic)
    acted = {a["alert_id"] for a in alerts if a["details"].get("user")}
    assert acted
    for aid in acted:  # every transition of the alert, the users' ones included, on one partition
        assert len({a["_partition"] for a in alerts if a["alert_id"] == aid}) == 1
    events = {orjson.loads(r)["shipment_id"]: p for p in range(PARTITIONS)
              for r in _values(dep, p) if b'"shipment_id":"S03"' in r}
    s03 = {a["_partition"] for a in alerts if a["shipment_id"] == "S03"}
    assert s03 == {events["S03"]}


def _values(dep: Deployment, p: int) -> list[bytes]:
    reader = PartitionReader(dep.config.bootstrap)
    try:
        return [r.value for r in reader.read(dep.config.events_topic, p)[0] if r.value]
    finally:
        reader.close()


def test_two_faust_workers_share_the_partitions_and_give_the_same_alerts(faust_deployment,
                                                                         tmp_path):
    two_workers_same_as_one(faust_deployment, tmp_path)
