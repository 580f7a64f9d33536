"""`GET /metrics`: the engine's counters and the API's own, in Prometheus text format,
read from the backend when scraped."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from chainsight.api.backend import Backend, Delta

COUNTERS = {"events": "events accepted (duplicates included)",
            "rejected": "events rejected (dead-lettered)",
            "duplicates": "duplicate events ignored",
            "late_dropped": "events later than the allowed lateness (history only)"}


class Retractions:
    """Counts withdrawals on the live alert stream (a backend subscriber)."""

    def __init__(self) -> None:
        self.count = 0

    def on_delta(self, delta: Delta) -> None:
        self.count += sum(1 for record in delta.alerts if record["state"] == "retracted")


class EngineCollector:
    def __init__(self, backend: Backend, retractions: Retractions,
                 websocket_clients: Callable[[], int]) -> None:
        self.backend = backend
        self.retractions = retractions
        self.websocket_clients = websocket_clients

    def collect(self) -> Iterator[Metric]:
        values = self.backend.metrics()
        for name, help_text in COUNTERS.items():
            yield CounterMetricFamily(f"chainsight_{name}", help_text, value=values.get(name, 0))
        yield CounterMetricFamily("chainsight_retracted", "alert transitions withdrawn",
                                  value=self.retractions.count)
        open_alerts = GaugeMetricFamily("chainsight_open_alerts", "open alerts, by kind",
                                        labels=["kind"])
        for name, n in sorted(values.items()):
            if name.startswith("open_alerts."):
                open_alerts.add_metric([name.removeprefix("open_alerts.")], n)
        yield open_alerts
        yield GaugeMetricFamily("chainsight_shipments", "shipments known",
                                value=values.get("shipments", 0))
        yield GaugeMetricFamily("chainsight_websocket_clients", "websocket clients connected",
                                value=self.websocket_clients())
        yield from eta_metrics(values)


def eta_metrics(values: dict[str, float]) -> Iterator[Metric]:
    """ETAs published, and the accuracy of past ones (`eta_accuracy.WHO.mae_min[.BUCKET]`,
    `...mape[...]`) by model or baseline and hours out (`all` for every ETA)."""
    yield CounterMetricFamily("chainsight_eta_predictions", "ETAs published",
                              value=values.get("eta_predictions", 0))
    yield CounterMetricFamily("chainsight_eta_deliveries", "delivered trips learned from",
                              value=values.get("eta_deliveries", 0))
    for stat, help_text in (("mae_min", "mean absolute error of past ETAs, minutes"),
                            ("mape", "mean absolute percentage error of past ETAs (0..1)")):
        family = GaugeMetricFamily(f"chainsight_eta_{stat}", help_text,
                                   labels=["who", "hours_out"])
        for name, value in sorted(values.items()):
            parts = name.split(".", 3)
            if parts[0] == "eta_accuracy" and len(parts) >= 3 and parts[2] == stat:
                family.add_metric([parts[1], parts[3] if len(parts) == 4 else "all"], value)
        yield family


def registry(collector: EngineCollector) -> CollectorRegistry:
    reg = CollectorRegistry(auto_describe=False)
    reg.register(collector)
    return reg


def exposition(reg: CollectorRegistry) -> bytes:
    return generate_latest(reg)
