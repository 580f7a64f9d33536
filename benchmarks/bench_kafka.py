"""The distributed runtime end to end: Kafka in, one `chainsight worker`, Redis out.

Needs the local services (`scripts/services.sh start`). Two measurements, each on fresh topics:

1. throughput: pre-produce a mixed simulated stream (GPS, reefer sensors, scans, orders, with
   duplicates, skewed clocks and offline bursts), start one worker, and time it from the first
   to the last record processed (the worker's progress in Redis). Also prints the time from
   process start, and the worker's CPU use.
2. latency: produce live events (event time = produce time) at a paced `--rate` for
   `--seconds`, and time from produce to the matching state change (GPS position) or alert
   (excursions with a fast bench profile: from the reading that completes one to its alert) on
   the Redis pub/sub channel; p50/p99/max. The worker runs with the default settings (allowed
   lateness 5 minutes, ticks every 5 s): state is immediate and alerts are published
   provisionally the moment they are true.

    .venv/bin/python benchmarks/bench_kafka.py [--events 1000000] [--rate 10000] [--seconds 20]
        [--profile]   (run the throughput worker under cProfile and print the top functions)
        [--runtime kafka|faust|both]   (`chainsight worker` or `--runtime faust`; both: the two
                      runtimes one after the other on the same events, figures side by side)
"""

from __future__ import annotations

import argparse
import json
import os
import pstats
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import orjson
import redis
from live_fleet import FAST, orders, send_paced

from chainsight.config import load_settings
from chainsight.runtimes.kafka.admin import ensure_topics
from chainsight.runtimes.kafka.config import StreamsConfig, load_streams_config
from chainsight.runtimes.kafka.producer import EventProducer
from chainsight.runtimes.kafka.publish import KafkaSink, publish_file
from chainsight.runtimes.kafka.snapshots import PartitionReader
from chainsight.sim import simulate

REPO = Path(__file__).resolve().parents[1]
BENCH_PROFILE = {FAST.name: {"min_c": FAST.min_c, "max_c": FAST.max_c,
                             "excursion_min": FAST.excursion_min}}


def worker(cfg: StreamsConfig, log: Path, runtime: str, *args: str,
           profile: Path | None = None, **env: str) -> subprocess.Popen:
    if runtime == "faust":
        args = ("--runtime", "faust", "--data-dir", str(log.with_suffix(".data")), *args)
    variables = {**os.environ, "CHAINSIGHT_KAFKA_BOOTSTRAP": cfg.bootstrap,
                 "CHAINSIGHT_REDIS_URL": cfg.redis_url,
                 "CHAINSIGHT_TOPIC_PREFIX": cfg.topic_prefix, **env}
    python = [sys.executable, *(["-m", "cProfile", "-o", str(profile)] if profile else [])]
    return subprocess.Popen([*python, "-m", "chainsight.cli", "worker", *args], cwd=REPO,
                            env=variables, stdout=open(log, "wb"), stderr=subprocess.STDOUT)


def processed(client: redis.Redis, cfg: StreamsConfig) -> int:
    return sum(orjson.loads(v)["offset"]
               for v in client.hvals(f"{cfg.redis_prefix}partitions"))


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cleanup(cfg: StreamsConfig, client: redis.Redis) -> None:
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": cfg.bootstrap})
    ours = [t for t in admin.list_topics(timeout=30).topics if t.startswith(cfg.topic_prefix)]
    for future in admin.delete_topics(ours, operation_timeout=30).values():
        future.result()
    keys = list(client.scan_iter(f"{cfg.redis_prefix}*"))
    if keys:
        client.delete(*keys)


def stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()


def simulated(events: int, work: Path) -> tuple[Path, int, dict]:
    """The throughput run's events, written once for every runtime measured."""
    sim = simulate("demo", shipments=max(1, events // 450), seed=5)
    path = work / "events.jsonl"
    return path, sim.write_jsonl(path), sim.counts()


def throughput(base: StreamsConfig, recording: tuple[Path, int, dict], work: Path,
               profile: bool, runtime: str) -> dict[str, float]:
    cfg = StreamsConfig(bootstrap=base.bootstrap, redis_url=base.redis_url,
                        topic_prefix=f"bench-{uuid.uuid4().hex[:8]}")
    client = redis.Redis.from_url(cfg.redis_url)
    ensure_topics(cfg.bootstrap, cfg.topics(), configs=cfg.topic_configs())
    path, n, counts = recording
    started = time.perf_counter()
    publish_file(path, cfg)
    produced = time.perf_counter() - started
    reader = PartitionReader(cfg.bootstrap)
    total = sum(reader.bounds(cfg.events_topic, p)[1] for p in range(cfg.partitions))
    reader.close()
    print(f"[{runtime}] produced {n:,} events ({path.stat().st_size / 1e6:.0f} MB, {counts}) in "
          f"{produced:.1f} s ({n / produced:,.0f}/s); {total:,} records on "
          f"{cfg.partitions} partitions")

    prof = work / f"{runtime}-worker.prof" if profile else None
    log = work / f"{runtime}-throughput-worker.log"
    t0 = time.perf_counter()
    proc = worker(cfg, log, runtime, profile=prof, CHAINSIGHT_TICK_S="0")
    first = None
    cpu = 0.0
    while (done := processed(client, cfg)) < total:
        if proc.poll() is not None:
            sys.exit(f"worker exited: {log.read_text()[-2000:]}")
        if done and first is None:
            first, first_done, cpu = time.perf_counter(), done, cpu_seconds(proc.pid)
        time.sleep(0.02)
    end = time.perf_counter()
    cpu = cpu_seconds(proc.pid) - cpu
    stop(proc)
    assert first is not None
    span = end - first
    print(f"[{runtime}] throughput: {total - first_done:,} records in {span:.2f} s = "
          f"{(total - first_done) / span:,.0f} events/s (first to last record); "
          f"{total / (end - t0):,.0f} events/s including worker start-up ({end - t0:.1f} s); "
          f"worker CPU {cpu:.1f} s = {cpu / span * 100:.0f}% of a core "
          f"({cpu / max(1, total - first_done) * 1e6:.1f} us/event)")
    if prof is not None:
        pstats.Stats(str(prof)).sort_stats("tottime").print_stats(25)
    cleanup(cfg, client)
    return {"events/s": (total - first_done) / span, "with start-up": total / (end - t0),
            "us/event": cpu / max(1, total - first_done) * 1e6}


def latency(base: StreamsConfig, rate: float, seconds: float, work: Path,
            runtime: str) -> dict[str, float]:
    cfg = StreamsConfig(bootstrap=base.bootstrap, redis_url=base.redis_url,
                        topic_prefix=f"bench-{uuid.uuid4().hex[:8]}")
    client = redis.Redis.from_url(cfg.redis_url)
    ensure_topics(cfg.bootstrap, cfg.topics(), configs=cfg.topic_configs())
    profiles = work / "bench-profiles.json"
    profiles.write_text(json.dumps(BENCH_PROFILE))
    log = work / f"{runtime}-latency-worker.log"
    proc = worker(cfg, log, runtime, "--profiles", str(profiles))
    while "assigned" not in log.read_text():
        if proc.poll() is not None:
            sys.exit(f"worker exited: {log.read_text()[-2000:]}")
        time.sleep(0.1)

    state_at: list[tuple[float, str]] = []  # (received, event time): converted afterwards
    alert_at: list[tuple[float, str]] = []
    listening = threading.Event()
    done = threading.Event()

    def listen() -> None:
        pubsub = client.pubsub()
        pubsub.subscribe(f"{cfg.redis_prefix}changes")
        listening.set()
        while not done.is_set():
            msg = pubsub.get_message(ignore_subscribe_messages=True, timeout=0.2)
            if msg is None:
                continue
            now = time.time() * 1000
            for change in orjson.loads(msg["data"]):
                if change["type"] == "state":
                    position = change["state"]["last_position"]
                    if position is not None:
                        state_at.append((now, position["ts"]))
                elif change["alert"]["details"].get("transition") == "opened":
                    alert_at.append((now, change["alert"]["at"]))
        pubsub.close()

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    listening.wait()
    sink = KafkaSink(cfg, EventProducer(cfg.bootstrap, linger_ms=1))
    sink.write(orders())
    sink.close()
    time.sleep(2)  # orders processed
    state_at.clear()
    alert_at.clear()
    cpu = cpu_seconds(proc.pid)
    start = time.perf_counter()

    def send(batch: list[bytes]) -> None:
        sink.write(batch)
        sink.producer.poll(0)

    sent = send_paced(send, rate, seconds)
    elapsed = time.perf_counter() - start
    stopped_ms = time.time() * 1000
    sink.close()
    produced_rate = sent / elapsed
    cpu = cpu_seconds(proc.pid) - cpu
    time.sleep(2)
    done.set()
    listener.join()
    stop(proc)
    lateness = load_settings().allowed_lateness_min
    print(f"[{runtime}] settings: allowed lateness {lateness:g} min (default), live results on")
    figures = {}
    for name, samples in (("state change", state_at), ("alert", alert_at)):
        steady = np.array([r - iso_ms(at) for r, at in samples if r <= stopped_ms])
        drain = np.array([r - iso_ms(at) for r, at in samples if r > stopped_ms])
        if not len(steady):
            print(f"[{runtime}] latency {name}: no samples")
            continue
        figures[f"{name} p50 ms"] = np.percentile(steady, 50)
        figures[f"{name} p99 ms"] = np.percentile(steady, 99)
        print(f"[{runtime}] latency produce -> Redis pub/sub {name} at {produced_rate:,.0f} "
              "events/s "
              f"({len(steady):,} samples while producing): p50 {np.percentile(steady, 50):.0f} "
              f"ms, p99 {np.percentile(steady, 99):.0f} ms, max {steady.max():.0f} ms"
              + (f"; {len(drain):,} after the stream stopped: max {drain.max():.0f} ms"
                 if len(drain) else ""))
    print(f"[{runtime}] worker CPU while paced: {cpu / elapsed * 100:.0f}% of a core")
    cleanup(cfg, client)
    figures["CPU % of a core"] = cpu / elapsed * 100
    return figures


def iso_ms(text: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--rate", type=float, default=10_000)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--skip", choices=("throughput", "latency"))
    parser.add_argument("--runtime", choices=("kafka", "faust", "both"), default="kafka")
    args = parser.parse_args()
    base = load_streams_config()
    work = Path(tempfile.mkdtemp(prefix="bench-kafka-"))
    print(f"work dir {work}")
    runtimes = ("kafka", "faust") if args.runtime == "both" else (args.runtime,)
    figures: dict[str, dict[str, float]] = {r: {} for r in runtimes}
    if args.skip != "throughput":
        recording = simulated(args.events, work)
        for runtime in runtimes:
            figures[runtime].update(throughput(base, recording, work, args.profile, runtime))
    if args.skip != "latency":
        for runtime in runtimes:
            figures[runtime].update(latency(base, args.rate, args.seconds, work, runtime))
    if len(runtimes) > 1:
        print(f"\n{'':<24}" + "".join(f"{r:>14}" for r in runtimes))
        for name in figures[runtimes[0]]:
            print(f"{name:<24}" + "".join(f"{figures[r].get(name, float('nan')):>14,.1f}"
                                          for r in runtimes))
        if "events/s" in figures["kafka"]:
            print(f"throughput ratio kafka/faust: "
                  f"{figures['kafka']['events/s'] / figures['faust']['events/s']:.1f}x")


if __name__ == "__main__":
    main()
