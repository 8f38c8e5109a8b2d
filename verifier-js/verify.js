// An independent verifier of ChainSense proofs (format chainsense.proof.v2), written from
// docs/proof-format.md alone: no ChainSense code. ESM, no build step. Dependencies: viem
// (keccak256, ABI, EIP-712 hashing, signature recovery, RLP), @openzeppelin/merkle-tree (the
// Merkle path) and @ethereumjs/mpt (the receipts-trie proof walk).
//
//   import { parseProof, verifyProof, pinsFromDeployment } from "./verify.js";
//   const verdict = await verifyProof(parseProof(json), { pins, trustedBlocks });
//   // verdict.status: "valid" | "invalid" | "incomplete"; verdict.failed, verdict.unchecked
//
// It runs in Node (cli.js) and in a browser (the three packages resolved with an import map or
// a bundler; @openzeppelin/merkle-tree ships CommonJS).

import { SimpleMerkleTree } from "@openzeppelin/merkle-tree";
import { MerklePatriciaTrie, verifyMPTWithMerkleProof } from "@ethereumjs/mpt";
import {
  bytesToHex,
  concat,
  encodeAbiParameters,
  encodePacked,
  fromRlp,
  hashDomain,
  hexToBytes,
  keccak256,
  recoverAddress,
  toRlp,
} from "viem";

export const FORMAT = "chainsense.proof.v2";
export const DEPLOYMENT_FORMAT = "chainsense.deployment.v1";
const ROOT_ANCHORED = keccak256(
  new TextEncoder().encode("RootAnchored(bytes32,bytes32,uint32,address,uint64)"),
);
const READING_TYPE = keccak256(
  new TextEncoder().encode(
    "Reading(address device,uint64 seq,uint64 timestamp,bytes32 schema,int64[] values)",
  ),
);
const HALF_N = 0x7fffffffffffffffffffffffffffffff5d576e7357a4501ddfe92f46681b20a0n;

// --- strict parsing ----------------------------------------------------------------------------

export class FormatError extends Error {
  constructor(field, detail) {
    super(`${field}: ${detail}`);
    this.field = field;
  }
}

const KEYS = {
  "": ["format", "reading", "domain", "schema", "struct_hash", "leaf", "merkle_proof", "root",
    "anchor", "reading_id", "batch_id"],
  reading: ["device", "seq", "timestamp_ms", "schema", "values", "signature"],
  domain: ["name", "version", "chain_id", "verifying_contract"],
  schema: ["id", "name", "version", "metrics"],
  metric: ["name", "unit", "scale"],
  anchor: ["chain_id", "contract", "tx_hash", "tx_index", "block_number", "block_hash",
    "block_time_s", "header_rlp", "receipt_proof"],
};

const kind = (v) =>
  v === null ? "null" : Array.isArray(v) ? "a list" : typeof v === "object" ? "an object" : `a ${typeof v}`;

function fields(path, value, keys) {
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    throw new FormatError(path || "$", `expected an object, got ${kind(value)}`);
  }
  for (const key of keys) {
    if (!Object.hasOwn(value, key)) throw new FormatError(path ? `${path}.${key}` : key, "missing");
  }
  for (const key of Object.keys(value)) {
    if (!keys.includes(key)) throw new FormatError(path ? `${path}.${key}` : key, "unknown field");
  }
  return value;
}

function str(path, v) {
  if (typeof v !== "string") throw new FormatError(path, `expected a string, got ${kind(v)}`);
  return v;
}

function uint(path, v, bits) {
  if (typeof v !== "string" || !/^(0|[1-9][0-9]*)$/.test(v)) {
    throw new FormatError(path, "expected an unsigned integer as a canonical decimal string");
  }
  const n = BigInt(v);
  if (n >= 1n << BigInt(bits)) throw new FormatError(path, `does not fit uint${bits}`);
  return n;
}

function int(path, v, bits) {
  if (typeof v !== "string" || !/^(0|-?[1-9][0-9]*)$/.test(v)) {
    throw new FormatError(path, "expected an integer as a canonical decimal string");
  }
  const n = BigInt(v);
  const half = 1n << BigInt(bits - 1);
  if (n < -half || n >= half) throw new FormatError(path, `does not fit int${bits}`);
  return n;
}

function hex(path, v, size) {
  if (typeof v !== "string" || !/^0x([0-9a-fA-F]{2})*$/.test(v)) {
    throw new FormatError(path, "expected 0x followed by an even number of hex digits");
  }
  if (size !== undefined && v.length !== 2 + 2 * size) {
    throw new FormatError(path, `expected ${size} bytes`);
  }
  return v.toLowerCase();
}

function address(path, v) {
  if (typeof v !== "string" || !/^0x[0-9a-fA-F]{40}$/.test(v)) {
    throw new FormatError(path, "expected 0x followed by 40 hex digits");
  }
  return v.toLowerCase();
}

function list(path, v, limit) {
  if (!Array.isArray(v)) throw new FormatError(path, `expected a list, got ${kind(v)}`);
  if (v.length > limit) throw new FormatError(path, `more than ${limit} items`);
  return v;
}

/** Parse a schema block (at the JSON path `at`). */
export function parseSchema(value, at = "schema") {
  const s = fields(at, value, KEYS.schema);
  const metrics = list(`${at}.metrics`, s.metrics, 1024).map((m, i) => {
    const path = `${at}.metrics[${i}]`;
    fields(path, m, KEYS.metric);
    const scale = int(`${path}.scale`, m.scale, 64);
    if (scale < -128n || scale > 127n) throw new FormatError(`${path}.scale`, "does not fit int8");
    return { name: str(`${path}.name`, m.name), unit: str(`${path}.unit`, m.unit), scale };
  });
  const version = uint(`${at}.version`, s.version, 64);
  if (version >= 1n << 32n) throw new FormatError(`${at}.version`, "does not fit uint32");
  return { id: hex(`${at}.id`, s.id, 32), name: str(`${at}.name`, s.name), version, metrics };
}

/** Parse a v2 proof document; a FormatError names the first bad field (a JSON path). */
export function parseProof(obj) {
  const doc = fields("", obj, KEYS[""]);
  if (doc.format !== FORMAT) throw new FormatError("format", `expected ${FORMAT}`);
  const r = fields("reading", doc.reading, KEYS.reading);
  const reading = {
    device: address("reading.device", r.device),
    seq: uint("reading.seq", r.seq, 64),
    timestamp: uint("reading.timestamp_ms", r.timestamp_ms, 64),
    schema: hex("reading.schema", r.schema, 32),
    values: list("reading.values", r.values, 1024).map((x, i) => int(`reading.values[${i}]`, x, 64)),
    signature: hex("reading.signature", r.signature, 65),
  };
  const d = fields("domain", doc.domain, KEYS.domain);
  const domain = {
    name: str("domain.name", d.name),
    version: str("domain.version", d.version),
    chainId: uint("domain.chain_id", d.chain_id, 256),
    verifyingContract: address("domain.verifying_contract", d.verifying_contract),
  };
  const schema = parseSchema(doc.schema);
  const structHash = hex("struct_hash", doc.struct_hash, 32);
  const leaf = hex("leaf", doc.leaf, 32);
  const merkleProof = list("merkle_proof", doc.merkle_proof, 256).map((p, i) =>
    hex(`merkle_proof[${i}]`, p, 32),
  );
  const root = hex("root", doc.root, 32);
  const a = fields("anchor", doc.anchor, KEYS.anchor);
  const anchor = {
    chainId: uint("anchor.chain_id", a.chain_id, 256),
    contract: address("anchor.contract", a.contract),
    txHash: hex("anchor.tx_hash", a.tx_hash, 32),
    txIndex: uint("anchor.tx_index", a.tx_index, 64),
    blockNumber: uint("anchor.block_number", a.block_number, 64),
    blockHash: hex("anchor.block_hash", a.block_hash, 32),
    blockTime: uint("anchor.block_time_s", a.block_time_s, 64),
    headerRlp: hex("anchor.header_rlp", a.header_rlp),
    receiptProof: list("anchor.receipt_proof", a.receipt_proof, 64).map((n, i) =>
      hex(`anchor.receipt_proof[${i}]`, n),
    ),
  };
  for (const key of ["reading_id", "batch_id"]) {
    if (doc[key] !== null) uint(key, doc[key], 64);
  }
  return { reading, domain, schema, structHash, leaf, merkleProof, root, anchor };
}

/** Pins from a published deployment document (chainsense.deployment.v1). */
export function pinsFromDeployment(obj) {
  if (obj?.format !== DEPLOYMENT_FORMAT) throw new FormatError("format", `expected ${DEPLOYMENT_FORMAT}`);
  const entry = (name) => ({
    address: address(`contracts.${name}.address`, obj.contracts?.[name]?.address),
    codeHash: hex(`contracts.${name}.code_hash`, obj.contracts?.[name]?.code_hash, 32),
  });
  return {
    chainId: uint("chain_id", obj.chain_id, 256),
    registry: entry("DeviceRegistry"),
    anchor: entry("ReadingAnchor"),
  };
}

// --- checks ------------------------------------------------------------------------------------

const ok = (name, detail) => ({ name, ok: true, skipped: false, detail });
const fail = (name, detail) => ({ name, ok: false, skipped: false, detail });
const skip = (name, detail) => ({ name, ok: false, skipped: true, detail });

function checkContracts(p, pins) {
  if (!pins) return skip("contracts", "not pinned: pass the expected deployment");
  const wrong = [];
  if (p.anchor.chainId !== pins.chainId) wrong.push("anchor.chain_id is not the pinned chain");
  if (p.domain.chainId !== pins.chainId) wrong.push("domain.chain_id is not the pinned chain");
  if (p.domain.verifyingContract !== pins.registry.address) wrong.push("not the pinned DeviceRegistry");
  if (p.anchor.contract !== pins.anchor.address) wrong.push("not the pinned ReadingAnchor");
  return wrong.length ? fail("contracts", wrong.join("; ")) : ok("contracts", "the pinned deployment");
}

export function schemaId(schema) {
  return keccak256(
    encodeAbiParameters(
      [
        { type: "string" },
        { type: "uint32" },
        { type: "tuple[]", components: [{ type: "string" }, { type: "string" }, { type: "int8" }] },
      ],
      [schema.name, Number(schema.version), schema.metrics.map((m) => [m.name, m.unit, Number(m.scale)])],
    ),
  );
}

function checkSchema(p) {
  const problems = [];
  if (schemaId(p.schema) !== p.schema.id) problems.push("schema.id is not the hash of the schema block");
  if (p.reading.schema !== p.schema.id) problems.push("reading.schema is not schema.id");
  if (p.reading.values.length !== p.schema.metrics.length) problems.push("one value per metric");
  return problems.length ? fail("schema", problems.join("; ")) : ok("schema", "id recomputed");
}

function checkDomain(p) {
  const problems = [];
  if (p.domain.name !== "ChainSense" || p.domain.version !== "1") problems.push("not ChainSense v1");
  if (p.domain.chainId !== p.anchor.chainId) problems.push("domain.chain_id is not anchor.chain_id");
  return problems.length ? fail("domain", problems.join("; ")) : ok("domain", "ChainSense v1");
}

export function structHashOf(r) {
  const values = keccak256(encodePacked(r.values.map(() => "int256"), r.values));
  return keccak256(
    encodeAbiParameters(
      [{ type: "bytes32" }, { type: "address" }, { type: "uint64" }, { type: "uint64" },
        { type: "bytes32" }, { type: "bytes32" }],
      [READING_TYPE, r.device, r.seq, r.timestamp, r.schema, values],
    ),
  );
}

async function checkSignature(p, computed) {
  const sig = p.reading.signature;
  const s = BigInt("0x" + sig.slice(66, 130));
  const v = parseInt(sig.slice(130, 132), 16);
  if (s > HALF_N || s === 0n) return fail("signature", "high-s (malleable) or zero s");
  if (v !== 27 && v !== 28) return fail("signature", "v is not 27 or 28");
  try {
    const separator = hashDomain({
      // the ChainSense v1 domain on the proof's chain and registry (a proof naming another
      // name or version fails "domain", not the signature: docs/proof-format.md 4.4)
      domain: { name: "ChainSense", version: "1", chainId: p.domain.chainId,
        verifyingContract: p.domain.verifyingContract },
      types: { EIP712Domain: [{ name: "name", type: "string" }, { name: "version", type: "string" },
        { name: "chainId", type: "uint256" }, { name: "verifyingContract", type: "address" }] },
    });
    const digest = keccak256(concat(["0x1901", separator, computed]));
    const signer = await recoverAddress({ hash: digest, signature: sig });
    return signer.toLowerCase() === p.reading.device
      ? ok("signature", "recovers reading.device")
      : fail("signature", `recovers ${signer}, not reading.device`);
  } catch (e) {
    return fail("signature", `no key recovers: ${e.shortMessage ?? e.message}`);
  }
}

function checkLeaf(p, computed) {
  if (computed !== p.structHash) return fail("leaf", "hashStruct(reading) is not struct_hash");
  const leaf = keccak256(keccak256(computed));
  return leaf === p.leaf ? ok("leaf", "leaf = keccak256(keccak256(struct_hash))") : fail("leaf", "leaf mismatch");
}

function checkPath(p) {
  let good = false;
  try {
    good = SimpleMerkleTree.verify(p.root, p.leaf, p.merkleProof);
  } catch {
    good = false;
  }
  return good ? ok("merkle-path", "the path leads to the root") : fail("merkle-path", "the path does not lead to the root");
}

const num = (bytes) => (bytes === "0x" ? 0n : BigInt(bytes));

function checkHeader(p) {
  let items;
  try {
    items = fromRlp(p.anchor.headerRlp, "hex");
  } catch {
    return [fail("header", "the header is not RLP"), null];
  }
  if (!Array.isArray(items) || items.length < 15 || items.some((x) => Array.isArray(x))) {
    return [fail("header", "the header is not a list of at least 15 fields"), null];
  }
  const problems = [];
  if (keccak256(p.anchor.headerRlp) !== p.anchor.blockHash) problems.push("keccak256(header_rlp) is not block_hash");
  if (num(items[8]) !== p.anchor.blockNumber) problems.push("the header's number differs");
  if (num(items[11]) !== p.anchor.blockTime) problems.push("the header's timestamp differs");
  if (items[5].length !== 66) problems.push("receiptsRoot is not 32 bytes");
  if (problems.length) return [fail("header", problems.join("; ")), null];
  return [ok("header", "the header hashes to block_hash"), items[5]];
}

async function checkReceipt(p, receiptsRoot) {
  if (receiptsRoot === null) return skip("receipt", "not checked: the header does not hold");
  let value;
  try {
    const key = hexToBytes(toRlp(p.anchor.txIndex === 0n ? "0x" : numberHex(p.anchor.txIndex)));
    value = await verifyMPTWithMerkleProof(
      new MerklePatriciaTrie(),
      hexToBytes(receiptsRoot),
      key,
      p.anchor.receiptProof.map((n) => hexToBytes(n)),
    );
  } catch (e) {
    return fail("receipt", `the trie nodes do not lead to the receipt: ${e.message}`);
  }
  if (!value) return fail("receipt", "no receipt at tx_index");
  let receipt = bytesToHex(value);
  if (value[0] < 0x7f) receipt = bytesToHex(value.slice(1)); // EIP-2718 type byte
  let status, logs;
  try {
    [status, , , logs] = fromRlp(receipt, "hex");
  } catch {
    return fail("receipt", "the receipt is not RLP");
  }
  if (num(status) !== 1n) return fail("receipt", "the transaction reverted");
  const mine = logs.filter(
    ([addr, topics]) =>
      addr === p.anchor.contract && topics.length >= 2 && topics[0] === ROOT_ANCHORED && topics[1] === p.root,
  );
  if (!mine.length) return fail("receipt", "no RootAnchored log for the root from anchor.contract");
  const data = mine[0][2];
  if (data.length < 2 + 128 || BigInt("0x" + data.slice(66, 130)) !== p.anchor.blockTime) {
    return fail("receipt", "RootAnchored has another block time");
  }
  return ok("receipt", "RootAnchored for the root under the header's receiptsRoot");
}

function numberHex(n) {
  let h = n.toString(16);
  if (h.length % 2) h = "0" + h;
  return "0x" + h;
}

function checkBlock(p, trustedBlocks) {
  if (!trustedBlocks) return skip("block", "not checked: no trusted block hash");
  return trustedBlocks.has(p.anchor.blockHash)
    ? ok("block", "a trusted block hash")
    : fail("block", "block_hash is not a trusted block hash");
}

/**
 * Verify a parsed proof against the pins (or null) and a Set of trusted block hashes
 * (lowercase 0x hex, or null), offline. With `rpc` (a JSON-RPC URL), the block hash is instead
 * confirmed canonical on that node.
 */
export async function verifyProof(p, { pins = null, trustedBlocks = null, rpc = null } = {}) {
  const computed = structHashOf(p.reading);
  const [header, receiptsRoot] = checkHeader(p);
  const checks = [
    checkContracts(p, pins),
    checkSchema(p),
    checkDomain(p),
    await checkSignature(p, computed),
    checkLeaf(p, computed),
    checkPath(p),
    header,
    await checkReceipt(p, receiptsRoot),
    rpc ? await checkBlockRpc(p, rpc) : checkBlock(p, trustedBlocks),
  ];
  const failed = checks.filter((c) => !c.ok && !c.skipped).map((c) => c.name);
  const unchecked = checks.filter((c) => c.skipped).map((c) => c.name);
  const status = failed.length ? "invalid" : unchecked.length ? "incomplete" : "valid";
  return { status, ok: status === "valid", failed, unchecked, checks };
}

async function checkBlockRpc(p, rpc) {
  try {
    const call = async (method, params) => {
      const res = await fetch(rpc, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ jsonrpc: "2.0", id: 1, method, params }),
      });
      const body = await res.json();
      if (body.error) throw new Error(body.error.message);
      return body.result;
    };
    const block = await call("eth_getBlockByNumber", [numberHex(p.anchor.blockNumber), false]);
    if (!block) return fail("block", "the block does not exist (yet)");
    if (block.hash.toLowerCase() !== p.anchor.blockHash) return fail("block", "block_hash is not canonical");
    const head = BigInt(await call("eth_blockNumber", []));
    return ok("block", `canonical (${head - p.anchor.blockNumber + 1n} confirmations)`);
  } catch (e) {
    return fail("block", `the RPC endpoint failed: ${e.message}`);
  }
}
