// Bundles: many ChainSense proofs in JSON lines, checked one proof at a time with verify.js.
// Two forms (docs/proof-format.md section 9):
//   - chainsense.bundle.v2: a format line {"format":"chainsense.bundle.v2"}, then sections: a
//     batch line {"batch":{root, domain, schema, anchor, batch_id}} followed by proof lines
//     {"proof":{reading, merkle_proof (the sibling hashes concatenated in one hex string, or
//     null when the batch line says "complete": true: the section holds every reading of the
//     batch, and the tree is rebuilt from them), reading_id}} and pending lines
//     {"pending":{...}} (counted, not checked);
//   - one chainsense.proof.v2 document per line ({"status":"pending",...} lines counted).
// A proof line and its batch line make the v2 document (struct_hash and leaf are computed from
// the reading: the bundle does not carry them), which verifyProof checks like any other.

import { StandardMerkleTree } from "@openzeppelin/merkle-tree";
import { keccak256 } from "viem";
import { FORMAT, FormatError, parseProof, parseSchema, structHashOf, verifyProof } from "./verify.js";

export const BUNDLE_FORMAT = "chainsense.bundle.v2";
const BATCH = ["root", "domain", "schemas", "anchor", "batch_id", "complete"];
const PROOF = ["reading", "merkle_proof", "reading_id"];

function exactly(path, value, keys) {
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    throw new FormatError(path || "$", "expected an object");
  }
  for (const key of keys) {
    if (!Object.hasOwn(value, key)) throw new FormatError(path ? `${path}.${key}` : key, "missing");
  }
  for (const key of Object.keys(value)) {
    if (!keys.includes(key)) throw new FormatError(path ? `${path}.${key}` : key, "unknown field");
  }
  return value;
}

function unpack(text) {
  if (typeof text !== "string" || !/^0x([0-9a-fA-F]{64})*$/.test(text) || text.length > 2 + 64 * 256) {
    throw new FormatError("proof.merkle_proof", "expected 0x followed by whole 32-byte hashes (at most 256)");
  }
  const out = [];
  for (let i = 2; i < text.length; i += 64) out.push("0x" + text.slice(i, i + 64));
  return out;
}

// A proof line and the batch line above it, as a parsed v2 proof (parseProof's checks apply;
// a field's path is named as in the line: proof.reading.seq, batch.anchor.header_rlp, ...).
function assemble(batch, body) {
  if (batch.complete === true && body.merkle_proof !== null) {
    throw new FormatError("proof.merkle_proof", "must be null: the batch line says complete");
  }
  // the schema block the reading names (else the first: the schema check then fails)
  const named = typeof body.reading?.schema === "string" ? body.reading.schema.toLowerCase() : null;
  const schema = batch.schemas.find((x) => x.id.toLowerCase() === named) ?? batch.schemas[0];
  const doc = {
    format: FORMAT, reading: body.reading, domain: batch.domain, schema,
    struct_hash: "0x" + "00".repeat(32), leaf: "0x" + "00".repeat(32),
    merkle_proof: batch.complete === true ? [] : unpack(body.merkle_proof), root: batch.root, anchor: batch.anchor,
    reading_id: body.reading_id, batch_id: batch.batch_id,
  };
  let p;
  try {
    p = parseProof(doc);
  } catch (e) {
    if (!(e instanceof FormatError)) throw e;
    const inProof = e.field.startsWith("reading") || e.field === "reading_id";
    const field = e.field.startsWith("schema") ? `schemas[${batch.schemas.indexOf(schema)}]${e.field.slice(6)}` : e.field;
    throw new FormatError(`${inProof ? "proof" : "batch"}.${field}`, e.message.replace(/^[^:]*: /, ""));
  }
  const computed = structHashOf(p.reading);
  p.structHash = computed;
  p.leaf = keccak256(keccak256(computed));
  return p;
}

// Each entry of a bundle's text, in order: {line, status: "pending"}, {line, status:
// "malformed", field, detail}, or {line, proof} (a parsed v2 proof).
export function* bundleEntries(text) {
  const lines = text.split("\n");
  const first = lines.findIndex((l) => l.trim() !== "");
  let head = null;
  try {
    head = JSON.parse(lines[first] ?? "null");
  } catch {
    head = null;
  }
  const v2 = head !== null && typeof head === "object" && head.format === BUNDLE_FORMAT;
  let batch = null;
  let batchError = "a proof line before any batch line";
  let held = []; // a complete section's entries, until its end: the tree is built from them
  const flush = function* () {
    const proofs = held.filter((e) => e.proof !== undefined);
    if (proofs.length) {
      const tree = StandardMerkleTree.of(proofs.map((e) => [e.proof.structHash]), ["bytes32"]);
      for (const e of proofs) e.proof.merkleProof = tree.getProof([e.proof.structHash]);
    }
    yield* held;
    held = [];
  };
  for (let i = v2 ? first + 1 : 0; i < lines.length; i++) {
    const raw = lines[i];
    if (raw.trim() === "") continue;
    const line = i + 1;
    let obj;
    try {
      obj = JSON.parse(raw);
    } catch (e) {
      yield { line, status: "malformed", field: null, detail: `not JSON: ${e.message}` };
      continue;
    }
    try {
      if (!v2) {
        if (obj !== null && obj.status === "pending") yield { line, status: "pending" };
        else yield { line, proof: parseProof(obj) };
        continue;
      }
      if (raw.startsWith('{"batch":')) {
        yield* flush();
        try {
          batch = exactly("batch", exactly("", obj, ["batch"]).batch, BATCH);
          if (typeof batch.complete !== "boolean") throw new FormatError("batch.complete", "expected true or false");
          if (!Array.isArray(batch.schemas) || batch.schemas.length < 1 || batch.schemas.length > 256) {
            throw new FormatError("batch.schemas", "expected a list of 1 to 256 schema blocks");
          }
          batch.schemas.forEach((x, i) => parseSchema(x, `batch.schemas[${i}]`));
          batchError = null;
        } catch (e) {
          batch = null;
          batchError = `its batch line is not a v2 batch: ${e.message}`;
        }
        continue;
      }
      if (obj !== null && typeof obj === "object" && Object.keys(obj).length === 1 && Object.hasOwn(obj, "pending")) {
        if (batch !== null && batch.complete) held.push({ line, status: "pending" });
        else yield { line, status: "pending" };
        continue;
      }
      const body = exactly("proof", exactly("", obj, ["proof"]).proof, PROOF);
      if (batch === null) throw new FormatError("batch", batchError);
      const entry = { line, proof: assemble(batch, body) };
      if (batch.complete) held.push(entry);
      else yield entry;
    } catch (e) {
      if (!(e instanceof FormatError)) throw e;
      const entry = { line, status: "malformed", field: e.field, detail: e.message };
      if (batch !== null && batch.complete) held.push(entry);
      else yield entry;
    }
  }
  yield* flush();
}

// Verify every proof of a bundle: a summary ({total, valid, invalid, incomplete, malformed,
// pending, failures: [{line, status, checks}]}); as chainsense verify, the failures list each
// line that is not a valid proof (pending lines too, with no check).
export async function verifyBundle(text, options = {}) {
  const out = { total: 0, valid: 0, invalid: 0, incomplete: 0, malformed: 0, pending: 0, failures: [] };
  for (const entry of bundleEntries(text)) {
    out.total += 1;
    if (entry.proof === undefined) {
      out[entry.status] += 1;
      if (entry.status === "malformed") out.failures.push({ line: entry.line, status: "malformed", field: entry.field, detail: entry.detail });
      else out.failures.push({ line: entry.line, status: entry.status, checks: [] });
      continue;
    }
    const verdict = await verifyProof(entry.proof, options);
    out[verdict.status] += 1;
    if (verdict.status !== "valid") {
      const checks = verdict.failed.length ? verdict.failed : verdict.unchecked;
      out.failures.push({ line: entry.line, status: verdict.status, checks: [...checks].sort() });
    }
  }
  out.ok = out.total > 0 && out.valid === out.total;
  return out;
}
