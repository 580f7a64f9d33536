// The quality console: live alerts (newest first), filters, acknowledge and resolve (with a
// comment), bulk acknowledge, the alert's audit trail and suggested action; a notification
// and a sound for each new critical alert.
import "./style.css";
import { LiveSocket, channelUrl } from "./socket.js";
import { askBox } from "./ask.js";
import { api, enter, escapeHtml, showConnection, token } from "./session.js";

const MAX_ROWS = 500;
const AUDIT_REFRESH_MS = 5000;
const REFRESH_MS = 10000;
const ACTIVE = new Set(["open", "acknowledged"]);
// one-off notices (the contract's single "open" records): nothing to act on, so they are
// listed only when asked for by kind
const NOTICES = new Set(["geofence_enter", "geofence_exit"]);
const $ = (id) => document.getElementById(id);

const alerts = new Map(); // alert_id -> current record
const checked = new Set();
let fences = new Map(); // fence_id -> name
let current = null; // alert_id in the detail pane
let renderDue = 0;
let notify = false;
let audio = null;
let asked = null; // the shipments the last answer is about: only their alerts are shown

function label(kind) {
  return (kind || "").replace(/_/g, " ");
}

function transition(record) {
  return (record.details && record.details.transition) || record.state;
}

function suggested(record) {
  const action = record.details && record.details.suggested_action;
  if (!action) return "";
  const where = fences.get(action.fence_id) || action.fence_id;
  const km = action.distance_m == null ? "" : ` — ${(action.distance_m / 1000).toFixed(1)} km`;
  return `${action.action === "divert_to_cold_store" ? "Divert to" : label(action.action)} ${where}${km}`;
}

function shown() {
  const state = $("f-state").value;
  const severity = $("f-severity").value;
  const kind = $("f-kind").value;
  const shipment = $("f-shipment").value.trim().toLowerCase();
  return [...alerts.values()]
    .filter((a) => (kind === a.kind || !NOTICES.has(a.kind))
      && (state === "active" ? ACTIVE.has(a.state) : !state || a.state === state)
      && (!severity || a.severity === severity) && (!kind || a.kind === kind)
      && (!shipment || (a.shipment_id || "").toLowerCase().includes(shipment))
      && (!asked || asked.has(a.shipment_id)))
    .sort((a, b) => (a.at < b.at ? 1 : a.at > b.at ? -1 : 0));
}

function row(a) {
  const tags = [a.provisional ? `<span class="tag provisional" title="Published before late events could settle it">provisional</span>` : ""];
  const actions = [];
  if (a.state === "open" && !NOTICES.has(a.kind)) actions.push(`<button type="button" data-act="acknowledge" data-id="${escapeHtml(a.alert_id)}">Acknowledge</button>`);
  return `<tr data-id="${escapeHtml(a.alert_id)}" class="state-${escapeHtml(a.state)}${a.alert_id === current ? " current" : ""}${asked ? " asked" : ""}">
    <td><input type="checkbox" data-check="${escapeHtml(a.alert_id)}" ${checked.has(a.alert_id) ? "checked" : ""} ${a.state === "open" && !NOTICES.has(a.kind) ? "" : "disabled"} aria-label="Select"></td>
    <td><span class="sev ${escapeHtml(a.severity)}">${escapeHtml(a.severity)}</span></td>
    <td class="nowrap">${escapeHtml((a.at || "").replace("T", " ").slice(5, 19))}</td>
    <td>${escapeHtml(label(a.kind))}${a.fence_id ? ` <span class="muted">${escapeHtml(fences.get(a.fence_id) || a.fence_id)}</span>` : ""}</td>
    <td class="nowrap">${escapeHtml(a.shipment_id || "—")}</td>
    <td><span class="state">${escapeHtml(NOTICES.has(a.kind) && a.state === "open" ? "notice" : a.state)}</span> ${tags.join("")}</td>
    <td>${escapeHtml(suggested(a))}</td>
    <td class="nowrap">${actions.join("")}</td></tr>`;
}

function render() {
  renderDue = 0;
  const list = shown();
  $("alerts").tBodies[0].innerHTML = list.slice(0, MAX_ROWS).map(row).join("")
    || `<tr><td colspan="8" class="muted empty">No alerts match</td></tr>`;
  const open = [...alerts.values()].filter((a) => a.state === "open" && !NOTICES.has(a.kind)).length;
  $("counts").textContent = `${list.length.toLocaleString()} shown${list.length > MAX_ROWS ? ` (first ${MAX_ROWS})` : ""} · ${open} open`;
  for (const id of checked) if (alerts.get(id)?.state !== "open") checked.delete(id);
  $("bulk-ack").disabled = checked.size === 0;
  $("bulk-ack").textContent = checked.size ? `Acknowledge selected (${checked.size})` : "Acknowledge selected";
  const kinds = [...new Set([...alerts.values()].map((a) => a.kind))].sort();
  const select = $("f-kind");
  if ([...select.options].slice(1).map((o) => o.value).join() !== kinds.join()) {
    const value = select.value;
    select.replaceChildren(select.options[0], ...kinds.map((k) => new Option(label(k), k)));
    select.value = value;
  }
}

function scheduleRender() {
  if (!renderDue) renderDue = requestAnimationFrame(render);
}

async function showDetail(id) {
  current = id;
  const a = alerts.get(id);
  if (!a) return;
  $("detail").hidden = false;
  document.body.classList.add("has-detail");
  $("d-title").innerHTML = `<span class="sev ${escapeHtml(a.severity)}">${escapeHtml(a.severity)}</span> ${escapeHtml(label(a.kind))}`;
  $("d-sub").textContent = `${a.shipment_id || "no shipment"} · ${a.state}${a.provisional ? " (provisional)" : ""} · ${a.at.replace("T", " ").slice(0, 19)} · ${a.alert_id}`;
  $("d-action").textContent = suggested(a) ? `Suggested: ${suggested(a)}` : "";
  $("d-ack").hidden = a.state !== "open" || NOTICES.has(a.kind);
  $("d-resolve").hidden = !ACTIVE.has(a.state) || NOTICES.has(a.kind);
  const details = Object.entries(a.details || {}).filter(([k, v]) => k !== "suggested_action" && v !== null && v !== undefined);
  $("d-details").innerHTML = details.map(([k, v]) => `<div><dt>${escapeHtml(label(k))}</dt><dd>${escapeHtml(typeof v === "object" ? JSON.stringify(v) : v)}</dd></div>`).join("");
  const response = await api(`/v1/alerts/${encodeURIComponent(id)}/audit`);
  if (current !== id) return;
  const trail = response.ok ? await response.json() : [];
  $("d-audit").innerHTML = trail.map((entry) => {
    const who = entry.user || (entry.details && entry.details.user);
    const comment = entry.comment || (entry.details && entry.details.comment);
    const what = entry.transition || entry.action || (entry.details && entry.details.transition) || entry.state;
    // an action that late events made too late: kept, with why it changed nothing
    const late = entry.transition === "not_applied" ? ` <span class="muted">(${escapeHtml(entry.details.action)} not applied: ${escapeHtml(entry.details.reason)})</span>` : "";
    return `<li><span class="nowrap">${escapeHtml((entry.at || "").replace("T", " ").slice(0, 19))}</span> <strong>${escapeHtml(what)}</strong>${who ? ` by <span class="user">${escapeHtml(who)}</span>` : ""}${comment ? ` — “${escapeHtml(comment)}”` : ""}${late}${entry.provisional ? ` <span class="tag provisional">provisional</span>` : ""}</li>`;
  }).join("") || `<li class="muted">${response.ok ? "No entries" : "The audit trail is not available"}</li>`;
  scheduleRender();
}

function toast(text) {
  const box = $("toast");
  box.textContent = text;
  box.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => (box.hidden = true), 6000);
}

async function act(id, action, comment) {
  const response = await api(`/v1/alerts/${encodeURIComponent(id)}/${action}`, { method: "POST", body: comment ? { comment } : {} });
  const answer = await response.json();
  if (!response.ok) {
    toast(`Could not ${action} ${id}: ${answer.error}`);
    return false;
  }
  receive(answer, false);
  return true;
}

function beep() {
  if (!audio) return;
  const oscillator = audio.createOscillator();
  const gain = audio.createGain();
  oscillator.frequency.value = 880;
  gain.gain.setValueAtTime(0.2, audio.currentTime);
  gain.gain.exponentialRampToValueAtTime(0.001, audio.currentTime + 0.6);
  oscillator.connect(gain).connect(audio.destination);
  oscillator.start();
  oscillator.stop(audio.currentTime + 0.6);
}

/** A new or changed alert record; `live`: from the channel (a new critical one is announced). */
function receive(record, live) {
  const before = alerts.get(record.alert_id);
  alerts.set(record.alert_id, record);
  const newlyCritical = live && record.severity === "critical" && record.state === "open"
    && (!before || before.severity !== "critical" || before.state !== "open");
  if (newlyCritical) {
    const text = `Critical: ${label(record.kind)} on ${record.shipment_id || "a device"}`;
    toast(text);
    window.chainsightConsole.announced.push(record.alert_id);
    if (notify && "Notification" in window && Notification.permission === "granted") new Notification("ChainSight", { body: text, tag: record.alert_id });
    beep();
  }
  if (record.alert_id === current) showDetail(current);
  scheduleRender();
}

async function load() {
  const response = await api("/v1/alerts");
  if (response.ok) for (const record of await response.json()) receive(record, false);
}

/** The active alerts again: the live channel sends no record when a provisional alert is
 * settled (confirmed), so the list learns it here. */
async function refresh() {
  for (const state of ACTIVE) {
    const response = await api(`/v1/alerts?state=${state}`);
    if (response.ok) for (const record of await response.json()) receive(record, false);
  }
}

async function start() {
  window.chainsightConsole = { announced: [], live: 0 }; // what the tests read
  const fenceAnswer = await api("/v1/fences");
  if (fenceAnswer.ok) {
    const collection = await fenceAnswer.json();
    fences = new Map((collection.features || []).map((f) => [f.properties.fence_id, f.properties.name || f.properties.fence_id]));
  }
  await load();
  new LiveSocket(channelUrl(location.origin, "/v1/alerts/live", token()), {
    onMessage: (text) => {
      const message = JSON.parse(text);
      if (message.type === "alert") {
        window.chainsightConsole.live += 1;
        receive(message.alert, true);
      }
    },
    onState: (state) => {
      showConnection(state);
      if (state === "back") load().catch(() => {}); // what was missed while away
    },
  });

  for (const id of ["f-state", "f-severity", "f-kind", "f-shipment"]) $(id).addEventListener("input", scheduleRender);
  askBox($("ask"), $("ask-answer"), (ids) => {
    asked = ids && new Set(ids);
    if (ids) $("f-state").value = ""; // the answer may be about resolved alerts too
    scheduleRender();
  });
  $("tools").addEventListener("submit", (event) => event.preventDefault());
  const body = $("alerts").tBodies[0];
  body.addEventListener("click", async (event) => {
    const target = event.target;
    if (target.dataset.check) {
      (target.checked ? checked.add(target.dataset.check) : checked.delete(target.dataset.check));
      scheduleRender();
      return;
    }
    if (target.dataset.act) {
      target.disabled = true;
      await act(target.dataset.id, target.dataset.act);
      showDetail(target.dataset.id);
      return;
    }
    const tr = target.closest("tr[data-id]");
    if (tr) showDetail(tr.dataset.id);
  });
  $("select-all").addEventListener("change", (event) => {
    for (const a of shown().slice(0, MAX_ROWS)) if (a.state === "open" && !NOTICES.has(a.kind)) (event.target.checked ? checked.add(a.alert_id) : checked.delete(a.alert_id));
    scheduleRender();
  });
  $("bulk-ack").addEventListener("click", async () => {
    const ids = [...checked];
    checked.clear();
    $("select-all").checked = false;
    const done = await Promise.all(ids.map((id) => act(id, "acknowledge")));
    toast(`Acknowledged ${done.filter(Boolean).length} of ${ids.length}`);
    scheduleRender();
  });
  $("d-ack").addEventListener("click", async () => {
    if (current && await act(current, "acknowledge")) showDetail(current);
  });
  $("d-resolve").addEventListener("submit", async (event) => {
    event.preventDefault();
    const comment = $("d-comment").value.trim();
    if (current && comment && await act(current, "resolve", comment)) {
      $("d-comment").value = "";
      showDetail(current);
    }
  });
  $("detail-close").addEventListener("click", () => {
    current = null;
    $("detail").hidden = true;
    document.body.classList.remove("has-detail");
    scheduleRender();
  });
  $("notify").addEventListener("click", async () => {
    audio = audio || new AudioContext();
    if ("Notification" in window && Notification.permission === "default") await Notification.requestPermission();
    notify = true;
    $("notify").textContent = "Sound and notifications on";
    $("notify").disabled = true;
    beep();
  });
  // the audit trail's newest entries are provisional until event time settles them (then
  // hash-chained), so an open trail is read again now and then
  setInterval(() => current && !document.hidden && showDetail(current), AUDIT_REFRESH_MS);
  setInterval(() => !document.hidden && refresh().catch(() => {}), REFRESH_MS);
  render();
}

if (await enter("/console")) start();
