"""Small builders for contract events used across the tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson

from chainsight.contract.times import iso

T0 = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)


def at(minutes: float) -> str:
    """ISO time `minutes` after T0, formatted as the engine formats times."""
    return iso(ms(minutes))


def ms(minutes: float) -> int:
    return int((T0 + timedelta(minutes=minutes)).timestamp() * 1000)


def line(**event: object) -> bytes:
    return orjson.dumps(event)


def order(shipment: str = "S1", minutes: float = -60, status: str = "in_transit",
          profile: str = "pharma_2_8", devices: tuple[str, ...] = ("T1", "G1"),
          **extra: object) -> bytes:
    return line(type="order", order_id=f"O-{shipment}", shipment_id=shipment, ts=at(minutes),
                status=status, product_profile=profile, device_ids=list(devices), **extra)


def reading(minutes: float, temp: float, device: str = "T1", **extra: object) -> bytes:
    return line(type="sensor", device_id=device, ts=at(minutes), temp_c=temp, **extra)


def fix(minutes: float, lat: float = 52.0, lon: float = 4.0, device: str = "G1",
        **extra: object) -> bytes:
    return line(type="gps", device_id=device, ts=at(minutes), lat=lat, lon=lon, **extra)


def series(temps: list[float], start: float = 0, step: float = 1, device: str = "T1") -> list:
    """Readings one `step` minute apart."""
    return [reading(start + i * step, t, device) for i, t in enumerate(temps)]
