// One conformance vector's result in the vectors' own terms: {"status": "malformed", "field"}
// or {"status", "failed", "unchecked"} (sorted check names). Shared by the Node runner
// (vectors.js) and the browser test (tests/web/test_verifier_browser.py), which bundles this
// module with esbuild: the same code decides in both.

import { FormatError, parseProof, pinsFromDeployment, verifyProof } from "./verify.js";
import { trustedFromText } from "./trusted.js";

export async function vectorResult(vector, pins, trusted) {
  try {
    const proof = parseProof(vector.proof);
    const verdict = await verifyProof(proof, {
      pins: vector.options.pinned ? pins : null,
      trustedBlocks: vector.options.trusted_blocks ? trusted : null,
    });
    return {
      status: verdict.status,
      failed: [...verdict.failed].sort(),
      unchecked: [...verdict.unchecked].sort(),
    };
  } catch (e) {
    if (!(e instanceof FormatError)) throw e;
    return { status: "malformed", field: e.field };
  }
}

// Every vector of a directory, given as {name: vector}, with its deployment document and the
// text of its block-hashes file.
export async function vectorResults(vectors, deployment, blockHashesText) {
  const pins = pinsFromDeployment(deployment);
  const trusted = trustedFromText(blockHashesText);
  const out = {};
  for (const name of Object.keys(vectors).sort()) {
    out[name] = await vectorResult(vectors[name], pins, trusted);
  }
  return out;
}
