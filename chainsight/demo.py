"""`chainsight demo`: a simulated fleet feeding the embedded runtime at an accelerated clock,
with the HTTP API and the pages served over it and a ready link (with a demo token) for each
reading role: the page that role works in."""

from __future__ import annotations

import queue
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import uvicorn

from chainsight.api.app import create_app
from chainsight.api.auth import TokenStore
from chainsight.api.context import Context
from chainsight.contract.times import iso
from chainsight.engine.core import Engine, Output
from chainsight.geofence import FenceSet
from chainsight.runtimes.embedded import EmbeddedRuntime
from chainsight.sim.simulation import Simulation

BLOCK_LINES = 500
NOTICES = ("geofence_enter", "geofence_exit")  # one-off notices of the fences
DEMO_ROLES = ("admin", "dispatcher", "quality", "sales")
# The page each role's link opens: the sign-in page lists both pages for admin; sales reads
# the map (its role may read shipments and alerts, not act on them).
ROLE_PAGES = {"admin": "/", "dispatcher": "/map", "quality": "/console", "sales": "/map"}


@dataclass
class Serve:
    """Where the demo serves the API, and the data directory of its token store."""

    host: str
    port: int
    data_dir: Path


@dataclass
class SimClock:
    """Event time that runs `speedup` times faster than the wall clock from `start_ms`."""

    start_ms: int
    speedup: float
    wall_start: float = 0.0

    def __post_init__(self) -> None:
        self.wall_start = time.monotonic()

    def __call__(self) -> int:
        return self.start_ms + int((time.monotonic() - self.wall_start) * 1000 * self.speedup)


def feed(sim: Simulation, runtime: EmbeddedRuntime, clock: SimClock,
         stop: threading.Event) -> None:
    """Submit the simulation's lines as the simulated clock reaches their arrival time."""
    for data, arrival in sim.iter_timed(BLOCK_LINES, "bytes"):
        while not stop.is_set() and clock() < int(arrival[0]):
            time.sleep(0.01)
        if stop.is_set():
            return
        lines = data.split(b"\n")[:-1]
        runtime.submit(lines)


def describe(alert: dict) -> str:
    details = alert.get("details", {})
    extra = ", ".join(f"{k}={v}" for k, v in details.items()
                      if k in ("max_c", "min_c", "duration_min", "last_reading_at", "rule"))
    if "withdraws" in details:  # a retraction: which transition, and why
        withdrawn = details["withdraws"]
        extra = f"withdraws {withdrawn['state']} at {withdrawn['at']}: {details['reason']}"
    transition = details.get("transition", alert["state"])  # opened, escalated, resolved...
    return (f"{alert['at']}  {transition:<12} {alert['kind']:<22} "
            f"{alert.get('shipment_id') or '-':<12} {alert.get('device_id') or '-':<12} {extra}")


def print_progress(runtime: EmbeddedRuntime, clock: SimClock) -> None:
    """A status line: simulated time, throughput, events, shipments and open alerts."""
    with runtime.lock:
        metrics = runtime.engine.metrics()
    open_alerts = sum(n for name, n in metrics.items() if name.startswith("open_alerts."))
    print(f"[{iso(clock())}] {runtime.stats.events_per_s:>9,.0f} events/s  "
          f"{runtime.stats.events:>10,} events  {metrics['shipments']:>5} shipments  "
          f"{open_alerts:>4} open alerts", file=sys.stderr, flush=True)


def demo_links(serve: Serve) -> dict[str, str]:
    """A fresh token for each reading role (named `demo-ROLE`, replacing the previous demo's)
    and its link: the role's page, the token in the fragment (never sent to the server)."""
    store = TokenStore(serve.data_dir)
    links = {}
    for role in DEMO_ROLES:
        store.revoke(f"demo-{role}")
        token = store.create(role, f"demo-{role}")
        links[role] = f"http://{serve.host}:{serve.port}{ROLE_PAGES[role]}#token={token}"
    return links


def start_server(runtime: EmbeddedRuntime, serve: Serve,
                 fences: dict) -> tuple[uvicorn.Server, threading.Thread, Context]:
    """The API over `runtime`, served on a thread, and its context; OSError when it cannot
    listen."""
    app = create_app(runtime, TokenStore(serve.data_dir), fences=fences,
                     public_url=f"http://{serve.host}:{serve.port}")
    server = uvicorn.Server(uvicorn.Config(app, host=serve.host, port=serve.port,
                                           log_level="critical", lifespan="off"))
    thread = threading.Thread(target=server.run, name="chainsight-api", daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise OSError(f"cannot serve on {serve.host}:{serve.port} (address in use?)")
        time.sleep(0.02)
    return server, thread, app.state.context


def run_demo(sim: Simulation, speedup: float, duration_s: float | None,
             engine: Engine | None = None, serve: Serve | None = None) -> int:
    engine = engine or Engine()
    fences = sim.fences()
    engine.replace_fences(FenceSet.from_geojson(fences))  # the simulated network's sites
    clock = SimClock(int(sim.arrival_ms()[0]), speedup)
    runtime = EmbeddedRuntime(engine, clock=clock)
    printed: queue.Queue[str] = queue.Queue()

    def on_output(out: Output) -> None:
        for alert in out.alerts + out.notifications:
            if alert["kind"] not in NOTICES:  # thousands an hour: on the pages, not here
                printed.put(describe(alert))

    runtime.subscribe(on_output)
    runtime.start()
    server = None
    if serve is not None:
        try:
            server, server_thread, _ = start_server(runtime, serve, fences)
        except OSError:
            runtime.stop()
            raise

        print(f"the API and pages serve on http://{serve.host}:{serve.port} (OpenAPI at "
              "/docs); a link and demo token for each role:")
        for role, link in demo_links(serve).items():
            print(f"  {role:<11} {link}")
        sys.stdout.flush()
    stop = threading.Event()
    producer = threading.Thread(target=feed, args=(sim, runtime, clock, stop),
                                daemon=True)
    producer.start()
    print(f"ChainSight demo: {len(sim):,} simulated events at {speedup:g}x; Ctrl-C to stop",
          file=sys.stderr)
    started = time.monotonic()
    streaming = True
    try:
        while duration_s is None or time.monotonic() - started < duration_s:
            if streaming and not producer.is_alive():  # the scenario is over
                streaming = False
                if server is None:
                    break
                runtime.end_recording()  # its time stops there: no sensor falls silent
                print(f"the simulated stream ended at {iso(engine.stream_time)}; the API and "
                      "pages stay up until Ctrl-C", file=sys.stderr, flush=True)
            time.sleep(1.0)
            while not printed.empty():
                print(printed.get())
            if streaming:
                print_progress(runtime, clock)
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
        producer.join()
        if server is not None:
            server.should_exit = True
            server_thread.join(10)
        runtime.stop(flush=True)
        while not printed.empty():
            print(printed.get())
    counters = engine.counters
    print(f"processed {counters['events']:,} events ({counters['duplicates']:,} duplicates, "
          f"{counters['late_dropped']:,} late, {counters['rejected']:,} rejected); "
          f"{runtime.stats.alerts:,} alert transitions", file=sys.stderr)
    return 0
