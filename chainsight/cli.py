"""The `chainsight` command."""

from __future__ import annotations

import argparse
import dataclasses
import gc
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from functools import partial
from pathlib import Path
from typing import NoReturn

from chainsight.config import Settings, load_profiles, load_settings


def _settings(args: argparse.Namespace, live: bool, record: bool | None = None,
              eta_shards: int | None = None) -> Settings:
    """The settings the options describe; `eta_shards` overrides the setting (a worker: one ETA
    model per partition)."""
    settings = load_settings(allowed_lateness_min=args.allowed_lateness, eta_shards=eta_shards)
    if record and not live:  # a recording's replay: blocks by size, not by waiting
        settings = dataclasses.replace(settings, record_block_min=None)
    return settings


def _engine(args: argparse.Namespace, live: bool,  # noqa: ANN202 - imports kept lazy
            record: bool | None = None, eta_shards: int | None = None,
            settings: Settings | None = None):
    """The engine the options describe (and `settings`, when made already); `live` for a live
    runtime (provisional alerts), which keeps the shipments' records unless `record` says
    otherwise."""
    from chainsight import jit
    from chainsight.engine.core import Engine
    from chainsight.geofence import FenceSet

    jit.start()
    settings = settings or _settings(args, live, record, eta_shards)
    profiles = load_profiles(*([args.profiles] if args.profiles else []))
    fences = getattr(args, "fences", None)
    return Engine(settings, profiles, fences=FenceSet.from_file(fences) if fences else None,
                  live=live, record=record)


@contextmanager
def _starting() -> Iterator[None]:
    """No garbage collection while a command starts: imports, Numba and fences allocate much
    and free little, and each full collection walks all of it (~0.1 s of replay's start-up).
    What start-up kept is then left out of later collections (gc.freeze)."""
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        gc.enable()


def cmd_replay(args: argparse.Namespace) -> int:
    live, record = args.live_alerts_out is not None, args.record_out is not None
    with ExitStack() as decoding_stack:
        with _starting():
            from chainsight import jit
            from chainsight.contract.events import EventDecoder
            from chainsight.runtimes.replay import check_paths, decoding, default_workers, replay

            inputs = {"the input": args.events, "--fences": args.fences,
                      "--profiles": args.profiles, "--eta-model": args.eta_model}
            outputs = {"--alerts-out": args.alerts_out,
                       "--dead-letter-out": args.dead_letter_out,
                       "--state-out": args.state_out, "--eta-out": args.eta_out,
                       "--live-alerts-out": args.live_alerts_out, "--record-out": args.record_out,
                       "--eta-model-out": args.eta_model_out}
            check_paths({k: v for k, v in inputs.items() if v is not None},
                        {k: v for k, v in outputs.items() if v is not None})
            jit.start()  # before the decode workers fork: they need Numba started too
            settings = _settings(args, live, record)
            workers = default_workers(args.events.stat().st_size) if args.workers is None \
                else args.workers
            # decoding starts now, while the fences load and the engine is made
            batches = None if live else decoding_stack.enter_context(
                decoding(args.events, EventDecoder.for_settings(settings), workers, record))
            engine = _engine(args, live, record, settings=settings)
            if args.eta_model is not None:
                engine.import_eta_model(args.eta_model.read_bytes())
        result = replay(args.events, engine, args.alerts_out, args.dead_letter_out,
                        args.state_out, workers=workers, live_alerts_out=args.live_alerts_out,
                        record_out=args.record_out, eta_out=args.eta_out, batches=batches)
    if args.eta_model_out is not None:
        args.eta_model_out.write_bytes(engine.export_eta_model())
    print(f"replayed {result.events:,} events in {result.seconds:.2f} s "
          f"({result.events_per_s:,.0f} events/s): {result.alerts:,} alert transitions, "
          f"{result.rejected:,} rejected", file=sys.stderr)
    metrics = engine.metrics()
    retracted = {name.removeprefix("retracted."): n for name, n in metrics.items()
                 if name.startswith("retracted.")}
    if args.live_alerts_out:
        print(f"live stream: {sum(retracted.values()):,} provisional transitions withdrawn"
              + "".join(f", {kind} {n:,}" for kind, n in sorted(retracted.items())),
              file=sys.stderr)
    scored = metrics.get("eta_accuracy.samples")
    if scored:
        print(f"ETAs: {metrics['eta_predictions']:,} published; of {scored:,} scored at "
              f"delivery, MAE {metrics['eta_accuracy.model.mae_min']:.1f} min (baseline "
              f"{metrics['eta_accuracy.baseline.mae_min']:.1f} min)", file=sys.stderr)
    dropped = {name.removeprefix("gps_dropped."): n for name, n in metrics.items()
               if name.startswith("gps_dropped.") and n}
    if dropped:
        print("GPS fixes dropped by quality filters: "
              + ", ".join(f"{reason} {n:,}" for reason, n in dropped.items()), file=sys.stderr)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    import tempfile

    from chainsight.demo import Serve, run_demo
    from chainsight.sim.simulation import simulate

    overrides = {k: v for k, v in (("shipments", args.shipments), ("seed", args.seed))
                 if v is not None}
    print("generating the simulated fleet...", file=sys.stderr)
    sim = simulate(args.scenario, **overrides)
    engine = _engine(args, live=True)
    if args.data_dir is not None:
        return run_demo(sim, args.speedup, args.duration, engine,
                        Serve(args.host, args.port, args.data_dir))
    with tempfile.TemporaryDirectory(prefix="chainsight-demo-") as data_dir:
        return run_demo(sim, args.speedup, args.duration, engine,
                        Serve(args.host, args.port, Path(data_dir)))


def cmd_worker(args: argparse.Namespace) -> int:
    import logging

    from chainsight.runtimes.kafka.config import load_streams_config
    from chainsight.runtimes.kafka.snapshots import SnapshotError
    from chainsight.runtimes.kafka.worker import run_worker

    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = load_streams_config()
    # each partition learns its own ETA model (replay gives the same with eta_shards = partitions)
    _engine(args, live=True, eta_shards=config.partitions)  # fail fast on bad settings/profiles
    try:
        engine_factory = partial(_engine, args, live=True, eta_shards=config.partitions)
        if args.runtime == "faust":
            _run_faust_worker(args, config, engine_factory)
        else:
            run_worker(config, engine_factory)
    except SnapshotError as exc:
        print(f"chainsight worker: {exc}", file=sys.stderr)
        return 2
    return 0


def _run_faust_worker(args: argparse.Namespace, config: object,
                      engine_factory: Callable[[], object]) -> None:
    import tempfile

    try:
        from chainsight.runtimes.faust import run_worker
    except ImportError as exc:
        raise ValueError(f"--runtime faust needs faust-streaming ({exc}): "
                         "pip install 'chainsight[faust]'") from None
    with tempfile.TemporaryDirectory(prefix="chainsight-faust-") as scratch:
        run_worker(config, engine_factory, args.data_dir or Path(scratch),
                   web_port=args.web_port, log_level=args.log_level)


def cmd_put_fences(args: argparse.Namespace) -> int:
    import orjson

    from chainsight.contract.times import now_ms
    from chainsight.runtimes.kafka.config import load_streams_config
    from chainsight.runtimes.kafka.publish import publish_fences

    publish_fences(load_streams_config(), orjson.loads(args.fences.read_bytes()), now_ms())
    print(f"published {args.fences} to every partition", file=sys.stderr)
    return 0


def cmd_migrate_snapshots(args: argparse.Namespace) -> int:
    if not args.trust_pickle:
        print("chainsight migrate-snapshots: reading pickled snapshots runs code named in them; "
              "run with --trust-pickle if you trust the snapshots topic", file=sys.stderr)
        return 2
    from chainsight.runtimes.kafka.config import load_streams_config
    from chainsight.runtimes.kafka.migrate import migrate_snapshots

    n = migrate_snapshots(load_streams_config(), lambda text: print(text, file=sys.stderr))
    print(f"{n} snapshot(s) converted to version 3", file=sys.stderr)
    return 0


def _token_store(args: argparse.Namespace):  # noqa: ANN202 - imports kept lazy
    from chainsight.api.auth import TokenStore, default_data_dir

    return TokenStore(args.data_dir or default_data_dir())


def cmd_token(args: argparse.Namespace) -> int:
    store = _token_store(args)
    if args.action == "create":
        print(store.create(args.role, args.name, args.customer or (), args.device or ()))
    elif args.action == "list":
        import json

        for record in store.records():
            print(json.dumps(record.public()))
    elif store.revoke(args.key) == 0:
        print(f"chainsight token revoke: no token with id or name {args.key!r}",
              file=sys.stderr)
        return 1
    return 0


def _broker(args: argparse.Namespace):  # noqa: ANN202 - imports kept lazy
    from chainsight.ingest.mqtt import Broker

    return Broker.parse(args.mqtt, args.mqtt_ca, args.mqtt_cert, args.mqtt_key)


def cmd_mqtt_bridge(args: argparse.Namespace) -> int:
    import logging

    import redis

    from chainsight.runtimes.kafka.config import load_streams_config
    from chainsight.runtimes.kafka.mqtt_bridge import run_bridge

    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = load_streams_config()
    try:
        return run_bridge(config, _broker(args), args.mqtt_client_id, args.mqtt_topic_root)
    except redis.RedisError as exc:
        print(f"chainsight mqtt-bridge: Redis at {config.redis_url}: {exc}", file=sys.stderr)
        return 2


def data_dir_option(actions: argparse._SubParsersAction, what: str) -> None:
    """`--data-dir` on every action of a command (after the action: `token list --data-dir`)."""
    for action in actions.choices.values():
        action.add_argument("--data-dir", type=Path, default=argparse.SUPPRESS, help=what)


def cmd_trace_keys(args: argparse.Namespace) -> int:
    from chainsight.api.auth import default_data_dir
    from chainsight.trace.links import KeyRing

    keys = KeyRing(args.data_dir or default_data_dir())
    if args.action == "rotate":
        print(keys.rotate())
    elif args.action == "retire":
        try:
            keys.retire(args.key)
        except KeyError as exc:
            raise ValueError(exc.args[0]) from None
    else:
        print("\n".join(keys.keys))
    return 0


def _serve(app, args: argparse.Namespace) -> None:  # noqa: ANN001 - FastAPI, imported lazily
    import uvicorn

    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")


def cmd_serve_kafka(args: argparse.Namespace) -> int:
    if args.mqtt:
        print("chainsight serve: --mqtt serves the embedded runtime; with --kafka, devices "
              "reach the workers through `chainsight mqtt-bridge`", file=sys.stderr)
        return 2
    import orjson
    from confluent_kafka import KafkaException

    from chainsight.api.app import create_app
    from chainsight.api.kafka import KafkaBackend
    from chainsight.runtimes.kafka.admin import describe
    from chainsight.runtimes.kafka.config import load_streams_config

    fences = orjson.loads(args.fences.read_bytes()) if args.fences else None
    settings = load_settings(allowed_lateness_min=args.allowed_lateness)
    profiles = load_profiles(*([args.profiles] if args.profiles else []))
    try:
        backend = KafkaBackend(load_streams_config(), settings, profiles, fences)
    except (KafkaException, KeyError) as exc:
        print(f"chainsight serve: Kafka unavailable: {describe(exc)}", file=sys.stderr)
        return 2
    public_url = args.public_url or f"http://{args.host}:{args.port}"
    try:
        _serve(create_app(backend, _token_store(args), public_url=public_url), args)
    finally:
        backend.close()
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    if args.kafka:
        return cmd_serve_kafka(args)
    import orjson

    from chainsight.api.app import create_app
    from chainsight.api.auth import default_data_dir
    from chainsight.api.embedded import EmbeddedBackend
    from chainsight.api.mqtt import mqtt_ingest
    from chainsight.runtimes.embedded import EmbeddedRuntime
    from chainsight.runtimes.kafka.snapshots import SnapshotError
    from chainsight.runtimes.store import Store

    fences = orjson.loads(args.fences.read_bytes()) if args.fences else None
    engine = _engine(args, live=True)
    data_dir = args.data_dir or default_data_dir()
    store = Store(data_dir / "engine", anchor_every_s=engine.settings.record_anchor_min * 60)
    try:
        replayed = store.recover(engine)
    except SnapshotError as exc:
        print(f"chainsight serve: {exc}", file=sys.stderr)
        return 2
    if replayed:
        print(f"restored the engine's state ({replayed:,} logged calls replayed)",
              file=sys.stderr)
    version = 0
    if store.fences is not None:  # put live before the restart
        fences, version = store.fences.geojson, store.fences.version
    runtime = EmbeddedRuntime(engine, calls=store).start()
    public_url = args.public_url or f"http://{args.host}:{args.port}"
    app = create_app(EmbeddedBackend(runtime, fences, version), _token_store(args),
                     public_url=public_url)
    devices = None
    try:
        if args.mqtt:
            devices = mqtt_ingest(app, _broker(args), args.mqtt_client_id, data_dir,
                                  args.mqtt_topic_root).start()
        _serve(app, args)
    finally:
        if devices is not None:
            devices.stop()
        runtime.stop()
        store.close()
    return 0


def run() -> NoReturn:
    """The `chainsight` command: `main`, then, after a replay, an exit that does not take the
    interpreter apart. A replay's engine holds millions of objects whose one-by-one release
    takes ~50 ms, and by then every output is written and closed."""
    code = main()
    if sys.argv[1:2] != ["replay"]:
        sys.exit(code)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["simulate"]:  # the simulator owns its options
        try:
            from chainsight.sim.cli import simulate_main
        except (OSError, ValueError) as exc:  # the simulator reads the profiles on import
            print(f"chainsight simulate: {exc}", file=sys.stderr)
            return 2
        return simulate_main(argv[1:])
    parser = argparse.ArgumentParser(prog="chainsight", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("simulate", help="generate simulated fleet events (see simulate --help)")

    def engine_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--profiles", type=Path, help="extra product profiles (JSON)")
        p.add_argument("--allowed-lateness", type=float, metavar="MIN",
                       help="minutes of event time an event may arrive late (default 5)")

    def mqtt_options(p: argparse.ArgumentParser, required: bool, client_id: str) -> None:
        p.add_argument("--mqtt", metavar="URL", required=required,
                       help="take devices' events from this MQTT broker: "
                            "mqtt://[user[:password]@]host[:port], mqtts:// for TLS (password "
                            "also from CHAINSIGHT_MQTT_PASSWORD)")
        p.add_argument("--mqtt-client-id", default=client_id, metavar="ID",
                       help=f"the persistent session's client id (default {client_id}); one "
                            "per running process")
        p.add_argument("--mqtt-topic-root", default="chainsight", metavar="ROOT",
                       help="devices publish to ROOT/devices/ID/events, business systems to "
                            "ROOT/systems/NAME/events (default chainsight)")
        p.add_argument("--mqtt-ca", metavar="FILE", help="TLS: CA bundle to trust")
        p.add_argument("--mqtt-cert", metavar="FILE", help="TLS: client certificate")
        p.add_argument("--mqtt-key", metavar="FILE", help="TLS: client key")

    p = sub.add_parser("replay", help="run the pipeline over a recorded JSON Lines file")
    p.add_argument("events", type=Path, help="EVENTS.jsonl, in arrival order")
    p.add_argument("--fences", type=Path, help="geofences (GeoJSON FeatureCollection)")
    p.add_argument("--alerts-out", type=Path)
    p.add_argument("--dead-letter-out", type=Path)
    p.add_argument("--state-out", type=Path)
    p.add_argument("--eta-out", type=Path, help="write every ETA published (JSON Lines)")
    p.add_argument("--eta-model", type=Path, metavar="MODEL.json",
                   help="start from this exported ETA model")
    p.add_argument("--eta-model-out", type=Path, metavar="MODEL.json",
                   help="export the ETA model learned, at the end")
    p.add_argument("--record-out", type=Path, metavar="RECORD.jsonl",
                   help="write the shipments' tamper-evident records (hash-chained entries)")
    p.add_argument("--live-alerts-out", type=Path, metavar="LIVE.jsonl",
                   help="also write the live alert stream (provisional, withdrawn, settled) "
                        "as a live runtime would publish it, each record with `line`")
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help="processes that decode ahead of the engine (default: 2 for a file of "
                        "16 MB or more on a machine with 2 or more cores, else 0)")
    engine_options(p)
    p.set_defaults(func=cmd_replay)

    p = sub.add_parser("demo", help="a simulated fleet feeding the embedded runtime (live), "
                                    "with the HTTP API served over it")
    p.add_argument("--scenario", default="demo", help="scenario preset name or JSON path")
    p.add_argument("--shipments", type=int, help="number of shipments (scenario default)")
    p.add_argument("--seed", type=int)
    p.add_argument("--speedup", type=float, default=300.0,
                   help="simulated seconds per wall-clock second (default 300)")
    p.add_argument("--duration", type=float, metavar="SECONDS",
                   help="stop after this many wall-clock seconds (default: until Ctrl-C; once "
                        "the scenario ends, the API and pages go on serving its last state)")
    p.add_argument("--host", default="127.0.0.1", help="the API's address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="the API's port (default 8000)")
    p.add_argument("--data-dir", type=Path,
                   help="keep the demo tokens in this token store (default: a temporary one, "
                        "gone when the demo ends)")
    engine_options(p)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("worker", help="distributed runtime: consume Kafka, write alerts and "
                                      "Redis live state (configured by CHAINSIGHT_* variables "
                                      "and config/streams.json)")
    p.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    p.add_argument("--fences", type=Path, help="geofences (GeoJSON) to start with, until a set "
                                               "is published with `chainsight put-fences`")
    p.add_argument("--runtime", choices=("kafka", "faust"), default="kafka",
                   help="kafka: the confluent-kafka worker (default, fastest); faust: the same "
                        "engine as Faust agents (needs chainsight[faust])")
    p.add_argument("--web-port", type=int, metavar="PORT",
                   help="faust: serve Faust's web views on this port (default: off)")
    p.add_argument("--data-dir", type=Path,
                   help="faust: Faust's local data directory (default: a temporary one; the "
                        "tables are recovered from Kafka)")
    engine_options(p)
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser("put-fences", help="distributed runtime: replace the geofences of every "
                                          "worker and partition, live")
    p.add_argument("fences", type=Path, help="geofences (GeoJSON FeatureCollection)")
    p.set_defaults(func=cmd_put_fences)

    p = sub.add_parser("migrate-snapshots",
                       help="convert the workers' pickled (version 2) snapshots to version 3, "
                            "with the workers stopped (configured like `worker`)")
    p.add_argument("--trust-pickle", action="store_true",
                   help="required: the old snapshots are pickles, and unpickling runs code")
    p.set_defaults(func=cmd_migrate_snapshots)

    p = sub.add_parser("serve", help="the HTTP API and websockets over the embedded runtime "
                                     "(or the distributed one: --kafka)")
    p.add_argument("--kafka", action="store_true",
                   help="serve the distributed runtime: state from Redis, events and commands "
                        "to Kafka (connection settings as for `worker`: CHAINSIGHT_* variables "
                        "and config/streams.json)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--data-dir", type=Path,
                   help="token store and the engine's durable state (default: "
                        "$CHAINSIGHT_DATA_DIR, else ~/.local/share/chainsight)")
    p.add_argument("--fences", type=Path, help="geofences (GeoJSON) to start with (--kafka: "
                                               "those the workers started with)")
    p.add_argument("--public-url", help="the server's public base URL (default: the address "
                                        "it listens on)")
    mqtt_options(p, required=False, client_id="chainsight-serve")
    engine_options(p)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("mqtt-bridge", help="distributed runtime: devices' MQTT messages into "
                                           "the events topic (configured like `worker`)")
    p.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    mqtt_options(p, required=True, client_id="chainsight-bridge")
    p.set_defaults(func=cmd_mqtt_bridge)

    p = sub.add_parser("token", help="API tokens: create, list, revoke")
    actions = p.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", help="print a new bearer token (stored hashed)")
    create.add_argument("--role", required=True,
                        choices=("admin", "dispatcher", "quality", "sales", "device"))
    create.add_argument("--name", required=True, help="the user (or device) it is for")
    create.add_argument("--customer", action="append", metavar="C",
                        help="limit it to this customer's shipments (repeatable)")
    create.add_argument("--device", action="append", metavar="D",
                        help="device tokens: accept events of this device only (repeatable)")
    actions.add_parser("list", help="the tokens, one JSON object a line (no secrets)")
    revoke = actions.add_parser("revoke", help="revoke the tokens with this id or name")
    revoke.add_argument("key", metavar="ID_OR_NAME")
    data_dir_option(actions, "the token store's directory")
    p.set_defaults(func=cmd_token, data_dir=None)

    p = sub.add_parser("trace-keys", help="the keys that sign customer trace links")
    actions = p.add_subparsers(dest="action", required=True)
    actions.add_parser("list", help="the key ids, oldest first (the newest signs)")
    actions.add_parser("rotate", help="add a new signing key (older links keep working)")
    retire = actions.add_parser("retire", help="stop accepting links signed with a key")
    retire.add_argument("key", metavar="KEY_ID")
    data_dir_option(actions, "the data directory `serve` uses")
    p.set_defaults(func=cmd_trace_keys, data_dir=None)

    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (OSError, ValueError) as exc:
        print(f"chainsight {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    run()
