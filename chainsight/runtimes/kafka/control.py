"""In-band control records on the events topic: clock ticks, end-of-stream markers, commands.

Anything that changes a partition's engine without an event (a wall-clock tick of an idle
partition, the end of a recorded stream, a user's command) is written into that partition as a
record with the header `chainsight-control`, so that reprocessing the partition after a crash
replays it at the same position and gives the same results, and a snapshot covers it. The value
is a small JSON object:

- `tick`    `{"now": ms}`: `Engine.advance(now)`, written by a worker for an idle partition;
- `flush`   `{"clock": ms}`: `Engine.flush(clock)`: everything held is processed, then event
  time moves to `clock` (the stream time of the whole recording, which one partition may not
  have reached), written by a producer at the end of a recording;
- `command` a user command (`chainsight.contract.commands`: acknowledge, resolve, replace_fences),
  keyed by its shipment so that it reaches the partition that owns the alert; a fence
  replacement goes to every partition.

A control record of another kind, or whose value is not what its kind needs, is refused
(`CommandRefused`, one line) without touching the engine: the worker dead-letters it.
"""

from __future__ import annotations

from collections.abc import Sequence

import orjson

from chainsight.contract.commands import Command, CommandRefused, encode_command
from chainsight.engine.core import Engine, Output

HEADER = "chainsight-control"
TICK, FLUSH, COMMAND = b"tick", b"flush", b"command"
MAX_MS = 2**53  # times beyond this are not epoch milliseconds the engine can hold

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
    """The control kind of a record (b"" when the header has no value), None for an event."""
    for name, value in headers:
        if name == HEADER:
            return value or b""
    return None


def apply(engine: Engine, control: bytes, value: bytes | None) -> Output:
    """Run a tick or flush record through `engine` (commands: see `Partition`); CommandRefused,
    the engine untouched, for an unknown kind or a bad value."""
    if control == TICK:
        return engine.advance(_time(value, "now"))
    if control == FLUSH:
        return engine.flush(_time(value, "clock"))
    raise CommandRefused(f"unknown control kind {control.decode(errors='replace')!r}")


def _time(value: bytes | None, name: str) -> int:
    """The epoch-ms field `name` of a control record's JSON object value."""
    try:
        body = orjson.loads(value or b"")
    except orjson.JSONDecodeError as exc:
        raise CommandRefused(f"control record value is not JSON: {exc}") from None
    ms = body.get(name) if isinstance(body, dict) else None
    if type(ms) is not int or not 0 <= ms < MAX_MS:
        raise CommandRefused(f"control record value needs {name!r}: epoch milliseconds")
    return ms
