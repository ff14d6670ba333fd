// The committed browser bundle is current, and the server serves it and the examples.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { BUNDLE, bundleText } from "../scripts/bundle.mjs";
import { startServer } from "./harness.mjs";

let server;

before(async () => {
  server = await startServer();
});

after(async () => {
  await server?.close();
});

test("the committed bundle is built from the current sources", async () => {
  const committed = readFileSync(BUNDLE, "utf8");
  assert.ok(committed === (await bundleText()), "bundle/switchboard.js is stale: run `npm run build` in sdks/js and commit it");
});

test("the server serves the committed bundle at /sdk/switchboard.js", async () => {
  const res = await fetch(`${server.httpUrl}/sdk/switchboard.js`);
  assert.equal(res.status, 200);
  assert.equal(res.headers.get("content-type"), "text/javascript; charset=utf-8");
  assert.equal(res.headers.get("cache-control"), "no-cache");
  assert.equal(await res.text(), readFileSync(BUNDLE, "utf8"), "the binary embeds the committed bundle (rebuild it: cargo build -p switchboard)");
  const etag = res.headers.get("etag");
  const again = await fetch(`${server.httpUrl}/sdk/switchboard.js`, { headers: { "if-none-match": etag } });
  assert.equal(again.status, 304);
});

test("the examples are served under /examples/", async () => {
  for (const [path, file] of [
    ["/examples/", "examples/index.html"],
    ["/examples/chat/", "examples/chat/index.html"],
    ["/examples/chat/chat.js", "examples/chat/chat.js"],
    ["/examples/chat/chat.css", "examples/chat/chat.css"],
    ["/examples/call/", "examples/call/index.html"],
    ["/examples/call/call.js", "examples/call/call.js"],
    ["/examples/call/call.css", "examples/call/call.css"],
    ["/examples/game/", "examples/game/index.html"],
    ["/examples/game/game.js", "examples/game/game.js"],
    ["/examples/game/game.css", "examples/game/game.css"],
  ]) {
    const res = await fetch(`${server.httpUrl}${path}`);
    assert.equal(res.status, 200, path);
    assert.equal(await res.text(), readFileSync(new URL(`../${file}`, import.meta.url), "utf8"), path);
  }
  const redirect = await fetch(`${server.httpUrl}/examples`, { redirect: "manual" });
  assert.equal(redirect.status, 308);
  assert.equal(redirect.headers.get("location"), "/examples/");
});

test("the bundle defines window.Switchboard in a classic script", async () => {
  const context = {};
  new Function("window", "globalThis", readFileSync(BUNDLE, "utf8") + "\nwindow.Switchboard = Switchboard;")(context, context);
  assert.equal(typeof context.Switchboard.AgentConnection, "function");
  assert.equal(typeof context.Switchboard.SwitchboardError, "function");
  assert.equal(typeof context.Switchboard.WebRtcHelper, "function");
});
