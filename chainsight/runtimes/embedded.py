"""The embedded runtime: an in-process queue feeding the processing core on one thread.

Producers (simulators, an HTTP ingest) `submit` raw JSON lines from any thread; the runtime thread
drains the queue in batches, drives the engine, advances event time on the clock when the stream is
idle, and hands every output to its subscribers. Every engine call that changes state goes
through `calls`: a `Store` logs it first (durable state), `Direct` (the default) does not.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from chainsight.contract.commands import Command
from chainsight.contract.times import now_ms
from chainsight.engine.core import Engine, Output
from chainsight.runtimes.store import Direct

Subscriber = Callable[[Output], None]


@dataclass
class Stats:
    events: int = 0
    alerts: int = 0
    events_per_s: float = 0.0


class EmbeddedRuntime:
    """Drives one `Engine` from an in-process queue on a background thread."""

    def __init__(self, engine: Engine, clock: Callable[[], int] = now_ms,
                 max_batch: int = 20_000, tick_s: float = 0.25,
                 calls: Direct | None = None) -> None:
        self.engine = engine
        self.calls = calls or Direct()
        self.clock = clock  # event time "now" (ms): the wall clock, or a simulator's clock
        self.max_batch = max_batch
        self.tick_s = tick_s
        self.stats = Stats()
        self._queue: queue.Queue[list[bytes] | None] = queue.Queue(maxsize=256)
        self._subscribers: list[Subscriber] = []
        self._thread: threading.Thread | None = None
        self.lock = threading.Lock()  # held while the engine runs; readers of state take it

    def subscribe(self, subscriber: Subscriber) -> None:
        self._subscribers.append(subscriber)

    def submit(self, lines: list[bytes]) -> None:
        """Queue raw JSON lines (blocks when the runtime is far behind: back-pressure)."""
        self._queue.put(lines)

    def process(self, lines: list[bytes]) -> tuple[Output, dict[str, int]]:
        """Process lines now, on the caller's thread (an ingest that answers per event), in
        turn with the runtime thread; the output goes to the subscribers as usual. Also
        returns what the lines added to the engine's counters (events, duplicates...). Once it
        returns, the lines are durable (with a `Store`)."""
        with self.lock:
            before = self.engine.counters
            out = self.calls.process(self.engine, lines, self.clock())
            after = self.engine.counters
            self._publish(out)
        self.calls.sync()
        self.stats.events += len(lines)
        return out, {name: after[name] - before[name] for name in after}

    def apply(self, command: Command) -> Output:
        """Carry out a user command now (see `Engine.apply`; CommandRefused is raised to the
        caller, nothing changed); its transitions go to the subscribers too. Durable once it
        returns (with a `Store`)."""
        with self.lock:
            out = self.calls.apply(self.engine, command)
            self._publish(out)
        self.calls.sync()
        return out

    def start(self) -> EmbeddedRuntime:
        self._thread = threading.Thread(target=self._loop, name="chainsight-engine", daemon=True)
        self._thread.start()
        return self

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self, flush: bool = False) -> None:
        """Process what is queued, optionally flush the reordering buffer, and stop."""
        self._queue.put(None)
        if self._thread is not None:
            self._thread.join()
        with self.lock:
            if flush:
                self._publish(self.calls.flush(self.engine))
            self.calls.sync()

    def end_recording(self) -> None:
        """A recording's end, the runtime going on (serving what it has): process what is
        queued and flush the engine, whose event time then stays until events arrive."""
        self.stop(flush=True)
        self.start()

    def _loop(self) -> None:
        last_tick = time.monotonic()
        window_start, window_events = last_tick, 0
        while True:
            batch, done = self._drain()
            if batch:
                with self.lock:  # outputs go out in the engine's order, commands' included
                    self._publish(self.calls.process(self.engine, batch, self.clock()))
                self.stats.events += len(batch)
                window_events += len(batch)
            now = time.monotonic()
            if now - last_tick >= self.tick_s:
                with self.lock:
                    self._publish(self.calls.advance(self.engine, self.clock()))
                    self.calls.anchor(self.engine, self.clock())
                    if self.calls.due():
                        self.calls.snapshot(self.engine)
                last_tick = now
            if now - window_start >= 1.0:
                self.stats.events_per_s = window_events / (now - window_start)
                window_start, window_events = now, 0
            if done:
                return

    def _drain(self) -> tuple[list[bytes], bool]:
        """Up to `max_batch` queued lines; waits at most one tick for the first."""
        batch: list[bytes] = []
        try:
            item = self._queue.get(timeout=self.tick_s)
        except queue.Empty:
            return batch, False
        while True:
            if item is None:
                return batch, True
            batch.extend(item)
            if len(batch) >= self.max_batch:
                return batch, False
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return batch, False

    def _publish(self, out: Output) -> None:
        self.stats.alerts += len(out.alerts)
        for subscriber in self._subscribers:
            subscriber(out)
