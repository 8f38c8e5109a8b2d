#!/usr/bin/env node
// Run the shared conformance vectors (tests/vectors/proofs/) and print, as JSON, each case's
// result in the vectors' own terms: {"status": "malformed", "field"} or {"status", "failed",
// "unchecked"} (sorted check names). tests/provenance/test_vectors.py compares them.
//
//   node verifier-js/vectors.js tests/vectors/proofs

import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { FormatError, parseProof, pinsFromDeployment, verifyProof } from "./verify.js";
import { trustedFromText } from "./trusted.js";

const dir = process.argv[2] ?? "tests/vectors/proofs";
const pins = pinsFromDeployment(JSON.parse(readFileSync(join(dir, "deployment.json"), "utf8")));
const trusted = trustedFromText(readFileSync(join(dir, "block-hashes.txt"), "utf8"));
const out = {};
for (const file of readdirSync(dir).sort()) {
  if (!file.endsWith(".json") || file === "deployment.json") continue;
  const vector = JSON.parse(readFileSync(join(dir, file), "utf8"));
  let result;
  try {
    const proof = parseProof(vector.proof);
    const verdict = await verifyProof(proof, {
      pins: vector.options.pinned ? pins : null,
      trustedBlocks: vector.options.trusted_blocks ? trusted : null,
    });
    result = { status: verdict.status, failed: [...verdict.failed].sort(), unchecked: [...verdict.unchecked].sort() };
  } catch (e) {
    if (!(e instanceof FormatError)) throw e;
    result = { status: "malformed", field: e.field };
  }
  out[file.replace(/\.json$/, "")] = result;
}
process.stdout.write(JSON.stringify(out, null, 1) + "\n");
