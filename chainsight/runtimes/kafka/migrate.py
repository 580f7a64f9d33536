"""`chainsight migrate-snapshots --trust-pickle`: pickled (version 2) snapshots to version 3.

Workers no longer read pickles: unpickling runs whatever code the bytes name, and snapshots are
bytes read from a topic. An operator who trusts the snapshots topic converts the newest snapshot
of each partition once, with the workers stopped: it is unpickled (with the engine classes of
this version), dumped in the version-3 format and written back with a new checkpoint that keeps
the input, alerts and dead-letter offsets, so the workers resume with their state and audit
chains. Partitions without a checkpoint, or already at version 3, are left alone.
"""

from __future__ import annotations

import io
import pickle
import zlib
from collections.abc import Callable

import numpy as np
from confluent_kafka import KafkaError, Message

from chainsight.alerts.book import Alert
from chainsight.contract.times import iso, now_ms
from chainsight.engine.core import Engine
from chainsight.engine.pipeline import Pipeline
from chainsight.engine.state import NO_TS, Columns
from chainsight.geofence import GpsFilter
from chainsight.rules.advisor import ColdStoreAdvisor
from chainsight.runtimes.kafka import snapshots
from chainsight.runtimes.kafka.config import StreamsConfig
from chainsight.runtimes.kafka.partition import PartitionState
from chainsight.runtimes.kafka.producer import EventProducer
from chainsight.runtimes.kafka.snapshots import Checkpoint, PartitionReader

FLUSH_TIMEOUT_S = 60.0


# Where the classes a version-2 pickle names live now (module, or (module, class) -> module).
MOVED = {
    "chainsight.core": "chainsight.engine.core",
    "chainsight.state": "chainsight.engine.state",
    "chainsight.events": "chainsight.contract.events",
    "chainsight.idset": "chainsight.ingest.idset",
    "chainsight.columnar": "chainsight.ingest.columnar",
    ("chainsight.ingest", "Rows"): "chainsight.ingest.rows",
    ("chainsight.ingest", "Ingest"): "chainsight.ingest.dedup",
    ("chainsight.ingest", "Decoded"): "chainsight.ingest.dedup",
    ("chainsight.ingest", "Reorder"): "chainsight.ingest.reorder",
    "chainsight.alerts.rules": "chainsight.rules.base",
    **{f"chainsight.alerts.{name}": f"chainsight.rules.{name}" for name in (
        "advisor", "cumulative", "door", "excursion", "humidity", "mkt", "silence")},
    "chainsight.geofence.rule": "chainsight.rules.geofence",
    "chainsight.streams.partition": "chainsight.runtimes.kafka.partition",
}


USER_OF = {"acknowledged": "acknowledged_by", "resolved_manually": "resolved_by"}


class _Unpickler(pickle.Unpickler):
    """Finds the classes of a version-2 pickle where this version keeps them."""

    def find_class(self, module: str, name: str) -> type:
        module = MOVED.get((module, name), MOVED.get(module, module))
        return super().find_class(module, name)


def unpickle_v2(blob: bytes) -> PartitionState:
    """The state in a pickled snapshot (version 2, or an unversioned Engine/PartitionState),
    brought up to this version's attributes. Runs the code the pickle names: only for
    snapshots the operator trusts."""
    state = _Unpickler(io.BytesIO(zlib.decompress(blob))).load()
    if isinstance(state, tuple) and len(state) == 2 and state[0] == 2:
        state = state[1]
    if isinstance(state, Engine):
        state = PartitionState(state)
    if not isinstance(state, PartitionState):
        raise ValueError(f"a pickled snapshot holds a {type(state).__name__}, not a "
                         "PartitionState")
    _upgrade(state)
    return state


def _upgrade(state: PartitionState) -> None:
    """Attributes added since version 2 (the pickle restored the old ones only)."""
    engine = vars(state.engine)
    if "counters" in engine:
        engine["_counters"] = engine.pop("counters")
    if "settled" not in engine:  # the rules, state and book are now the settled pipeline's
        settled = Pipeline.__new__(Pipeline)
        for name in ("settings", "profiles"):
            setattr(settled, name, engine[name])
        for name in ("state", "book", "advisor", "rules"):
            setattr(settled, name, engine.pop(name))
        settled.rules = [r for r in settled.rules if not isinstance(r, ColdStoreAdvisor)]
        settled.advisor = ColdStoreAdvisor(settled.advisor.fences)  # now a service
        settled.state.segment = 0
        engine.update(settled=settled, provisional=None, live=None, _commands=[],
                      _seen=Columns(ts=(np.int64, NO_TS)))
    engine.setdefault("_idle_time", NO_TS)
    engine.setdefault("_arrival", (0, NO_TS))
    engine.setdefault("_ended", False)
    engine.setdefault("eta_model", None)  # ETAs came later: a new engine's model starts empty
    vars(state.engine.settled).setdefault("eta", None)
    engine.setdefault("recorder", None)  # version 2 kept no shipment records
    engine.setdefault("_now", 0)
    for info in state.engine.state.info:
        for slot in ("sscc", "gtin"):
            if not hasattr(info, slot):
                setattr(info, slot, None)
    reorder = vars(state.engine.reorder)
    if "stream_newest" in reorder:  # now the two leading devices' times
        del reorder["stream_newest"]
        reorder["leaders"], reorder["business_newest"] = np.full(2, -1, np.int64), NO_TS
        state.engine.reorder.lead(np.flatnonzero(state.engine.reorder.newest != NO_TS))
    if not hasattr(state, "fences"):
        state.fences = None
    book = state.engine.book
    if not hasattr(book, "audit_out"):
        book.audit_out = []
    if not hasattr(book, "audited"):
        book.audited = True
    for rule in state.engine.rules:
        gps = getattr(rule, "gps_filter", None)
        if gps is not None and not hasattr(gps, "prev"):  # its per-device arrays, now Columns
            old = vars(gps)
            gps.prev = GpsFilter().prev
            gps.load_state({"counts": gps.counts,
                            **{name: old.pop(f"_{name}") for name in ("ts", "lon", "lat")}})
    for alert in book.alerts.values():
        if getattr(alert, "current", None) is None:
            alert.current = _latest_record(alert)
    for _, record in book.transitions:  # users' transitions not yet emitted
        details = record["details"]
        user = USER_OF.get(details["transition"])
        if user and "user" not in details:
            details["user"], details["comment"] = details[user], details.get("comment")


def _latest_record(alert: Alert) -> dict:
    """An alert's latest record (transition or notification), from its state and lifecycle."""
    life, at = alert.lifecycle, iso(alert.last_at)
    if alert.state == "resolved":
        transition = "resolved_manually" if "resolved_by" in life else "resolved"
    elif life.get("severity_raised_at") == at:
        transition = "severity_raised"
    elif life.get("escalated_at") == at:
        transition = "escalated"
    elif alert.state == "acknowledged":
        transition = "acknowledged"
    else:
        transition = "reopened" if "reopen_count" in life else "opened"
    record = alert.record(at, transition)
    user = USER_OF.get(transition)
    if user:
        record["details"]["user"], record["details"]["comment"] = life[user], life.get("comment")
    return record


def migrate_snapshots(config: StreamsConfig, log: Callable[[str], None] = print) -> int:
    """Convert the newest snapshot of every partition that is pickled; returns how many."""
    reader = PartitionReader(config.bootstrap)
    producer = EventProducer(config.bootstrap, config={"acks": "all", "log_level": 3})
    topic = config.checkpoints_topic
    try:
        partitions = sorted(reader.consumer.list_topics(topic, timeout=30).topics[topic]
                            .partitions)
        migrated = 0
        for p in partitions:
            checkpoint = reader.latest_checkpoint(topic, p)
            if checkpoint is None:
                continue
            blob = reader.blob(config.snapshots_topic, p, checkpoint)
            try:
                snapshots.decode(blob)
                log(f"partition {p}: already version {snapshots.FORMAT}")
                continue
            except snapshots.SnapshotError:
                state = unpickle_v2(blob)  # anything else than a pickle raises here
            new = _write(producer, config, p, checkpoint, snapshots.dump(state))
            log(f"partition {p}: snapshot at input offset {checkpoint.offset} converted "
                f"({checkpoint.size:,} -> {new.size:,} bytes)")
            migrated += 1
        return migrated
    finally:
        reader.close()


def _write(producer: EventProducer, config: StreamsConfig, p: int, old: Checkpoint,
           blob: bytes) -> Checkpoint:
    """Write the chunks of `blob` and its checkpoint (same offsets as `old`), then delete the
    old chunks the new ones did not overwrite (same keys: same partition and input offset)."""
    first: list[int] = []
    failures: list[KafkaError] = []

    def delivered(err: KafkaError | None, msg: Message) -> None:
        if err is None:
            first.append(msg.offset())
        else:
            failures.append(err)

    chunks = snapshots.split(blob, config.snapshot_chunk_bytes)
    for i, chunk in enumerate(chunks):
        producer.send(config.snapshots_topic, snapshots.chunk_key(p, old.offset, i), chunk,
                      partition=p, on_delivery=delivered)
    _flush(producer, failures)
    new = Checkpoint(offset=old.offset, alerts_offset=old.alerts_offset,
                     dead_offset=old.dead_offset, chunk_offset=min(first), chunks=len(chunks),
                     size=len(blob), worker="migrate-snapshots", taken_at=now_ms())
    producer.send(config.checkpoints_topic, str(p).encode(), new.to_json(), partition=p,
                  on_delivery=delivered)
    _flush(producer, failures)
    for key in old.chunk_keys(p)[len(chunks):]:
        producer.send(config.snapshots_topic, key, None, partition=p, on_delivery=delivered)
    _flush(producer, failures)
    return new


def _flush(producer: EventProducer, failures: list[KafkaError]) -> None:
    if producer.flush(FLUSH_TIMEOUT_S) or failures:
        raise RuntimeError(f"writing the converted snapshot failed: {failures or 'timed out'}")
