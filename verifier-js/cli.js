#!/usr/bin/env node
// chainsense-verify-js: check a ChainSense proof (chainsense.proof.v2), or a bundle of them
// (chainsense.bundle.v2, or one v2 proof per line: a .jsonl file), with no ChainSense code.
//
//   node verifier-js/cli.js PROOF.json --deployment deployment.json --block-hash 0x…|FILE
//   node verifier-js/cli.js BUNDLE.jsonl --deployment deployment.json --block-hash FILE
//   node verifier-js/cli.js PROOF.json --deployment deployment.json --rpc URL
//   node verifier-js/cli.js PROOF.json --chain-id 31337 --registry 0x… --anchor 0x… …
//
// Exit codes as chainsense verify: 0 valid, 1 a check failed, 2 unreadable input or not a v2
// proof, 3 incomplete (not pinned, or no trusted block hash: nothing is claimed).

import { existsSync, readFileSync } from "node:fs";
import { FormatError, parseProof, pinsFromDeployment, verifyProof } from "./verify.js";
import { trustedFromText } from "./trusted.js";
import { BUNDLE_FORMAT, verifyBundle } from "./bundle.js";

function usage(message) {
  process.stderr.write(`error: ${message}\n`);
  process.exit(2);
}

const args = process.argv.slice(2);
const opts = { blockHashes: [] };
let source = null;
for (let i = 0; i < args.length; i++) {
  const a = args[i];
  const next = () => args[++i] ?? usage(`${a} needs a value`);
  if (a === "--deployment") opts.deployment = next();
  else if (a === "--block-hash") opts.blockHashes.push(next());
  else if (a === "--rpc") opts.rpc = next();
  else if (a === "--chain-id") opts.chainId = next();
  else if (a === "--registry") opts.registry = next();
  else if (a === "--anchor") opts.anchor = next();
  else if (a === "--json") opts.json = true;
  else if (source === null) source = a;
  else usage(`unexpected argument ${a}`);
}
if (source === null) usage("usage: cli.js PROOF.json [--deployment FILE] [--block-hash HASH|FILE] [--rpc URL] [--json]");

let pins = null;
try {
  if (opts.deployment) pins = pinsFromDeployment(JSON.parse(readFileSync(opts.deployment, "utf8")));
  else if (opts.chainId || opts.registry || opts.anchor) {
    if (!(opts.chainId && opts.registry && opts.anchor)) usage("explicit pins need --chain-id, --registry and --anchor");
    pins = {
      chainId: BigInt(opts.chainId),
      registry: { address: opts.registry.toLowerCase() },
      anchor: { address: opts.anchor.toLowerCase() },
    };
  }
} catch (e) {
  usage(`cannot read the deployment: ${e.message}`);
}
let trusted = null;
for (const value of opts.blockHashes) {
  trusted ??= new Set();
  const text = /^0x[0-9a-fA-F]{64}$/.test(value) ? value : existsSync(value) ? readFileSync(value, "utf8") : usage(`--block-hash ${value}: not a hash nor a file`);
  for (const h of trustedFromText(text)) trusted.add(h);
}

let text;
try {
  text = readFileSync(source === "-" ? 0 : source, "utf8");
} catch (e) {
  usage(`cannot read ${source}: ${e.message}`);
}
if (source.endsWith(".jsonl") || text.trimStart().startsWith(`{"format":"${BUNDLE_FORMAT}"}`)) {
  const summary = await verifyBundle(text, { pins, trustedBlocks: trusted, rpc: opts.rpc ?? null });
  if (opts.json) process.stdout.write(JSON.stringify(summary, null, 2) + "\n");
  else {
    process.stdout.write(`${summary.total} proofs: ${summary.valid} valid, ${summary.invalid} invalid, ` +
      `${summary.incomplete} incomplete, ${summary.malformed} malformed, ${summary.pending} pending\n`);
    for (const f of summary.failures.slice(0, 10)) {
      process.stdout.write(`  line ${f.line}: ${f.status}: ${f.checks ? f.checks.join(", ") : f.detail}\n`);
    }
    process.stdout.write(summary.ok ? "VALID (the devices' registration is not checked by this verifier)\n"
      : summary.invalid || summary.malformed ? "INVALID\n" : "NOT VERIFIED\n");
  }
  process.exit(summary.ok ? 0 : summary.invalid || summary.malformed ? 1 : 3);
}

let proof;
try {
  proof = parseProof(JSON.parse(text));
} catch (e) {
  if (opts.json) process.stdout.write(JSON.stringify({ ok: false, error: { field: e.field ?? null, detail: e.message } }) + "\n");
  else process.stderr.write(`error: ${e instanceof FormatError ? "not a proof document: " : ""}${e.message}\n`);
  process.exit(2);
}
const verdict = await verifyProof(proof, { pins, trustedBlocks: trusted, rpc: opts.rpc ?? null });
if (opts.json) {
  process.stdout.write(JSON.stringify(verdict, null, 2) + "\n");
} else {
  for (const c of verdict.checks) {
    process.stdout.write(`  ${c.ok ? "OK  " : c.skipped ? "--  " : "FAIL"} ${c.name.padEnd(11)} ${c.detail}\n`);
  }
  if (verdict.status === "valid") process.stdout.write("VALID (the device's registration is not checked by this verifier)\n");
  else if (verdict.status === "invalid") process.stdout.write(`INVALID: failed ${verdict.failed.join(", ")}\n`);
  else process.stdout.write(`NOT VERIFIED: ${verdict.unchecked.join(", ")} not checked\n`);
}
process.exit({ valid: 0, invalid: 1, incomplete: 3 }[verdict.status]);
