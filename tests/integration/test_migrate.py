"""`chainsight migrate-snapshots --trust-pickle` against the real broker: a partition whose
newest snapshot is pickled (version 2) is refused by the worker's restore path, converted by the
command, and then restores into an engine that continues exactly like one that never stopped."""

from __future__ import annotations

import pickle
import zlib

import orjson
import pytest
from confluent_kafka import Message

from chainsight.alerts import book
from chainsight.cli import main
from chainsight.contract.commands import Acknowledge
from chainsight.engine.core import Engine
from chainsight.geofence import FenceSet
from chainsight.runtimes.kafka import snapshots
from chainsight.runtimes.kafka.admin import ensure_topics
from chainsight.runtimes.kafka.config import StreamsConfig
from chainsight.runtimes.kafka.partition import Partition, PartitionState
from chainsight.runtimes.kafka.producer import EventProducer
from chainsight.runtimes.kafka.snapshots import Checkpoint, PartitionReader
from chainsight.sim import simulate

P = 1  # the partition under test (of two)
V2_CHUNK = 64 * 1024  # small chunks: the converted snapshot needs fewer, the rest are deleted


def write_v2_snapshot(cfg: StreamsConfig, state: PartitionState, offset: int) -> Checkpoint:
    """What a version-2 worker wrote: the pickled state in chunks, then the checkpoint."""
    blob = zlib.compress(pickle.dumps((2, state), protocol=pickle.HIGHEST_PROTOCOL), 1)
    chunks = snapshots.split(blob, V2_CHUNK)
    first = []
    with EventProducer(cfg.bootstrap, config={"acks": "all"}) as producer:
        for i, chunk in enumerate(chunks):
            producer.send(cfg.snapshots_topic, snapshots.chunk_key(P, offset, i), chunk,
                          partition=P, on_delivery=lambda err, msg: first.append(msg.offset()))
        producer.flush(30)
        checkpoint = Checkpoint(offset=offset, alerts_offset=3, dead_offset=1,
                                chunk_offset=min(first), chunks=len(chunks), size=len(blob),
                                worker="v2-worker", taken_at=0)
        producer.send(cfg.checkpoints_topic, str(P).encode(), checkpoint.to_json(), partition=P)
    return checkpoint


def records(lines, first_offset):
    return [Message(topic="events", partition=P, offset=first_offset + i, value=line,
                    timestamp=(1, 0), headers=None) for i, line in enumerate(lines)]


def outputs(batch):
    return batch.alerts, batch.notifications, batch.open_alerts, batch.dead


def test_pickled_snapshots_are_migrated_and_resume_with_state_and_audit_chain(
        topic_prefix, kafka_bootstrap, monkeypatch, capsys):
    monkeypatch.setattr(book, "now_ms", lambda: 1_800_000_000_000)  # users' wall clock, audited
    sim = simulate("smoke", excursion_count=8, silence_count=4)
    fences = FenceSet.from_geojson(sim.fences())
    lines = [orjson.dumps(e) for e in sim]
    cut = len(lines) // 2
    lines[1234] = lines[cut + 777] = b"not json"
    cfg = StreamsConfig(bootstrap=kafka_bootstrap, topic_prefix=topic_prefix, partitions=2)
    ensure_topics(kafka_bootstrap, cfg.topics(), configs=cfg.topic_configs())

    running = Partition("events", P, PartitionState(Engine(fences=fences)), 0, history=False)
    for i in range(0, cut, 500):
        running.process(records(lines[i:min(i + 500, cut)], i))
    engine = running.engine
    aid = next(a.alert_id for a in engine.book.open_alerts.values())
    engine.apply(Acknowledge(aid, "ops", "on it"))
    assert running.state.open_alerts and len(engine.reorder) > 0
    old = write_v2_snapshot(cfg, running.state, cut)

    reader = PartitionReader(kafka_bootstrap)
    try:
        with pytest.raises(snapshots.SnapshotError, match="migrate-snapshots --trust-pickle"):
            reader.load(cfg.snapshots_topic, P, old, PartitionState(Engine(fences=fences)))

        monkeypatch.setenv("CHAINSIGHT_KAFKA_BOOTSTRAP", kafka_bootstrap)
        monkeypatch.setenv("CHAINSIGHT_TOPIC_PREFIX", topic_prefix)
        assert main(["migrate-snapshots"]) == 2
        assert "--trust-pickle" in capsys.readouterr().err
        assert main(["migrate-snapshots", "--trust-pickle"]) == 0
        assert "1 snapshot(s) converted" in capsys.readouterr().err

        new = reader.latest_checkpoint(cfg.checkpoints_topic, P)
        assert (new.offset, new.alerts_offset, new.dead_offset) == (cut, 3, 1)
        assert new.chunks < old.chunks and new.worker == "migrate-snapshots"
        state = PartitionState(Engine(fences=fences))
        reader.load(cfg.snapshots_topic, P, new, state)
        stored, _ = reader.read(cfg.snapshots_topic, P)
        latest = {r.key: r.value for r in stored}
        assert all(latest[k] is None for k in old.chunk_keys(P)[new.chunks:])  # tombstoned
        assert main(["migrate-snapshots", "--trust-pickle"]) == 0  # nothing left to convert
        assert "already version 3" in capsys.readouterr().err
    finally:
        reader.close()

    restored = Partition("events", P, state, new.offset, history=False)
    assert restored.state.open_alerts == running.state.open_alerts
    for i in range(cut, len(lines), 500):
        batch = records(lines[i:i + 500], i)
        want, got = running.process(batch), restored.process(batch)
        assert outputs(got) == outputs(want)
    assert restored.engine.snapshot() == running.engine.snapshot()
    assert restored.all_views() == running.all_views()
    trail, restored_trail = engine.book.audit, restored.engine.book.audit
    assert list(restored_trail) == list(trail) and restored_trail.verify()
    assert restored_trail.head == trail.head
