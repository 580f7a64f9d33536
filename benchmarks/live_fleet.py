"""The live traffic the latency benchmarks send: 5,000 trucks, event time = wall clock.

Nine GPS fixes for every reefer reading; every 50th shipment is on the fast bench profile and
its readings go out of range 2 s out of every 4, so excursions open and clear all the time.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import orjson

from chainsight.config import Profile
from chainsight.contract.times import now_ms

SHIPMENTS = 5000
FAST = Profile("bench_fast", 2, 8, 0.02)  # an excursion opens after 1.2 s out of range


def orders() -> list[bytes]:
    """An order per shipment, linking its GPS unit and reefer sensor."""
    return [orjson.dumps({"type": "order", "order_id": f"O{i}", "shipment_id": f"S{i}",
                          "ts": now_ms(), "status": "in_transit",
                          "product_profile": FAST.name if i % 50 == 0 else "ambient",
                          "device_ids": [f"G{i}", f"T{i}"]}) for i in range(SHIPMENTS)]


def send_paced(send: Callable[[list[bytes]], None], rate: float, seconds: float,
               step_s: float = 0.01) -> int:
    """Send live events at `rate` per second (a batch every `step_s`) for `seconds`; returns
    how many were sent."""
    per_step = max(1, round(rate * step_s))
    sent, i = 0, 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        now = now_ms()
        batch = []
        for _ in range(per_step):
            s = i % SHIPMENTS
            if i % 10 == 0:
                hot = s % 50 == 0 and (now // 2000) % 2 == 0  # 2 s out of range, 2 s back
                batch.append(orjson.dumps({"type": "sensor", "device_id": f"T{s}",
                                           "shipment_id": f"S{s}", "ts": now,
                                           "temp_c": 12.0 if hot else 5.0}))
            else:
                batch.append(orjson.dumps({"type": "gps", "device_id": f"G{s}",
                                           "shipment_id": f"S{s}", "ts": now,
                                           "lat": 52 + s / 1e4, "lon": 4 + i / 1e7}))
            i += 1
        send(batch)
        sent += len(batch)
        pause = start + sent / rate - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
    return sent
