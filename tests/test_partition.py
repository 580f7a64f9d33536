"""A worker partition keeps going when the engine fails on a record, and refuses snapshots it
cannot read (no broker needed)."""

import pickle
import zlib

import orjson
import pytest
from confluent_kafka import Message
from helpers import fix, series

from chainsight.core import Engine
from chainsight.streams import snapshots
from chainsight.streams.partition import Partition, PartitionState


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
    bad = series([5] * 3) + [fix(3, device="BOOM"), fix(20, device="G9")]  # G9 releases BOOM
    batch = part.process(records(bad, 0))
    dead = [orjson.loads(d) for _, d in batch.dead]
    assert [d["offset"] for d in dead] == [0, 1, 2, 3, 4]
    assert all(d["reason"].startswith("engine error: RuntimeError") for d in dead)
    assert dead[3]["payload"] == bad[3].decode()
    good = part.process(records(series([5] * 3, start=30, device="T2"), 5))
    assert good.dead == [] and part.next_offset == 8


def test_a_snapshot_of_another_engine_version_is_refused_with_a_clear_error():
    assert isinstance(snapshots.load(snapshots.dump(Engine())), Engine)
    for blob in (zlib.compress(pickle.dumps(Engine())),  # written before versions
                 zlib.compress(pickle.dumps((snapshots.FORMAT - 1, Engine()))),
                 zlib.compress(b"\x80\x05garbage")):
        with pytest.raises(snapshots.SnapshotError, match="incompatible engine version"):
            snapshots.load(blob)
