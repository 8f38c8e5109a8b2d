// Builds OpenZeppelin StandardMerkleTrees of bytes32 values, for the cross-library tests.
//
// stdin: a JSON array of trees, each an array of 0x-prefixed bytes32 values.
// stdout: a JSON array with, per tree, {"root": "0x…", "proofs": [[…], …]} (proofs in input order).
import { StandardMerkleTree } from "@openzeppelin/merkle-tree";

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const trees = JSON.parse(Buffer.concat(chunks).toString("utf8"));

const out = trees.map((values) => {
  const tree = StandardMerkleTree.of(
    values.map((v) => [v]),
    ["bytes32"],
  );
  return { root: tree.root, proofs: values.map((_, i) => tree.getProof(i)) };
});
process.stdout.write(JSON.stringify(out) + "\n");
