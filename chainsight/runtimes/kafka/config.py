"""Configuration of the distributed runtime (loaded like every setting: see `chainsight.config`)."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

from chainsight.config import layered

DEFAULT_BOOTSTRAP = "127.0.0.1:9093"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6390/0"
# Compacted topics that hold the latest snapshot of each partition: roll segments often so the
# log cleaner can drop superseded snapshots and tombstones within minutes.
COMPACTED = {"cleanup.policy": "compact", "segment.ms": "300000",
             "min.cleanable.dirty.ratio": "0.1", "delete.retention.ms": "300000"}

# Kept for good, one copy per key: entries made again after a restore replace themselves.
KEPT_ONCE = {"cleanup.policy": "compact"}

ENV = {"bootstrap": "CHAINSIGHT_KAFKA_BOOTSTRAP"}  # other fields: CHAINSIGHT_<FIELD>


@dataclass(frozen=True)
class StreamsConfig:
    """Where the worker reads and writes, and how often it ticks and snapshots."""

    bootstrap: str = DEFAULT_BOOTSTRAP
    redis_url: str = DEFAULT_REDIS_URL
    topic_prefix: str = "chainsight"
    app_id: str = ""  # consumer group; default "<topic_prefix>.worker"
    worker_id: str = ""  # shown in logs and Redis; default "<host>-<pid>"
    partitions: int = 8
    replication_factor: int = 1
    batch_max: int = 20_000  # records per poll
    poll_ms: int = 50
    tick_s: float = 5.0  # an idle partition gets a wall-clock tick this often; 0: never
    snapshot_s: float = 10.0  # a partition that moved is snapshotted this often
    snapshot_chunk_bytes: int = 512 * 1024
    history_len: int = 100  # recent events kept per shipment in Redis; 0: none

    def __post_init__(self) -> None:
        if not self.app_id:
            object.__setattr__(self, "app_id", f"{self.topic_prefix}.worker")
        if not self.worker_id:
            object.__setattr__(self, "worker_id", f"{socket.gethostname()}-{os.getpid()}")
        if self.partitions < 1:
            raise ValueError("partitions must be >= 1")

    @property
    def events_topic(self) -> str:
        return f"{self.topic_prefix}.events"

    @property
    def alerts_topic(self) -> str:
        return f"{self.topic_prefix}.alerts"

    @property
    def dead_letter_topic(self) -> str:
        return f"{self.topic_prefix}.dead-letter"

    @property
    def snapshots_topic(self) -> str:
        return f"{self.topic_prefix}.snapshots"

    @property
    def checkpoints_topic(self) -> str:
        return f"{self.topic_prefix}.checkpoints"

    @property
    def audit_topic(self) -> str:
        """Audit-trail entries of each partition's engine, keyed `<partition>:<seq>`."""
        return f"{self.topic_prefix}.audit"

    @property
    def records_topic(self) -> str:
        """Entries of the shipments' tamper-evident records, keyed `<shipment>:<seq>`."""
        return f"{self.topic_prefix}.records"

    @property
    def fences_topic(self) -> str:
        """The latest fence set (one partition, compacted): what a new engine starts with."""
        return f"{self.topic_prefix}.fences"

    @property
    def redis_prefix(self) -> str:
        """Every Redis key and channel of this deployment starts with this."""
        return f"cs:{self.topic_prefix}:"

    def partitioned_topics(self) -> tuple[str, ...]:
        """The topics whose partition p belongs to input partition p."""
        return (self.events_topic, self.alerts_topic, self.dead_letter_topic,
                self.snapshots_topic, self.checkpoints_topic, self.audit_topic,
                self.records_topic)

    def topics(self) -> dict[str, int]:
        """Every topic of the runtime and its partition count."""
        return {**dict.fromkeys(self.partitioned_topics(), self.partitions),
                self.fences_topic: 1}

    def topic_configs(self) -> dict[str, dict[str, str]]:
        return {self.snapshots_topic: COMPACTED, self.checkpoints_topic: COMPACTED,
                self.audit_topic: COMPACTED, self.fences_topic: COMPACTED,
                self.records_topic: KEPT_ONCE}


def load_streams_config(**overrides: object) -> StreamsConfig:
    """The distributed runtime's settings: defaults, the config directory's `streams.json`,
    `CHAINSIGHT_*` environment variables, then `overrides` (see `chainsight.config`)."""
    return layered(StreamsConfig, "streams.json", ENV, **overrides)
