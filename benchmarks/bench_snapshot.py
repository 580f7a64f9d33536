"""Snapshot size and dump/restore time of an engine after ~1M events (the default scenario with
fences): the version-3 format against the pickle that version 2 wrote.

    python benchmarks/bench_snapshot.py [--events N] [--runs R]
"""

from __future__ import annotations

import argparse
import pickle
import time
import zlib
from collections.abc import Callable

from chainsight.engine.core import Engine
from chainsight.geofence import FenceSet
from chainsight.runtimes.kafka import snapshots
from chainsight.runtimes.kafka.partition import PartitionState
from chainsight.sim import simulate


def best(runs: int, fn: Callable[[], object]) -> tuple[float, object]:
    times, result = [], None
    for _ in range(runs):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    sim = simulate("default", shipments=max(1, args.events // 250), seed=11)
    fences = FenceSet.from_geojson(sim.fences())
    state = PartitionState(Engine(fences=fences))
    for lines in sim.iter_line_batches(20_000):
        state.engine.process([line.encode() for line in lines])
    engine = state.engine
    print(f"engine after {engine.counters['events']:,} events: {len(engine.state.shipments):,} "
          f"shipments, {len(engine.ingest.dedup):,} ids in the dedup window, "
          f"{len(engine.reorder):,} events held, {len(engine.audit):,} audit entries")

    def v2_dump() -> bytes:
        return zlib.compress(pickle.dumps((2, state), protocol=pickle.HIGHEST_PROTOCOL), 1)

    def v3_restore() -> None:
        snapshots.load(v3, PartitionState(Engine(fences=fences)))

    dump2, v2 = best(args.runs, v2_dump)
    load2, _ = best(args.runs, lambda: pickle.loads(zlib.decompress(v2)))
    dump3, v3 = best(args.runs, lambda: snapshots.dump(state))
    build, _ = best(args.runs, lambda: Engine(fences=fences))
    load3, _ = best(args.runs, v3_restore)
    print(f"v2 pickle:      {len(v2) / 1e6:6.2f} MB, dump {dump2 * 1e3:6.0f} ms, "
          f"restore {load2 * 1e3:6.0f} ms")
    print(f"v3 msgpack:     {len(v3) / 1e6:6.2f} MB, dump {dump3 * 1e3:6.0f} ms, "
          f"restore {load3 * 1e3:6.0f} ms (of which {build * 1e3:.0f} ms building the engine "
          "from its configuration)")


if __name__ == "__main__":
    main()
