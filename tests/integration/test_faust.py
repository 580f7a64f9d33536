"""`chainsight worker --runtime faust` against the real Kafka broker and Redis: the same
alerts, dead letters and state as `replay`, as the default worker gives them (the scenarios and
checks of test_worker.py and test_worker_commands.py, run on the Faust runtime).
"""

from __future__ import annotations

import subprocess

import orjson
import pytest
from test_worker import (
    PARTITIONS,
    Deployment,
)
from test_worker import (
    test_two_workers_give_the_same_alerts_as_one as two_workers_same_as_one,
)
from test_worker import (
    test_worker_gives_the_same_alerts_state_and_dead_letters_as_replay as same_as_replay,
)
from test_worker import (
    test_worker_killed_and_restarted_loses_and_duplicates_nothing as killed_and_restarted,
)
from test_worker_commands import (
    test_acknowledge_and_resolve_in_band_survive_a_kill_and_the_audit_verifies as commands,
)

from chainsight.runtimes.kafka.snapshots import PartitionReader


class FaustDeployment(Deployment):
    """Workers run `chainsight worker --runtime faust`, each with its own data directory."""

    def start_worker(self, *args: str, **env: object) -> subprocess.Popen:
        data_dir = self.logs / f"faust-data-{len(self.workers)}"
        return super().start_worker("--runtime", "faust", "--data-dir", str(data_dir), *args,
                                    **env)

    @property
    def checkpoints_topic(self) -> str:
        """The snapshot table's changelog topic (Faust's name for it)."""
        cfg = self.config
        return f"{cfg.app_id}-{cfg.topic_prefix}.snapshots-changelog"


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
    killed_and_restarted(faust_deployment, tmp_path)


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
