// ChainSense dashboard: plain JavaScript, no external assets.
"use strict";

function apiKey() {
  return localStorage.getItem("chainsense-api-key") || "";
}

async function getJSON(path, authenticated = false) {
  const headers = authenticated && apiKey() ? { Authorization: "Bearer " + apiKey() } : {};
  const response = await fetch(path, { headers });
  const body = await response.json();
  if (!response.ok) throw new Error(body.detail || body.title || response.statusText);
  return body;
}

function row(cells) {
  const tr = document.createElement("tr");
  for (const text of cells) {
    const td = document.createElement("td");
    td.textContent = text;
    tr.appendChild(td);
  }
  return tr;
}

async function refresh() {
  const pill = document.getElementById("health");
  try {
    const ready = await getJSON("/readyz");
    pill.textContent = ready.status;
    pill.className = "pill ok";
  } catch (err) {
    pill.textContent = "not ready";
    pill.className = "pill bad";
  }
  try {
    const chain = await getJSON("/v1/chain");
    const dl = document.getElementById("chain");
    dl.replaceChildren();
    const facts = [
      ["chain id", chain.chain_id],
      ["RPC", chain.rpc_url + (chain.dev_chain ? " (local dev chain)" : "")],
      ["head block", chain.block_number],
      ["operator", chain.roles.operator],
      ["anchorer", chain.roles.anchorer],
    ];
    for (const [k, v] of facts) {
      const dt = document.createElement("dt");
      dt.textContent = k;
      const dd = document.createElement("dd");
      dd.textContent = String(v);
      dl.append(dt, dd);
    }
    const body = document.querySelector("#contracts tbody");
    body.replaceChildren(
      ...Object.entries(chain.contracts).map(([name, c]) => row([name, c.address, c.block_number])),
    );
  } catch (err) {
    document.getElementById("chain").textContent = "chain unavailable: " + err.message;
  }
}

async function refreshData() {
  const note = document.getElementById("devices-note");
  if (!apiKey()) {
    note.textContent = "(enter a reader API key to see devices and readings)";
    return;
  }
  try {
    const devices = await getJSON("/v1/devices?limit=100", true);
    document.querySelector("#devices tbody").replaceChildren(
      ...devices.items.map((d) => row([d.address, d.status, d.last_seq, d.registered_at])),
    );
    note.textContent = `(${devices.items.length}${devices.next_cursor ? "+" : ""})`;
    const schemas = Object.fromEntries(
      (await getJSON("/v1/schemas")).map((s) => [s.id, s]),
    );
    const readings = await latestReadings();
    document.querySelector("#readings tbody").replaceChildren(
      ...readings.map((r) => row([
        r.id, r.device, r.seq, new Date(Number(r.timestamp)).toISOString(),
        r.schema_name || r.schema, formatValues(r, schemas[r.schema]),
      ])),
    );
  } catch (err) {
    note.textContent = "(" + err.message + ")";
  }
}

async function latestReadings() {
  // Pages are in id order; walk to the last page, keeping the newest 20.
  let cursor = null;
  let newest = [];
  for (let i = 0; i < 50; i++) {
    const page = await getJSON("/v1/readings?limit=1000" + (cursor ? "&cursor=" + cursor : ""), true);
    newest = newest.concat(page.items).slice(-20);
    cursor = page.next_cursor;
    if (!cursor) break;
  }
  return newest.reverse();
}

function formatValues(reading, schema) {
  if (!schema) return reading.values.join(", ");
  return reading.values
    .map((v, i) => {
      const m = schema.metrics[i];
      const scaled = Number(v) / 10 ** m.scale;
      return `${m.name} ${scaled.toFixed(m.scale)} ${m.unit}`;
    })
    .join(", ");
}

document.getElementById("key-form").addEventListener("submit", (event) => {
  event.preventDefault();
  localStorage.setItem("chainsense-api-key", document.getElementById("api-key").value.trim());
  refreshData();
});

refresh();
refreshData();
setInterval(() => { refresh(); refreshData(); }, 5000);
