"""How good past ETAs were, once each trip's true arrival is known: mean absolute error and
mean absolute percentage error of the model and of the baseline, by hours out (how long
before the arrival the ETA was made)."""

from __future__ import annotations

import numpy as np

BUCKETS_H = (1.0, 2.0, 4.0, 8.0)  # bucket edges: <1 h, 1-2 h, 2-4 h, 4-8 h, >= 8 h out
BUCKET_NAMES = ("0-1h", "1-2h", "2-4h", "4-8h", "8h+")
WHO = ("model", "baseline")
MIN_REMAINING_MIN = 1.0  # percentage errors of ETAs made closer than this are not counted


class Accuracy:
    """Sums per (model|baseline, bucket): count, absolute error (minutes), percentage error."""

    def __init__(self) -> None:
        self.count = np.zeros(len(BUCKET_NAMES), np.int64)
        self.abs_min = np.zeros((len(WHO), len(BUCKET_NAMES)))
        self.ape = np.zeros((len(WHO), len(BUCKET_NAMES)))
        self.ape_count = np.zeros(len(BUCKET_NAMES), np.int64)

    def add(self, at: np.ndarray, actual: int | np.ndarray, model_eta: np.ndarray,
            baseline_eta: np.ndarray) -> None:
        """ETAs made at `at` of trips that arrived at `actual` (epoch ms, one or each)."""
        remaining = (actual - at) / 60_000.0
        bucket = np.searchsorted(BUCKETS_H, remaining / 60.0, side="right")
        np.add.at(self.count, bucket, 1)
        counted = remaining >= MIN_REMAINING_MIN
        np.add.at(self.ape_count, bucket[counted], 1)
        for w, eta in enumerate((model_eta, baseline_eta)):
            err = np.abs(eta - actual) / 60_000.0
            np.add.at(self.abs_min[w], bucket, err)
            np.add.at(self.ape[w], bucket[counted], err[counted] / remaining[counted])

    def summary(self) -> dict[str, float | int]:
        """Flat metrics: `eta_accuracy.{model|baseline}.{mae_min|mape}[.BUCKET]` and counts."""
        out: dict[str, float | int] = {"eta_accuracy.samples": int(self.count.sum())}
        for w, who in enumerate(WHO):
            for name, n, err, ape, n_ape in (
                    ("", self.count.sum(), self.abs_min[w].sum(), self.ape[w].sum(),
                     self.ape_count.sum()),
                    *((f".{b}", self.count[k], self.abs_min[w, k], self.ape[w, k],
                       self.ape_count[k]) for k, b in enumerate(BUCKET_NAMES))):
                if n:
                    out[f"eta_accuracy.{who}.mae_min{name}"] = round(float(err / n), 3)
                if n_ape:
                    out[f"eta_accuracy.{who}.mape{name}"] = round(float(ape / n_ape), 4)
        for k, b in enumerate(BUCKET_NAMES):
            out[f"eta_accuracy.samples.{b}"] = int(self.count[k])
        return out

    @classmethod
    def merged(cls, states: list[dict]) -> Accuracy:
        """The accuracy of several models' ETAs together (their `dump_state`s summed)."""
        total = cls()
        for state in states:
            part = cls()
            part.load_state(state)
            total.count += part.count
            total.abs_min += part.abs_min
            total.ape += part.ape
            total.ape_count += part.ape_count
        return total

    def dump_state(self) -> dict:
        return {"count": self.count, "abs_min": self.abs_min, "ape": self.ape,
                "ape_count": self.ape_count}

    def load_state(self, data: dict) -> None:
        self.count = np.array(data["count"], np.int64)
        self.abs_min = np.array(data["abs_min"], np.float64).reshape(len(WHO), -1)
        self.ape = np.array(data["ape"], np.float64).reshape(len(WHO), -1)
        self.ape_count = np.array(data["ape_count"], np.int64)
