"""ETAs as published: one batch of a prediction run, kept as columns (dicts for thousands of
ETAs would cost more than making them) and turned into ETA.jsonl's records when written."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import orjson

from chainsight.contract.times import iso_many


class Etas(NamedTuple):
    """`{"shipment_id", "at", "eta", "remaining_km"}` records, as columns."""

    shipment_ids: list[str]
    at: np.ndarray  # epoch ms
    eta: np.ndarray  # epoch ms
    remaining_km: np.ndarray

    def records(self) -> list[dict]:
        """The contract's ETA.jsonl objects."""
        return [{"shipment_id": s, "at": a, "eta": e, "remaining_km": k}
                for s, a, e, k in zip(self.shipment_ids, iso_many(self.at), iso_many(self.eta),
                                      np.round(self.remaining_km, 3).tolist(), strict=True)]

    def jsonl(self) -> bytes:
        """The records as JSON Lines (the same objects as `records`, written directly)."""
        names = [orjson.dumps(s).decode() for s in self.shipment_ids]
        return "".join(
            f'{{"shipment_id":{s},"at":"{a}","eta":"{e}","remaining_km":{k!r}}}\n'
            for s, a, e, k in zip(names, iso_many(self.at), iso_many(self.eta),
                                  np.round(self.remaining_km, 3).tolist(), strict=True)
        ).encode()
