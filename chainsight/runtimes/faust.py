"""ChainSight inside a Faust app: the Kafka worker's engine, partitions, snapshots and outputs,
driven by Faust agents (`pip install chainsight[faust]`).

`add_chainsight(app)` registers on a user's `faust.App`:

- an agent on the events topic (raw bytes) taking records in batches (`stream.take_events`);
  each input partition assigned to the app has its own `Partition` (one engine), exactly as in
  `chainsight worker`, so both give the same alerts, dead letters, audit and record entries and
  Redis live state;
- a table, `<prefix>.snapshots`, whose changelog topic holds each partition's snapshot in the
  Kafka runtime's versioned format (chunks keyed `<p>:<offset>:<i>` and a checkpoint keyed
  `<p>`, raw bytes: never pickled). Faust recovers the table on every rebalance; each assigned
  partition is then restored from it and its checkpoint tells which alert transitions and dead
  letters were already written past it, which are not written again (`Partition`);
- timers that write wall-clock ticks into idle partitions and snapshot partitions that moved;
- the alerts, dead-letter, audit and records topics, written by the app's producer.

Nothing is skipped: Faust resumes a partition at the group's committed offset, which a killed
worker may have committed past its last snapshot, so a restored partition first processes the
records in between (read directly); records Faust delivers before the partition is restored
are dropped and fetched again (the restore seeks to the snapshot's offset); and any gap in the
offsets Faust delivers is filled the same way. Nothing is written twice: what was already
written past the snapshot is suppressed. A snapshot is taken when partitions are revoked and
when the app stops.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict, deque
from collections.abc import Awaitable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import faust
from confluent_kafka import Consumer, TopicPartition
from faust.types import TP, EventT, StreamT

from chainsight.contract.times import now_ms
from chainsight.outputs.redis import Changes, LiveState
from chainsight.runtimes.kafka import control, shell, snapshots
from chainsight.runtimes.kafka.admin import describe, ensure_topics
from chainsight.runtimes.kafka.config import COMPACTED, StreamsConfig, load_streams_config
from chainsight.runtimes.kafka.partition import Batch, Partition, PartitionState
from chainsight.runtimes.kafka.shell import EngineFactory
from chainsight.runtimes.kafka.snapshots import Checkpoint, PartitionReader

log = logging.getLogger("chainsight.worker")
TIMER_S = 0.5  # how often the timers look for idle partitions and due snapshots
STALLED_S = 2.0  # Faust delivering nothing this long while records wait: see FAUST_RACE
# A race in Faust (faust-streaming 0.15.3): a fetch still in flight when a rebalance stops the
# consumer's flow may return after the table recovery has seeked the changelog partitions; Faust
# then drops those records and seeks back to the group's committed offsets, which partitions
# that have none (every changelog partition; the input partitions of a new group) do not have,
# so the dropped records are never fetched again. The seek came with
# https://github.com/faust-streaming/faust/pull/256; the race is described in
# https://github.com/faust-streaming/faust/pull/263 (whose `wait_for_stopped_flow` waits for
# nothing in 0.15.3: `_wait_next_records` sets the event it should clear). Recovery then waits
# for the dropped changelog records forever ("No event received for active tp"), and an input
# partition is not delivered from there. Both are undone after `STALLED_S` without progress.
FAUST_RACE = "https://github.com/faust-streaming/faust/pull/263"


class DeliveryFailed(RuntimeError):
    """An output record could not be written: the app stops rather than lose it."""


class _Record:
    """A Faust message as `Partition` reads records (confluent-kafka's `Message` methods)."""

    __slots__ = ("message",)

    def __init__(self, message: Any) -> None:
        self.message = message

    def offset(self) -> int:
        return self.message.offset

    def key(self) -> bytes | None:
        return self.message.key

    def value(self) -> bytes | None:
        return self.message.value

    def headers(self) -> list[tuple[str, bytes]] | None:
        return self.message.headers

    def timestamp(self) -> tuple[int, int]:
        return 1, round(self.message.timestamp * 1000)


@dataclass
class ChainSightAgents:
    """What `add_chainsight` registered: the topics, the table and the agent, for the app's
    own agents and web views (e.g. an agent of its own on `alerts`)."""

    events: faust.TopicT
    alerts: faust.TopicT
    dead_letters: faust.TopicT
    snapshots: faust.Table
    agent: faust.types.AgentT
    runtime: FaustRuntime


def add_chainsight(app: faust.App, config: StreamsConfig | None = None,
                   engine_factory: EngineFactory | None = None) -> ChainSightAgents:
    """Register ChainSight's topics, snapshot table, agent and timers on `app`.

    `config` defaults to the `chainsight worker` settings (`CHAINSIGHT_*`, `streams.json`);
    `engine_factory` to a live engine from the configured settings and profiles. The app's
    consumer group (`app.conf.id`) plays the part of `CHAINSIGHT_APP_ID`.
    """
    if config is None:
        config = load_streams_config()
    if engine_factory is None:
        engine_factory = partial(_default_engine, config.partitions)
    return FaustRuntime(app, config, engine_factory).registered


def _default_engine(partitions: int) -> Any:
    """A live engine as `chainsight worker` makes it (each partition learns its own ETA
    model)."""
    from chainsight.config import load_profiles, load_settings
    from chainsight.engine.core import Engine

    return Engine(load_settings(eta_shards=partitions), load_profiles(), live=True)


def _raw_topic(app: faust.App, name: str, **options: Any) -> faust.TopicT:
    return app.topic(name, key_type=bytes, value_type=bytes, key_serializer="raw",
                     value_serializer="raw", **options)


class FaustRuntime:
    """The partitions this app owns and the Faust handlers that drive them."""

    def __init__(self, app: faust.App, config: StreamsConfig,
                 engine_factory: EngineFactory) -> None:
        self.app = app
        self.config = config
        self.engine_factory = engine_factory
        self.parts: dict[int, Partition] = {}
        self.ends: dict[tuple[str, int], int] = {}  # output (topic, partition) -> end offset
        self.pending: deque[Awaitable[Any]] = deque()  # output records not yet delivered
        self.failure: BaseException | None = None  # an output failure, or a failed restore
        self.lock = asyncio.Lock()  # one batch, restore or snapshot at a time
        self.stopped = False
        self.delivered_at = time.monotonic()  # when Faust last delivered records to the agent
        self.recovery_waits: dict[TP, int] = {}  # changelog partition -> offset recovery is at
        self.recovery_since = 0.0  # when recovery_waits last changed
        self.reader: PartitionReader | None = None
        self.live: LiveState | None = None
        cfg = config
        events = _raw_topic(app, cfg.events_topic)
        self.table = app.Table(f"{cfg.topic_prefix}.snapshots", key_type=bytes,
                               value_type=bytes,  # raw keys and values: our own format
                               partitions=cfg.partitions, extra_topic_configs=COMPACTED)
        agent = app.agent(events, name=f"{cfg.topic_prefix}.engine")(self._consume)
        self.registered = ChainSightAgents(
            events=events, alerts=_raw_topic(app, cfg.alerts_topic),
            dead_letters=_raw_topic(app, cfg.dead_letter_topic), snapshots=self.table,
            agent=agent, runtime=self)
        app.timer(TIMER_S, name=f"{cfg.topic_prefix}.ticks")(self._tick_idle)
        app.timer(TIMER_S, name=f"{cfg.topic_prefix}.snapshots")(self._snapshot_due)
        app.timer(TIMER_S, name=f"{cfg.topic_prefix}.live")(self._refresh_live)
        app.timer(TIMER_S, name=f"{cfg.topic_prefix}.recovery")(self._unstick_recovery)
        app.on_worker_init.connect(self._on_worker_init)
        self.table.on_recover(self._on_recovered)
        app.on_partitions_revoked.connect(self._on_revoked)
        app.on_before_shutdown.connect(self._on_shutdown)

    # --- lifecycle -------------------------------------------------------------------------

    def _on_worker_init(self, app: faust.App, **_: Any) -> None:
        self.prepare()

    def prepare(self) -> None:
        """Create our topics (all with the same partition count) before Faust subscribes, and
        the connections restores and the live state use. Done when `faust worker` starts the
        app (`on_worker_init`); call it before starting a `faust.Worker` of your own."""
        if self.reader is not None:
            return
        cfg = self.config
        topics = {name: n for name, n in cfg.topics().items()  # snapshots: in the table
                  if name not in (cfg.snapshots_topic, cfg.checkpoints_topic)}
        ensure_topics(cfg.bootstrap, {**topics, self.table.changelog_topic_name: cfg.partitions},
                      replication_factor=cfg.replication_factor,
                      configs={**cfg.topic_configs(), self.table.changelog_topic_name: COMPACTED})
        self.reader = PartitionReader(cfg.bootstrap)
        self.live = LiveState(cfg.redis_url, cfg.redis_prefix, cfg.history_len,
                              lambda: shell.full_changes(self.parts.values(), cfg.worker_id))
        log.info("worker %s joining group %s on %s (Faust)", cfg.worker_id, self.app.conf.id,
                 cfg.events_topic)

    async def _on_shutdown(self, app: faust.App, **_: Any) -> None:
        """The app stops: snapshot every partition (unless an output failed), then close."""
        async with self.lock:
            if self.failure is None and self.parts:
                await self._snapshot(list(self.parts.values()))
            self.parts.clear()
            self.stopped = True
        if self.reader is not None:
            self.reader.close()
        if self.live is not None:
            self.live.close()
        log.info("worker %s stopped", self.config.worker_id)

    async def _fail(self, exc: BaseException) -> None:
        """Stop the app; the partitions keep their last good snapshots."""
        self.failure = exc
        self.parts.clear()
        await self.app.crash(exc)

    # --- processing ------------------------------------------------------------------------

    async def _consume(self, stream: StreamT) -> None:
        cfg = self.config
        async for events in stream.take_events(cfg.batch_max, within=cfg.poll_ms / 1000):
            try:  # Faust cancels agents on rebalances: a batch is processed whole or not at all
                await asyncio.shield(self._process(events))
            except DeliveryFailed as exc:
                await self._fail(exc)

    async def _process(self, events: list[EventT]) -> None:
        by_partition: dict[int, list[_Record]] = defaultdict(list)
        for event in events:
            by_partition[event.message.partition].append(_Record(event.message))
        async with self.lock:
            changes = Changes()
            now = self.delivered_at = time.monotonic()
            for p, records in by_partition.items():
                part = self.parts.get(p)
                if part is None or self.stopped:  # not (or no longer) ours: see _restore_assigned
                    continue
                part.last_input = now
                await self._feed(part, records, changes)
            self._write_live(changes)

    async def _feed(self, part: Partition, records: list[_Record], changes: Changes) -> None:
        """Process records in offset order, each once: after a seek back Faust may deliver some
        again, and a gap (records it did not deliver) is filled by reading them directly."""
        run: list[_Record] = []
        for record in records:
            offset = record.offset()
            expected = run[-1].offset() + 1 if run else part.next_offset
            if offset < expected:
                continue
            if offset > expected:
                if run:
                    await self._emit(part, part.process(run), changes)
                    run = []
                await self._catch_up(part, offset, changes)
            run.append(record)
        if run:
            await self._emit(part, part.process(run), changes)

    async def _emit(self, part: Partition, batch: Batch, changes: Changes) -> None:
        sends: list[tuple[str, bytes | None, bytes]] = []
        shell.emit(self.config, part, batch, changes,
                   lambda topic, key, value: sends.append((topic, key, value)))
        producer = self.app.producer
        for topic, key, value in sends:
            self.pending.append(await producer.send(topic, key, value, part.number, None, None))
        self._settle()

    def _write_live(self, changes: Changes) -> None:
        if self.live is not None:
            self.live.write(changes)

    async def _refresh_live(self) -> None:
        """Re-publish the live state when due (Redis was away or restarted) while no records
        arrive, as the default worker's loop does; and when Faust has delivered nothing for
        `STALLED_S` while records wait (it may have dropped them: FAUST_RACE), process them,
        read directly."""
        async with self.lock:
            changes = Changes()
            now = time.monotonic()
            if now - self.delivered_at >= STALLED_S and self.reader is not None \
                    and not self.stopped:
                self.delivered_at = now
                loop = asyncio.get_running_loop()
                for part in list(self.parts.values()):
                    _, end = await loop.run_in_executor(None, self.reader.bounds,
                                                        self.config.events_topic, part.number)
                    if end > part.next_offset:
                        log.warning("partition %d: Faust has not delivered offsets %d..%d",
                                    part.number, part.next_offset, end - 1)
                        await self._catch_up(part, end, changes)
            self._write_live(changes)

    async def _unstick_recovery(self) -> None:
        """When the table's recovery has applied nothing for `STALLED_S` while changelog
        records remain (Faust dropped them: FAUST_RACE), fetch each waiting changelog partition
        again from the last record recovery applied (Faust skips the records it has)."""
        recovery = self.app.tables.recovery
        waits = {tp: offset for tp, left in recovery.active_remaining().items() if left > 0
                 and (offset := recovery.active_offsets[tp]) is not None} \
            if recovery.in_recovery else {}
        now = time.monotonic()
        if waits != self.recovery_waits:
            self.recovery_waits, self.recovery_since = waits, now
        elif waits and now - self.recovery_since >= STALLED_S:
            for tp, offset in waits.items():
                log.warning("table recovery stalled at offset %d of %s: fetching it again "
                            "(%s)", offset, tp, FAUST_RACE)
            await self.app.consumer.seek_wait({tp: max(offset, 0) for tp, offset in waits.items()})
            self.recovery_since = now

    # --- Kafka outputs ---------------------------------------------------------------------

    def _settle(self) -> None:
        """Account for the delivered output records (end offsets); DeliveryFailed on a failed
        one."""
        while self.pending and self.pending[0].done():  # type: ignore[attr-defined]
            future = self.pending.popleft()
            if future.exception() is not None:  # type: ignore[attr-defined]
                raise DeliveryFailed(f"output record not delivered: {future.exception()}")
            meta = future.result()  # type: ignore[attr-defined]
            key = (meta.topic, meta.partition)
            self.ends[key] = max(self.ends.get(key, 0), meta.offset + 1)

    async def _flush(self) -> None:
        """Wait until every record sent so far (outputs and table changes) is delivered."""
        await self.app.producer.flush()
        if self.pending:
            await asyncio.wait(list(self.pending))
        self._settle()

    async def _tick_idle(self) -> None:
        """Write a wall-clock tick into each partition idle for `tick_s` (see control.py)."""
        cfg = self.config
        for part in shell.ticks_due(list(self.parts.values()), cfg.tick_s, time.monotonic()):
            headers, value = control.tick(now_ms())
            self.pending.append(await self.app.producer.send(
                cfg.events_topic, None, value, part.number, None, headers))

    # --- snapshots in the table ------------------------------------------------------------

    def _put(self, p: int, key: bytes, value: bytes | None) -> Awaitable[Any]:
        """Set (None: delete) a key of the table, in changelog partition `p`."""
        if value is None:
            self.table.data.pop(key, None)
        else:
            self.table.data[key] = value
        return self.table.send_changelog(p, key, value, value_serializer="raw")

    def _checkpoint(self, p: int) -> Checkpoint | None:
        value = self.table.data.get(str(p).encode())
        return Checkpoint.from_json(value) if value else None

    async def _snapshot_due(self) -> None:
        async with self.lock:
            now = time.monotonic()
            part = shell.snapshot_due(list(self.parts.values()), now)
            if part is not None and self.failure is None:
                try:
                    await self._snapshot([part])
                except DeliveryFailed as exc:
                    await self._fail(exc)
                    return
                part.snapshot_due = now + self.config.snapshot_s

    async def _snapshot(self, parts: list[Partition]) -> None:
        """Write each partition's snapshot to the table: chunks, then (once they and every
        output sent before are delivered) the checkpoint naming them; then drop the previous
        chunks."""
        cfg = self.config
        taken = []
        for part in parts:
            p = part.number
            blob = snapshots.dump(part.state)
            chunks = [self._put(p, snapshots.chunk_key(p, part.next_offset, i), chunk)
                      for i, chunk in enumerate(snapshots.split(blob, cfg.snapshot_chunk_bytes))]
            taken.append((part, part.next_offset, chunks, len(blob)))
        await self._flush()
        for part, offset, chunks, size in taken:
            p = part.number
            previous = self._checkpoint(p)
            written = [await chunk for chunk in chunks]
            checkpoint = Checkpoint(
                offset=offset, alerts_offset=self.ends.get((cfg.alerts_topic, p), 0),
                dead_offset=self.ends.get((cfg.dead_letter_topic, p), 0),
                chunk_offset=min(meta.offset for meta in written), chunks=len(chunks),
                size=size, worker=cfg.worker_id, taken_at=now_ms())
            self._put(p, str(p).encode(), checkpoint.to_json())
            part.snapshot_offset = offset
            if previous is not None and previous.offset != offset:
                for key in previous.chunk_keys(p):
                    self._put(p, key, None)
        await self._flush()

    # --- rebalancing -----------------------------------------------------------------------

    async def _on_revoked(self, app: faust.App, revoked: set[Any], **_: Any) -> None:
        """Snapshot the partitions we lose, so that their next owner starts exactly there
        (Faust has waited for the records in flight)."""
        async with self.lock:
            parts = [self.parts.pop(tp.partition) for tp in revoked
                     if tp.topic == self.config.events_topic and tp.partition in self.parts]
            if parts and self.failure is None:
                await self._snapshot(parts)
        if parts:
            log.info("partitions %s revoked", sorted(p.number for p in parts))

    async def _on_recovered(self) -> None:
        """The table is recovered after a rebalance: restore each newly assigned partition."""
        try:
            async with self.lock:
                await self._restore_assigned()
        except Exception as exc:  # Faust would only log it: stop with the reason instead
            log.error("restoring partitions failed: %s", exc)
            await self._fail(exc)

    async def _restore_assigned(self) -> None:
        cfg = self.config
        self.prepare()
        assigned = {tp.partition for tp in self.app.consumer.assignment()
                    if tp.topic == cfg.events_topic}
        for p in set(self.parts) - assigned:
            del self.parts[p]
        new = sorted(assigned - set(self.parts))
        loop = asyncio.get_running_loop()
        committed = await loop.run_in_executor(None, self._committed, new) if new else {}
        for p in new:
            checkpoint = self._checkpoint(p)
            blob = None if checkpoint is None else self._blob(p, checkpoint)
            part = await loop.run_in_executor(None, self._restore, p, checkpoint, blob)
            self.parts[p] = part
            changes = Changes()
            await self._catch_up(part, committed.get(p), changes)
            self._write_live(changes)
            # Faust may have fetched (and we dropped) records before the partition was ours:
            # have them again from here (Faust then seeks to the committed offset, if any).
            # seek_wait seeks in the consumer's thread: `seek` would move the fetcher's
            # records from under it (aiokafka's `fetched_records` then fails with a KeyError).
            await self.app.consumer.seek_wait({TP(cfg.events_topic, p): part.next_offset})
        self.delivered_at = time.monotonic()  # Faust has `STALLED_S` to deliver from here
        if self.live is not None:
            self.live.resync = True
        log.info("partitions %s assigned; now owning %s", new, sorted(self.parts))

    def _blob(self, p: int, checkpoint: Checkpoint) -> bytes:
        chunks = [self.table.data.get(key) for key in checkpoint.chunk_keys(p)]
        if any(chunk is None for chunk in chunks):
            raise snapshots.SnapshotError(f"partition {p}: snapshot at offset "
                                          f"{checkpoint.offset} is incomplete")
        return b"".join(chunks)

    def _restore(self, p: int, checkpoint: Checkpoint | None, blob: bytes | None) -> Partition:
        """Partition `p` from its snapshot (blocking: run in an executor thread)."""
        cfg, reader = self.config, self.reader
        assert reader is not None
        if checkpoint is None or blob is None:
            state = shell.new_state(self.engine_factory, reader, cfg.fences_topic)
        else:
            state = PartitionState(self.engine_factory())
            try:
                snapshots.load(blob, state)
            except snapshots.SnapshotError as exc:
                raise snapshots.SnapshotError(f"partition {p}: {exc}") from None
        return shell.resume(cfg, reader, p, state, checkpoint, self.ends)

    def _committed(self, partitions: list[int]) -> dict[int, int]:
        """The group's committed offsets of these input partitions (where Faust resumes)."""
        cfg = self.config
        consumer = Consumer({"bootstrap.servers": cfg.bootstrap, "group.id": self.app.conf.id,
                             "enable.auto.commit": False, "log_level": 3})
        try:
            found = consumer.committed([TopicPartition(cfg.events_topic, p)
                                        for p in partitions], timeout=30)
        finally:
            consumer.close()
        return {tp.partition: tp.offset for tp in found if tp.offset >= 0}

    async def _catch_up(self, part: Partition, until: int | None, changes: Changes) -> None:
        """Process the records from the partition's next offset to `until` (where Faust
        resumes it, or the next record it delivers), read directly."""
        cfg, reader = self.config, self.reader
        assert reader is not None
        if until is None or until <= part.next_offset:
            return
        loop = asyncio.get_running_loop()
        first, _ = await loop.run_in_executor(None, reader.bounds, cfg.events_topic, part.number)
        part.next_offset = max(part.next_offset, first)
        while part.next_offset < until:
            end = min(until, part.next_offset + cfg.batch_max)
            records = await loop.run_in_executor(None, reader.messages, cfg.events_topic,
                                                 part.number, part.next_offset, end)
            await self._emit(part, part.process(records), changes)
            part.next_offset = max(part.next_offset, end)  # transaction markers: no records
        log.info("partition %d: caught up to offset %d", part.number, until)


def faust_app(config: StreamsConfig, data_dir: Path, web_port: int | None = None) -> faust.App:
    """The app `chainsight worker --runtime faust` runs: group `app_id`, tables in memory
    (recovered from their changelogs), Faust's web server on `web_port` if given."""
    return faust.App(
        config.app_id, broker=";".join(f"kafka://{host}" for host in config.bootstrap.split(",")),
        store="memory://", datadir=str(data_dir), web_enabled=web_port is not None,
        web_port=web_port or 6066, topic_partitions=config.partitions,
        topic_replication_factor=config.replication_factor, producer_acks=-1,
        stream_buffer_maxsize=65_536, broker_max_poll_records=config.batch_max,
        consumer_max_fetch_size=8 << 20,
        broker_session_timeout=6.0, broker_heartbeat_interval=1.5)  # a killed worker's
    # partitions move within seconds, as with `chainsight worker`


def run_worker(config: StreamsConfig, engine_factory: EngineFactory, data_dir: Path,
               web_port: int | None = None, log_level: str = "info") -> None:
    """Run a Faust worker of `faust_app` with ChainSight's agents until SIGTERM/SIGINT; a
    failure stops it with a one-line message."""
    app = faust_app(config, data_dir, web_port)
    runtime = add_chainsight(app, config, engine_factory).runtime
    runtime.prepare()
    worker = faust.Worker(app, loglevel=log_level, quiet=True)
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        if runtime.failure is None and exc.code:
            raise
    if runtime.failure is not None:
        if isinstance(runtime.failure, snapshots.SnapshotError):
            raise runtime.failure
        raise SystemExit(f"chainsight worker: {describe(runtime.failure)}")
