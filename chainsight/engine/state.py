"""In-memory engine state: dense integer ids for devices and shipments, and per-entity columns.

Kernels index NumPy columns by these ids, so a rule's state is a handful of arrays, not objects.
"""

from __future__ import annotations

import copy

import msgspec
import numpy as np

from chainsight.contract.events import Lot

NO_TS = -(2**62)  # "never"; far from int64 min so that NO_TS - lateness cannot overflow


class Registry:
    """Interns string ids as dense ints 0..n-1."""

    def __init__(self) -> None:
        self.index: dict[str, int] = {}
        self.names: list[str] = []

    def __len__(self) -> int:
        return len(self.names)

    def intern(self, name: str) -> int:
        i = self.index.get(name)
        if i is None:
            i = self.index[name] = len(self.names)
            self.names.append(name)
        return i


class Columns:
    """Named NumPy arrays of one length that grow as entities are registered."""

    def __init__(self, **spec: tuple[type, object]) -> None:
        self._spec = spec
        self._size = 0
        for name, (dtype, fill) in spec.items():
            setattr(self, name, np.full(0, fill, dtype=dtype))

    def __len__(self) -> int:
        return self._size

    def ensure(self, n: int) -> None:
        """Grow every column (geometrically) to hold at least `n` entities."""
        size = self._size
        if n <= size:
            return
        new_size = max(n, 2 * size, 64)
        for name, (dtype, fill) in self._spec.items():
            grown = np.full(new_size, fill, dtype=dtype)
            grown[:size] = getattr(self, name)
            setattr(self, name, grown)
        self._size = new_size

    def dump_state(self) -> dict:
        return {name: getattr(self, name)[:self._size] for name in self._spec}

    def load_state(self, data: dict) -> None:
        """Columns as `dump_state` gave them (one length); a column added since starts empty
        (its fill value)."""
        sizes = {len(data[name]) for name in self._spec if name in data}
        if len(sizes) > 1:
            raise ValueError(f"columns of different lengths: {sorted(sizes)}")
        self._size = sizes.pop() if sizes else 0
        for name, (dtype, fill) in self._spec.items():
            column = data[name] if name in data else np.full(self._size, fill, dtype=dtype)
            setattr(self, name, np.asarray(column, dtype=dtype))

    def copy_rows(self, src: Columns, index: np.ndarray) -> None:
        """Make rows `index` equal to `src`'s (of the same spec); rows `src` does not have yet
        take the fill values, as in a column grown to hold them."""
        if not len(index):
            return
        self.ensure(int(index.max()) + 1)
        held = index < len(src)
        for name, (_, fill) in self._spec.items():
            column = getattr(self, name)
            column[index[held]] = getattr(src, name)[index[held]]
            column[index[~held]] = fill


class ShipmentInfo:
    """The slow-changing, string-valued part of a shipment's state, set by business events."""

    __slots__ = ("status", "profile", "order_id", "promised_by", "origin", "destination",
                 "weight_kg", "mode", "lot", "customer_id", "sscc", "gtin")

    def __init__(self) -> None:
        self.status: str | None = None
        self.profile: str | None = None
        self.order_id: str | None = None
        self.promised_by: int | None = None
        self.origin: tuple[float, float] | None = None
        self.destination: tuple[float, float] | None = None
        self.weight_kg: float | None = None
        self.mode: str | None = None
        self.lot: Lot | None = None  # origin certificates, for traceability
        self.customer_id: str | None = None
        self.sscc: str | None = None  # GS1 identifiers of the logistic unit and trade item
        self.gtin: str | None = None

    def __setstate__(self, state: tuple[None, dict]) -> None:
        """From a pickle (a copy, a version-2 snapshot), without the slots this version no
        longer has (`eta`, now the ETA rule's)."""
        for slot, value in state[1].items():
            if slot in ShipmentInfo.__slots__:
                setattr(self, slot, value)


class State:
    """Everything the processing core remembers between batches."""

    def __init__(self) -> None:
        self.devices = Registry()
        self.shipments = Registry()
        self.info: list[ShipmentInfo] = []
        self.device = Columns(shipment=(np.int32, -1), live_shipment=(np.int32, -1))
        self.shipment = Columns(
            in_transit=(np.bool_, False),
            min_c=(np.float64, np.nan),
            max_c=(np.float64, np.nan),
            excursion_ms=(np.int64, -1),
            last_lat=(np.float64, np.nan),
            last_lon=(np.float64, np.nan),
            last_pos_ts=(np.int64, NO_TS),
            last_temp_c=(np.float64, np.nan),
            last_temp_ts=(np.int64, NO_TS),
            # the position before the shipment's first fix in `segment` (`moved_in` it)
            prev_lat=(np.float64, np.nan),
            prev_lon=(np.float64, np.nan),
            moved_in=(np.int64, -1),
            # the live view, updated as events arrive: the newest event time wins
            live_lat=(np.float64, np.nan),
            live_lon=(np.float64, np.nan),
            live_pos_ts=(np.int64, NO_TS),
            live_temp_c=(np.float64, np.nan),
            live_temp_ts=(np.int64, NO_TS),
            live_status=(np.int8, -1),  # index in STATUSES
            live_status_ts=(np.int64, NO_TS),
            last_seen=(np.int64, NO_TS),
        )
        self.clock = NO_TS  # newest event time processed
        self.segment = 0  # number of the run of rows being processed (see `prev_lat`)

    @classmethod
    def sharing_ids(cls, other: State) -> State:
        """An empty state that interns names in `other`'s registries, so that both give a name
        the same dense id (a provisional copy of `other`); columns, info and clock its own.
        Its columns may lag the registries: `grow` sizes them."""
        state = cls()
        state.devices, state.shipments = other.devices, other.shipments
        return state

    def grow(self) -> None:
        """Size the columns and `info` for every registered device and shipment."""
        self.device.ensure(len(self.devices))
        self.shipment.ensure(len(self.shipments))
        self.info.extend(ShipmentInfo() for _ in range(len(self.info), len(self.shipments)))

    def copy_entities(self, src: State, shipments: np.ndarray, devices: np.ndarray) -> None:
        """Make the state of these shipments and devices (dense ids) equal to `src`'s, which
        shares this state's registries; the clock is left to the caller."""
        self.grow()
        self.shipment.copy_rows(src.shipment, shipments)
        self.shipment.moved_in[shipments] = -1  # numbered by src's segments, not ours
        self.device.copy_rows(src.device, devices)
        for s in shipments.tolist():
            self.info[s] = copy.deepcopy(src.info[s]) if s < len(src.info) else ShipmentInfo()

    def dump_state(self) -> dict:
        info = {slot: [getattr(i, slot) for i in self.info] for slot in ShipmentInfo.__slots__}
        info["lot"] = [None if lot is None else msgspec.to_builtins(lot) for lot in info["lot"]]
        return {"devices": self.devices.names, "shipments": self.shipments.names, "info": info,
                "device": self.device.dump_state(), "shipment": self.shipment.dump_state(),
                "clock": self.clock, "segment": self.segment}

    def load_state(self, data: dict) -> None:
        for registry, names in ((self.devices, data["devices"]),
                                (self.shipments, data["shipments"])):
            registry.names = list(names)
            registry.index = {name: i for i, name in enumerate(names)}
        columns = data["info"]
        columns["lot"] = [None if lot is None else msgspec.convert(lot, Lot)
                          for lot in columns["lot"]]
        for pair in ("origin", "destination"):
            columns[pair] = [None if p is None else tuple(p) for p in columns[pair]]
        self.info = [ShipmentInfo() for _ in self.shipments.names]
        blank = [None] * len(self.info)  # a slot added since the state was saved
        for slot in ShipmentInfo.__slots__:
            for info, value in zip(self.info, columns.get(slot, blank), strict=True):
                setattr(info, slot, value)
        self.device.load_state(data["device"])
        self.shipment.load_state(data["shipment"])
        self.clock = data["clock"]
        self.segment = data["segment"]

    def intern_devices(self, names: list[str]) -> np.ndarray:
        ids = list(map(self.devices.index.get, names))
        if None in ids:
            intern = self.devices.intern
            ids = [intern(name) if i is None else i for i, name in zip(ids, names, strict=True)]
            self.device.ensure(len(self.devices))
        return np.fromiter(ids, np.int32, len(ids))

    def intern_shipments(self, names: list[str | None]) -> np.ndarray:
        """Dense ids, -1 where the name is None."""
        ids = list(map(self.shipments.index.get, names))
        if None in ids:
            ids = [i if i is not None else -1 if name is None else self.shipment_id(name)
                   for i, name in zip(ids, names, strict=True)]
        return np.fromiter(ids, np.int32, len(ids))

    def device_id(self, name: str) -> int:
        i = self.devices.intern(name)
        self.device.ensure(i + 1)
        return i

    def shipment_id(self, name: str) -> int:
        i = self.shipments.intern(name)
        if i >= len(self.info):
            self.grow()
        return i
