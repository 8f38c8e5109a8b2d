// Size of a Chainpoint v4 proof given as JSON on stdin: the package validates it against the
// Chainpoint JSON schema, then packs it as Chainpoint's binary form (msgpack + zlib).
// Used by bench/proof_sizes.py.
import { createRequire } from "node:module";
import { readFileSync } from "node:fs";

const require = createRequire(import.meta.url);
const chp = require("chainpoint-binary");
const proof = JSON.parse(readFileSync(0, "utf8"));
const binary = chp.objectToBinarySync(proof); // throws on a schema error
const back = chp.binaryToObjectSync(binary);
if (JSON.stringify(back) !== JSON.stringify(proof)) throw new Error("binary round trip differs");
process.stdout.write(
  JSON.stringify({ json_bytes: Buffer.byteLength(JSON.stringify(proof)), binary_bytes: binary.length,
    base64_bytes: binary.toString("base64").length }) + "\n",
);
