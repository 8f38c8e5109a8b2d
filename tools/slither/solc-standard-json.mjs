// solc --standard-json, but with solc-js (npm `solc`, pinned in package-lock.json): reads a
// standard-JSON input on stdin and prints solc's standard-JSON output on stdout. Downloads nothing.
//
//   node tools/slither/solc-standard-json.mjs < input.json > output.json
//   node tools/slither/solc-standard-json.mjs --version
//
// Run from the repository root: imports (after remappings) are read from repository-relative paths,
// then from node_modules/, exactly like contracts/build.mjs. Used by tools/slither/audit.py.
import { existsSync, readFileSync } from "node:fs";
import { isAbsolute, join, normalize } from "node:path";
import solc from "solc";

function resolveImport(path) {
  const clean = normalize(path);
  if (isAbsolute(clean) || clean.startsWith("..")) return { error: `import outside the repository: ${path}` };
  for (const file of [clean, join("node_modules", clean)]) {
    if (existsSync(file)) return { contents: readFileSync(file, "utf8") };
  }
  return { error: `import not found: ${path}` };
}

if (process.argv.includes("--version")) {
  process.stdout.write(`solc-js, the solidity compiler (npm solc)\nVersion: ${solc.version()}\n`);
} else {
  const input = readFileSync(0, "utf8");
  process.stdout.write(solc.compile(input, { import: resolveImport }));
}
