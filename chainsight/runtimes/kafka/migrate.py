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

from chainsight.alerts.book import Alert
from chainsight.contract.times import iso
from chainsight.engine.core import Engine
from chainsight.runtimes.kafka.partition import PartitionState

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
    if not hasattr(state, "fences"):
        state.fences = None
    book = state.engine.book
    if not hasattr(book, "audit_out"):
        book.audit_out = []
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
