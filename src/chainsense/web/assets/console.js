// ChainSense console islands. Pages are server-rendered; this file adds what must be live:
// charts (uPlot), the alarm list (SSE), the proof verifier, settlement tables and key admin.
// It calls the JSON API with the session cookie and the page's CSRF token; nothing leaves
// this origin.
import "htmx.org";
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";
import "./console.css";
// The Verify page's verifier (verifier-js and its libraries, ~300 kB) is a bundle of its own,
// dist/verify.js, loaded by that page only: window.ChainSenseVerify.
const verifyProof = (proof, options) => {
  if (!window.ChainSenseVerify) throw new Error("the verifier (verify.js) did not load");
  return window.ChainSenseVerify.verifyProof(proof, options);
};

const $ = (sel, root = document) => root.querySelector(sel);
const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));
const csrf = () => $('meta[name="csrf-token"]')?.content || "";

export async function api(path, { method = "GET", body } = {}) {
  const headers = { Accept: "application/json" };
  if (method !== "GET") headers["X-CSRF-Token"] = csrf();
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method, headers, credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (response.status === 401) { location.href = "/login?next=" + encodeURIComponent(location.pathname); }
  const text = await response.text();
  const data = text ? JSON.parse(text) : null;
  if (!response.ok) throw new Error((data && (data.detail || data.title)) || response.statusText);
  return data;
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) node.append(c instanceof Node ? c : document.createTextNode(String(c ?? "")));
  return node;
}
const pill = (text, kind) => el("span", { class: "pill p-" + kind }, text);
const short = (s) => (s && s.length > 16 ? s.slice(0, 8) + "…" + s.slice(-6) : s || "—");
const when = (ms) => (ms ? new Date(ms).toISOString().replace("T", " ").slice(0, 19) + " UTC" : "—");
const fmt = (v, d = 2) => (v === null || v === undefined ? "—" : Number(v).toFixed(d));
function fill(tbody, rows, cols, empty) {
  tbody.replaceChildren(...(rows.length ? rows : [el("tr", {}, el("td", { colspan: cols, class: "muted" }, empty))]));
}

// --- device page: charts and label -----------------------------------------------------
function devicePage() {
  const box = $("#charts");
  if (!box) return;
  const device = box.dataset.device;
  let range = 900_000;
  const charts = new Map();
  async function draw(fig) {
    const metric = fig.dataset.metric;
    const until = Date.now() + 1;
    const since = until - range;
    const q = `metric=${encodeURIComponent(metric)}&since=${since}&until=${until}&points=240`;
    const [series, anomalies] = await Promise.all([
      api(`/v1/devices/${device}/series?${q}`),
      api(`/v1/anomalies?device=${device}&since=${since}&limit=500`),
    ]);
    const pts = series.points;
    const data = [pts.map((p) => p.timestamp / 1000), pts.map((p) => p.min), pts.map((p) => p.max), pts.map((p) => p.avg)];
    const marks = anomalies.items.filter((a) => a.metric === metric);
    const plot = $(".plot", fig);
    let chart = charts.get(metric);
    if (!chart) {
      const opts = {
        width: Math.max(260, plot.clientWidth), height: 190, legend: { show: false },
        scales: { x: { time: true } },
        axes: [{ stroke: "#8a93a3", grid: { stroke: "#2a3140" }, ticks: { stroke: "#2a3140" } },
               { stroke: "#8a93a3", grid: { stroke: "#2a3140" }, ticks: { stroke: "#2a3140" }, size: 56 }],
        series: [{}, { label: "min", stroke: "transparent", points: { show: false } },
                 { label: "max", stroke: "transparent", points: { show: false } },
                 { label: "mean", stroke: "#4ea1ff", width: 1.5, points: { show: false } }],
        bands: [{ series: [2, 1], fill: "rgba(78,161,255,0.18)" }],
        hooks: { draw: [(u) => drawMarks(u, u._marks || [])] },
      };
      chart = new uPlot(opts, data, plot);
      charts.set(metric, chart);
      new ResizeObserver(() => chart.setSize({ width: Math.max(260, plot.clientWidth), height: 190 })).observe(plot);
    }
    chart._marks = marks;
    chart.setData(data);
    const last = pts[pts.length - 1];
    fig.dataset.points = String(pts.reduce((n, p) => n + p.count, 0));
    fig.dataset.last = last ? String(last.timestamp) : "";
    $(".latest", fig).textContent = last ? `${fmt(last.avg)} ${fig.dataset.unit}` : "no data in range";
  }
  function drawMarks(u, marks) {
    const ctx = u.ctx;
    ctx.save();
    for (const a of marks) {
      const x = u.valToPos(a.timestamp / 1000, "x", true);
      if (x < u.bbox.left || x > u.bbox.left + u.bbox.width) continue;
      const y = u.valToPos(a.value, "y", true);
      const lo = u.valToPos(a.low, "y", true), hi = u.valToPos(a.high, "y", true);
      ctx.strokeStyle = "rgba(255,180,80,0.9)"; ctx.lineWidth = 2 * devicePixelRatio;
      ctx.beginPath(); ctx.moveTo(x, lo); ctx.lineTo(x, hi); ctx.stroke();
      ctx.fillStyle = "#ff5c5c";
      ctx.beginPath(); ctx.arc(x, y, 4 * devicePixelRatio, 0, 2 * Math.PI); ctx.fill();
    }
    ctx.restore();
  }
  const refresh = () => Promise.all($$(".chart", box).map((f) => draw(f).catch((e) => { $(".latest", f).textContent = e.message; })));
  $$("[data-range]").forEach((b) => b.addEventListener("click", () => {
    range = Number(b.dataset.range);
    $$("[data-range]").forEach((o) => o.setAttribute("aria-pressed", String(o === b)));
    refresh();
  }));
  refresh();
  setInterval(() => { if (!document.hidden) refresh(); }, 3000);

  const form = $(".label-form");
  form?.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const status = $(".status", form);
    try {
      const label = $("#label", form).value.trim();
      await api(`/v1/devices/${form.dataset.device}`, { method: "PATCH", body: { label: label || null } });
      status.textContent = "saved";
    } catch (e) { status.textContent = e.message; }
  });

  const again = $(".recommission-form");
  again?.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const status = $(".status", again);
    if (!confirm("Re-commission this device? What the AI learnt of it is forgotten and its open alarms are cleared.")) return;
    try {
      const done = await api(`/v1/devices/${again.dataset.device}/recommission`, { method: "POST" });
      status.textContent = `re-commissioned; alarms cleared: ${done.alarms_cleared.length ? done.alarms_cleared.join(", ") : "none"}`;
    } catch (e) { status.textContent = e.message; }
  });
}

// --- fleet page: current alarm state per device (when the alarm API exists) ----------------
function fleetPage() {
  if (document.body.dataset.alarmsApi !== "yes") return;
  async function mark() {
    const page = await api("/v1/alarms?state=active&limit=100");
    const open = new Map();
    for (const a of page.items) open.set(a.device, (open.get(a.device) || []).concat(a));
    for (const row of $$("#fleet-table tr[data-device]")) {
      const list = open.get(row.dataset.device);
      if (!list) continue;
      const worst = list.some((a) => a.severity === "critical") ? "bad" : "warn";
      $(".alarm-cell", row).replaceChildren(pill(`${list.length} open`, worst));
    }
  }
  mark().catch(() => {});
  document.body.addEventListener("htmx:afterSwap", () => mark().catch(() => {}));
}

// --- alarms page ------------------------------------------------------------------------------
function alarmsPage() {
  const table = $("#alarms-table");
  const tbody = $("tbody", table);
  const lifecycle = table.dataset.mode === "alarms";
  const form = $("#alarm-filters");
  const params = new URLSearchParams(location.search);
  if (params.get("device")) $("#f-device").value = params.get("device");
  const canAct = !/· reader$/.test($(".who span")?.textContent || "");
  function query() {
    const q = new URLSearchParams();
    for (const [k, v] of new FormData(form)) if (v) q.set(k, v);
    return q;
  }
  function alarmRow(a) {
    const actions = el("td", { class: "actions" });
    if (canAct && !a.acknowledged && a.state === "active")
      actions.append(el("button", { type: "button", class: "ack", onclick: () => act(a.id, "ack") }, "Acknowledge"));
    if (canAct && a.state === "active")
      actions.append(el("button", { type: "button", class: "clear", onclick: () => act(a.id, "clear") }, "Clear"));
    return el("tr", { "data-alarm": a.id },
      el("td", {}, when(a.last_seen_ms), el("div", { class: "sub" }, `${a.count}× since ${when(a.first_seen_ms)}`)),
      el("td", {}, pill(a.severity, a.severity === "critical" ? "bad" : a.severity === "major" ? "warn" : "idle")),
      el("td", { class: "mono" }, el("a", { href: `/devices/${a.device}` }, short(a.device))),
      el("td", {}, a.message || `${a.check} on ${a.metrics.join(", ")}`),
      el("td", { class: "mono" }, `${fmt(a.last_value)} / ${fmt(a.expected_low)}–${fmt(a.expected_high)}`),
      el("td", {}, pill(a.state, a.state === "active" ? "bad" : "idle"), " ", a.acknowledged ? pill("acknowledged", "ok") : ""),
      actions);
  }
  function anomalyRow(a) {
    return el("tr", { "data-anomaly": a.id },
      el("td", {}, when(a.timestamp)),
      el("td", {}, pill(a.score >= 2 ? "major" : "minor", a.score >= 2 ? "warn" : "idle")),
      el("td", { class: "mono" }, el("a", { href: `/devices/${a.device}` }, short(a.device))),
      el("td", {}, a.explanation || `${a.check} on ${a.metric}`),
      el("td", { class: "mono" }, `${fmt(a.value)} / ${fmt(a.low)}–${fmt(a.high)}`),
      el("td", {}, pill("event", "idle")),
      el("td", {}, el("a", { href: `/v1/readings/${a.reading_id}/proof`, download: `reading-${a.reading_id}.proof.json` }, "proof")));
  }
  async function load() {
    const q = query();
    if (lifecycle) {
      q.set("limit", "100");
      const page = await api("/v1/alarms?" + q);
      fill(tbody, page.items.map(alarmRow), 7, "No alarms match.");
    } else {
      q.set("since", String(Date.now() - 86_400_000)); q.set("limit", "1000");
      const page = await api("/v1/anomalies?" + q);
      fill(tbody, page.items.slice().reverse().slice(0, 200).map(anomalyRow), 7, "No anomaly events in the last 24 h.");
    }
  }
  async function act(id, what) {
    try { await api(`/v1/alarms/${id}/${what}`, { method: "POST" }); } catch (e) { alert(e.message); }
    await load();
  }
  form.addEventListener("submit", (ev) => { ev.preventDefault(); load(); });
  load().catch((e) => fill(tbody, [], 7, e.message));
  const live = $("#live");
  if (document.body.dataset.stream === "yes") {
    const source = new EventSource("/v1/stream");
    let timer = null;
    const soon = () => { clearTimeout(timer); timer = setTimeout(() => load().catch(() => {}), 300); };
    source.addEventListener("open", () => { live.textContent = "live"; live.classList.add("on"); });
    source.addEventListener("error", () => { live.textContent = "reconnecting…"; live.classList.remove("on"); });
    source.addEventListener(lifecycle ? "alarm" : "anomaly", soon);
    window.addEventListener("pagehide", () => source.close());
  } else {
    live.textContent = "polling";
    setInterval(() => load().catch(() => {}), 5000);
  }
}

// --- verify page ------------------------------------------------------------------------------
function verifyPage() {
  const out = $("#verdicts");
  let deployment = null;
  const pinsInput = $("#deployment-file");
  pinsInput.addEventListener("change", async () => {
    const f = pinsInput.files[0];
    try { deployment = f ? JSON.parse(await f.text()) : null; $("#deployment-status").textContent = f ? `pinned to ${f.name}` : ""; }
    catch { deployment = null; $("#deployment-status").textContent = `${f.name}: not JSON`; }
  });
  async function handle(file) {
    let doc;
    try { doc = JSON.parse(await file.text()); } catch { out.replaceChildren(el("p", { class: "error" }, `${file.name}: not JSON`)); return; }
    const proofs = Array.isArray(doc) ? doc : Array.isArray(doc.proofs) ? doc.proofs : [doc];
    out.replaceChildren();
    for (const [i, proof] of proofs.entries()) {
      const card = el("section", { class: "card verdict" }, el("h2", {}, proofs.length > 1 ? `${file.name} #${i + 1}` : file.name));
      out.append(card);
      try {
        const v = await verifyProof(proof, { deployment, blockHashes: $("#block-hashes").value });
        const line = v.ok ? "every check passed" : v.failed.length ? `failed: ${v.failed.join(", ")}` : `not checked: ${v.unchecked.join(", ")}`;
        card.classList.add(v.ok ? "ok" : v.failed.length ? "bad" : "warn");
        card.append(el("p", { class: "verdict-line" }, pill(v.ok ? "proven" : v.failed.length ? "NOT proven" : "incomplete", v.ok ? "ok" : v.failed.length ? "bad" : "warn"),
          " ", line, el("span", { class: "sub" }, ` — checked in this browser; contracts pinned to ${v.pinsFrom}`)));
        card.append(el("ul", { class: "checks" }, v.checks.map((c) =>
          el("li", { class: c.ok ? "pass" : c.skipped ? "skip" : "fail" }, el("span", { class: "mark", "aria-hidden": "true" }, c.ok ? "✓" : c.skipped ? "–" : "✗"),
            el("strong", {}, c.name), " ", c.ok ? "passed" : c.skipped ? "not checked" : "failed", c.detail ? el("span", { class: "sub" }, " — " + c.detail) : ""))));
      } catch (e) { card.classList.add("bad"); card.append(el("p", { class: "error" }, e.message)); }
    }
  }
  const input = $("#proof-file");
  input.addEventListener("change", () => input.files[0] && handle(input.files[0]));
  const drop = $("#drop");
  drop.addEventListener("dragover", (ev) => { ev.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (ev) => { ev.preventDefault(); drop.classList.remove("over"); const f = ev.dataTransfer.files[0]; if (f) handle(f); });
}

// --- settlement page --------------------------------------------------------------------------
function settlementPage() {
  const shipments = $("#shipments-table tbody"), orders = $("#orders-table tbody"), sessions = $("#sessions-table tbody");
  api("/v1/shipments?limit=20").then(async (page) => {
    const rows = [];
    for (const s of page.items) {
      let compliance = "—";
      try {
        const c = await api(`/v1/shipments/${s.id}/compliance`);
        compliance = c.compliant ? pill(`compliant (${c.readings} readings)`, "ok") : pill(`${c.breaches} breach${c.breaches === 1 ? "" : "es"} in ${c.readings}`, "bad");
      } catch (e) { compliance = e.message; }
      rows.push(el("tr", { "data-shipment": s.id }, el("td", { class: "num" }, s.id),
        el("td", {}, pill(s.status, s.status === "settled" ? "idle" : s.status === "open" ? "warn" : "ok")), el("td", {}, compliance),
        el("td", { class: "num" }, `${s.reported_breaches} / ${s.proven_breaches}`, s.proven_breaches ? el("div", { class: "sub" }, "claim proven on-chain") : ""),
        el("td", { class: "num" }, s.payment), el("td", { class: "num" }, s.penalty), el("td", {}, s.claim_deadline ? when(s.claim_deadline * 1000) : "—"),
        el("td", { class: "mono" }, short(s.carrier))));
    }
    fill(shipments, rows, 8, "No shipments yet.");
  }).catch((e) => fill(shipments, [], 8, e.message));
  api("/v1/market/orders?limit=20").then((page) => fill(orders, page.items.map((o) => el("tr", {},
    el("td", { class: "num" }, o.id), el("td", {}, pill(o.side, o.side === "ask" ? "ok" : "warn")), el("td", { class: "num" }, o.interval),
    el("td", { class: "num" }, `${o.quantity_wh} @ ${o.price_per_wh}`),
    el("td", {}, o.interval_state.cleared ? `cleared at ${o.interval_state.price}, ${o.interval_state.sold_wh} Wh sold` : "not cleared"),
    el("td", { class: "num" }, o.interval_state.delivered_wh), el("td", { class: "mono" }, short(o.participant)))), 7, "No market orders yet."))
    .catch((e) => fill(orders, [], 7, e.message));
  api("/v1/charging/sessions?limit=20").then((page) => fill(sessions, page.items.map((s) => el("tr", {},
    el("td", { class: "num" }, s.id), el("td", {}, pill(s.status, s.status === "open" ? "warn" : "ok")), el("td", { class: "num" }, s.energy_wh),
    el("td", { class: "num" }, s.price_per_wh), el("td", { class: "num" }, s.deposit), el("td", { class: "num" }, s.amount_due),
    el("td", {}, when(s.opened_at * 1000)), el("td", { class: "mono" }, short(s.charger)))), 8, "No charging sessions yet."))
    .catch((e) => fill(sessions, [], 8, e.message));
}

// --- admin page -------------------------------------------------------------------------------
function adminPage() {
  $("#create-key")?.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const form = ev.target;
    try {
      const created = await api("/v1/api-keys", { method: "POST", body: { name: $("#key-name").value, scope: $("#key-scope").value } });
      $("#new-key-value").textContent = created.key;
      $("#new-key").hidden = false;
      form.reset();
      setTimeout(() => location.reload(), 60_000);
    } catch (e) { alert(e.message); }
  });
  for (const b of $$("button.revoke")) b.addEventListener("click", async () => {
    if (!confirm(`Revoke the key "${b.dataset.name}"? Its sessions end at once.`)) return;
    try { await api(`/v1/api-keys/${b.dataset.key}/revoke`, { method: "POST" }); location.reload(); } catch (e) { alert(e.message); }
  });
}

const pages = { fleet: fleetPage, device: devicePage, alarms: alarmsPage, verify: verifyPage, settlement: settlementPage, admin: adminPage };
document.addEventListener("DOMContentLoaded", () => {
  document.body.addEventListener("htmx:configRequest", (ev) => { ev.detail.headers["X-CSRF-Token"] = csrf(); });
  if ($("#charts")) devicePage();
  else pages[document.body.dataset.page]?.();
});
