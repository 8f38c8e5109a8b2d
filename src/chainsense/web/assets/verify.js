// How the console verifies a proof. Today: the platform's POST /v1/verify. When the independent
// JavaScript verifier (verifier-js/) lands, only this function changes, so checks run in the
// browser.
export async function verifyProof(proof, { onchain = true } = {}) {
  const csrf = document.querySelector('meta[name="csrf-token"]')?.content || "";
  const response = await fetch(`/v1/verify?onchain=${onchain}`, {
    method: "POST", credentials: "same-origin",
    headers: { "Content-Type": "application/json", Accept: "application/json", "X-CSRF-Token": csrf },
    body: JSON.stringify(proof),
  });
  const body = await response.json();
  if (!response.ok) throw new Error(body.detail || body.title || response.statusText);
  return body; // {ok, failed: [name], checks: [{name, ok, detail}]}
}
