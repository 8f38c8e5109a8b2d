// ChainSense dashboard: plain JavaScript, no external assets.
"use strict";

async function getJSON(path) {
  const response = await fetch(path);
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

refresh();
setInterval(refresh, 5000);
