// How the console verifies a proof: in the browser, with the independent verifier (verifier-js:
// viem, @openzeppelin/merkle-tree, @ethereumjs/mpt; bundled from node_modules). The server is
// not asked to judge: an auditor need not trust the operator. POST /v1/verify stays for API users.
//
// The two inputs a verifier must trust are the user's to give:
// - pins: a deployment document the user holds; without one, the document this server
//   publishes (GET /v1/deployment) is used and the verdict says so;
// - trusted block hashes (from the user's own node or any source they trust); without them the
//   "block" check is not run and the verdict is incomplete, never "proven".
import { FormatError, parseProof, pinsFromDeployment, verifyProof as verify } from "../../../../verifier-js/verify.js";
import { trustedFromText } from "../../../../verifier-js/trusted.js";

let served = null;
async function servedDeployment() {
  if (served === null) {
    const response = await fetch("/v1/deployment", { credentials: "same-origin", headers: { Accept: "application/json" } });
    if (!response.ok) throw new Error(`GET /v1/deployment: ${response.status}`);
    served = await response.json();
  }
  return served;
}

// {ok, status, failed, unchecked, checks: [{name, ok, skipped, detail}], pinsFrom}
export async function verifyProof(proof, { deployment = null, blockHashes = "" } = {}) {
  let parsed;
  try {
    parsed = parseProof(proof);
  } catch (e) {
    if (e instanceof FormatError) throw new Error(`not a v2 proof document: ${e.message}`);
    throw e;
  }
  const pinsFrom = deployment ? "your deployment document" : "the deployment this server publishes";
  const pins = pinsFromDeployment(deployment ?? (await servedDeployment()));
  const trusted = trustedFromText(blockHashes);
  const verdict = await verify(parsed, { pins, trustedBlocks: trusted.size ? trusted : null });
  return { ...verdict, pinsFrom };
}
