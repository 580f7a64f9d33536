"""How snapshot-v2.bin was made: a version-2 (pickled) partition snapshot written by the code of
commit 15e7055, over the tests' hand-made scenario (6 shipments, 2 h: an excursion, a silent
sensor, duplicates, disorder, malformed lines) with a hub fence, cut two thirds of the way, an
alert acknowledged. Run from a checkout of that commit:

    PYTHONPATH=. python tests/data/make_snapshot_v2.py SNAPSHOT EVENTS FENCES
"""
import sys

sys.path[:0] = ["tests", "tests/integration"]
import orjson
from chainsight.core import Engine
from chainsight.streams import snapshots
from chainsight.streams.partition import Partition, PartitionState
from confluent_kafka import Message
from test_worker import scenario

from chainsight.geofence import FenceSet

ring = [[3.95, 51.9], [4.05, 51.9], [4.05, 52.5], [3.95, 52.5], [3.95, 51.9]]
fences = {"type": "FeatureCollection", "features": [
    {"type": "Feature", "properties": {"fence_id": "HUB", "kind": "hub"},
     "geometry": {"type": "Polygon", "coordinates": [ring]}}]}
lines = scenario(seed=7, shipments=6, minutes=120)
cut = len(lines) * 2 // 3
part = Partition("events", 0, PartitionState(Engine(fences=FenceSet.from_geojson(fences))), 0,
                 history=False)
records = [Message(topic="events", partition=0, offset=i, value=v, timestamp=(1, 0),
                   headers=None) for i, v in enumerate(lines[:cut])]
for i in range(0, cut, 300):
    part.process(records[i:i + 300])
engine = part.engine
opened = sorted(a.alert_id for a in engine.book.open_alerts.values() if a.state == "open")
engine.acknowledge(opened[0], "ops", comment="on it")
part.process([])
assert snapshots.FORMAT == 2
open(sys.argv[1], "wb").write(snapshots.dump(part.state))
open(sys.argv[2], "wb").write(b"\n".join(lines) + b"\n")
open(sys.argv[3], "wb").write(orjson.dumps(fences))
print(cut, len(lines), len(engine.book.alerts), len(engine.book.open_alerts), len(engine.reorder), len(engine.audit))
