"""``chainsight simulate``: generate a scenario and stream it to a JSON Lines file."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable

from .scenario import load_scenario, parse_duration
from .simulation import simulate
from .sinks import JsonlFileSink, Sink, run


def build_parser() -> argparse.ArgumentParser:
    """Argument parser of the simulate command."""
    p = argparse.ArgumentParser(
        prog="chainsight simulate",
        description="Simulate a fulfilment network's devices (GPS, reefer sensors, RFID scans, "
                    "orders) with injected faults, in arrival order.")
    p.add_argument("--scenario", default="default",
                   help="preset name (config/scenarios/NAME.json) or path to a JSON file")
    p.add_argument("--shipments", type=int, help="number of shipments")
    p.add_argument("--hubs", type=int, help="number of hubs")
    p.add_argument("--duration", help="event-time window, e.g. 30m, 1h, 1h30m")
    p.add_argument("--start", help="window start, ISO-8601 with offset")
    p.add_argument("--seed", type=int, help="random seed")
    p.add_argument("--out", default="-", help="events JSON Lines file ('-' = stdout)")
    p.add_argument("--kafka", action="store_true",
                   help="send the events to the distributed runtime's events topic instead "
                        "(CHAINSIGHT_KAFKA_BOOTSTRAP, CHAINSIGHT_TOPIC_PREFIX)")
    p.add_argument("--mqtt", metavar="URL",
                   help="publish the events to this MQTT broker instead, as devices do "
                        "(mqtt://[user[:password]@]host[:port], mqtts:// for TLS; password "
                        "also from CHAINSIGHT_MQTT_PASSWORD)")
    p.add_argument("--mqtt-topic-root", default="chainsight", metavar="ROOT",
                   help="MQTT topics are ROOT/devices/ID/events (default chainsight)")
    p.add_argument("--ground-truth", help="write the ground truth JSON here")
    p.add_argument("--fences-out", help="write the world's geofences GeoJSON here")
    p.add_argument("--ts-format", choices=("iso", "ms"), help="timestamps as ISO or epoch ms")
    p.add_argument("--rate", type=float, help="target events per second (wall clock)")
    p.add_argument("--speedup", type=float,
                   help="replay the arrival clock this many times faster than real time")
    p.add_argument("--progress", action="store_true", help="show progress on stderr")
    return p


def _progress_printer() -> Callable[[int, float, float], None]:
    def show(sent: int, rate: float, lag: float) -> None:
        sys.stderr.write(f"\rsent {sent:>12,}  rate {rate:>12,.0f} ev/s  lag {lag:7.2f} s ")
        sys.stderr.flush()
    return show


def _kafka_sink() -> Sink:
    from chainsight.runtimes.kafka.config import load_streams_config
    from chainsight.runtimes.kafka.publish import KafkaSink

    return KafkaSink(load_streams_config())


def _mqtt_sink(url: str, root: str) -> Sink:
    from chainsight.ingest.mqtt import Broker
    from chainsight.sim.mqtt import MqttSink

    return MqttSink(Broker.parse(url), root=root)


def simulate_main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    args = build_parser().parse_args(argv)
    try:
        if args.duration is not None:
            parse_duration(args.duration)
        scn = load_scenario(args.scenario, shipments=args.shipments, hubs=args.hubs,
                            duration=args.duration, start=args.start, seed=args.seed,
                            ts_format=args.ts_format)
    except (OSError, ValueError, TypeError) as exc:
        print(f"chainsight simulate: {exc}", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    sim = simulate(scn)
    gen_s = time.perf_counter() - t0
    try:
        if args.fences_out:
            sim.write_fences(args.fences_out)
        if args.ground_truth:
            sim.write_ground_truth(args.ground_truth)
        if args.kafka:
            sink = _kafka_sink()
        elif args.mqtt:
            sink = _mqtt_sink(args.mqtt, args.mqtt_topic_root)
        else:
            sink = JsonlFileSink(args.out)
    except (OSError, RuntimeError, ValueError) as exc:
        target = getattr(exc, "filename", None) or (
            "Kafka" if args.kafka else "MQTT" if args.mqtt else args.out)
        reason = getattr(exc, "strerror", None) or exc
        print(f"chainsight simulate: cannot write {target}: {reason}", file=sys.stderr)
        return 2
    stats = run(sim, sink, rate=args.rate, speedup=args.speedup,
                progress=_progress_printer() if args.progress else None, close=False)
    if args.kafka:
        sink.end_of_stream()  # workers flush their reordering buffers: a complete recording
    sink.close()
    if args.progress:
        sys.stderr.write("\n")
    if args.mqtt:
        print(f"published {sink.messages:,} MQTT messages ({sink.bursts:,} offline bursts as "
              "arrays)", file=sys.stderr)
    c = sim.counts()
    print(f"simulated {scn.name!r} seed={scn.seed}: {c['lines']:,} lines "
          f"(gps {c['gps']:,}, sensor {c['sensor']:,}, scan {c['scan']:,}, "
          f"order {c['order']:,}, duplicates {c['duplicates']:,}) "
          f"generated in {gen_s:.2f}s, sent in {stats['elapsed_s']:.2f}s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(simulate_main())
