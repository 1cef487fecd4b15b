// codex-node dashboard: plain JavaScript, no library, served by the node; talks only to the node's own API.
// Pages are hash routes (#overview, #storage, ...). Routes the node may not have yet (the sales history, the
// account, purchases, the request explainer) are looked up in /openapi.json first, so a missing one is said in
// the page instead of being requested.
"use strict";

const API = "/api/codex/v1";
const PAGE_SIZE = 50;
const page = document.getElementById("page");
let paths = null; // the API's paths (from /openapi.json)

// --- helpers -------------------------------------------------------------------------------------------------

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") el.className = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "style") Object.assign(el.style, v); // CSSOM, allowed by the page's CSP (a style attribute is not)
    else if (v !== null && v !== undefined && v !== false) el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function token() { return sessionStorage.getItem("codex-token") || ""; }

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

async function api(path, options) {
  const headers = { "Accept": "application/json" };
  if (token()) headers["Authorization"] = "Bearer " + token();
  const opts = Object.assign({ headers }, options || {});
  if (opts.body !== undefined) { headers["Content-Type"] = "application/json"; opts.body = JSON.stringify(opts.body); }
  const res = await fetch(path.startsWith("/") && !path.startsWith(API) && path !== "/openapi.json" ? API + path : path, opts);
  if (res.status === 401) {
    document.getElementById("token-form").hidden = false;
    throw new ApiError(401, "this node needs its API token: enter it above");
  }
  const text = await res.text();
  let body = null;
  try { body = text ? JSON.parse(text) : null; } catch (e) { body = text; }
  if (!res.ok && !(options && options.acceptStatus && options.acceptStatus.includes(res.status))) {
    const message = body && body.error ? body.error : `HTTP ${res.status}`;
    throw new ApiError(res.status, message);
  }
  return body;
}

async function has(path) {
  if (paths === null) {
    const doc = await api("/openapi.json");
    paths = new Set(Object.keys(doc.paths || {}));
  }
  return paths.has(API + path);
}

function bytes(n) {
  if (n === null || n === undefined) return "—";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = Number(n), i = 0;
  while (Math.abs(v) >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return (i ? v.toFixed(1) : v) + " " + units[i];
}

function when(ts) { return ts ? new Date(ts * 1000).toISOString().replace("T", " ").replace(".000Z", "Z") : "—"; }
function short(hex) { return hex && hex.length > 14 ? hex.slice(0, 10) + "…" + hex.slice(-4) : (hex || "—"); }
function dl(pairs) { return h("dl", {}, pairs.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)])); }
function card(title, ...body) { return h("div", { class: "card" }, h("h3", {}, title), ...body); }
function errorBox(e) { return h("p", { class: "error", role: "alert" }, e.message || String(e)); }
function table(head, rows, numeric) {
  numeric = numeric || [];
  return h("table", {},
    h("thead", {}, h("tr", {}, head.map((t, i) => h("th", { class: numeric.includes(i) ? "num" : "" }, t)))),
    h("tbody", {}, rows.length ? rows.map(r => h("tr", {}, r.map((c, i) => h("td", { class: numeric.includes(i) ? "num" : "" }, c))))
      : h("tr", {}, h("td", { colspan: head.length, class: "muted" }, "nothing yet"))));
}
async function optional(fn) { try { return await fn(); } catch (e) { return e; } }

// --- charts (SVG, drawn here) ----------------------------------------------------------------------------------

function lineChart(series, opts) {
  const W = 900, H = 240, L = 70, R = 10, T = 10, B = 30;
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.setAttribute("class", "chart");
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", opts.label);
  const pts = series.flatMap(s => s.points);
  const add = (tag, attrs, text) => {
    const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
    for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
    if (text !== undefined) el.textContent = text;
    svg.append(el);
  };
  if (!pts.length) { add("text", { x: W / 2 - 60, y: H / 2 }, "no samples yet"); return svg; }
  const xs = pts.map(p => p[0]), ys = pts.map(p => p[1]);
  const x0 = Math.min(...xs), x1 = Math.max(...xs) || x0 + 1;
  const y0 = Math.min(0, ...ys), y1 = Math.max(...ys, 1);
  const sx = x => L + (x1 === x0 ? (W - L - R) / 2 : (x - x0) / (x1 - x0) * (W - L - R));
  const sy = y => H - B - (y - y0) / (y1 - y0) * (H - T - B);
  for (let i = 0; i <= 4; i++) {
    const y = y0 + (y1 - y0) * i / 4;
    add("line", { x1: L, x2: W - R, y1: sy(y), y2: sy(y), stroke: "#e4e4e8" });
    add("text", { x: 4, y: sy(y) + 4 }, opts.format(y));
  }
  add("text", { x: L, y: H - 8 }, when(x0));
  add("text", { x: W - R - 130, y: H - 8 }, when(x1));
  for (const s of series) {
    if (!s.points.length) continue;
    if (s.threshold !== undefined) {
      add("line", { x1: L, x2: W - R, y1: sy(s.threshold), y2: sy(s.threshold), stroke: s.color, "stroke-dasharray": "4 4" });
      continue;
    }
    const d = s.points.map((p, i) => (i ? "L" : "M") + sx(p[0]).toFixed(1) + " " + sy(p[1]).toFixed(1)).join(" ");
    add("path", { d, fill: "none", stroke: s.color, "stroke-width": 2 });
    for (const p of s.points.length < 60 ? s.points : []) add("circle", { cx: sx(p[0]), cy: sy(p[1]), r: 3, fill: s.color });
  }
  return svg;
}

function legend(series) {
  return h("p", { class: "legend" }, series.map(s => h("span", {}, h("i", { style: { background: s.color } }), s.name)));
}

// --- pages ---------------------------------------------------------------------------------------------------

async function overview() {
  const [info, health, alerts, space] = await Promise.all([
    api("/debug/info"), api("/health", { acceptStatus: [503] }), optional(() => api("/alerts")), api("/space"),
  ]);
  const account = (await has("/account")) ? await optional(() => api("/account")) : null;
  const chain = info.chain;
  const byName = Object.fromEntries((health.checks || []).map(c => [c.name, c]));
  const caughtUp = byName.events ? (byName.events.ok ? "yes" : "no") : "—";
  const cards = [
    card("Node", dl([["id", h("code", {}, info.id)], ["version", info.codex.version], ["marketplace", info.marketplace],
      ["data dir", h("code", {}, info.repo)],
      ["ready", h("span", { class: health.ready ? "ok" : "bad", id: "ready" }, health.ready ? "ready" : "not ready")]])),
    card("Chain", chain ? dl([["chain id", chain.chainId], ["head", byName.chain ? byName.chain.detail : "—"],
      ["caught up", caughtUp], ["marketplace", h("code", {}, short(chain.marketplaceAddress))],
      ["account", h("code", {}, chain.nodeAddress)]]) : h("p", { class: "muted" }, "no marketplace")),
    card("Storage", dl([["quota", bytes(space.quotaMaxBytes)], ["used", bytes(space.quotaUsedBytes)],
      ["reserved", bytes(space.quotaReservedBytes)],
      ["free", bytes(space.quotaMaxBytes - space.quotaUsedBytes - space.quotaReservedBytes)], ["blocks", space.totalBlocks]])),
  ];
  if (account === null) cards.push(card("Account", h("p", { class: "muted" }, "this node has no account route yet (GET /account)")));
  else if (account instanceof Error) cards.push(card("Account", errorBox(account)));
  else cards.push(card("Account", dl([["address", h("code", {}, short(account.address))], ["tokens", account.tokenBalance],
    ["gas (wei)", account.gasBalance === null ? "—" : account.gasBalance], ["collateral locked", account.collateralLocked],
    ["collateral promised", account.collateralPromised], ["hosted slots", account.hostedSlots],
    ["earned", account.totals.earned], ["lost", account.totals.lost]])));
  const alertList = alerts instanceof Error ? [errorBox(alerts)]
    : alerts.active.length ? alerts.active.map(a => h("div", { class: "alert " + a.severity }, h("strong", {}, a.key), " — ", a.message, h("span", { class: "muted" }, " since " + when(a.since))))
      : [h("p", { class: "ok" }, "No active alerts.")];
  return [h("h2", {}, "Overview"), h("div", { class: "cards" }, cards),
    h("h3", {}, "Alerts"), ...alertList,
    h("h3", {}, "Health checks"), table(["check", "ok", "detail"], (health.checks || []).map(c => [c.name, h("span", { class: c.ok ? "ok" : "bad" }, c.ok ? "ok" : "failing"), c.detail]))];
}

async function storage() {
  const [space, samples, margins] = await Promise.all([
    api("/space"), api("/space/history"), optional(() => api("/sales/proof-margins")),
  ]);
  const series = [
    { name: "used", color: "#2457c5", points: samples.map(s => [s.at, s.quotaUsedBytes]) },
    { name: "reserved", color: "#b26b00", points: samples.map(s => [s.at, s.quotaReservedBytes]) },
    { name: "quota free", color: "#1a7f37", points: samples.map(s => [s.at, s.quotaMaxBytes - s.quotaUsedBytes - s.quotaReservedBytes]) },
  ];
  const disk = [{ name: "disk free", color: "#6a3fb5", points: samples.filter(s => s.diskFreeBytes !== null).map(s => [s.at, s.diskFreeBytes]) }];
  const out = [h("h2", {}, "Storage"),
    h("div", { class: "cards" },
      card("Quota", dl([["total", bytes(space.quotaMaxBytes)], ["used", bytes(space.quotaUsedBytes)], ["reserved", bytes(space.quotaReservedBytes)],
        ["free", bytes(space.quotaMaxBytes - space.quotaUsedBytes - space.quotaReservedBytes)]])),
      card("Disk", dl([["free now", bytes(samples.length ? samples[samples.length - 1].diskFreeBytes : null)], ["samples", samples.length]]))),
    h("h3", {}, "Quota over time"), legend(series), lineChart(series, { label: "quota over time", format: bytes }),
    h("h3", {}, "Disk free over time"), legend(disk), lineChart(disk, { label: "disk free over time", format: bytes }),
    h("p", { class: "muted" }, "Samples are kept in memory by the node (one every 30 s, the last day); a restart starts a new series.")];
  out.push(h("h3", {}, "Proof margin (seconds left of the period when each proof landed)"));
  if (margins instanceof Error) out.push(errorBox(margins));
  else {
    const m = [{ name: "margin", color: "#2457c5", points: margins.map(p => [p.at, p.marginSeconds]) }];
    if (margins.length) m.push({ name: "alert threshold (10% of the period)", color: "#c62828", points: [[0, 0]], threshold: margins[margins.length - 1].periodSeconds / 10 });
    out.push(legend(m), lineChart(m, { label: "proof margins", format: v => v.toFixed(0) + " s" }));
  }
  return out;
}

const AVAILABILITY_FIELDS = [
  ["totalSize", "Total size (bytes)", "number"],
  ["duration", "Longest duration (s)", "number"],
  ["minPricePerBytePerSecond", "Min price per byte per second", "text"],
  ["totalCollateral", "Total collateral", "text"],
  ["until", "Until (Unix s, 0: no limit)", "number"],
];

function availabilityForm(existing, done) {
  const err = h("p", { class: "error", role: "alert", id: "availability-error" });
  const inputs = {};
  const rows = AVAILABILITY_FIELDS.map(([name, label, type]) => {
    inputs[name] = h("input", { name, id: "f-" + name, type: "text", inputmode: type === "number" ? "numeric" : "text",
      value: existing ? String(existing[name]) : (name === "until" ? "0" : "") });
    return [h("label", { for: "f-" + name }, label), inputs[name]];
  });
  const enabled = h("input", { type: "checkbox", id: "f-enabled", name: "enabled", checked: existing ? existing.enabled : true });
  const form = h("form", { class: "grid", id: "availability-form" }, rows, h("label", { for: "f-enabled" }, "Enabled"), enabled,
    h("div", { class: "actions" }, h("button", { type: "submit" }, existing ? "Save changes" : "Create availability")), err);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    err.textContent = "";
    const body = { enabled: enabled.checked };
    for (const [name, , type] of AVAILABILITY_FIELDS) {
      const raw = inputs[name].value.trim();
      if (existing && raw === String(existing[name])) continue;
      // Numbers go as JSON numbers when they are plain digits; anything else goes as typed so the API names the problem.
      body[name] = type === "number" && /^\d+$/.test(raw) ? Number(raw) : raw;
    }
    try {
      if (existing) await api("/sales/availability/" + existing.id, { method: "PATCH", body });
      else await api("/sales/availability", { method: "POST", body });
      done();
    } catch (e) { err.textContent = e.message; }
  });
  return form;
}

async function availabilities() {
  const list = await api("/sales/availability");
  const holder = h("div", { id: "availability-editor" });
  const reload = () => render();
  const rows = list.map(a => [h("code", {}, short(a.id)), bytes(a.totalSize), bytes(a.freeSize), a.duration + " s",
    a.minPricePerBytePerSecond, a.totalCollateral, a.totalRemainingCollateral, a.enabled ? "yes" : "no",
    h("button", { class: "link", onclick: () => { holder.replaceChildren(h("h3", {}, "Edit " + short(a.id)), availabilityForm(a, reload)); } }, "edit")]);
  holder.append(h("h3", {}, "New availability"), availabilityForm(null, reload));
  return [h("h2", {}, "Availabilities"),
    table(["id", "total", "free", "duration", "min price/byte/s", "collateral", "remaining", "enabled", ""], rows, [1, 2]),
    holder];
}

async function slotTimeline(slotId) {
  const sale = await api("/sales/slots/" + slotId);
  return saleCard("Slot " + short(slotId) + " — " + sale.state, sale.requestId, sale.slotIndex, sale.history || [], [], []);
}

async function saleTimeline(saleId) {
  const s = await api("/sales/history/" + saleId);
  const extra = [["outcome", s.outcome], ["net flow", s.netFlow]];
  if (s.reason) extra.push(["why ignored", s.reason]);
  if (s.error) extra.push(["error", s.error]);
  return saleCard(`Sale ${s.id} — ${s.state}`, s.requestId, s.slotIndex, s.transitions, s.proofs, s.money, extra);
}

function proofPicture(proofs) {
  // One bar per proof round: its height is the margin left of the period, red under the alert threshold.
  const W = 900, H = 140, B = 20, n = proofs.length;
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.setAttribute("class", "chart");
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", "proof margins of this sale");
  const max = Math.max(1, ...proofs.map(p => p.margin + p.timeToLand));
  const bw = Math.max(2, Math.min(30, (W - 20) / Math.max(n, 1) - 2));
  proofs.forEach((p, i) => {
    const r = document.createElementNS("http://www.w3.org/2000/svg", "rect");
    const hgt = Math.max(1, (Math.max(0, p.margin) / max) * (H - B - 10));
    r.setAttribute("x", 10 + i * (bw + 2));
    r.setAttribute("y", H - B - hgt);
    r.setAttribute("width", bw);
    r.setAttribute("height", hgt);
    r.setAttribute("fill", p.result === "failed" ? "#c62828" : p.margin < max / 10 ? "#b26b00" : "#2457c5");
    const t = document.createElementNS("http://www.w3.org/2000/svg", "title");
    t.textContent = `period ${p.period}: ${p.result}, ${p.margin}s left, landed in ${p.timeToLand}s`;
    r.append(t);
    svg.append(r);
  });
  return svg;
}

function saleCard(title, requestId, slotIndex, transitions, proofs, money, extra) {
  return h("div", { class: "card", id: "sale-card" }, h("h3", {}, title),
    dl([["request", h("code", {}, requestId)], ["slot index", slotIndex], ...(extra || [])]),
    h("h3", {}, "State timeline"),
    h("ol", { class: "timeline" }, transitions.map(e => h("li", {}, h("strong", {}, e.to),
      " ", h("span", { class: "muted" }, when(e.at) + (e.cause ? " — " + e.cause : ""))))),
    proofs.length ? [h("h3", {}, `Proofs (${proofs.length}): margin to the period's end`), proofPicture(proofs)] : null,
    money.length ? [h("h3", {}, "Money"), table(["when", "kind", "amount", "flow"], money.map(m => [when(m.at), m.kind, m.amount, m.flow]), [2, 3])] : null);
}

async function sales() {
  const detail = h("div", { id: "sale-detail" });
  const show = async (load) => { detail.replaceChildren(h("p", { class: "muted" }, "loading…")); try { detail.replaceChildren(await load()); } catch (e) { detail.replaceChildren(errorBox(e)); } };
  if (await has("/sales/history")) {
    const params = new URLSearchParams(location.hash.split("?")[1] || "");
    const state = params.get("state") || "", since = params.get("since") || "", before = params.get("before") || "";
    const q = new URLSearchParams({ limit: PAGE_SIZE });
    if (state) q.set("state", state);
    if (since) q.set("since", since);
    if (before) q.set("before", before);
    const page = await api("/sales/history?" + q);
    const go = (b) => { const p = new URLSearchParams({ state: stateIn.value, since: sinceIn.value }); if (b !== null && b !== undefined) p.set("before", b); location.hash = "sales?" + p; };
    const stateIn = h("select", { id: "filter-state" }, ["", "active", "finished", "cancelled", "failed", "ignored", "errored"].map(o => h("option", { value: o, selected: o === state }, o || "any")));
    const sinceIn = h("input", { id: "filter-since", value: since, placeholder: "Unix seconds" });
    return [h("h2", {}, "Sales"),
      h("form", { class: "filters", onsubmit: (e) => { e.preventDefault(); go(null); } },
        h("label", {}, "Outcome ", stateIn), h("label", {}, "Started since ", sinceIn), h("button", { type: "submit" }, "Filter")),
      table(["sale", "slot", "request", "index", "state", "outcome", "started", "proofs", "net flow", ""], page.sales.map(s => [s.id,
        h("code", {}, short(s.slotId)), h("code", {}, short(s.requestId)), s.slotIndex, s.state, s.outcome, when(s.startedAt),
        s.proofs.length, s.netFlow, h("button", { class: "link", onclick: () => show(() => saleTimeline(s.id)) }, "timeline")]), [0, 7, 8]),
      h("div", { class: "pager" }, h("button", { disabled: !before, onclick: () => go(null) }, "⇤ newest"),
        h("span", { class: "muted" }, `${page.sales.length} sales on this page`),
        h("button", { disabled: page.next === null, id: "older", onclick: () => go(page.next) }, "older →")),
      detail];
  }
  const slots = await api("/sales/slots");
  return [h("h2", {}, "Sales"),
    h("p", { class: "muted" }, "This node has no sales history route yet: listed are the slots it hosts now (GET /sales/slots)."),
    table(["slot", "request", "index", "duration", ""], slots.map(s => [h("code", {}, short(s.id)), h("code", {}, short(s.request.id)),
      s.slotIndex, s.request.ask.duration + " s", h("button", { class: "link", onclick: () => show(() => slotTimeline(s.id)) }, "timeline")])), detail];
}

async function purchases() {
  if (!(await has("/storage/purchases"))) {
    return [h("h2", {}, "Purchases"), h("p", { class: "muted", id: "purchases-missing" },
      "This node has no purchases route yet (GET /storage/purchases): purchases will be listed here once it has.")];
  }
  const ids = await api("/storage/purchases");
  const shown = ids.slice(-PAGE_SIZE).reverse(); // the newest page: one request per purchase shown, never all
  const details = await Promise.all(shown.map(id => optional(() => api("/storage/purchases/" + id))));
  const rows = shown.map((id, i) => {
    const p = details[i];
    if (p instanceof Error) return [h("code", {}, short(id)), "—", errorBox(p)];
    const r = p.request;
    return [h("code", {}, short(id)), h("strong", {}, p.state),
      r ? `${r.ask.slots} slots × ${bytes(r.ask.slotSize)}, ${r.ask.duration} s, ${r.ask.pricePerBytePerSecond}/byte/s` : "",
      p.error || (p.history.length ? p.history[p.history.length - 1].to + " at " + when(p.history[p.history.length - 1].at) : "")];
  });
  return [h("h2", {}, "Purchases"),
    h("p", { class: "muted" }, `${ids.length} purchase(s); the newest ${shown.length} shown.`),
    table(["request", "state", "ask", "last change / error"], rows)];
}

async function explain() {
  const out = h("div", { id: "explain-result" });
  const available = await has("/sales/requests/{requestId}/match");
  const input = h("input", { id: "request-id", size: 70, placeholder: "0x… request id" });
  const form = h("form", { class: "filters" }, h("label", {}, "Request ", input), h("button", { type: "submit", disabled: !available }, "Explain"));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    out.replaceChildren(h("p", { class: "muted" }, "asking…"));
    try {
      const r = await api("/sales/requests/" + encodeURIComponent(input.value.trim()) + "/match");
      const rows = r.availabilities.flatMap(a => a.rules.map(rule => [h("code", {}, short(a.id)), rule.rule,
        h("span", { class: rule.passed ? "ok" : "bad" }, rule.passed ? "pass" : "fail"), rule.detail]));
      out.replaceChildren(...[
        h("p", { class: r.wouldTake ? "ok" : "bad", id: "verdict" }, r.wouldTake
          ? `This node would take a slot of this request (from availability ${short(r.chosenAvailability)}).`
          : "This node would not take this request."),
        r.reasons.length ? h("ul", {}, r.reasons.map(x => h("li", {}, x))) : null,
        r.notes.length ? h("ul", { class: "muted" }, r.notes.map(x => h("li", {}, x))) : null,
        dl([["request state", r.requestState || "—"], ["slot collateral", r.slotCollateral], ["wallet", r.walletBalance]]),
        table(["availability", "rule", "result", "numbers"], rows)].filter(Boolean));
    } catch (e) { out.replaceChildren(errorBox(e)); }
  });
  return [h("h2", {}, "Request explainer"),
    h("p", { class: "muted" }, available ? "Why would this node take (or skip) a request? Each availability, each rule."
      : "This node has no explainer route yet (GET /sales/requests/{requestId}/match)."), form, out];
}

const PAGES = { overview, storage, availabilities, sales, purchases, explain };

async function render() {
  const name = (location.hash.slice(1).split("?")[0]) || "overview";
  const fn = PAGES[name] || overview;
  delete page.dataset.rendered;
  for (const a of document.querySelectorAll("#nav a")) a.classList.toggle("active", a.getAttribute("href") === "#" + name);
  try {
    const nodes = await fn();
    page.replaceChildren(...nodes.flat(Infinity).filter(n => n !== null && n !== undefined));
  } catch (e) {
    page.replaceChildren(h("h2", {}, name), errorBox(e));
  }
  page.dataset.rendered = name;
}

document.getElementById("token-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  sessionStorage.setItem("codex-token", document.getElementById("token").value);
  paths = null;
  render();
});
window.addEventListener("hashchange", render);
render();
