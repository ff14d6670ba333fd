// Builds the browser bundle that `switchboard serve` embeds and serves at /sdk/switchboard.js:
// one classic script defining `window.Switchboard`. The bundle is committed (the server embeds
// it at compile time), so `node scripts/bundle.mjs --check` fails when it is stale.
import { build } from "esbuild";
import { readFileSync, writeFileSync, mkdirSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
export const BUNDLE = resolve(root, "bundle/switchboard.js");

/** The bundle's text, built from src/ in memory. */
export async function bundleText() {
  const pkg = JSON.parse(readFileSync(resolve(root, "package.json"), "utf8"));
  const result = await build({
    entryPoints: [resolve(root, "src/browser.ts")],
    bundle: true,
    write: false,
    format: "iife",
    globalName: "Switchboard",
    target: "es2020",
    platform: "browser",
    charset: "utf8",
    legalComments: "none",
    banner: { js: `/* Switchboard JavaScript SDK ${pkg.version} (sdks/js): window.Switchboard. Built by scripts/bundle.mjs; do not edit. */` },
    logLevel: "silent",
  });
  return result.outputFiles[0].text;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const text = await bundleText();
  if (process.argv.includes("--check")) {
    const committed = readFileSync(BUNDLE, "utf8");
    if (committed !== text) {
      console.error(`${BUNDLE} is stale: run \`npm run build\` in sdks/js and commit it`);
      process.exit(1);
    }
  } else {
    mkdirSync(dirname(BUNDLE), { recursive: true });
    writeFileSync(BUNDLE, text);
  }
}
