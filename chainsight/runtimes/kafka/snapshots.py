"""Durable per-partition engine snapshots in Kafka, and reading partitions back.

A snapshot of input partition `p` is its state (`PartitionState.dump_state()`: the engine's
state and the open alerts) in an explicit, versioned format, cut into chunks on partition `p` of
the snapshots topic (keys `"<p>:<offset>:<i>"`), plus a small `Checkpoint` on partition `p` of the
checkpoints topic (key `"<p>"`) that names the chunks, the input offset the snapshot reflects,
and how far the alerts and dead-letter partitions had been written. Both topics are compacted;
chunks of superseded snapshots are deleted with tombstones once the newer checkpoint is durable.

Format (version 3): zlib-compressed MessagePack of `{"format": "chainsight-snapshot",
"version": 3, "state": ...}`. The state is plain data (maps, lists, strings, numbers, bytes);
NumPy arrays are extension type 1: a MessagePack `[dtype, shape, raw bytes]` with a dtype from
`DTYPES`. Decoding builds only these; it never runs code or imports anything by name. Version 2
was a pickle: `chainsight migrate-snapshots --trust-pickle` (`migrate.py`) converts it.
"""

from __future__ import annotations

import time
import zlib
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple, Protocol

import msgspec
import numpy as np
import orjson
from confluent_kafka import Consumer, KafkaException, Message, TopicPartition


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
MAGIC = "chainsight-snapshot"
FORMAT = 3  # bump when the layout of any component's state changes incompatibly
ARRAY = 1  # MessagePack extension type of a NumPy array
DTYPES = frozenset({"|b1", "|i1", "|u1", "<i2", "<u2", "<i4", "<u4", "<i8", "<u8", "<f4", "<f8"})
MIGRATE_HINT = "run `chainsight migrate-snapshots --trust-pickle` (with the workers stopped)"


class SnapshotError(RuntimeError):
    """A snapshot this worker cannot restore (the message is one line)."""


class Stateful(Protocol):
    def dump_state(self) -> dict: ...

    def load_state(self, data: dict) -> None: ...


def chunk_key(partition: int, offset: int, index: int) -> bytes:
    return f"{partition}:{offset}:{index}".encode()


def _enc_hook(obj: Any) -> msgspec.msgpack.Ext:
    if not isinstance(obj, np.ndarray):
        raise NotImplementedError(f"snapshots cannot hold {type(obj).__name__}")
    arr = np.ascontiguousarray(obj, obj.dtype.newbyteorder("<"))
    if arr.dtype.str not in DTYPES:
        raise NotImplementedError(f"snapshots cannot hold arrays of {arr.dtype}")
    return msgspec.msgpack.Ext(ARRAY, msgspec.msgpack.encode([arr.dtype.str, arr.shape,
                                                               arr.data]))


_array_header = msgspec.msgpack.Decoder(tuple[str, list[int], bytes])


def _ext_hook(code: int, data: memoryview) -> np.ndarray:
    if code != ARRAY:
        raise ValueError(f"unknown extension type {code}")
    dtype, shape, raw = _array_header.decode(data)
    if dtype not in DTYPES:
        raise ValueError(f"arrays of dtype {dtype!r} are not allowed")
    return np.frombuffer(raw, dtype).reshape(shape).copy()


_encoder = msgspec.msgpack.Encoder(enc_hook=_enc_hook)
_decoder = msgspec.msgpack.Decoder(ext_hook=_ext_hook)


def encode(state: dict) -> bytes:
    """A component state (plain data and NumPy arrays) as a compressed version-3 snapshot."""
    return zlib.compress(_encoder.encode({"format": MAGIC, "version": FORMAT, "state": state}), 1)


def decode(blob: bytes) -> dict:
    """The state in an `encode`d blob; SnapshotError for anything else."""
    try:
        raw = zlib.decompress(blob)
    except zlib.error as exc:
        raise SnapshotError(f"snapshot is not readable (truncated or damaged: {exc})") from None
    if raw[:1] == b"\x80" and raw[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        raise SnapshotError(f"snapshot is in the old pickled format (version 2): {MIGRATE_HINT}")
    try:
        data = _decoder.decode(raw)
    except (msgspec.DecodeError, ValueError, TypeError) as exc:
        raise SnapshotError(f"snapshot is not readable ({_one_line(exc)})") from None
    if not isinstance(data, dict) or data.get("format") != MAGIC:
        raise SnapshotError("snapshot is not a chainsight snapshot")
    if data.get("version") != FORMAT:
        raise SnapshotError(
            f"snapshot of version {data.get('version')!r}; this engine reads version {FORMAT} "
            "only: run the version that wrote it, or this one under a new app id or topic "
            "prefix (which rebuilds state from the input)")
    if not isinstance(data.get("state"), dict):
        raise SnapshotError("snapshot holds no state")
    return data["state"]


def dump(state: Stateful) -> bytes:
    """A partition's state (`PartitionState`) as a snapshot."""
    return encode(state.dump_state())


def load(blob: bytes, into: Stateful) -> None:
    """Load a snapshot into `into` (built from this worker's configuration); SnapshotError when
    it cannot be read or does not fit."""
    state = decode(blob)
    try:
        into.load_state(state)
    except (KeyError, IndexError, TypeError, ValueError, msgspec.ValidationError) as exc:
        raise SnapshotError("snapshot does not fit this engine "
                            f"({type(exc).__name__}: {_one_line(exc)})") from None


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300]


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
        records = [Stored(msg.offset(), msg.key(), msg.value())
                   for msg in self.messages(topic, partition, start, end)]
        return records, end

    def messages(self, topic: str, partition: int, start: int, end: int) -> list[Message]:
        """The records of offsets `start` (at least the first kept) to `end` (exclusive)."""
        found: list[Message] = []
        if start >= end:
            return found
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
                    found.append(msg)
        self.consumer.unassign()
        return found

    def latest_checkpoint(self, topic: str, partition: int) -> Checkpoint | None:
        records, _ = self.read(topic, partition)
        values = [r.value for r in records if r.key == str(partition).encode()]
        return Checkpoint.from_json(values[-1]) if values and values[-1] else None

    def blob(self, topic: str, partition: int, checkpoint: Checkpoint) -> bytes:
        """The snapshot a checkpoint names, as written."""
        records, _ = self.read(topic, partition, checkpoint.chunk_offset, checkpoint.chunks)
        if [r.key for r in records] != checkpoint.chunk_keys(partition):
            raise RuntimeError(f"snapshot of partition {partition} at offset "
                               f"{checkpoint.offset} is incomplete")
        return b"".join(r.value or b"" for r in records)

    def load(self, topic: str, partition: int, checkpoint: Checkpoint, into: Stateful) -> None:
        """Load the snapshot a checkpoint names into `into`."""
        try:
            load(self.blob(topic, partition, checkpoint), into)
        except SnapshotError as exc:
            raise SnapshotError(f"partition {partition}: {exc}") from None
