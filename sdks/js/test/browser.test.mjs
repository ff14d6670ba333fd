// The chat example in a real browser (Debian's Chromium driven by playwright-core), served by
// the real server: two pages chat and see each other, direct messages stay private, and a
// message survives a server restart; and one page streams a Blob to another through the server.
// Screenshots go to test-artifacts/ (gitignored).
//
// Chromium: /usr/bin/chromium (`apt-get install -y chromium`) or $CHROMIUM. Set
// SWITCHBOARD_SKIP_BROWSER=1 to skip these tests on a machine without it.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { createHash } from "node:crypto";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import WebSocket from "ws";
import { AgentConnection } from "../dist/index.js";
import { startServer, collect, unique, STEP_MS } from "./harness.mjs";
import { BUNDLE } from "../scripts/bundle.mjs";

const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const ARTIFACTS = fileURLToPath(new URL("../test-artifacts/", import.meta.url));
const skip = process.env.SWITCHBOARD_SKIP_BROWSER ? "SWITCHBOARD_SKIP_BROWSER is set" : false;

let server;
let browser;

before(async () => {
  if (skip) return;
  assert.ok(existsSync(CHROMIUM), `no Chromium at ${CHROMIUM}: apt-get install -y chromium (or set SWITCHBOARD_SKIP_BROWSER=1)`);
  mkdirSync(ARTIFACTS, { recursive: true });
  server = await startServer();
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-quic"],
  });
});

after(async () => {
  await browser?.close();
  await server?.close();
});

/** A page that opened the chat example and joined `channel` as `agent`. */
async function chatPage(t, channel, agent) {
  const context = await browser.newContext({ viewport: { width: 900, height: 600 } });
  t.after(() => context.close());
  const page = await context.newPage();
  page.setDefaultTimeout(STEP_MS);
  const problems = [];
  page.problems = problems;
  page.on("pageerror", (e) => problems.push(e.message));
  // Chromium logs every refused WebSocket connection while the server restarts; those are expected.
  page.on("console", (m) => m.type() === "error" && !/WebSocket|net::ERR_/.test(m.text()) && problems.push(m.text()));
  await page.goto(`${server.httpUrl}/examples/chat/?channel=${channel}&agent=${agent}#key=${server.apiKey}`);
  await page.click("#join button[type=submit]");
  await page.locator('#status[data-state="connected"]').waitFor();
  return page;
}

const texts = (page) => page.locator("#messages li .text").allTextContents();
const presence = (page) => page.locator("#presence li").allTextContents();

async function say(page, text, to = "") {
  await page.selectOption("#to", to);
  await page.fill("#text", text);
  await page.click("#composer button[type=submit]");
}

test("two pages chat, see each other's presence, and keep direct messages private", { skip }, async (t) => {
  const channel = unique("chat");
  const alice = await chatPage(t, channel, "alice");
  const bob = await chatPage(t, channel, "bob");
  // A third agent from Node, to prove the direct message does not reach it.
  const carol = new AgentConnection();
  t.after(() => carol.disconnect());
  const carolGot = collect(carol);
  await carol.connect({ url: server.httpUrl, apiKey: server.apiKey, WebSocket, channelName: channel, agentName: "carol" });

  await alice.locator('#presence li[data-agent="carol"]').waitFor();
  assert.deepEqual(await presence(alice), ["alice", "bob", "carol"]);
  await bob.locator('#presence li[data-agent="carol"]').waitFor();
  assert.deepEqual(await presence(bob), ["alice", "bob", "carol"]);

  await say(alice, "hello bob");
  await bob.locator("#messages li", { hasText: "hello bob" }).waitFor();
  await say(bob, "psst, just for you", "alice");
  await alice.locator("#messages li.direct", { hasText: "psst" }).waitFor();
  assert.match(await alice.locator("#messages li.direct .who").textContent(), /bob → alice \(direct\)/);
  await say(bob, "back to everyone");
  await alice.locator("#messages li", { hasText: "back to everyone" }).waitFor();
  await carolGot.until((ms) => ms.some((m) => m.data.text === "back to everyone"), "carol gets the broadcast");
  assert.deepEqual(carolGot.messages.map((m) => m.data.text), ["hello bob", "back to everyone"], "carol never sees the dm");
  assert.deepEqual(await texts(alice), ["hello bob", "psst, just for you", "back to everyone"]);
  assert.deepEqual(await texts(bob), ["hello bob", "psst, just for you", "back to everyone"]);

  // Bob leaves: he disappears from alice's list.
  await bob.click("#leave");
  await alice.locator('#presence li[data-agent="bob"]').waitFor({ state: "detached" });
  assert.deepEqual(await presence(alice), ["alice", "carol"]);
  await bob.locator('#status[data-state="closed"]').waitFor();
  assert.deepEqual(await presence(bob), []);
  assert.equal(await bob.locator("#text").isDisabled(), true);

  await alice.screenshot({ path: `${ARTIFACTS}chat-alice.png` });
  await bob.screenshot({ path: `${ARTIFACTS}chat-bob-left.png` });
  assert.deepEqual([alice.problems, bob.problems], [[], []], "the pages reported no errors");
});

test("a page's message survives a server restart: the page resumes, a new page replays it", { skip }, async (t) => {
  const channel = unique("restart");
  const alice = await chatPage(t, channel, "alice");
  await say(alice, "written before the crash");
  await alice.locator("#messages li", { hasText: "before the crash" }).waitFor();

  await server.stop("SIGKILL");
  await alice.locator('#status[data-state="reconnecting"]').waitFor();
  await server.start();
  await alice.locator("#status", { hasText: "reconnected" }).waitFor({ timeout: 3 * STEP_MS });

  // A page opened after the restart loads the message from history.
  const bob = await chatPage(t, channel, "bob");
  await bob.locator("#messages li", { hasText: "before the crash" }).waitFor();
  await say(alice, "and after it");
  await bob.locator("#messages li", { hasText: "and after it" }).waitFor();
  await alice.locator("#messages li", { hasText: "and after it" }).waitFor();
  // Nothing shown twice, nothing missing, in offset order.
  for (const page of [alice, bob]) {
    assert.deepEqual(await texts(page), ["written before the crash", "and after it"]);
    assert.deepEqual(await page.locator("#messages li").evaluateAll((lis) => lis.map((li) => li.dataset.offset)), ["1", "2"]);
  }
  await bob.screenshot({ path: `${ARTIFACTS}chat-after-restart.png` });
  assert.deepEqual([alice.problems, bob.problems], [[], []], "the pages reported no errors");
});

test("the examples index links the chat", { skip }, async (t) => {
  const context = await browser.newContext({ viewport: { width: 900, height: 500 } });
  t.after(() => context.close());
  const page = await context.newPage();
  await page.goto(`${server.httpUrl}/examples`);
  assert.equal(new URL(page.url()).pathname, "/examples/");
  await page.click("text=Chat");
  await page.locator("#join").waitFor();
  assert.equal(await page.evaluate(() => typeof window.Switchboard.AgentConnection), "function");
  await page.goto(`${server.httpUrl}/examples/`);
  await page.screenshot({ path: `${ARTIFACTS}examples-index.png` });
});

/** The bytes the streaming pages send (the same function runs in the page). */
function streamPayload(length) {
  const bytes = new Uint8Array(length);
  for (let i = 0; i < length; i++) bytes[i] = (i * 31 + (i >> 11)) & 0xff;
  return bytes;
}

test("a page streams a 2 MiB Blob to another page, which verifies it with WebCrypto", { skip }, async (t) => {
  const channel = unique("stream");
  // The committed bundle itself (the server serves the copy it was compiled with).
  const bundle = readFileSync(BUNDLE, "utf8");
  const open = async (agentName) => {
    const context = await browser.newContext();
    t.after(() => context.close());
    const page = await context.newPage();
    page.setDefaultTimeout(STEP_MS);
    const problems = [];
    page.on("pageerror", (e) => problems.push(e.message));
    page.problems = problems;
    await page.goto(`${server.httpUrl}/examples/`);
    await page.addScriptTag({ content: bundle });
    await page.evaluate(
      async ({ url, apiKey, channelName, agentName }) => {
        const agent = new window.Switchboard.AgentConnection();
        window.agent = agent;
        window.offer = new Promise((resolve) => agent.onStreamOffer(resolve));
        await agent.connect({ url, apiKey, channelName, agentName });
      },
      { url: server.httpUrl, apiKey: server.apiKey, channelName: channel, agentName },
    );
    return page;
  };
  const receiver = await open("receiver");
  const sender = await open("sender");
  const length = 2 * 1024 * 1024 + 17;

  const receiving = receiver.evaluate(async () => {
    const offer = await window.offer;
    let progress = 0;
    const result = await window.agent.receiveStream(offer, { onProgress: (p) => (progress = p.offset) });
    const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", result.bytes));
    const webCrypto = Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
    const { name, size, contentType } = offer;
    return { offer: { name, size, contentType }, checksum: result.checksum, totalSize: result.totalSize, length: result.bytes.length, webCrypto, progress };
  });
  const sent = await sender.evaluate(
    async ({ length, make }) => {
      const bytes = new Function(`return ${make}`)()(length);
      const complete = new Promise((resolve) => window.agent.onStreamComplete(resolve));
      const blob = new Blob([bytes], { type: "application/octet-stream" });
      const progress = [];
      const sent = await window.agent.sendStream("receiver", blob, { name: "blob.bin", onProgress: (p) => progress.push(p.offset) });
      return { sent, complete: await complete, progress };
    },
    { length, make: streamPayload.toString() },
  );
  const got = await receiving;
  const checksum = createHash("sha256").update(streamPayload(length)).digest("hex");
  assert.deepEqual(sent.sent, { streamId: sent.sent.streamId, totalSize: length, checksum });
  assert.deepEqual(sent.complete, { streamId: sent.sent.streamId, totalSize: length });
  assert.equal(sent.progress.at(-1), length);
  assert.deepEqual(got, {
    offer: { name: "blob.bin", size: length, contentType: "application/octet-stream" },
    checksum,
    totalSize: length,
    length,
    webCrypto: checksum,
    progress: length,
  });
  assert.deepEqual([sender.problems, receiver.problems], [[], []], "the pages reported no errors");
});
