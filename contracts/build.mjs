// Compiles the ChainSense contracts with solc-js (npm `solc`, pinned in package-lock.json) and writes
// one artifact per contract into the Python package. Downloads nothing.
//
//   node contracts/build.mjs           write src/chainsense/contracts/artifacts/*.json
//   node contracts/build.mjs --check   compile and fail if the committed artifacts differ
//   --out DIR                          another artifact directory (for tests)
//
// Test-only contracts (contracts/test, e.g. a hostile ERC-20 for reentrancy tests) are compiled in
// the same run but written to tests/contracts/artifacts: they never ship in the Python package.
//
// Run from the repository root (the Makefile does). Source keys are repository-relative paths, so
// the metadata hash embedded in the bytecode is the same on every machine.
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import solc from "solc";

const SRC_DIRS = ["contracts/interfaces", "contracts/src"];
const TEST_DIRS = ["contracts/test"];
const TEST_OUT_DIR = "tests/contracts/artifacts";
const outFlag = process.argv.indexOf("--out");
const OUT_DIR = outFlag > 0 ? process.argv[outFlag + 1] : "src/chainsense/contracts/artifacts";
export const SETTINGS = {
  optimizer: { enabled: true, runs: 200 },
  evmVersion: "cancun",
  metadata: { bytecodeHash: "ipfs" },
  outputSelection: {
    "*": {
      "*": [
        "abi",
        "evm.bytecode.object",
        "evm.deployedBytecode.object",
        "evm.deployedBytecode.immutableReferences",
        "evm.methodIdentifiers",
        "metadata",
      ],
    },
  },
};

function resolveImport(path) {
  const candidates = [path, join("node_modules", path)];
  for (const file of candidates) {
    if (existsSync(file)) return { contents: readFileSync(file, "utf8") };
  }
  return { error: `import not found: ${path}` };
}

const sha256 = (text) => "0x" + createHash("sha256").update(text, "utf8").digest("hex");

function compile() {
  const sources = {};
  for (const dir of [...SRC_DIRS, ...TEST_DIRS]) {
    if (!existsSync(dir)) continue;
    for (const name of readdirSync(dir).filter((f) => f.endsWith(".sol")).sort()) {
      const key = `${dir}/${name}`;
      sources[key] = { content: readFileSync(key, "utf8") };
    }
  }
  const input = { language: "Solidity", sources, settings: SETTINGS };
  const output = JSON.parse(solc.compile(JSON.stringify(input), { import: resolveImport }));
  const errors = (output.errors ?? []).filter((e) => e.severity === "error");
  for (const e of output.errors ?? []) process.stderr.write(e.formattedMessage + "\n");
  if (errors.length) throw new Error(`solc reported ${errors.length} error(s)`);

  const artifacts = { [OUT_DIR]: {}, [TEST_OUT_DIR]: {} };
  for (const sourceName of Object.keys(sources)) {
    const outDir = TEST_DIRS.some((d) => sourceName.startsWith(d + "/")) ? TEST_OUT_DIR : OUT_DIR;
    for (const [contractName, c] of Object.entries(output.contracts[sourceName] ?? {})) {
      const metadata = JSON.parse(c.metadata);
      // Hash every source the contract was compiled from (its own and its imports).
      const sourceHashes = {};
      for (const dep of Object.keys(metadata.sources).sort()) {
        const text = sources[dep]?.content ?? resolveImport(dep).contents;
        sourceHashes[dep] = sha256(text);
      }
      artifacts[outDir][contractName] = {
        contractName,
        sourceName,
        compiler: { name: "solc", version: solc.version(), settings: { ...SETTINGS, outputSelection: undefined } },
        sources: sourceHashes,
        abi: c.abi,
        bytecode: "0x" + c.evm.bytecode.object,
        deployedBytecode: "0x" + c.evm.deployedBytecode.object,
        immutableReferences: c.evm.deployedBytecode.immutableReferences ?? {},
        methodIdentifiers: c.evm.methodIdentifiers,
        metadata: c.metadata,
      };
    }
  }
  return artifacts;
}

function serialize(artifact) {
  return JSON.stringify(artifact, null, 2) + "\n";
}

function writeOrCheck(outDir, artifacts, check) {
  const stale = [];
  for (const [name, artifact] of Object.entries(artifacts)) {
    const file = join(outDir, `${name}.json`);
    const text = serialize(artifact);
    if (check) {
      if (!existsSync(file) || readFileSync(file, "utf8") !== text) stale.push(file);
    } else {
      mkdirSync(dirname(file), { recursive: true });
      writeFileSync(file, text);
      process.stderr.write(`wrote ${file}\n`);
    }
  }
  if (check) {
    const expected = new Set(Object.keys(artifacts).map((n) => `${n}.json`));
    const present = existsSync(outDir) ? readdirSync(outDir).filter((f) => f.endsWith(".json")) : [];
    stale.push(...present.filter((f) => !expected.has(f)).map((f) => join(outDir, f) + " (no longer built)"));
  }
  return stale;
}

function main() {
  const check = process.argv.includes("--check");
  process.stderr.write(`compiling ${[...SRC_DIRS, ...TEST_DIRS].join(", ")} with solc ${solc.version()}\n`);
  const artifacts = compile();
  const stale = Object.entries(artifacts).flatMap(([outDir, built]) => writeOrCheck(outDir, built, check));
  if (check) {
    if (stale.length) {
      process.stderr.write(`artifacts differ from a fresh compile (run \`make contracts\`):\n  ${stale.join("\n  ")}\n`);
      process.exit(1);
    }
    const count = Object.values(artifacts).reduce((n, built) => n + Object.keys(built).length, 0);
    process.stderr.write(`artifacts match a fresh compile (${count} contracts)\n`);
  }
}

main();
