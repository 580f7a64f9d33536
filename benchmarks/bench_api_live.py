"""The API's live channel: event in over HTTP -> update out on a websocket, with many clients.

`chainsight serve`'s app (embedded runtime, live engine, default settings: allowed lateness 5
minutes) on a real uvicorn server on 127.0.0.1. A producer posts live events (event time = wall
clock) to `POST /v1/events` at `--rate` events/s, a request every 50 ms; `--clients` websocket
clients, in a process of their own as real clients would be, follow `/v1/live`, one of them
deliberately slow (it sleeps `--slow-s` after every message). The producer starts once every
client has its snapshot. For every position in an update a normal client receives, the latency is
its receipt time minus the event's time; p50/p99/max over the normal clients, and what the slow
client got.

    .venv/bin/python benchmarks/bench_api_live.py [--rate 5000] [--clients 50] [--seconds 15]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import multiprocessing
import os
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import orjson
import websockets
from live_fleet import FAST, orders, send_paced

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from api_server import running  # noqa: E402

from chainsight.api.app import create_app  # noqa: E402
from chainsight.api.auth import TokenStore  # noqa: E402
from chainsight.config import load_profiles, load_settings  # noqa: E402
from chainsight.contract.times import now_ms, parse_time  # noqa: E402
from chainsight.engine.core import Engine  # noqa: E402
from chainsight.runtimes.embedded import EmbeddedRuntime  # noqa: E402

TOKEN = "bench-admin-token"


@functools.lru_cache(maxsize=4096)
def event_ms(ts: str) -> int:
    """An event's time (the events of a batch share theirs: cached, the clients keep up)."""
    return parse_time(ts)


async def follow(url: str, latencies: list[float] | None, slow_s: float, stop: asyncio.Event,
                 counts: list[int], snapshots: list[int]) -> None:
    """One websocket client of /v1/live; records latencies (None: the slow client)."""
    async with websockets.connect(f"{url}/v1/live?token={TOKEN}", max_size=None) as ws:
        while not stop.is_set():
            try:
                raw = await asyncio.wait_for(ws.recv(), 0.5)
            except TimeoutError:
                continue
            received = now_ms()
            message = orjson.loads(raw)
            counts[0] += 1
            snapshots[0] += message["type"] == "snapshot"
            if message["type"] == "update" and latencies is not None:
                latencies.extend(received - event_ms(s["last_position"]["ts"])
                                 for s in message["shipments"] if s.get("last_position"))
            if latencies is None:
                await asyncio.sleep(slow_s)


async def clients(url: str, n: int, slow_s: float, seconds: float,
                  ready: threading.Event) -> tuple[list, list, list]:
    stop = asyncio.Event()
    fast: list[float] = []
    fast_counts, slow_counts, snapshots = [0], [0], [0]
    tasks = [asyncio.create_task(follow(url, fast, slow_s, stop, fast_counts, snapshots))
             for _ in range(n - 1)]
    tasks.append(asyncio.create_task(follow(url, None, slow_s, stop, slow_counts, snapshots)))
    while snapshots[0] < n:  # the measurement starts once every client has its snapshot
        await asyncio.sleep(0.1)
    ready.set()
    await asyncio.sleep(seconds)
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    return fast, fast_counts, slow_counts


def run_clients(url: str, n: int, slow_s: float, seconds: float,
                ready: threading.Event) -> tuple[list, list, list]:
    """The clients, in the child process."""
    return asyncio.run(clients(url, n, slow_s, seconds, ready))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, default=5000)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--slow-s", type=float, default=1.0)
    args = parser.parse_args()
    os.environ["CHAINSIGHT_ADMIN_TOKEN"] = TOKEN
    settings = load_settings()
    engine = Engine(settings, {**load_profiles(), FAST.name: FAST}, live=True)
    runtime = EmbeddedRuntime(engine).start()
    app = create_app(runtime, TokenStore(Path(tempfile.mkdtemp(prefix="bench-api-"))))
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/x-ndjson"}
    with running(app) as url, httpx.Client(base_url=url, headers=headers, timeout=30) as http:
        http.post("/v1/events", content=b"\n".join(orders())).raise_for_status()
        posted, took = [0], [0.0]

        def post(batch: list[bytes]) -> None:
            http.post("/v1/events", content=b"\n".join(batch)).raise_for_status()
            posted[0] += len(batch)

        def produce() -> None:
            started = time.perf_counter()
            send_paced(post, args.rate, args.seconds, step_s=0.05)
            took[0] = time.perf_counter() - started

        producer = threading.Thread(target=produce, daemon=True)
        ws_url = url.replace("http://", "ws://")
        spawn = multiprocessing.get_context("spawn")
        with spawn.Manager() as manager, ProcessPoolExecutor(1, mp_context=spawn) as pool:
            ready = manager.Event()
            followed = pool.submit(run_clients, ws_url, args.clients, args.slow_s,
                                   args.seconds + 1, ready)
            ready.wait(60)
            producer.start()
            fast, fast_counts, slow_counts = followed.result()
        producer.join()
        rate = posted[0] / took[0]  # while the producer ran
    runtime.stop()
    ms = np.array(fast)
    print(f"settings: allowed lateness {settings.allowed_lateness_min:g} min (default), live "
          f"results on; {args.clients} websocket clients, one sleeping {args.slow_s:g} s after "
          f"each message; {rate:,.0f} events/s posted over HTTP")
    if len(ms):
        print(f"event in (HTTP) -> websocket update out: p50 {np.percentile(ms, 50):.0f} ms, "
              f"p99 {np.percentile(ms, 99):.0f} ms, max {ms.max():.0f} ms over "
              f"{len(ms):,} positions ({fast_counts[0]:,} messages to {args.clients - 1} "
              "clients; target p99 <= 250 ms)")
    print(f"the slow client received {slow_counts[0]:,} messages (coalesced: the latest state "
          "per shipment, not a backlog)")


if __name__ == "__main__":
    main()
