// The ask box of the live map and the quality console: a question in plain words (Chinese or
// English) to POST /v1/ask; the answer, and how the question was understood, so the answer can
// be trusted; the shipments the answer is about go to the page, which highlights them.
import { api, escapeHtml } from "./session.js";

function understood(interpretation) {
  const filters = Object.entries(interpretation.filters || {})
    .map(([name, value]) => `${name} = ${Array.isArray(value) ? value.join(", ") : value}`);
  const range = interpretation.time_range;
  if (range) filters.push(`${range.field} from ${range.from} to ${range.to}`);
  return `${interpretation.aggregation || ""} ${interpretation.entity || ""}s`
    + (filters.length ? ` where ${filters.join("; ")}` : "");
}

/** Wire the ask form `form` (an input and a button) to the answer element `out`; `onIds` gets
 * the shipment ids the answer is about, or null when it is cleared or not understood. */
export function askBox(form, out, onIds) {
  const input = form.querySelector("input");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const q = input.value.trim();
    if (!q) return;
    out.hidden = false;
    out.textContent = "…";
    const response = await api("/v1/ask", { method: "POST", body: { q } });
    const answer = await response.json();
    if (!response.ok) {
      out.textContent = answer.error;
      onIds(null);
      return;
    }
    out.dataset.understood = answer.understood;
    out.innerHTML = `<strong>${escapeHtml(answer.answer)}</strong>`
      + (answer.understood ? ` <span class="muted">Understood as: ${escapeHtml(understood(answer.interpretation))}</span>` : "")
      + ` <button type="button" class="quiet" data-clear>Clear</button>`;
    out.querySelector("[data-clear]").addEventListener("click", () => {
      out.hidden = true;
      input.value = "";
      onIds(null);
    });
    onIds(answer.understood ? answer.shipment_ids : null);
  });
}
