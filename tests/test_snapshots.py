"""Engine snapshots (version 3): an engine dumped, encoded, decoded and loaded into a fresh engine
built from the same configuration continues exactly as one that never stopped; blobs that are not
version-3 snapshots are refused with one line (no broker needed)."""

import pickle
import zlib

import msgspec
import numpy as np
import orjson
import pytest

from chainsight.alerts import book
from chainsight.contract.commands import Acknowledge
from chainsight.engine.core import Engine
from chainsight.geofence import FenceSet
from chainsight.runtimes.kafka import snapshots
from chainsight.runtimes.kafka.partition import PartitionState
from chainsight.sim import simulate

BATCH = 400


@pytest.fixture(scope="module")
def sim():
    return simulate("smoke", excursion_count=8, short_excursion_count=4, silence_count=4)


@pytest.fixture(scope="module")
def stream(sim):
    """The simulated stream with a malformed line every 1,500 (dead letters), in batches."""
    lines = [orjson.dumps(e) for e in sim]
    for i in range(700, len(lines), 1500):
        lines[i] = b'{"type": "sensor", "device_id": "X", "ts": "yesterday"}'
    return [lines[i:i + BATCH] for i in range(0, len(lines), BATCH)]


@pytest.fixture(scope="module")
def fences(sim):
    return FenceSet.from_geojson(sim.fences())


def run(stream, fences, cuts=()):
    """Outputs of an engine over the batches, acknowledging an open alert every fifth batch and
    (before the batches in `cuts`) continuing in a fresh engine loaded from a snapshot; and what
    was in flight before each batch."""
    engine, outputs, states = Engine(fences=fences), [], []
    for k, batch in enumerate(stream):
        if k % 5 == 2:
            waiting = [a for a in engine.book.open_alerts.values() if a.state == "open"]
            if waiting:
                out = engine.apply(Acknowledge(waiting[0].alert_id, "ops", "on it"))
                outputs.append((out.alerts, out.notifications, out.dead_letters,
                                sorted(out.changed)))
        states.append(held(engine))
        if k in cuts:
            data = snapshots.decode(snapshots.encode(engine.dump_state()))
            engine = Engine(fences=fences)
            engine.load_state(data)
        out = engine.process(batch)
        outputs.append((out.alerts, out.notifications, out.dead_letters, sorted(out.changed)))
    out = engine.flush()
    outputs.append((out.alerts, out.notifications, out.dead_letters, sorted(out.changed)))
    return outputs, engine, states


def held(engine):
    """What is in flight: events held for reordering, open and acknowledged alerts."""
    states = [a.state for a in engine.book.open_alerts.values()]
    return len(engine.reorder), states.count("open"), states.count("acknowledged")


def test_an_engine_restored_from_snapshots_continues_as_if_it_never_stopped(stream, fences,
                                                                           monkeypatch):
    monkeypatch.setattr(book, "now_ms", lambda: 1_800_000_000_000)  # users' wall clock, audited
    want, reference, states = run(stream, fences)
    busy = [k for k, (pending, opened, _) in enumerate(states) if pending and opened]
    acked = [k for k, s in enumerate(states) if s[2]]  # an acknowledged alert open
    cuts = {busy[0], busy[len(busy) // 2], acked[0], acked[-1], len(stream) // 3,
            len(stream) * 2 // 3, len(stream) - 1}
    assert len(cuts) >= 5
    assert sum(len(o[0]) for o in want) > 100 and sum(len(o[2]) for o in want) >= 10
    got, restored, _ = run(stream, fences, cuts)
    assert got == want
    assert restored.snapshot() == reference.snapshot()
    assert list(restored.book.audit) == list(reference.book.audit) and restored.verify_audit()
    assert restored.book.audit.head == reference.book.audit.head
    assert restored.metrics() == reference.metrics()


def test_a_snapshot_round_trip_keeps_every_component_state(stream, fences):
    engine = Engine(fences=fences)
    for batch in stream[:len(stream) // 2]:
        engine.process(batch)
    first = engine.dump_state()
    restored = Engine(fences=fences)
    restored.load_state(snapshots.decode(snapshots.encode(first)))
    again = restored.dump_state()
    assert set(first["rules"]) == {"continuous", "humidity", "cumulative", "mkt",
                                   "door", "silence", "eta", "geofence"}
    assert_same(first, again)


def assert_same(a, b, path="state"):
    if isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray) and a.dtype == b.dtype, path
        assert np.array_equal(a, b, equal_nan=a.dtype.kind == "f"), path
    elif isinstance(a, dict):
        assert isinstance(b, dict) and list(a) == list(b), path
        for key in a:
            assert_same(a[key], b[key], f"{path}.{key}")
    elif isinstance(a, list | tuple):
        assert isinstance(b, list | tuple) and len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, f"{path}[{i}]")
    else:
        assert a == b or (a != a and b != b), path


def test_restored_arrays_are_writable_copies():
    arrays = snapshots.decode(snapshots.encode({"a": np.arange(5, dtype=np.int32),
                                                "b": np.ones((2, 3), bool)}))
    assert arrays["a"].dtype == np.int32 and arrays["b"].shape == (2, 3)
    arrays["a"][0] = 7  # writable
    assert arrays["a"].tolist() == [7, 1, 2, 3, 4]


def test_a_snapshot_is_plain_messagepack_without_pickle(stream):
    engine = Engine()
    engine.process(stream[0])
    raw = zlib.decompress(snapshots.dump(PartitionState(engine, {"a1": {"alert_id": "a1"}})))
    assert not raw.startswith(b"\x80")  # no pickle protocol header
    leaves = []

    def walk(x):
        if isinstance(x, dict):
            [walk(k) or walk(v) for k, v in x.items()]
        elif isinstance(x, list):
            [walk(v) for v in x]
        else:
            leaves.append(type(x))

    walk(msgspec.msgpack.decode(raw))  # no extension hook: arrays stay opaque Ext values
    assert set(leaves) <= {str, int, float, bool, type(None), bytes, msgspec.msgpack.Ext}
    assert msgspec.msgpack.Ext in set(leaves)
    assert all(ext.code == snapshots.ARRAY for ext in iter_ext(msgspec.msgpack.decode(raw)))


def iter_ext(x):
    if isinstance(x, msgspec.msgpack.Ext):
        yield x
    elif isinstance(x, dict):
        for v in x.values():
            yield from iter_ext(v)
    elif isinstance(x, list):
        for v in x:
            yield from iter_ext(v)


class Boom:
    def __reduce__(self):
        return (print, ("pickle code ran",))


def blob_with(state):
    raw = msgspec.msgpack.encode({"format": "chainsight-snapshot", "version": 3, "state": state})
    return zlib.compress(raw)


def array_ext(dtype, shape, raw):
    return msgspec.msgpack.Ext(snapshots.ARRAY, msgspec.msgpack.encode([dtype, shape, raw]))


@pytest.mark.parametrize(("blob", "message"), [
    (blob_with({"engine": pickle.dumps(Boom()), "open_alerts": {}}), "does not fit"),
    (blob_with({"x": array_ext("|O", [1], pickle.dumps(Boom()))}), "dtype '|O' is not allowed"),
    (blob_with({"x": msgspec.msgpack.Ext(5, pickle.dumps(Boom()))}), "unknown extension type"),
    (blob_with({"x": array_ext("<i8", [3], b"\0" * 8)}), "not readable"),
    (zlib.compress(pickle.dumps(Boom())), "migrate-snapshots --trust-pickle"),
])
def test_crafted_blobs_are_refused_without_running_anything(blob, message, capsys):
    with pytest.raises(snapshots.SnapshotError, match=message) as refused:
        snapshots.load(blob, PartitionState(Engine()))
    assert "\n" not in str(refused.value)
    assert "pickle code ran" not in capsys.readouterr().out
