"""Request and answer models: what `/docs` shows. Answers are built as plain dicts by the
routes (the engine's own records); these models describe them."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, model_validator


class ErrorOut(BaseModel):
    error: str = Field(examples=["unknown alert A-123"])


class Rejected(BaseModel):
    index: int = Field(description="0-based, in the array or among the non-empty lines")
    reason: str = Field(examples=["invalid event: Object missing required field `lat`"])


class IngestOut(BaseModel):
    accepted: int = Field(examples=[2])
    duplicates: int = Field(examples=[0])
    rejected: list[Rejected]


class Position(BaseModel):
    lat: float
    lon: float
    ts: str


class ShipmentOut(BaseModel):
    """A shipment's live state (STATE.json's shipment object) and when it was last seen;
    rules may add fields of their own."""

    model_config = ConfigDict(extra="allow", json_schema_extra={"examples": [{
        "shipment_id": "SHP-0001", "status": "in_transit",
        "last_position": {"lat": 51.92, "lon": 4.48, "ts": "2026-11-25T08:00:00Z"},
        "last_temp_c": 5.1, "profile": "pharma_2_8", "open_alerts": [], "eta": None,
        "last_seen": "2026-11-25T08:00:00Z"}]})

    shipment_id: str
    status: str | None
    last_position: Position | None
    last_temp_c: float | None
    profile: str | None
    open_alerts: list[str]
    eta: str | None
    last_seen: str | None


class ShipmentDetailOut(ShipmentOut):
    history: list[dict[str, Any]] = Field(description="recent events, as sent, newest last")


class AlertOut(BaseModel):
    """An alert's current record (see the contract's "Output: alerts")."""

    model_config = ConfigDict(extra="allow", json_schema_extra={"examples": [{
        "alert_id": "A-3f9c", "kind": "temperature_excursion", "state": "open",
        "shipment_id": "SHP-0001", "device_id": "TMP-0001", "severity": "warning",
        "at": "2026-11-25T08:15:00Z", "details": {"max_c": 9.4, "limit_c": 8.0},
        "provisional": True}]})

    alert_id: str
    kind: str
    state: Literal["open", "acknowledged", "resolved", "retracted"]
    shipment_id: str | None = None
    device_id: str | None = None
    severity: str
    at: str
    details: dict[str, Any] = {}
    provisional: bool | None = None


class AcknowledgeIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "examples": [{"comment": "driver called, checking the reefer"}]})

    comment: str | None = Field(default=None, max_length=4000)


class ResolveIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "examples": [{"comment": "reefer reset, product checked and released"}]})

    comment: str = Field(min_length=1, max_length=4000)


class FencesOut(BaseModel):
    version: int
    fences: int = Field(description="how many fences are in force")


AlertKind = Literal["temperature_excursion", "geofence_enter", "geofence_exit",
                    "dwell_exceeded", "sensor_silent", "eta_late", "route_deviation"]
Severity = Literal["info", "warning", "critical"]


class WebhookIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"url": "https://ops.example.com/chainsight", "kinds": ["temperature_excursion"],
         "min_severity": "warning"}]})

    url: AnyHttpUrl
    kinds: list[AlertKind] | None = Field(default=None, description="empty or absent: all")
    min_severity: Severity | None = None
    severities: list[Severity] | None = Field(default=None, description="or: exactly these")
    secret: str | None = Field(default=None, min_length=16, max_length=256,
                               description="signs deliveries; generated when absent")

    @model_validator(mode="after")
    def one_severity_filter(self) -> WebhookIn:
        if self.min_severity is not None and self.severities is not None:
            raise ValueError("give min_severity or severities, not both")
        return self


class WebhookOut(BaseModel):
    id: str
    url: str
    owner: str
    role: str
    created_at: int
    kinds: list[str]
    severities: list[str]
    customers: list[str]
    secret: str | None = Field(default=None, description="in the answer to POST only")
