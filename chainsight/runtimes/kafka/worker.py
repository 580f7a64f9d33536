"""`chainsight worker`: the distributed runtime, one process of a Kafka consumer group.

Each input partition assigned to this worker gets its own `Engine` (see `partition.py`), restored
from the partition's newest snapshot when there is one. The loop consumes records in batches,
runs each partition's records through its engine, writes alert transitions and dead letters to
the same partition number of the alerts and dead-letter topics, and the live state to Redis.
Idle partitions get in-band wall-clock ticks; partitions that moved are snapshotted every
`snapshot_s`, and when they are revoked or the worker stops.

One thread does everything: librdkafka calls the rebalance callbacks from inside `consume`,
between two batches, and keeps the group heartbeat on its own thread.
"""

from __future__ import annotations

import logging
import signal
import time
from collections import defaultdict
from functools import partial

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition
from confluent_kafka.admin import AdminClient

from chainsight.contract.times import now_ms
from chainsight.outputs.redis import Changes, LiveState
from chainsight.runtimes.kafka import control, shell, snapshots
from chainsight.runtimes.kafka.admin import describe, ensure_topics, retry_transient
from chainsight.runtimes.kafka.config import StreamsConfig
from chainsight.runtimes.kafka.partition import Batch, Partition, PartitionState
from chainsight.runtimes.kafka.producer import EventProducer
from chainsight.runtimes.kafka.shell import EngineFactory
from chainsight.runtimes.kafka.snapshots import Checkpoint, PartitionReader

log = logging.getLogger("chainsight.worker")
STATS_S = 10.0
FLUSH_TIMEOUT_S = 60.0


class DeliveryFailed(RuntimeError):
    """An output record could not be written: the worker stops rather than lose it."""


class Worker:
    """Consumes the events topic as a member of the `app_id` consumer group."""

    def __init__(self, config: StreamsConfig, engine_factory: EngineFactory) -> None:
        self.config = config
        self.engine_factory = engine_factory
        self.parts: dict[int, Partition] = {}
        self.checkpoints: dict[int, Checkpoint] = {}  # newest durable checkpoint we wrote
        self.ends: dict[tuple[str, int], int] = {}  # output (topic, partition) -> end offset
        self.failure: KafkaError | None = None
        self.stopping = False
        self.events = 0
        self.producer = EventProducer(config.bootstrap, linger_ms=5,
                                      config={"acks": "all", "log_level": 3})
        self.reader = PartitionReader(config.bootstrap)
        self.live = LiveState(config.redis_url, config.redis_prefix, config.history_len,
                              self._full_changes)
        self.consumer = Consumer({
            "bootstrap.servers": config.bootstrap, "group.id": config.app_id,
            "client.id": config.worker_id, "enable.auto.commit": False,
            "auto.offset.reset": "earliest", "partition.assignment.strategy": "cooperative-sticky",
            "session.timeout.ms": 6000, "heartbeat.interval.ms": 1500,
            "fetch.max.bytes": 64 << 20, "max.partition.fetch.bytes": 8 << 20,
            "fetch.wait.max.ms": 20, "log_level": 3})

    # --- lifecycle -----------------------------------------------------------------------

    def run(self) -> None:
        """Join the group and process until `stop()` (or SIGTERM/SIGINT)."""
        cfg = self.config
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self.stop())
        retry_transient(self._ensure_topics, "creating topics", self._is_stopping)
        self.consumer.subscribe([cfg.events_topic], on_assign=self._on_assign,
                                on_revoke=self._on_revoke, on_lost=self._on_lost)
        log.info("worker %s joining group %s on %s", cfg.worker_id, cfg.app_id,
                 cfg.events_topic)
        try:
            self._loop()
        except BaseException:
            self.parts.clear()  # one may be half-processed: keep the last good snapshots
            raise
        finally:
            self._shutdown()

    def stop(self) -> None:
        self.stopping = True

    def _is_stopping(self) -> bool:
        return self.stopping

    def _ensure_topics(self) -> None:
        """Create missing topics; all must have as many partitions as the events topic."""
        cfg = self.config
        ensure_topics(cfg.bootstrap, cfg.topics(), replication_factor=cfg.replication_factor,
                      configs=cfg.topic_configs())
        metadata = AdminClient({"bootstrap.servers": cfg.bootstrap}).list_topics(timeout=30)
        counts = {name: len(metadata.topics[name].partitions)
                  for name in cfg.partitioned_topics()}
        if len(set(counts.values())) > 1:
            raise ValueError(f"topics must have equal partition counts, got {counts}")

    def _shutdown(self) -> None:
        self.consumer.close()  # revokes (and so snapshots) every partition, leaves the group
        self.reader.close()
        self.live.close()
        self.producer.flush(FLUSH_TIMEOUT_S)
        log.info("worker %s stopped", self.config.worker_id)

    # --- the processing loop -------------------------------------------------------------

    def _loop(self) -> None:
        next_stats, stats_events = time.monotonic() + STATS_S, 0
        while not self.stopping:
            messages = self._consume()
            self._check_deliveries()
            by_partition: dict[int, list[Message]] = defaultdict(list)
            for msg in messages:
                if msg.error() is not None:
                    if msg.error().fatal():
                        raise KafkaException(msg.error())
                    log.warning("consumer: %s", msg.error())
                    continue
                by_partition[msg.partition()].append(msg)
            changes = Changes()
            now = time.monotonic()
            for p, records in by_partition.items():
                part = self.parts.get(p)
                if part is None:
                    continue
                part.last_input = now
                before = part.next_offset
                self._emit(part, part.process(records), changes)
                self.events += part.next_offset - before
            self.live.write(changes)
            self._tick_idle(now)
            self._snapshot_due(now)
            if now >= next_stats:
                log.info("%d events in the last %.0f s; partitions %s",
                         self.events - stats_events, STATS_S, sorted(self.parts))
                next_stats, stats_events = now + STATS_S, self.events

    def _snapshot_due(self, now: float) -> None:
        part = shell.snapshot_due(self.parts.values(), now)
        if part is not None:
            self._snapshot([part])
            part.snapshot_due = now + self.config.snapshot_s

    def _consume(self) -> list[Message]:
        """Whatever has arrived (up to `batch_max`) without waiting; when nothing has, wait up to
        `poll_ms` for the first record. Batches grow with the load, latency stays low."""
        cfg = self.config
        messages = self.consumer.consume(cfg.batch_max, timeout=0)
        if not messages:
            first = self.consumer.poll(cfg.poll_ms / 1000)
            if first is not None:
                messages = [first, *self.consumer.consume(cfg.batch_max - 1, timeout=0)]
        return messages

    def _emit(self, part: Partition, batch: Batch, changes: Changes) -> None:
        def send(topic: str, key: bytes | None, value: bytes) -> None:
            self.producer.send(topic, key, value, partition=part.number,
                               on_delivery=self._delivered)

        shell.emit(self.config, part, batch, changes, send)
        self.producer.poll(0)

    def _tick_idle(self, now: float) -> None:
        """Write a wall-clock tick into each partition idle for `tick_s` (see control.py)."""
        for part in shell.ticks_due(self.parts.values(), self.config.tick_s, now):
            headers, value = control.tick(now_ms())
            self.producer.send(self.config.events_topic, None, value, partition=part.number,
                               headers=headers, on_delivery=self._delivered)

    # --- Kafka outputs -------------------------------------------------------------------

    def _delivered(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            self.failure = err
            return
        key = (msg.topic(), msg.partition())
        self.ends[key] = max(self.ends.get(key, 0), msg.offset() + 1)

    def _check_deliveries(self) -> None:
        if self.failure is not None:
            raise DeliveryFailed(f"output record not delivered: {self.failure}")

    def _flush(self) -> None:
        pending = self.producer.flush(FLUSH_TIMEOUT_S)
        if pending:
            raise DeliveryFailed(f"{pending} output records undelivered after "
                                 f"{FLUSH_TIMEOUT_S:.0f} s")
        self._check_deliveries()

    # --- snapshots -----------------------------------------------------------------------

    def _snapshot(self, parts: list[Partition]) -> None:
        """Make a durable snapshot of each partition (see snapshots.py)."""
        cfg = self.config
        first: dict[int, int] = {}

        def chunk_delivered(err: KafkaError | None, msg: Message) -> None:
            if err is None:
                p = msg.partition()
                first[p] = min(first.get(p, msg.offset()), msg.offset())
            else:
                self.failure = err

        taken = []
        for part in parts:
            blob = snapshots.dump(part.state)
            chunks = snapshots.split(blob, cfg.snapshot_chunk_bytes)
            for i, chunk in enumerate(chunks):
                self.producer.send(cfg.snapshots_topic,
                                   snapshots.chunk_key(part.number, part.next_offset, i), chunk,
                                   partition=part.number, on_delivery=chunk_delivered)
            taken.append((part, part.next_offset, len(chunks), len(blob)))
        self._flush()  # the chunks, and every alert emitted before the snapshot
        commits = []
        for part, offset, chunks, size in taken:
            p = part.number
            checkpoint = Checkpoint(
                offset=offset, alerts_offset=self.ends.get((cfg.alerts_topic, p), 0),
                dead_offset=self.ends.get((cfg.dead_letter_topic, p), 0),
                chunk_offset=first[p], chunks=chunks, size=size, worker=cfg.worker_id,
                taken_at=now_ms())
            self.producer.send(cfg.checkpoints_topic, str(p).encode(), checkpoint.to_json(),
                               partition=p)
            previous = self.checkpoints.get(p)
            self.checkpoints[p] = checkpoint
            part.snapshot_offset = offset
            if previous is not None and previous.offset != offset:
                for key in previous.chunk_keys(p):
                    self.producer.send(cfg.snapshots_topic, key, None, partition=p)
            commits.append(TopicPartition(cfg.events_topic, p, offset))
        self._flush()
        try:  # committed offsets only show progress: restores use the checkpoints
            self.consumer.commit(offsets=commits, asynchronous=True)
        except KafkaException as exc:
            log.debug("offset commit skipped: %s", exc)

    # --- rebalancing (called by librdkafka from inside consume/close) ---------------------

    def _on_revoke(self, consumer: Consumer, revoked: list[TopicPartition]) -> None:
        """Snapshot the partitions we lose, so the next owner starts exactly there."""
        parts = [self.parts.pop(tp.partition) for tp in revoked if tp.partition in self.parts]
        if parts and self.failure is None:
            self._snapshot(parts)
        if parts:
            log.info("partitions %s revoked", sorted(p.number for p in parts))

    def _on_lost(self, consumer: Consumer, lost: list[TopicPartition]) -> None:
        """The group moved on without us: another worker may own these already."""
        for tp in lost:
            self.parts.pop(tp.partition, None)
        log.warning("partitions %s lost", sorted(tp.partition for tp in lost))

    def _on_assign(self, consumer: Consumer, assigned: list[TopicPartition]) -> None:
        """Restore each new partition from its newest snapshot and start where it ends."""
        starts = []
        for tp in assigned:  # a new topic's partitions may not have a leader for a moment
            part = self.parts[tp.partition] = retry_transient(
                partial(self._restore, tp.partition), f"restoring partition {tp.partition}",
                self._is_stopping)
            starts.append(TopicPartition(tp.topic, tp.partition, part.next_offset))
        consumer.incremental_assign(starts)
        self.live.resync = True
        log.info("partitions %s assigned; now owning %s", sorted(tp.partition for tp in assigned),
                 sorted(self.parts))

    def _restore(self, p: int) -> Partition:
        cfg, reader = self.config, self.reader
        checkpoint = reader.latest_checkpoint(cfg.checkpoints_topic, p)
        if checkpoint is None:
            state = shell.new_state(self.engine_factory, reader, cfg.fences_topic)
        else:
            state = PartitionState(self.engine_factory())
            reader.load(cfg.snapshots_topic, p, checkpoint, state)
            self.checkpoints[p] = checkpoint
        return shell.resume(cfg, reader, p, state, checkpoint, self.ends)

    def _full_changes(self) -> Changes:
        """Everything this worker owns, for a Redis re-publish."""
        return shell.full_changes(self.parts.values(), self.config.worker_id)


def run_worker(config: StreamsConfig, engine_factory: EngineFactory) -> None:
    """Run one worker until SIGTERM/SIGINT; a Kafka error that does not pass stops it with a
    one-line message (transient ones are retried where they occur)."""
    try:
        Worker(config, engine_factory).run()
    except (KafkaException, DeliveryFailed) as exc:
        raise SystemExit(f"chainsight worker: {describe(exc)}") from None
