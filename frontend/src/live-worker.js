// The live map's data, off the page's main thread: the /v1/live websocket (parsing a second's
// updates for 10,000 shipments takes longer than a frame), every shipment's state, its health,
// the filters. The page gets only what changed on the map, as packed arrays.
import { LiveSocket, channelUrl } from "./socket.js";

const HEALTH = { ok: 0, warning: 1, silent: 2, critical: 3 };
const SILENT_MS = 10 * 60 * 1000; // no event for this long (stream time) while in transit
const MOVING = new Set(["shipped", "in_transit"]);

let origin = "";
let token = "";
const shipments = new Map(); // shipment_id -> {item, id, seen (ms), h}
const alerts = new Map(); // alert_id -> record (current)
let nextId = 1;
let streamTime = 0;
let filter = { status: "", profile: "", alerting: false };
let shown = new Set(); // shipment ids (feature ids) on the map
let selected = null;

self.onmessage = ({ data }) => {
  if (data.type === "start") start(data);
  else if (data.type === "filter") {
    filter = { ...data.filter, ids: data.filter.ids ? new Set(data.filter.ids) : null };
    redraw();
  } else if (data.type === "select") {
    selected = data.shipmentId;
    sendSelected();
  } else if (data.type === "find") find(data.text);
};

async function start(data) {
  origin = data.origin;
  token = data.token;
  await loadAlerts();
  new LiveSocket(channelUrl(origin, "/v1/live", token), {
    onMessage: receive,
    onState: (state) => {
      self.postMessage({ type: "connection", state });
      if (state === "back") loadAlerts();
    },
  });
}

/** The current alerts (their severities colour the shipments); none when the server is away. */
async function loadAlerts() {
  const response = await fetch(`${origin}/v1/alerts`, { headers: { Authorization: `Bearer ${token}` } }).catch(() => null);
  if (!response || !response.ok) return;
  for (const record of await response.json()) {
    if (record.state === "open" || record.state === "acknowledged") alerts.set(record.alert_id, record);
  }
}

function receive(text) {
  const started = performance.now();
  const message = JSON.parse(text);
  if (message.type === "snapshot") {
    shipments.clear();
    for (const item of message.shipments) store(item);
    redraw();
  } else if (message.type === "update") {
    apply(message.shipments.map(store));
    if (selected && message.shipments.some((item) => item.shipment_id === selected)) sendSelected();
  } else if (message.type === "alert") {
    const record = message.alert;
    if (record.state === "resolved" || record.state === "retracted") alerts.delete(record.alert_id);
    else alerts.set(record.alert_id, record);
    const entry = shipments.get(record.shipment_id);
    if (entry) apply([entry]);
    if (record.shipment_id === selected) sendSelected();
  }
  self.postMessage({ type: "worker", ms: performance.now() - started, kind: message.type });
}

function store(item) {
  let entry = shipments.get(item.shipment_id);
  if (!entry) {
    entry = { id: nextId++, item, seen: 0, h: 0 };
    shipments.set(item.shipment_id, entry);
  }
  entry.item = item;
  entry.seen = item.last_seen ? Date.parse(item.last_seen) : 0;
  return entry;
}

/** The stream's event time: the newest last-seen time, leaving out the newest 2% (a device
 * with a wrong clock must not make every other shipment look silent). */
function newestTime() {
  const seen = [...shipments.values()].map((entry) => entry.seen).sort((a, b) => b - a);
  return seen.length ? seen[Math.floor(seen.length / 50)] : 0;
}

/** Shipments that went quiet change health without an update of their own. */
function sweep() {
  streamTime = newestTime();
  const changed = [];
  for (const entry of shipments.values()) if (health(entry) !== entry.h) changed.push(entry);
  if (changed.length) apply(changed);
}
setInterval(sweep, 5000);

function health(entry) {
  const item = entry.item;
  let h = HEALTH.ok;
  for (const id of item.open_alerts || []) {
    const record = alerts.get(id);
    const severity = record ? record.severity : "warning";
    if (severity === "critical") return HEALTH.critical;
    if (record && record.kind === "sensor_silent") h = Math.max(h, HEALTH.silent);
    else if (severity === "warning") h = Math.max(h, HEALTH.warning);
  }
  if (MOVING.has(item.status) && entry.seen && streamTime - entry.seen > SILENT_MS) h = Math.max(h, HEALTH.silent);
  return h;
}

function passes(entry) {
  const item = entry.item;
  return item.last_position != null
    && (!filter.status || item.status === filter.status)
    && (!filter.profile || item.profile === filter.profile)
    && (!filter.alerting || (item.open_alerts || []).length > 0)
    && (!filter.ids || filter.ids.has(item.shipment_id));
}

function feature(entry) {
  const p = entry.item.last_position;
  return { id: entry.id, sid: entry.item.shipment_id, lon: p.lon, lat: p.lat, h: entry.h };
}

/** Everything anew (a snapshot, a filter): the full list of what is shown. */
function redraw() {
  streamTime = newestTime();
  shown = new Set();
  const features = [];
  for (const entry of shipments.values()) {
    entry.h = health(entry);
    if (passes(entry)) {
      shown.add(entry.id);
      features.push(feature(entry));
    }
  }
  self.postMessage({ type: "reset", features });
  summarise(true);
}

/** Changes of some shipments: added, moved (or changed health), removed. */
function apply(entries) {
  const add = [];
  const remove = [];
  const moved = new Float64Array(entries.length * 4);
  let n = 0;
  for (const entry of entries) {
    entry.h = health(entry);
    const visible = passes(entry);
    const was = shown.has(entry.id);
    if (visible && !was) {
      shown.add(entry.id);
      add.push(feature(entry));
    } else if (!visible && was) {
      shown.delete(entry.id);
      remove.push(entry.id);
    } else if (visible) {
      const p = entry.item.last_position;
      moved.set([entry.id, p.lon, p.lat, entry.h], n * 4);
      n += 1;
    }
  }
  const update = moved.slice(0, n * 4);
  self.postMessage({ type: "diff", add, update, remove }, [update.buffer]);
  summarise();
}

let summaryDue = 0;
function summarise(always = false) {
  const now = performance.now();
  if (now < summaryDue && !always) return;
  summaryDue = now + 1000;
  const counts = [0, 0, 0, 0];
  const statuses = new Set();
  const profiles = new Set();
  for (const entry of shipments.values()) {
    counts[entry.h] += 1;
    if (entry.item.status) statuses.add(entry.item.status);
    if (entry.item.profile) profiles.add(entry.item.profile);
  }
  self.postMessage({
    type: "summary", total: shipments.size, shown: shown.size, counts,
    statuses: [...statuses].sort(), profiles: [...profiles].sort(), streamTime,
  });
}

function sendSelected() {
  const entry = shipments.get(selected);
  if (!entry) return;
  const open = (entry.item.open_alerts || []).map((id) => alerts.get(id) || { alert_id: id });
  self.postMessage({ type: "selected", item: entry.item, health: entry.h, alerts: open });
}

function find(text) {
  const wanted = text.trim().toLowerCase();
  let found = shipments.get(text.trim());
  if (!found) {
    for (const [sid, entry] of shipments) {
      if (sid.toLowerCase().includes(wanted)) {
        found = entry;
        break;
      }
    }
  }
  if (found && found.item.last_position) {
    self.postMessage({ type: "found", shipmentId: found.item.shipment_id, ...found.item.last_position });
  } else {
    self.postMessage({ type: "notfound", text });
  }
}
