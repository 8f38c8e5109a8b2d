// Copies the Swagger UI and Redoc bundles from node_modules (locked by package-lock.json) into
// src/chainsense/web/static/vendor/, where the API serves /docs and /redoc from (no CDN). The
// copies are committed, so a Python-only user needs no Node.js. Run by `make web`.
import { copyFileSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const vendor = join(root, "src/chainsense/web/static/vendor");
const packages = {
  "swagger-ui-dist": {
    dir: "swagger-ui",
    files: ["swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png", "LICENSE"],
  },
  redoc: { dir: "redoc", files: ["bundles/redoc.standalone.js", "LICENSE"] },
};
const versions = {};
for (const [name, { dir, files }] of Object.entries(packages)) {
  const source = join(root, "node_modules", name);
  const target = join(vendor, dir);
  rmSync(target, { recursive: true, force: true });
  mkdirSync(target, { recursive: true });
  for (const file of files) {
    copyFileSync(join(source, file), join(target, file.split("/").pop()));
  }
  versions[name] = JSON.parse(readFileSync(join(source, "package.json"), "utf8")).version;
}
writeFileSync(join(vendor, "versions.json"), JSON.stringify(versions, null, 2) + "\n");
console.log(`vendored ${Object.entries(versions).map(([n, v]) => `${n} ${v}`).join(", ")}`);
