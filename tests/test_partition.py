"""A worker partition keeps going when the engine fails on a record, and refuses snapshots it
cannot read in one line (no broker needed)."""

import pickle
import zlib

import msgspec
import orjson
import pytest
from confluent_kafka import Message
from helpers import fix, series

from chainsight.engine.core import Engine
from chainsight.runtimes.kafka import snapshots
from chainsight.runtimes.kafka.partition import Partition, PartitionState


class FailsOnDevice:
    """A rule with a bug that raises on one device's rows."""

    def on_rows(self, rows, state, book):
        if state.devices.index.get("BOOM", -1) in rows.device.tolist():
            raise RuntimeError("bug in a rule")

    def on_business(self, event, shipment, state, book):
        pass

    def on_clock(self, clock, state, book):
        pass


def records(lines, first_offset):
    return [Message(topic="events", partition=0, offset=first_offset + i, value=line,
                    timestamp=(1, 0), headers=None) for i, line in enumerate(lines)]


def test_an_engine_failure_dead_letters_the_run_and_the_partition_goes_on():
    engine = Engine(rules=[FailsOnDevice()])
    part = Partition("events", 0, PartitionState(engine), 0, history=False)
    bad = series([5] * 3) + [fix(3, device="BOOM"), fix(20, device="G9"),
                             fix(20, device="G8")]  # G8 and G9 move stream time: BOOM's out
    batch = part.process(records(bad, 0))
    dead = [orjson.loads(d) for _, d in batch.dead]
    assert [d["offset"] for d in dead] == [0, 1, 2, 3, 4, 5]
    assert all(d["reason"].startswith("engine error: RuntimeError") for d in dead)
    assert dead[3]["payload"] == bad[3].decode()
    good = part.process(records(series([5] * 3, start=30, device="T2"), 6))
    assert good.dead == [] and part.next_offset == 9


def test_a_snapshot_round_trip_restores_the_partition_state():
    engine = Engine()
    engine.process(series([5, 5, 9, 9, 9, 9, 9]))
    state = PartitionState(engine, {"a1": {"alert_id": "a1", "state": "open"}})
    restored = PartitionState(Engine())
    snapshots.load(snapshots.dump(state), restored)
    assert restored.open_alerts == state.open_alerts
    assert restored.engine.snapshot() == engine.snapshot() != Engine().snapshot()


def blob(version):
    return zlib.compress(msgspec.msgpack.encode(
        {"format": "chainsight-snapshot", "version": version, "state": {}}))


@pytest.mark.parametrize(("data", "message"), [
    (blob(4), "snapshot of version 4; this engine reads version 3 only"),
    (blob(None), "snapshot of version None"),
    (zlib.compress(b"\x92\x01\x02"), "not a chainsight snapshot"),
    (zlib.compress(b"\xc1garbage"), "not readable"),
    (b"garbage", "not readable"),
    (snapshots.dump(PartitionState(Engine()))[:-10], "not readable"),  # truncated
])
def test_a_snapshot_of_another_version_or_garbage_is_refused_in_one_line(data, message):
    with pytest.raises(snapshots.SnapshotError, match=message) as refused:
        snapshots.load(data, PartitionState(Engine()))
    assert "\n" not in str(refused.value)


def test_a_pickled_version_2_snapshot_is_refused_with_the_migration_command():
    for data in (pickle.dumps((2, PartitionState(Engine())), protocol=pickle.HIGHEST_PROTOCOL),
                 pickle.dumps(Engine(), protocol=2)):  # written before versions
        with pytest.raises(snapshots.SnapshotError) as refused:
            snapshots.load(zlib.compress(data), PartitionState(Engine()))
        assert str(refused.value) == (
            "snapshot is in the old pickled format (version 2): run `chainsight "
            "migrate-snapshots --trust-pickle` (with the workers stopped)")
