#!/usr/bin/env node
// Verify bundle files and print, as JSON, each one's summary (bundle.js): the test that runs
// both verifiers on the same bundles (tests/provenance/test_bundle_v2.py) compares them.
//
//   node verifier-js/bundles.js deployment.json block-hashes.txt BUNDLE.jsonl...

import { readFileSync } from "node:fs";
import { verifyBundle } from "./bundle.js";
import { pinsFromDeployment } from "./verify.js";
import { trustedFromText } from "./trusted.js";

const [deployment, hashes, ...files] = process.argv.slice(2);
const pins = pinsFromDeployment(JSON.parse(readFileSync(deployment, "utf8")));
const trustedBlocks = trustedFromText(readFileSync(hashes, "utf8"));
const out = {};
for (const file of files) out[file] = await verifyBundle(readFileSync(file, "utf8"), { pins, trustedBlocks });
process.stdout.write(JSON.stringify(out, null, 1) + "\n");
