// Prints the gzipped size of the built JavaScript and CSS; fails above the budget (100 kB of JS).
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";

const BUDGET_JS = 100 * 1000;
const assets = fileURLToPath(new URL("../dist/assets", import.meta.url));
const sizes = { js: [0, 0], css: [0, 0] };
for (const name of readdirSync(assets)) {
  const kind = name.endsWith(".js") ? "js" : name.endsWith(".css") ? "css" : null;
  if (!kind) continue;
  const bytes = readFileSync(join(assets, name));
  sizes[kind][0] += bytes.length;
  sizes[kind][1] += gzipSync(bytes, { level: 9 }).length;
}
const kb = (n) => (n / 1000).toFixed(1) + " kB";
console.log(`JS  ${kb(sizes.js[0])}, gzipped ${kb(sizes.js[1])} (budget ${kb(BUDGET_JS)})`);
console.log(`CSS ${kb(sizes.css[0])}, gzipped ${kb(sizes.css[1])}`);
if (sizes.js[1] > BUDGET_JS) {
  console.error("the page's JavaScript is over its budget");
  process.exit(1);
}
