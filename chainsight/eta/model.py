"""The ETA model: what the network's own deliveries teach, learned online with River.

A prediction is the baseline (distance left ÷ the lane's average speed) plus a learned
correction in minutes. The correction is a River pipeline, `StandardScaler | LinearRegression`
(SGD), over the trip's features and two target encodings kept here as arrays (River's
`TargetAgg` idea): how much longer than the baseline trips took at each hour of the day, and
each lane's mean correction. It learns from a trip's samples when its true arrival is known
(delayed labels); predictions are computed from the pipeline's parameters, vectorised over a
batch, and equal River's `predict_one` (a test checks).

What a delivery teaches is queued (`queue`) and learned once event time has passed it by a
fixed delay (`advance`), so the model an ETA is made with depends only on the events before
it, not on how they were batched, and a live engine's provisional pipeline, a few minutes
ahead of the settled one, predicts with the same model as the settled one will.

The network is learned per shard of shipments (the CRC-32 of the shipment id modulo
`eta_shards`, as Kafka's default partitioner places a shipment's events): one shard by
default; the distributed runtime has one per partition, each learned from the deliveries its
partition owns, so that `replay` configured with the same number gives the same ETAs.

Durable state is plain data: the scaler's counts, means and variances, the regression's
weights, intercept and step count, the encodings, the lanes' speeds and the accuracy. River
models are never pickled, so a snapshot read back can only ever set numbers. A shard's River
pipeline is only built (and River imported, which takes most of a second) when it first learns:
until then predictions come from those numbers alone.
"""

from __future__ import annotations

import heapq
import zlib
from collections import Counter, defaultdict
from itertools import count
from typing import TYPE_CHECKING

import numpy as np
import orjson

from chainsight.eta.accuracy import Accuracy
from chainsight.eta.baseline import LaneSpeeds

if TYPE_CHECKING:
    from river.compose import Pipeline

FEATURES = ("base_min", "hour_adj_min", "lane_adj_min", "speed_min", "remaining_km",
            "progress", "elapsed_min", "dwell_min", "stops", "stopped", "stop_min",
            "weekend", "temp_controlled", "promised_in_min")
HOURS = 24
PRIOR_MIN = 120.0  # pseudo-minutes shrinking the hour encoding toward 1 (no correction)
PRIOR_TRIPS = 5.0  # pseudo-samples shrinking the lane encoding toward 0
EXPORT_FORMAT = "chainsight-eta-model"
EXPORT_VERSION = 1


UNTRAINED = {"counts": {}, "means": {}, "vars": {}, "weights": {}, "intercept": 0.0, "steps": 0}


def regressor() -> Pipeline:
    """The River pipeline learning the correction to the baseline, in minutes."""
    from river import linear_model, optim, preprocessing

    return preprocessing.StandardScaler() | linear_model.LinearRegression(
        optimizer=optim.SGD(0.01), intercept_lr=0.02, clip_gradient=50.0)


def shard_of(shipment_id: str, shards: int) -> int:
    """The shard of a shipment: where Kafka's default partitioner (CRC-32 of the key) puts its
    events among `shards` partitions."""
    return zlib.crc32(shipment_id.encode()) % shards


class EtaModel:
    """Per shard: baseline speeds, target encodings and the River regressor; the accuracy of
    past ETAs overall."""

    def __init__(self, shards: int = 1) -> None:
        if shards < 1:
            raise ValueError("eta_shards must be >= 1")
        self.shards = shards
        self.lanes = LaneSpeeds(shards)
        self.hour_actual = np.zeros((shards, HOURS))  # learned true minutes left, by hour
        self.hour_base = np.zeros((shards, HOURS))  # ... and their baseline minutes
        self.lane_sum = np.zeros((shards, 16))  # learned corrections (minutes) by lane
        self.lane_n = np.zeros((shards, 16))
        # per shard: its River pipeline once it has learned, else its parameters (`UNTRAINED`)
        self.regressors: list[Pipeline | dict] = [UNTRAINED] * shards
        self.accuracy = Accuracy()
        self.learned = 0  # samples learned from
        self.deliveries = 0
        self.jobs: list[tuple[int, int, dict]] = []  # heap: (delivered at, seq, what to learn)
        self._seq = count()

    # --- features ------------------------------------------------------------------------

    def features(self, shard: np.ndarray, at: np.ndarray, fix_ts: np.ndarray,
                 remaining_km: np.ndarray, lane: np.ndarray, speed_kmh: np.ndarray,
                 stopped: np.ndarray, stop_ms: np.ndarray, dwell_ms: np.ndarray,
                 stops: np.ndarray, depart: np.ndarray, start_km: np.ndarray,
                 promised: np.ndarray, temp_controlled: np.ndarray) -> np.ndarray:
        """The feature matrix (columns FEATURES) of ETAs made at `at` from these trips."""
        base = remaining_km / self.lanes.kmh(shard, lane) * 60.0
        hour = (at // 3_600_000) % HOURS
        ratio = ((self.hour_actual[shard, hour] + PRIOR_MIN)
                 / (self.hour_base[shard, hour] + PRIOR_MIN))
        lane_adj = np.zeros(len(at))
        known = (lane >= 0) & (lane < self.lane_n.shape[1])
        k_shard, k_lane = shard[known], lane[known]
        lane_adj[known] = self.lane_sum[k_shard, k_lane] / (self.lane_n[k_shard, k_lane]
                                                            + PRIOR_TRIPS)
        speed = np.clip(np.nan_to_num(speed_kmh, nan=30.0), 10.0, 130.0)
        progress = np.where(start_km > 0, 1.0 - remaining_km / np.where(start_km > 0,
                                                                       start_km, 1.0), 0.0)
        weekend = ((at // 86_400_000 + 3) % 7 >= 5).astype(np.float64)  # 1970-01-01: Thursday
        promised_in = np.where(promised > -(2**61), (promised - fix_ts) / 60_000.0, 0.0)
        return np.column_stack([
            base, base * (ratio - 1.0), lane_adj, remaining_km / speed * 60.0, remaining_km,
            np.clip(progress, -1.0, 1.0), np.maximum(0, fix_ts - depart) / 60_000.0,
            dwell_ms / 60_000.0, stops, stopped, stop_ms / 60_000.0, weekend,
            temp_controlled, np.clip(promised_in, -600.0, 600.0)])

    # --- predicting and learning -------------------------------------------------------------

    def correction(self, x: np.ndarray, shard: np.ndarray) -> np.ndarray:
        """The shards' regressors' predictions (minutes) for the rows of `x`, from their
        parameters."""
        out = np.empty(len(x))
        for k in np.unique(shard).tolist():
            rows = shard == k
            params = _parameters(self.regressors[k])
            mean = np.array([params["means"].get(f, 0.0) for f in FEATURES])
            var = np.array([params["vars"].get(f, 0.0) for f in FEATURES])
            w = np.array([params["weights"].get(f, 0.0) for f in FEATURES])
            w = np.where(var > 0, w / np.sqrt(np.where(var > 0, var, 1.0)), 0.0)
            out[rows] = (x[rows] - mean) @ w + params["intercept"]
        return out

    def predict_minutes(self, x: np.ndarray, shard: np.ndarray) -> np.ndarray:
        """Minutes left from each row's fix: the baseline plus the correction."""
        return np.maximum(0.0, x[:, 0] + self.correction(x, shard))

    def queue(self, at: int, shard: int, x: np.ndarray, minutes: np.ndarray,
              hour: np.ndarray, lane: int, lane_km: float, lane_hours: float) -> None:
        """A trip of `shard` delivered at `at`: its samples' features `x`, true minutes left
        from their fixes and hours of the day they were made at, its lane and the trip's
        kilometres and hours, to learn once `advance` passes `at`."""
        heapq.heappush(self.jobs, (at, next(self._seq), {
            "shard": shard, "x": x, "minutes": minutes, "hour": hour, "lane": lane,
            "km": lane_km, "hours": lane_hours}))

    def next_job(self) -> int | None:
        """When the earliest trip still to learn from was delivered; None when none is."""
        return self.jobs[0][0] if self.jobs else None

    def advance(self, until: int) -> None:
        """Learn from the trips delivered at or before `until`, in delivery order."""
        while self.jobs and self.jobs[0][0] <= until:
            _, _, job = heapq.heappop(self.jobs)
            self.learn(job["shard"], job["x"], job["minutes"], job["lane"], job["hour"])
            self.lanes.deliver(job["shard"], job["lane"], job["km"], job["hours"])
            self.deliveries += 1

    def learn(self, shard: int, x: np.ndarray, minutes: np.ndarray, lane: int,
              hour: np.ndarray) -> None:
        """Learn from rows of one trip whose true minutes left (from each row's fix) are
        `minutes`: the shard's regressor one row at a time, then its encodings."""
        target = minutes - x[:, 0]
        model = self.regressors[shard]
        if isinstance(model, dict):  # its first lesson: build the River pipeline
            model = self.regressors[shard] = _regressor_from(model)
        learn_one = model.learn_one
        for row, y in zip(x.tolist(), target.tolist(), strict=True):
            learn_one(dict(zip(FEATURES, row, strict=True)), y)
        np.add.at(self.hour_actual[shard], hour, minutes)
        np.add.at(self.hour_base[shard], hour, x[:, 0])
        if lane >= 0:
            if lane >= self.lane_n.shape[1]:
                more = ((0, 0), (0, max(16, 2 * lane + 1) - self.lane_n.shape[1]))
                self.lane_sum, self.lane_n = np.pad(self.lane_sum, more), np.pad(self.lane_n,
                                                                                 more)
            self.lane_sum[shard, lane] += target.sum()
            self.lane_n[shard, lane] += len(target)
        self.learned += len(target)

    # --- durable state and export ----------------------------------------------------------

    def dump_state(self) -> dict:
        regressors = [_parameters(model) for model in self.regressors]
        return {"shards": self.shards, "lanes": self.lanes.dump_state(),
                "hour_actual": self.hour_actual, "hour_base": self.hour_base,
                "lane_sum": self.lane_sum, "lane_n": self.lane_n, "regressors": regressors,
                "accuracy": self.accuracy.dump_state(), "learned": self.learned,
                "deliveries": self.deliveries,
                "jobs": [[at, job] for at, _, job in sorted(self.jobs, key=lambda j: j[:2])]}

    def load_state(self, data: dict) -> None:
        """Take over a dumped model of the same number of shards (ValueError otherwise)."""
        if int(data["shards"]) != self.shards:
            raise ValueError(f"the ETA model has {data['shards']} shard(s), this engine "
                             f"{self.shards} (setting eta_shards)")
        self.lanes.load_state(data["lanes"])
        shape = (self.shards, -1)
        for name in ("hour_actual", "hour_base", "lane_sum", "lane_n"):
            setattr(self, name, np.array(data[name], np.float64).reshape(shape))
        known = set(FEATURES)  # features this version does not know are left out
        self.regressors = [{
            "counts": {f: int(n) for f, n in r["counts"].items() if f in known},
            **{name: {f: float(v) for f, v in r[name].items() if f in known}
               for name in ("means", "vars", "weights")},
            "intercept": float(r["intercept"]), "steps": int(r["steps"])}
            for r in data["regressors"]]
        self.accuracy.load_state(data["accuracy"])
        self.learned, self.deliveries = int(data["learned"]), int(data["deliveries"])
        self.jobs, self._seq = [], count()
        for at, job in data["jobs"]:
            self.queue(int(at), int(job["shard"]),
                       np.array(job["x"], np.float64).reshape(-1, len(FEATURES)),
                       np.array(job["minutes"], np.float64), np.array(job["hour"], np.int64),
                       int(job["lane"]), float(job["km"]), float(job["hours"]))

    def export(self) -> bytes:
        """The model as a JSON document (what `import_` reads)."""
        return orjson.dumps({"format": EXPORT_FORMAT, "version": EXPORT_VERSION,
                             "features": list(FEATURES), "model": self.dump_state()},
                            option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_INDENT_2)

    @classmethod
    def import_(cls, data: bytes) -> EtaModel:
        """A model from `export`'s JSON; ValueError (one line) for anything else."""
        try:
            doc = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise ValueError(f"not an ETA model: invalid JSON ({exc})") from None
        if not isinstance(doc, dict) or doc.get("format") != EXPORT_FORMAT:
            raise ValueError("not an ETA model (format is not chainsight-eta-model)")
        if doc.get("version") != EXPORT_VERSION:
            raise ValueError(f"ETA model version {doc.get('version')!r} is not supported "
                             f"(this version reads {EXPORT_VERSION})")
        try:
            model = cls(int(doc["model"]["shards"]))
            model.load_state(doc["model"])
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ValueError(f"ETA model is damaged: {type(exc).__name__}: {exc}") from None
        return model


def _parameters(model: Pipeline | dict) -> dict:
    """A regressor's parameters as plain numbers (`UNTRAINED`'s keys)."""
    if isinstance(model, dict):
        return model
    scaler, linear = model.steps.values()
    return {"counts": dict(scaler.counts), "means": dict(scaler.means),
            "vars": dict(scaler.vars), "weights": dict(linear._weights),
            "intercept": linear.intercept, "steps": linear.optimizer.n_iterations}


def _regressor_from(params: dict) -> Pipeline:
    """A River regressor with these parameters."""
    from river.utils import VectorDict

    model = regressor()
    scaler, linear = model.steps.values()
    scaler.counts = Counter(params["counts"])
    scaler.means = defaultdict(float, params["means"])
    scaler.vars = defaultdict(float, params["vars"])
    linear._weights = VectorDict(dict(params["weights"]))
    linear.intercept = float(params["intercept"])
    linear.optimizer.n_iterations = int(params["steps"])
    return model
