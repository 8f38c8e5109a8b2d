// Signs ChainSense readings with ethers v6 (Wallet.signTypedData), for the cross-library tests.
//
// stdin: one job, or a JSON array of jobs:
//   {"privateKey": "0x…", "domain": {"name", "version", "chainId", "verifyingContract"},
//    "reading": {"device", "seq", "timestamp", "schema", "values": [...]}}
// Integers may be decimal strings (int64 values can be negative, uint64 can exceed 2^53).
// stdout: the 0x-prefixed 65-byte signature, or a JSON array of them for an array input.
import { Wallet } from "ethers";

const READING_TYPES = {
  Reading: [
    { name: "device", type: "address" },
    { name: "seq", type: "uint64" },
    { name: "timestamp", type: "uint64" },
    { name: "schema", type: "bytes32" },
    { name: "values", type: "int64[]" },
  ],
};

async function readStdin() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  return Buffer.concat(chunks).toString("utf8");
}

async function sign(job) {
  const wallet = new Wallet(job.privateKey);
  return wallet.signTypedData(job.domain, READING_TYPES, job.reading);
}

const input = JSON.parse(await readStdin());
if (Array.isArray(input)) {
  const signatures = [];
  for (const job of input) signatures.push(await sign(job));
  process.stdout.write(JSON.stringify(signatures) + "\n");
} else {
  process.stdout.write((await sign(input)) + "\n");
}
