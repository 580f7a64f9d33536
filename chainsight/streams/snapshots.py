"""Durable per-partition engine snapshots in Kafka, and reading partitions back.

A snapshot of input partition `p` is its pickled, zlib-compressed state (the `Engine` and what
goes with it) cut into chunks on partition `p` of the snapshots topic (keys
`"<p>:<offset>:<i>"`), plus a small `Checkpoint` on partition `p` of the checkpoints topic (key
`"<p>"`) that names the chunks, the input offset the snapshot reflects, and how far the alerts
and dead-letter partitions had been written. Both topics are compacted; chunks of superseded
snapshots are deleted with tombstones once the newer checkpoint is durable.
"""

from __future__ import annotations

import pickle
import time
import zlib
from dataclasses import asdict, dataclass
from typing import NamedTuple

import orjson
from confluent_kafka import Consumer, KafkaException, TopicPartition


@dataclass(frozen=True)
class Checkpoint:
    """Where a snapshot is and what it reflects."""

    offset: int  # next input offset to process
    alerts_offset: int  # end of the alerts partition when the snapshot was taken
    dead_offset: int  # end of the dead-letter partition, likewise
    chunk_offset: int  # offset of the first chunk in the snapshots partition
    chunks: int
    size: int  # compressed bytes
    worker: str
    taken_at: int  # wall clock, ms

    def to_json(self) -> bytes:
        return orjson.dumps(asdict(self))

    @classmethod
    def from_json(cls, data: bytes) -> Checkpoint:
        return cls(**orjson.loads(data))

    def chunk_keys(self, partition: int) -> list[bytes]:
        return [chunk_key(partition, self.offset, i) for i in range(self.chunks)]


READ_TIMEOUT_S = 60.0
FORMAT = 2  # engine state layout; bump when a pickled class changes incompatibly


class SnapshotError(RuntimeError):
    """A snapshot this worker cannot restore."""


def chunk_key(partition: int, offset: int, index: int) -> bytes:
    return f"{partition}:{offset}:{index}".encode()


def dump(state: object) -> bytes:
    """Pickle and compress a partition's state (an Engine and what goes with it)."""
    return zlib.compress(pickle.dumps((FORMAT, state), protocol=pickle.HIGHEST_PROTOCOL), 1)


def load(blob: bytes) -> object:
    """The state in a `dump`; SnapshotError when another version of the engine wrote it."""
    try:
        version, state = pickle.loads(zlib.decompress(blob))
    except (AttributeError, ImportError, TypeError, ValueError, pickle.UnpicklingError) as exc:
        version, state = None, exc
    if version != FORMAT:
        raise SnapshotError(
            f"snapshot written by an incompatible engine version ({version or state}); run "
            "this version under a new app id or topic prefix, which rebuilds state from the input")
    return state


def split(blob: bytes, size: int) -> list[bytes]:
    return [blob[i:i + size] for i in range(0, len(blob), size)] or [b""]


class Stored(NamedTuple):
    offset: int
    key: bytes | None
    value: bytes | None


class PartitionReader:
    """Reads ranges of any topic partition with its own group-less consumer (blocking: call it
    from an executor thread)."""

    def __init__(self, bootstrap: str) -> None:
        self.consumer = Consumer({
            "bootstrap.servers": bootstrap, "group.id": "chainsight-reader",
            "enable.auto.commit": False, "enable.partition.eof": False, "log_level": 3,
            "fetch.wait.max.ms": 10,
            "fetch.max.bytes": 64 << 20, "max.partition.fetch.bytes": 8 << 20})

    def close(self) -> None:
        self.consumer.close()

    def bounds(self, topic: str, partition: int) -> tuple[int, int]:
        """(first, end) offsets of a partition."""
        low, high = self.consumer.get_watermark_offsets(TopicPartition(topic, partition),
                                                        timeout=30.0)
        return low, high

    def read(self, topic: str, partition: int, start: int | None = None,
             count: int | None = None) -> tuple[list[Stored], int]:
        """Records from `start` (None: the beginning), `count` of them or up to the current
        end; returns them and the end offset."""
        low, end = self.bounds(topic, partition)
        start = low if start is None else max(start, low)
        if count is not None:
            end = min(end, start + count)
        records: list[Stored] = []
        if start >= end:
            return records, end
        self.consumer.assign([TopicPartition(topic, partition, start)])
        deadline = time.monotonic() + READ_TIMEOUT_S
        position = start
        while position < end:
            if time.monotonic() > deadline:
                raise TimeoutError(f"reading {topic}[{partition}] {start}..{end} timed out")
            for msg in self.consumer.consume(min(10_000, end - position), timeout=0.5):
                if msg.error() is not None:
                    raise KafkaException(msg.error())
                position = msg.offset() + 1
                if msg.offset() < end:
                    records.append(Stored(msg.offset(), msg.key(), msg.value()))
        self.consumer.unassign()
        return records, end

    def latest_checkpoint(self, topic: str, partition: int) -> Checkpoint | None:
        records, _ = self.read(topic, partition)
        values = [r.value for r in records if r.key == str(partition).encode()]
        return Checkpoint.from_json(values[-1]) if values and values[-1] else None

    def load(self, topic: str, partition: int, checkpoint: Checkpoint) -> object:
        records, _ = self.read(topic, partition, checkpoint.chunk_offset, checkpoint.chunks)
        if [r.key for r in records] != checkpoint.chunk_keys(partition):
            raise RuntimeError(f"snapshot of partition {partition} at offset "
                               f"{checkpoint.offset} is incomplete")
        return load(b"".join(r.value or b"" for r in records))
