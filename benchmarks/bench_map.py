"""The dispatcher's live map under a fleet of 10,000 shipments that each move every second.

A real API server (embedded engine, wall clock) gets one GPS fix per shipment per second (in
ten batches a second); headless Chromium (Debian's, WebGL on SwiftShader) shows /map over it.
Every second the benchmark reads, from the page and from Chromium's DevTools:
- the main-thread cost of applying one second's updates (the page's own count of the time it
  spends taking the worker's changes and handing them to the map), scaled to 10,000 updates;
  target <= 16 ms (one frame);
- the main thread's total busy time per second (DevTools TaskDuration: rendering included);
- the frame time (intervals between animation frames);
and, at the end, the page's memory (JS heap of the page and renderer processes' RSS) against
its first minute. Default: 10 minutes; `--seconds 60` for a quick look.

    .venv/bin/python benchmarks/bench_map.py [--seconds 600] [--shipments 10000]
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "browser")]  # the tests' helpers

from api_server import running  # noqa: E402
from browser import DESKTOP, Browser  # noqa: E402

from chainsight.api.app import create_app  # noqa: E402
from chainsight.api.auth import TokenStore  # noqa: E402
from chainsight.contract.times import now_ms  # noqa: E402
from chainsight.engine.core import Engine  # noqa: E402
from chainsight.runtimes.embedded import EmbeddedRuntime  # noqa: E402

TARGET_MS = 16.0
WARM_UP_S = 20
BATCHES_PER_S = 10

FRAMES_JS = """
window.benchFrames = [];
let last = performance.now();
const tick = (now) => { window.benchFrames.push(now - last); last = now;
                         requestAnimationFrame(tick); };
requestAnimationFrame(tick);"""


class Fleet:
    """Shipments spread over Europe, each driving its own straight line at 60-110 km/h."""

    def __init__(self, n: int) -> None:
        rng = np.random.default_rng(7)
        self.n = n
        self.lat = rng.uniform(43.0, 56.0, n)
        self.lon = rng.uniform(-2.0, 20.0, n)
        heading = rng.uniform(0, 2 * math.pi, n)
        speed_deg_s = rng.uniform(60, 110, n) / 3.6 / 111_000
        self.dlat = np.sin(heading) * speed_deg_s
        self.dlon = np.cos(heading) * speed_deg_s / np.cos(np.radians(self.lat))

    def orders(self) -> list[bytes]:
        return [orjson.dumps({"type": "order", "order_id": f"O{i}", "shipment_id": f"S{i:05d}",
                              "ts": now_ms(), "status": "in_transit",
                              "product_profile": "chilled_food" if i % 3 else "pharma_2_8",
                              "device_ids": [f"G{i}"]}) for i in range(self.n)]

    def fixes(self, part: slice, seconds: float) -> list[bytes]:
        ts = now_ms()
        lat = self.lat[part] + self.dlat[part] * seconds
        lon = self.lon[part] + self.dlon[part] * seconds
        return [orjson.dumps({"type": "gps", "device_id": f"G{i}", "shipment_id": f"S{i:05d}",
                              "ts": ts, "lat": round(a, 6), "lon": round(o, 6)})
                for i, a, o in zip(range(part.start, part.stop), lat.tolist(), lon.tolist(),
                                   strict=True)]


def drive(runtime: EmbeddedRuntime, fleet: Fleet, stop: threading.Event) -> None:
    """Every shipment moves once a second, in BATCHES_PER_S batches."""
    start = time.perf_counter()
    step = math.ceil(fleet.n / BATCHES_PER_S)
    k = 0
    while not stop.is_set():
        part = slice((k % BATCHES_PER_S) * step, min(fleet.n, (k % BATCHES_PER_S + 1) * step))
        runtime.submit(fleet.fixes(part, time.perf_counter() - start))
        k += 1
        pause = start + k / BATCHES_PER_S - time.perf_counter()
        if pause > 0:
            time.sleep(pause)


def percentiles(values: list[float]) -> str:
    if not values:
        return "n/a"
    p50, p95 = np.percentile(values, [50, 95])
    return f"p50 {p50:.1f}  p95 {p95:.1f}  max {max(values):.1f}"


def page_rss_mb(driver_pid: int) -> float:
    """Resident memory of the Chromium processes that run the page: its renderer (page and
    workers) and the GPU process (WebGL on SwiftShader), found below chromedriver."""
    children: dict[int, list[int]] = {}
    kinds: dict[int, bytes] = {}
    rss: dict[int, int] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            status = (proc / "status").read_text().splitlines()
            kinds[int(proc.name)] = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status if ":" in line)
        children.setdefault(int(fields["PPid"]), []).append(int(proc.name))
        rss[int(proc.name)] = int(fields.get("VmRSS", "0 kB").split()[0])
    total, todo = 0, [driver_pid]
    while todo:
        pid = todo.pop()
        todo += children.get(pid, [])
        if b"--type=renderer" in kinds.get(pid, b"") or b"--type=gpu-process" in kinds.get(
                pid, b""):
            total += rss.get(pid, 0)
    return total / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=600, help="run time (default 600)")
    parser.add_argument("--shipments", type=int, default=10_000)
    args = parser.parse_args()
    fleet = Fleet(args.shipments)
    with tempfile.TemporaryDirectory() as data_dir:
        runtime = EmbeddedRuntime(Engine(live=True)).start()
        token = TokenStore(Path(data_dir)).create("dispatcher", "bench")
        runtime.process(fleet.orders())
        runtime.process(fleet.fixes(slice(0, fleet.n), 0.0))
        app = create_app(runtime, TokenStore(Path(data_dir)))
        stop = threading.Event()
        browser = Browser(("--enable-precise-memory-info",))
        try:
            with running(app) as url:
                producer = threading.Thread(target=drive, args=(runtime, fleet, stop),
                                            daemon=True)
                producer.start()
                browser.size(*DESKTOP)
                browser.driver.get(f"{url}/map#token={token}")
                browser.wait(lambda: browser.js(
                    "return window.chainsightMap && window.chainsightMap.stats.updates "
                    f">= {fleet.n}"), 120, "the fleet's updates on the page")
                report(browser, fleet, args.seconds)
        finally:
            stop.set()
            browser.quit()
            runtime.stop()


def sample(browser: Browser) -> dict:
    stats = browser.js("const s = window.chainsightMap.stats; const f = window.benchFrames;"
                       "window.benchFrames = []; return {...s, frames: f};")
    metrics = {m["name"]: m["value"] for m in
               browser.driver.execute_cdp_cmd("Performance.getMetrics", {})["metrics"]}
    return {**stats, "task_s": metrics["TaskDuration"], "heap": metrics["JSHeapUsedSize"],
            "at": time.perf_counter()}


def report(browser: Browser, fleet: Fleet, seconds: int) -> None:
    browser.driver.execute_cdp_cmd("Performance.enable", {})
    browser.js(FRAMES_JS)
    driver_pid = browser.driver.service.process.pid
    print(f"bench_map: {fleet.n:,} shipments, each moving once a second; {seconds} s "
          f"(first {WARM_UP_S} s not counted); headless Chromium, WebGL on SwiftShader")
    apply_per_10k, busy_ms, frames, per_s = [], [], [], []
    last = sample(browser)
    started = time.perf_counter()
    first_minute = None
    while time.perf_counter() - started < seconds:
        time.sleep(1.0)
        now = sample(browser)
        wall = now["at"] - last["at"]
        updates = now["updates"] - last["updates"]
        if time.perf_counter() - started > WARM_UP_S and updates:
            apply_ms = (now["applyMs"] - last["applyMs"]) / wall
            apply_per_10k.append(apply_ms * 10_000 / (updates / wall))
            per_s.append(updates / wall)
            busy_ms.append((now["task_s"] - last["task_s"]) * 1000 / wall)
            frames += now["frames"]
        if first_minute is None and time.perf_counter() - started >= 60:
            first_minute = (now["heap"], page_rss_mb(driver_pid))
        last = now
        elapsed = int(time.perf_counter() - started)
        if elapsed % 60 == 0 and apply_per_10k:
            print(f"  {elapsed:>4} s: apply {np.median(apply_per_10k[-60:]):.1f} ms per 10k "
                  f"updates, main thread busy {np.median(busy_ms[-60:]):.0f} ms/s, "
                  f"JS heap {now['heap'] / 2**20:.0f} MiB", flush=True)
    heap_mb, rss_mb = last["heap"] / 2**20, page_rss_mb(driver_pid)
    print(f"updates received:      {percentiles(per_s)} per s")
    print(f"apply (main thread):   {percentiles(apply_per_10k)} ms per 10,000 updates; "
          f"longest single call {last['longestMs']:.1f} ms")
    print(f"  vs target {TARGET_MS:.0f} ms:     p95 ratio "
          f"{np.percentile(apply_per_10k, 95) / TARGET_MS:.2f}" if apply_per_10k else "")
    print(f"worker (off the main thread): {last['workerMs'] / max(1, last['updates']) * 1e4:.1f}"
          " ms per 10,000 updates (parse, state, filters)")
    print(f"main thread busy:      {percentiles(busy_ms)} ms per s (rendering included)")
    print(f"frame time:            {percentiles(frames)} ms "
          f"({sum(f > 50 for f in frames)} of {len(frames)} frames over 50 ms)")
    early = "" if first_minute is None else (
        f" (at 1 min: {first_minute[0] / 2**20:.0f} and {first_minute[1]:.0f} MiB)")
    print(f"page memory:           JS heap {heap_mb:.0f} MiB, renderer+GPU RSS {rss_mb:.0f} MiB "
          f"after {seconds} s{early}")


if __name__ == "__main__":
    main()
