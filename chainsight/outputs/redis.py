"""Live state in Redis: what API processes read and subscribe to.

Keys (all under the deployment's prefix `cs:<topic prefix>:`):
- `shipments`        hash, shipment id -> its STATE.json entry as JSON (one field per shipment);
- `open_alerts`      hash, alert id -> the alert's latest record as JSON, while not resolved;
- `history:<id>`     list, the shipment's most recent raw events, newest first, capped;
- `record:<id>`      list, the shipment's tamper-evident record (canonical JSON entries, in
                     chain order; entries made again after a restore replace the dead run's);
- `record_heads`     hash, shipment id -> [entries, head hash] of its record;
- `partitions`       hash, partition -> {"offset", "counters", "worker", "at"} (progress);
- `changes`          pub/sub channel; each message is a JSON array (one batch, at most 500) of
                     {"type": "state", "shipment_id", "state"}, {"type": "alert", "alert"} and
                     {"type": "notification", "notification"} (escalations, severity raises).

Writes are pipelined: one round trip and a handful of commands per batch. Redis being down never
stops the worker: writes are skipped (with backoff) and, once Redis answers again, or when it
restarted (its `run_id` changed), the worker re-publishes the full state of its partitions.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import orjson
import redis
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

from chainsight.trace.record import Written

log = logging.getLogger("chainsight.worker")
PUBLISH_CHUNK = 500  # changes per pub/sub message
# Per key: LPUSH its new events (ARGV: the cap, then per key a count and the events), LTRIM.
PUSH_HISTORY = """
local cap, j = tonumber(ARGV[1]), 2
for _, key in ipairs(KEYS) do
  local last = j + tonumber(ARGV[j])
  for k = j + 1, last, 1000 do
    redis.call('LPUSH', key, unpack(ARGV, k, math.min(k + 999, last)))
  end
  redis.call('LTRIM', key, 0, cap - 1)
  j = last + 1
end
"""
# Per key: put the entry at position `seq` of the record (ARGV: per key a seq, the entry and
# its hash), dropping whatever follows it: after a restore a worker makes the entries since its
# snapshot again (batched differently, so hashed differently) and they replace those of the run
# that died. Then note the new length and head in the heads hash (KEYS[1]).
APPEND_RECORD = """
local heads = KEYS[1]
for i = 2, #KEYS do
  local seq, j = tonumber(ARGV[3 * i - 5]), 3 * i - 5
  local n = redis.call('LLEN', KEYS[i])
  if n > seq then
    if seq == 0 then redis.call('DEL', KEYS[i]) else redis.call('LTRIM', KEYS[i], 0, seq - 1) end
  end
  redis.call('RPUSH', KEYS[i], ARGV[j + 1])
  redis.call('HSET', heads, string.sub(KEYS[i], string.len(ARGV[#ARGV]) + 1),
             cjson.encode({seq + 1, ARGV[j + 2]}))
end
"""
RUN_ID_CHECK_S = 2.0
BACKOFF_S = (0.2, 5.0)


@dataclass
class Changes:
    """What one batch changed, for Redis."""

    states: dict[str, dict] = field(default_factory=dict)  # shipment id -> view
    alerts: list[tuple[dict, bool]] = field(default_factory=list)  # (record, publish?)
    notifications: list[dict] = field(default_factory=list)  # escalations, severity raises
    open_alerts: dict[str, dict | None] = field(default_factory=dict)  # id -> record; None: closed
    history: dict[str, list[bytes]] = field(default_factory=dict)  # shipment id -> raw events
    partitions: dict[int, dict] = field(default_factory=dict)  # partition -> progress
    records: list[Written] = field(default_factory=list)  # new entries of the records
    known: set[str] = field(default_factory=set)  # full re-publish: every shipment we own

    def __bool__(self) -> bool:
        return bool(self.states or self.alerts or self.notifications or self.open_alerts
                    or self.history or self.partitions or self.records)


class LiveState:
    """Writes `Changes` to Redis; `full` builds the complete state to re-publish."""

    def __init__(self, url: str, prefix: str, history_len: int,
                 full: Callable[[], Changes]) -> None:
        self.prefix = prefix
        self.history_len = history_len
        self.full = full
        self.shipments_key = f"{prefix}shipments"
        self.alerts_key = f"{prefix}open_alerts"
        self.partitions_key = f"{prefix}partitions"
        self.channel = f"{prefix}changes"
        self.client = redis.Redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=1.0,
                                           retry=Retry(NoBackoff(), 0))
        self.resync = True  # the next successful write re-publishes everything
        self.run_id: str | None = None
        self.retry_at = 0.0
        self.backoff = BACKOFF_S[0]
        self.checked_at = 0.0

    def close(self) -> None:
        self.client.close()

    def write(self, changes: Changes) -> None:
        """Apply `changes`, or the full state when a resync is due; skipped while Redis is away
        (then a resync is due)."""
        now = time.monotonic()
        if now < self.retry_at:
            self.resync = True
            return
        try:
            if now - self.checked_at >= RUN_ID_CHECK_S:
                self._check_run_id()
                self.checked_at = now
            if self.resync:
                full = self.full()
                full.alerts, full.notifications = changes.alerts, changes.notifications
                full.history, full.records = changes.history, changes.records
                self._apply(full, full=True)
                log.info("live state re-published to Redis")
                self.resync = False
            elif changes:
                self._apply(changes)
        except (RedisError, OSError) as exc:
            self.resync = True
            self.retry_at = now + self.backoff
            log.warning("Redis unavailable (%s); retrying in %.1f s", exc, self.backoff)
            self.backoff = min(self.backoff * 2, BACKOFF_S[1])
            return
        self.backoff = BACKOFF_S[0]

    def _check_run_id(self) -> None:
        run_id = self.client.info("server")["run_id"]
        if run_id != self.run_id:
            if self.run_id is not None:
                log.warning("Redis restarted (run_id changed): re-publishing live state")
            self.run_id = run_id
            self.resync = True

    def _apply(self, changes: Changes, full: bool = False) -> None:
        pipe = self.client.pipeline(transaction=False)
        dumps = orjson.dumps
        states = {k: dumps(v) for k, v in changes.states.items()}
        if states:
            pipe.hset(self.shipments_key, mapping=states)
        opened = {aid: dumps(r) for aid, r in changes.open_alerts.items() if r is not None}
        closed = [aid for aid, r in changes.open_alerts.items() if r is None]
        if opened:
            pipe.hset(self.alerts_key, mapping=opened)
        if closed:
            pipe.hdel(self.alerts_key, *closed)
        if full:
            self._drop_stale_alerts(changes, set(opened), pipe)
        if self.history_len and changes.history:
            keys, args = [], [self.history_len]
            for shipment, lines in changes.history.items():
                keys.append(f"{self.prefix}history:{shipment}")
                args.append(min(len(lines), self.history_len))
                args.extend(lines[-self.history_len:])
            pipe.eval(PUSH_HISTORY, len(keys), *keys, *args)
        if changes.records:
            self._append_records(changes.records, pipe)
        if changes.partitions:
            pipe.hset(self.partitions_key,
                      mapping={str(p): dumps(v) for p, v in changes.partitions.items()})
        messages = [b'{"type":"state","shipment_id":%b,"state":%b}' % (dumps(shipment), view)
                    for shipment, view in states.items()]  # each view serialized once
        messages += [dumps({"type": "alert", "alert": record})
                     for record, publish in changes.alerts if publish]
        messages += [dumps({"type": "notification", "notification": note})
                     for note in changes.notifications]
        for i in range(0, len(messages), PUBLISH_CHUNK):
            pipe.publish(self.channel, b"[%b]" % b",".join(messages[i:i + PUBLISH_CHUNK]))
        pipe.execute()

    def _append_records(self, records: list[Written], pipe: redis.client.Pipeline) -> None:
        record_prefix = f"{self.prefix}record:"
        for i in range(0, len(records), 1000):
            chunk = records[i:i + 1000]
            keys = [f"{self.prefix}record_heads"] + [record_prefix + e.shipment_id for e in chunk]
            args = [x for e in chunk for x in (e.seq, e.line, e.hash)]
            pipe.eval(APPEND_RECORD, len(keys), *keys, *args, record_prefix)

    def _drop_stale_alerts(self, changes: Changes, still_open: set[str],
                           pipe: redis.client.Pipeline) -> None:
        """Remove open-alert entries of our shipments that are no longer open (resolved while
        Redis was away, or an older copy of the data came back with a restart)."""
        for aid, value in self.client.hscan_iter(self.alerts_key):
            if aid.decode() in still_open:
                continue
            if orjson.loads(value).get("shipment_id") in changes.known:
                pipe.hdel(self.alerts_key, aid)
