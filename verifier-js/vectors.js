#!/usr/bin/env node
// Run the shared conformance vectors (tests/vectors/proofs/) and print, as JSON, each case's
// result in the vectors' own terms (conformance.js). tests/provenance/test_vectors.py compares
// them with the expected results, tests/web/test_verifier_browser.py with Chromium's.
//
//   node verifier-js/vectors.js tests/vectors/proofs

import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { vectorResults } from "./conformance.js";

const dir = process.argv[2] ?? "tests/vectors/proofs";
const vectors = {};
for (const file of readdirSync(dir)) {
  if (!file.endsWith(".json") || file === "deployment.json") continue;
  vectors[file.replace(/\.json$/, "")] = JSON.parse(readFileSync(join(dir, file), "utf8"));
}
const out = await vectorResults(
  vectors,
  JSON.parse(readFileSync(join(dir, "deployment.json"), "utf8")),
  readFileSync(join(dir, "block-hashes.txt"), "utf8"),
);
process.stdout.write(JSON.stringify(out, null, 1) + "\n");
