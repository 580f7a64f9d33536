// The dispatcher's live map: fences by kind, every shipment as a point coloured by health
// (clustered when zoomed out), a panel per shipment, search and filters, live over /v1/live.
// The websocket and the shipments' state live in a worker (live-worker.js); this thread only
// hands the map what changed, at most once per animation frame.
import "maplibre-gl/dist/maplibre-gl.css";
import "uplot/dist/uPlot.min.css";
import "./style.css";
import { Map as MapLibre, NavigationControl, setWorkerUrl } from "maplibre-gl";
import uPlot from "uplot";
import { distanceM, drawableFences } from "./geo.js";
import { api, clock, enter, escapeHtml, showConnection, token } from "./session.js";
import { askBox } from "./ask.js";

const HEALTH_COLORS = ["#2e9e5b", "#f0a020", "#8a8f98", "#d7263d"]; // ok, warning, silent, critical
const HEALTH_NAMES = ["OK", "Warning", "Silent", "Critical alert"];
const KIND_COLORS = ["match", ["get", "kind"], "hub", "#3867d6", "customer", "#8854d0",
  "restricted", "#eb3b5a", "cold_store", "#0fb9b1", "corridor", "#7f8c9d", "#95a5a6"];
const CLUSTER_MAX_ZOOM = 12;
const FLUSH_EVERY_MS = 500;
const CHART_POINTS = 400;
const CHART_SPAN_S = 30 * 60; // the chart shows at least the last half hour
const EMPTY = { type: "FeatureCollection", features: [] };
const byHealth = (property) => ["match", ["get", property], 3, HEALTH_COLORS[3], 2, HEALTH_COLORS[2], 1, HEALTH_COLORS[1], HEALTH_COLORS[0]];
const $ = (id) => document.getElementById(id);

// what the benchmark and the tests read: main-thread milliseconds spent applying the live
// updates (taking the worker's changes, handing them to the map), how many shipments' updates
// they carried, the longest single call, and the worker's own milliseconds
const stats = { applyMs: 0, updates: 0, longestMs: 0, workerMs: 0 };
window.chainsightMap = { stats };
const spent = (started) => {
  const ms = performance.now() - started;
  stats.applyMs += ms;
  stats.longestMs = Math.max(stats.longestMs, ms);
};

setWorkerUrl(new URL("/static/maplibre-gl-worker.mjs", location.href).href);

function style() {
  const polygons = ["in", ["geometry-type"], ["literal", ["Polygon", "MultiPolygon"]]];
  return {
    version: 8,
    sources: {
      land: { type: "geojson", data: "/static/land.geojson" },
      borders: { type: "geojson", data: "/static/borders.geojson" },
      fences: { type: "geojson", data: EMPTY },
      trail: { type: "geojson", data: EMPTY },
      shipments: { type: "geojson", data: EMPTY, cluster: true, clusterRadius: 40, clusterMaxZoom: CLUSTER_MAX_ZOOM, clusterProperties: { worst: ["max", ["get", "h"]] } },
      selected: { type: "geojson", data: EMPTY },
    },
    layers: [
      { id: "sea", type: "background", paint: { "background-color": "#dbe7f1" } },
      { id: "land", type: "fill", source: "land", paint: { "fill-color": "#f6f4ee" } },
      { id: "borders", type: "line", source: "borders", paint: { "line-color": "#b8b2a4", "line-width": 0.8 } },
      { id: "fence-areas", type: "fill", source: "fences", filter: polygons, paint: { "fill-color": KIND_COLORS, "fill-opacity": 0.2 } },
      { id: "fence-outlines", type: "line", source: "fences", filter: polygons, paint: { "line-color": KIND_COLORS, "line-width": 1.2 } },
      { id: "corridors", type: "line", source: "fences", filter: ["==", ["geometry-type"], "LineString"], paint: { "line-color": KIND_COLORS, "line-width": 3, "line-opacity": 0.3 } },
      { id: "fence-sites", type: "circle", source: "fences", filter: ["==", ["geometry-type"], "Point"], paint: {
        "circle-radius": 4, "circle-color": "#ffffff", "circle-stroke-width": 2, "circle-stroke-color": KIND_COLORS } },
      { id: "trail", type: "line", source: "trail", paint: { "line-color": "#1f2d3d", "line-width": 2.5, "line-opacity": 0.8 } },
      { id: "clusters", type: "circle", source: "shipments", filter: ["has", "point_count"], paint: {
        "circle-color": byHealth("worst"), "circle-opacity": 0.85, "circle-stroke-width": 2, "circle-stroke-color": "#ffffff",
        "circle-radius": ["step", ["get", "point_count"], 11, 10, 15, 100, 20, 1000, 26] } },
      { id: "points", type: "circle", source: "shipments", filter: ["!", ["has", "point_count"]], paint: {
        "circle-color": byHealth("h"), "circle-radius": ["interpolate", ["linear"], ["zoom"], 4, 4, 12, 7], "circle-stroke-width": 1.5, "circle-stroke-color": "#ffffff" } },
      { id: "selected", type: "circle", source: "selected", paint: { "circle-radius": 12, "circle-opacity": 0, "circle-stroke-width": 3, "circle-stroke-color": "#1f2d3d" } },
    ],
  };
}

class LiveLayer {
  /** The shipments' source, fed with the worker's changes once per frame. */
  constructor(map) {
    this.map = map;
    this.reset = null;
    this.add = new Map();
    this.update = new Map();
    this.remove = new Set();
    this.frame = 0;
    this.flushed = 0;
  }

  receive(message) {
    const started = performance.now();
    if (message.type === "reset") {
      this.reset = { type: "FeatureCollection", features: message.features.map(toFeature) };
      this.add.clear();
      this.update.clear();
      this.remove.clear();
    } else {
      for (const f of message.add) {
        this.remove.delete(f.id);
        this.add.set(f.id, toFeature(f));
      }
      const u = message.update;
      for (let i = 0; i < u.length; i += 4) {
        const id = u[i];
        const coordinates = [u[i + 1], u[i + 2]];
        const added = this.add.get(id);
        if (added) {
          added.geometry.coordinates = coordinates;
          added.properties.h = u[i + 3];
        } else {
          this.update.set(id, { id, newGeometry: { type: "Point", coordinates }, addOrUpdateProperties: [{ key: "h", value: u[i + 3] }] });
        }
      }
      for (const id of message.remove) {
        if (!this.add.delete(id)) this.remove.add(id);
        this.update.delete(id);
      }
      stats.updates += u.length / 4;
    }
    this.schedule();
    spent(started);
  }

  /** The next flush: in an animation frame, and no sooner than FLUSH_EVERY_MS after the last
   * (each one makes the map re-cluster and redraw the fleet). */
  schedule() {
    if (this.frame) return;
    const wait = Math.max(0, this.flushed + FLUSH_EVERY_MS - performance.now());
    this.frame = setTimeout(() => requestAnimationFrame(() => this.flush()), wait);
  }

  flush() {
    this.frame = 0;
    this.flushed = performance.now();
    const started = performance.now();
    const source = this.map.getSource("shipments");
    if (this.reset) {
      source.setData(this.reset);
      this.reset = null;
    }
    if (this.add.size || this.update.size || this.remove.size) {
      source.updateData({ add: [...this.add.values()], update: [...this.update.values()], remove: [...this.remove] });
      this.add.clear();
      this.update.clear();
      this.remove.clear();
    }
    spent(started);
  }
}

class ClusterLabels {
  /** Each cluster's count, as text over its circle (HTML: the map has no glyphs, which would
   * have to come from a font server). */
  constructor(map) {
    this.map = map;
    this.box = document.createElement("div");
    this.box.className = "cluster-labels";
    map.getCanvasContainer().append(this.box);
    this.items = [];
    this.due = 0;
    map.on("render", () => {
      if (!this.due) this.due = setTimeout(() => this.refresh(), 250);
    });
    map.on("move", () => this.place());
  }

  refresh() {
    this.due = 0;
    const clusters = new Map();
    for (const f of this.map.queryRenderedFeatures({ layers: ["clusters"] })) clusters.set(f.properties.cluster_id, f);
    const features = [...clusters.values()];
    while (this.box.children.length < features.length) this.box.append(document.createElement("span"));
    const spans = [...this.box.children];
    spans.forEach((span, i) => (span.hidden = i >= features.length));
    this.items = features.map((f, i) => {
      spans[i].textContent = f.properties.point_count_abbreviated;
      return { span: spans[i], at: f.geometry.coordinates };
    });
    this.place();
  }

  place() {
    for (const { span, at } of this.items) {
      const point = this.map.project(at);
      span.style.transform = `translate(${point.x}px, ${point.y}px) translate(-50%, -50%)`;
    }
  }
}

function toFeature(f) {
  return { type: "Feature", id: f.id, properties: { sid: f.sid, h: f.h }, geometry: { type: "Point", coordinates: [f.lon, f.lat] } };
}

class Panel {
  /** One shipment's panel: facts, a temperature chart against its profile, open alerts, and
   * its trail on the map. */
  constructor(map, profiles) {
    this.map = map;
    this.profiles = profiles;
    this.id = null;
    this.chart = null;
    $("panel-close").addEventListener("click", () => this.close());
  }

  async open(shipmentId, worker) {
    this.id = shipmentId;
    this.times = [];
    this.temps = [];
    this.trail = [];
    this.speed = null;
    worker.postMessage({ type: "select", shipmentId });
    $("panel").hidden = false;
    document.body.classList.add("has-panel");
    $("panel-title").textContent = shipmentId;
    const response = await api(`/v1/shipments/${encodeURIComponent(shipmentId)}`);
    if (!response.ok || this.id !== shipmentId) return;
    const detail = await response.json();
    for (const event of detail.history || []) {
      const at = Date.parse(event.ts) / 1000;
      if (event.type === "sensor" && Number.isFinite(event.temp_c)) this.addReading(at, event.temp_c);
      if (event.type === "gps" && Math.abs(event.lat) <= 90 && Math.abs(event.lon) <= 180) {
        this.addFix([event.lon, event.lat], at, event.speed_kmh);
      }
    }
    this.show(detail, null, []);
    this.drawChart(detail.profile);
  }

  close() {
    this.id = null;
    $("panel").hidden = true;
    document.body.classList.remove("has-panel");
    this.map.getSource("trail").setData(EMPTY);
    this.map.getSource("selected").setData(EMPTY);
  }

  addReading(at, temp) {
    const i = insertionPoint(this.times, at);
    if (this.times[i] === at) this.temps[i] = temp;
    else {
      this.times.splice(i, 0, at);
      this.temps.splice(i, 0, temp);
    }
    if (this.times.length > CHART_POINTS) {
      this.times.shift();
      this.temps.shift();
    }
  }

  addFix(position, at, speedKmh) {
    const times = this.trail.map((fix) => fix.at);
    const i = insertionPoint(times, at);
    if (times[i] === at) return;
    this.trail.splice(i, 0, { position, at, speedKmh });
    if (this.trail.length > 500) this.trail.shift();
    const last = this.trail[this.trail.length - 1];
    const before = this.trail[this.trail.length - 2];
    if (Number.isFinite(last.speedKmh)) this.speed = last.speedKmh;
    else if (before) this.speed = (distanceM(before.position, last.position) / (last.at - before.at)) * 3.6;
  }

  /** Live: the worker's latest state of this shipment. */
  live(item, health, alerts) {
    if (item.shipment_id !== this.id) return;
    const seen = item.last_seen ? Date.parse(item.last_seen) / 1000 : null;
    if (seen && item.last_temp_c != null) this.addReading(seen, item.last_temp_c);
    const p = item.last_position;
    if (p) this.addFix([p.lon, p.lat], Date.parse(p.ts) / 1000, null);
    this.show(item, health, alerts);
    if (this.chart) this.chart.setData(this.chartData());
    else this.drawChart(item.profile);
  }

  show(item, health, alerts) {
    const sub = [(item.status || "status unknown").replace(/_/g, " "), (item.profile || "no profile").replace(/_/g, " ")];
    if (health != null) sub.push(HEALTH_NAMES[health]);
    $("panel-sub").textContent = sub.join(" · ");
    $("p-temp").textContent = item.last_temp_c == null ? "—" : `${item.last_temp_c.toFixed(1)} °C`;
    const range = this.profiles[item.profile];
    $("p-temp").className = `big ${range && item.last_temp_c != null && (item.last_temp_c < range.min_c || item.last_temp_c > range.max_c) ? "out" : ""}`;
    $("p-seen").textContent = item.last_seen ? item.last_seen.replace("T", " ").slice(0, 19) : "—";
    $("p-speed").textContent = this.speed == null ? "—" : `${Math.round(this.speed)} km/h`;
    $("p-eta").textContent = item.eta ? item.eta.replace("T", " ").slice(0, 16) : "not known";
    const records = alerts.length ? alerts : (item.open_alerts || []).map((id) => ({ alert_id: id }));
    $("p-alerts").innerHTML = records.length
      ? records.map((a) => `<li><span class="sev ${escapeHtml(a.severity || "")}">${escapeHtml(a.severity || "alert")}</span> ${escapeHtml(a.kind || a.alert_id)} <span class="muted">${escapeHtml(a.state || "")} ${clock(a.at)}${a.provisional ? " · provisional" : ""}</span></li>`).join("")
      : `<li class="muted">None</li>`;
    const positions = this.trail.map((t) => t.position);
    this.map.getSource("trail").setData(positions.length > 1 ? { type: "Feature", properties: {}, geometry: { type: "LineString", coordinates: positions } } : EMPTY);
    const here = p(item) || positions[positions.length - 1];
    this.map.getSource("selected").setData(here ? { type: "Feature", properties: {}, geometry: { type: "Point", coordinates: here } } : EMPTY);
  }

  chartData() {
    return [this.times, this.temps];
  }

  drawChart(profile) {
    const box = $("p-chart");
    box.replaceChildren();
    this.chart = null;
    if (!this.times.length) {
      box.innerHTML = `<p class="muted">No temperature readings yet</p>`;
      return;
    }
    const range = this.profiles[profile];
    this.chart = new uPlot({
      width: box.clientWidth || 320,
      height: 160,
      legend: { show: false },
      scales: {
        x: { time: true, range: (u, min, max) => [Math.min(min, max - CHART_SPAN_S), max] },
        y: { range: (u, min, max) => padded(range ? [Math.min(min, range.min_c), Math.max(max, range.max_c)] : [min, max]) },
      },
      axes: [{ stroke: "#555", size: 30, space: 60 }, { stroke: "#555", size: 36 }],
      series: [{}, { label: "°C", stroke: "#1f6fb2", width: 2, points: { show: true, size: 4 } }],
      hooks: { drawClear: [(u) => range && drawBand(u, range)] },
    }, this.chartData(), box);
  }
}

/** The profile's allowed range, shaded behind the readings. */
function drawBand(u, range) {
  const top = u.valToPos(range.max_c, "y", true);
  const bottom = u.valToPos(range.min_c, "y", true);
  const { left, width } = u.bbox;
  u.ctx.save();
  u.ctx.fillStyle = "rgba(46, 158, 91, 0.14)";
  u.ctx.fillRect(left, top, width, bottom - top);
  u.ctx.strokeStyle = "rgba(46, 158, 91, 0.7)";
  u.ctx.setLineDash([5, 4]);
  u.ctx.beginPath();
  for (const y of [top, bottom]) {
    u.ctx.moveTo(left, y);
    u.ctx.lineTo(left + width, y);
  }
  u.ctx.stroke();
  u.ctx.restore();
}

function padded([min, max]) {
  const pad = Math.max(1, (max - min) * 0.15);
  return [Math.floor(min - pad), Math.ceil(max + pad)];
}

/** Where `value` goes in the ascending `values`. */
function insertionPoint(values, value) {
  let lo = 0;
  let hi = values.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (values[mid] < value) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

function p(item) {
  return item.last_position ? [item.last_position.lon, item.last_position.lat] : null;
}

function fillOptions(select, values) {
  const current = select.value;
  const first = select.options[0];
  const known = [...select.options].slice(1).map((o) => o.value).join("\n");
  if (known === values.join("\n")) return;
  select.replaceChildren(first, ...values.map((value) => new Option(value.replace(/_/g, " "), value)));
  select.value = values.includes(current) ? current : "";
}

function showMembers(map, leaves, panel, worker) {
  const box = $("members");
  box.querySelector("ul").replaceChildren(...leaves.map((leaf) => {
    const li = document.createElement("li");
    const button = document.createElement("button");
    button.type = "button";
    button.className = "link";
    button.innerHTML = `<i class="dot h${leaf.properties.h}"></i>${escapeHtml(leaf.properties.sid)}`;
    button.addEventListener("click", () => {
      box.hidden = true;
      panel.open(leaf.properties.sid, worker);
    });
    li.append(button);
    return li;
  }));
  box.hidden = false;
}

async function start() {
  const map = new MapLibre({ container: "map", style: style(), center: [5.5, 51.5], zoom: 6, attributionControl: { compact: true, customAttribution: "Natural Earth" } });
  map.addControl(new NavigationControl({ showCompass: false }), "bottom-right");
  window.chainsightMap.map = map;
  new ClusterLabels(map);
  const profiles = await fetch("/pages/profiles.json").then((r) => r.json());
  const panel = new Panel(map, profiles);
  const layer = new LiveLayer(map);
  const worker = new Worker(new URL("/static/live-worker.js", location.href), { type: "module" });
  let fitted = false;
  await new Promise((resolve) => (map.loaded() ? resolve() : map.once("load", resolve)));

  const fences = await api("/v1/fences");
  if (fences.ok) map.getSource("fences").setData(drawableFences(await fences.json()));

  worker.onmessage = ({ data }) => {
    if (data.type === "reset" || data.type === "diff") {
      layer.receive(data);
      if (data.type === "reset" && !fitted && data.features.length) {
        fitted = true;
        const lons = data.features.map((f) => f.lon);
        const lats = data.features.map((f) => f.lat);
        map.fitBounds([[Math.min(...lons), Math.min(...lats)], [Math.max(...lons), Math.max(...lats)]], { padding: 60, maxZoom: 9, duration: 0 });
      }
    } else if (data.type === "worker") stats.workerMs += data.ms;
    else if (data.type === "connection") showConnection(data.state);
    else if (data.type === "summary") {
      const c = data.counts;
      $("counts").textContent = `${data.shown.toLocaleString()} of ${data.total.toLocaleString()} shown · ${c[3]} critical · ${c[1]} warning · ${c[2]} silent`;
      fillOptions($("status"), data.statuses);
      fillOptions($("profile"), data.profiles);
    } else if (data.type === "selected") panel.live(data.item, data.health, data.alerts);
    else if (data.type === "found") {
      $("search-result").textContent = "";
      map.flyTo({ center: [data.lon, data.lat], zoom: Math.max(map.getZoom(), CLUSTER_MAX_ZOOM + 1) });
      panel.open(data.shipmentId, worker);
    } else if (data.type === "notfound") $("search-result").textContent = `No shipment matches “${data.text}”`;
  };
  worker.postMessage({ type: "start", token: token(), origin: location.origin });

  let asked = null; // the shipments the last answer is about: only those are shown
  const filter = () => worker.postMessage({ type: "filter", filter: { status: $("status").value, profile: $("profile").value, alerting: $("alerting").checked, ids: asked } });
  askBox($("ask"), $("ask-answer"), (ids) => {
    asked = ids;
    fitted = !ids; // fit the map to the answer's shipments when it comes
    filter();
  });
  for (const id of ["status", "profile", "alerting"]) $(id).addEventListener("change", filter);
  $("tools").addEventListener("submit", (event) => {
    event.preventDefault();
    if ($("search").value.trim()) worker.postMessage({ type: "find", text: $("search").value });
  });

  map.on("click", "points", (event) => panel.open(event.features[0].properties.sid, worker));
  map.on("click", "clusters", async (event) => {
    const cluster = event.features[0];
    const source = map.getSource("shipments");
    const id = cluster.properties.cluster_id;
    const zoom = await source.getClusterExpansionZoom(id);
    if (zoom <= CLUSTER_MAX_ZOOM) map.easeTo({ center: cluster.geometry.coordinates, zoom });
    else showMembers(map, await source.getClusterLeaves(id, 200, 0), panel, worker); // cannot split
  });
  for (const layerId of ["points", "clusters"]) {
    map.on("mouseenter", layerId, () => (map.getCanvas().style.cursor = "pointer"));
    map.on("mouseleave", layerId, () => (map.getCanvas().style.cursor = ""));
  }
  $("members").querySelector(".close").addEventListener("click", () => ($("members").hidden = true));
}

if (await enter("/map")) start();
