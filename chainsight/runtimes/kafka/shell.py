"""What every runtime driving `Partition`s does alike (the Kafka worker and the Faust runtime):
the outputs of a processed batch, idle ticks, due snapshots, restoring a partition and the full
live state. Each runtime brings its own consumer, producer and snapshot store.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable

import orjson

from chainsight.contract.commands import ReplaceFences, decode_command
from chainsight.contract.times import now_ms
from chainsight.engine.core import Engine
from chainsight.outputs.redis import Changes
from chainsight.runtimes.kafka.config import StreamsConfig
from chainsight.runtimes.kafka.partition import Batch, Partition, PartitionState
from chainsight.runtimes.kafka.publish import FENCES_KEY
from chainsight.runtimes.kafka.snapshots import Checkpoint, PartitionReader

log = logging.getLogger("chainsight.worker")

EngineFactory = Callable[[], Engine]
Send = Callable[[str, bytes | None, bytes], None]  # topic, key, value (to the batch's partition)


def emit(cfg: StreamsConfig, part: Partition, batch: Batch, changes: Changes,
         send: Send) -> None:
    """Send a batch's alert transitions, dead letters, audit and record entries (`send` writes
    to the partition's own number of each topic) and add its live state to `changes`."""
    p = part.number
    for record, value, emit_it in batch.alerts:
        if emit_it:
            send(cfg.alerts_topic, (record["shipment_id"] or record["device_id"] or "").encode(),
                 value)
        changes.alerts.append((record, emit_it))
    changes.notifications += batch.notifications
    changes.open_alerts.update(batch.open_alerts)
    changes.alert_records.update(batch.alert_records)
    changes.links.update(batch.links)
    changes.audit += batch.audit
    changes.commands.update({(p, offset): outcome for offset, outcome in batch.commands.items()})
    for _, value in batch.dead:
        send(cfg.dead_letter_topic, None, value)
    for entry in batch.audit:
        send(cfg.audit_topic, f"{p}:{entry['seq']}".encode(), orjson.dumps(entry))
    for entry in batch.record:
        send(cfg.records_topic, f"{entry.shipment_id}:{entry.seq}".encode(), entry.line)
    changes.records += batch.record
    if batch.changed:
        views = part.views(batch.changed)
        changes.states.update(views)
        changes.last_seen.update(part.last_seen(list(views)))
    if batch.ordered:
        _order_details(part, batch.ordered, changes)
    for shipment, lines in batch.history.items():
        changes.history.setdefault(shipment, []).extend(lines)
    changes.partitions[p] = part.progress(cfg.worker_id, now_ms())


def ticks_due(parts: Iterable[Partition], tick_s: float, now: float) -> list[Partition]:
    """The partitions idle for `tick_s` that need a wall-clock tick (see control.py), marked as
    having one on its way."""
    if tick_s <= 0:
        return []
    due = [part for part in parts
           if not part.tick_pending and now - part.last_input >= tick_s
           and part.engine.shipment_count() and not part.engine.ended]
    for part in due:
        part.tick_pending = True
        part.last_input = now
    return due


def snapshot_due(parts: Iterable[Partition], now: float) -> Partition | None:
    """The most overdue partition that moved since its snapshot (one at a time: short pauses)."""
    due = [p for p in parts if now >= p.snapshot_due and p.moved_since_snapshot()]
    return min(due, key=lambda p: p.snapshot_due) if due else None


def new_state(engine_factory: EngineFactory, reader: PartitionReader,
              fences_topic: str) -> PartitionState:
    """A partition's first state: an engine from the configuration, with the deployment's
    latest fence set when one was published (see `publish_fences`)."""
    state = PartitionState(engine_factory())
    records, _ = reader.read(fences_topic, 0)
    latest = [r.value for r in records if r.key == FENCES_KEY]
    if latest and latest[-1]:
        command = decode_command(latest[-1])
        if isinstance(command, ReplaceFences):
            state.replace_fences(command)
    return state


def resume(cfg: StreamsConfig, reader: PartitionReader, p: int, state: PartitionState,
           checkpoint: Checkpoint | None, ends: dict[tuple[str, int], int]) -> Partition:
    """Partition `p` from a restored (or new) state: it starts at the checkpoint's input offset
    (else the partition's first) and suppresses the alert transitions and dead letters already
    written past the checkpoint; `ends` gets the end offsets of those output partitions."""
    first = reader.bounds(cfg.events_topic, p)[0]
    if checkpoint is None:
        offset, alerts_from, dead_from = first, None, None
    else:
        offset, alerts_from, dead_from = (checkpoint.offset, checkpoint.alerts_offset,
                                          checkpoint.dead_offset)
        if first > offset:
            log.warning("partition %d: input offsets %d..%d are past retention: the state "
                        "misses them", p, offset, first - 1)
    alerts, ends[(cfg.alerts_topic, p)] = reader.read(cfg.alerts_topic, p, alerts_from)
    dead, ends[(cfg.dead_letter_topic, p)] = reader.read(cfg.dead_letter_topic, p, dead_from)
    part = Partition(cfg.events_topic, p, state, offset,
                     suppress_alerts=Counter(r.value for r in alerts),
                     suppress_dead=_own_dead_offsets(cfg.events_topic, dead),
                     history=cfg.history_len > 0)
    part.last_input = time.monotonic()
    part.snapshot_due = part.last_input + cfg.snapshot_s * (1 + p / cfg.partitions)
    log.info("partition %d: %s at input offset %d; %d alert transitions and %d dead "
             "letters already written past it", p,
             "new engine" if checkpoint is None else
             f"snapshot of {checkpoint.size:,} bytes", offset, len(alerts), len(dead))
    return part


def full_changes(parts: Iterable[Partition], worker_id: str) -> Changes:
    """Everything these partitions hold, for a Redis re-publish."""
    changes = Changes()
    for part in parts:
        views = part.all_views()
        changes.states.update(views)
        changes.last_seen.update(part.last_seen(list(views)))
        _order_details(part, views, changes)
        changes.open_alerts.update(part.state.open_alerts)
        changes.alert_records.update({a["alert_id"]: a for a in part.engine.alerts()})
        changes.partitions[part.number] = part.progress(worker_id, now_ms())
    changes.known = set(changes.states)
    return changes


def _order_details(part: Partition, names: Iterable[str], changes: Changes) -> None:
    customers, facts, ssccs = part.order_details(names)
    changes.customers.update(customers)
    changes.orders.update(facts)
    changes.ssccs.update(ssccs)


def _own_dead_offsets(events_topic: str, dead: list) -> set[int]:
    """Input offsets of the dead letters workers wrote for `events_topic` (others, such as the
    MQTT bridge's, also go to the dead-letter topic)."""
    records = (orjson.loads(r.value) for r in dead)
    return {d["offset"] for d in records if d.get("topic") == events_topic and "offset" in d}
