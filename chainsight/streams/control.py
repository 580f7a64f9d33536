"""In-band control records on the events topic: clock ticks, end-of-stream markers, commands.

Anything that changes a partition's engine without an event (a wall-clock tick of an idle
partition, the end of a recorded stream, a user's command) is written into that partition as a
record with the header `chainsight-control`, so that reprocessing the partition after a crash
replays it at the same position and gives the same results, and a snapshot covers it. The value
is a small JSON object:

- `tick`    `{"now": ms}`: `Engine.advance(now)`, written by a worker for an idle partition;
- `flush`   `{"clock": ms}`: `Engine.flush()`, then event time moves to `clock` (the newest
  event time of the whole recorded stream), written by a producer at the end of a recording;
- `command` a user command (`chainsight.commands`: acknowledge, resolve, replace_fences),
  keyed by its shipment so that it reaches the partition that owns the alert; a fence
  replacement goes to every partition.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec
import orjson

from chainsight.commands import Command, CommandRefused, encode_command
from chainsight.core import Engine, Output

HEADER = "chainsight-control"
TICK, FLUSH, COMMAND = b"tick", b"flush", b"command"

Headers = Sequence[tuple[str, bytes]]


def tick(now_ms: int) -> tuple[list[tuple[str, bytes]], bytes]:
    """(headers, value) of a wall-clock tick."""
    return [(HEADER, TICK)], orjson.dumps({"now": now_ms})


def flush(clock_ms: int) -> tuple[list[tuple[str, bytes]], bytes]:
    """(headers, value) of an end-of-stream marker."""
    return [(HEADER, FLUSH)], orjson.dumps({"clock": clock_ms})


def command(cmd: Command) -> tuple[list[tuple[str, bytes]], bytes]:
    """(headers, value) of a user command."""
    return [(HEADER, COMMAND)], encode_command(cmd)


def kind(headers: Headers) -> bytes | None:
    """The control kind of a record, None for an event."""
    for name, value in headers:
        if name == HEADER:
            return value
    return None


class Timing(msgspec.Struct, forbid_unknown_fields=True):
    now: int | None = None
    clock: int | None = None


_timing = msgspec.json.Decoder(Timing).decode


def apply(engine: Engine, control: bytes, value: bytes) -> Output:
    """Run a tick or flush record through `engine` (commands: see `Partition`). CommandRefused
    (one line, nothing changed) for a malformed record or an unknown kind."""
    if control not in (TICK, FLUSH):
        raise CommandRefused(f"unknown control record kind {control[:40]!r}")
    try:
        body = _timing(value)
    except (msgspec.DecodeError, RecursionError) as exc:
        raise CommandRefused(f"invalid {control.decode()} record: {exc}") from None
    if control == TICK and body.now is not None:
        return engine.advance(body.now)
    if control == FLUSH and body.clock is not None:
        out = engine.flush()
        return out.extend(engine.advance(body.clock + engine.settings.allowed_lateness_ms))
    raise CommandRefused(f"invalid {control.decode()} record: its time is missing")
