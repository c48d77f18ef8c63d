// Fails (exit 1) when src/api/schema.d.ts is not what openapi-typescript makes of openapi.json:
// the client and the spec drifted. Fix: `npm run gen:api` (after `make docs` for the spec).
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));
const cli = join(root, "node_modules", "openapi-typescript", "bin", "cli.js");
const dir = mkdtempSync(join(tmpdir(), "vidgen-api-"));
try {
  const fresh = join(dir, "schema.d.ts");
  execFileSync(process.execPath, [cli, join(root, "openapi.json"), "-o", fresh], {
    stdio: ["ignore", "ignore", "inherit"],
  });
  const committed = readFileSync(join(root, "src", "api", "schema.d.ts"), "utf8");
  if (readFileSync(fresh, "utf8") !== committed) {
    console.error(
      "src/api/schema.d.ts does not match openapi.json: run `npm run gen:api` in web/",
    );
    process.exit(1);
  }
  console.log("API client matches openapi.json");
} finally {
  rmSync(dir, { recursive: true, force: true });
}
