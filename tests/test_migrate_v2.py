"""A snapshot pickled by the previous version (format 2, written by commit 15e7055's worker, in
tests/data) converts to the current format and the partition goes on exactly as an engine of
this version that processed the same records from the start (no broker needed)."""

from pathlib import Path

import orjson
from confluent_kafka import Message

from chainsight.contract.commands import Acknowledge
from chainsight.engine.core import Engine
from chainsight.geofence import FenceSet
from chainsight.runtimes.kafka import snapshots
from chainsight.runtimes.kafka.migrate import unpickle_v2
from chainsight.runtimes.kafka.partition import Partition, PartitionState

DATA = Path(__file__).parent / "data"
CUT, BATCH = 950, 300  # as make_snapshot_v2.py cut and fed the stream


def records(lines, first):
    return [Message(topic="events", partition=0, offset=first + i, value=v, timestamp=(1, 0),
                    headers=None) for i, v in enumerate(lines)]


def outputs(batch):
    return ([record for record, _, _ in batch.alerts], batch.notifications, batch.dead,
            batch.open_alerts, sorted(batch.changed))


def test_a_version_2_snapshot_resumes_as_if_this_version_had_run_all_along():
    lines = (DATA / "snapshot-v2-events.jsonl").read_bytes().splitlines()
    fences = orjson.loads((DATA / "snapshot-v2-fences.geojson").read_bytes())
    old = unpickle_v2((DATA / "snapshot-v2.bin").read_bytes())
    assert old.engine.book.open_alerts and len(old.engine.reorder)  # alerts and held events
    state = PartitionState(Engine(fences=FenceSet.from_geojson(fences)))
    state.load_state(snapshots.decode(snapshots.encode(old.dump_state())))
    migrated = Partition("events", 0, state, CUT, history=False)

    running = Partition("events", 0, PartitionState(Engine(fences=FenceSet.from_geojson(fences))),
                        0, history=False)
    for i in range(0, CUT, BATCH):
        running.process(records(lines[i:min(i + BATCH, CUT)], i))
    aid = sorted(a["alert_id"] for a in running.engine.alerts(state="open"))[0]
    (ack,) = running.engine.apply(Acknowledge(aid, "ops", "on it")).alerts
    running.state.open_alerts[aid] = ack

    assert migrated.engine.alerts() == running.engine.alerts()
    assert migrated.engine.snapshot() == running.engine.snapshot()
    for i in range(CUT, len(lines), BATCH):
        batch = records(lines[i:i + BATCH], i)
        got, want = outputs(migrated.process(batch)), outputs(running.process(batch))
        if i == CUT:  # version 2 emitted a user's transition with the next output
            assert got[0][0] == ack
            got = (got[0][1:], *got[1:3], {k: v for k, v in got[3].items() if k != aid},
                   got[4])
        assert got == want
    assert migrated.state.open_alerts == running.state.open_alerts
    assert migrated.engine.flush().alerts == running.engine.flush().alerts
    assert migrated.engine.snapshot() == running.engine.snapshot()
    assert migrated.engine.verify_audit()
    trail = migrated.engine.audit_trail(aid)
    assert [(e["transition"], e["who"]) for e in trail] == [
        ("opened", "engine"), ("escalated", "engine"), ("acknowledged", "ops")]
