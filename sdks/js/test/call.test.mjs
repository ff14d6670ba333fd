// WebRTC calls in a real browser (Debian's Chromium driven by playwright-core, with its fake
// camera and microphone), set up through the real server's signaling relay: two pages of the call
// example open a data channel and chat over it, a video call shows each page the other's frames,
// and WebRtcHelper's own API (auto-answer, hang-up, a busy peer) works between two pages.
// Screenshots go to test-artifacts/ (gitignored).
//
// Chromium: /usr/bin/chromium or $CHROMIUM; SWITCHBOARD_SKIP_BROWSER=1 skips these tests.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdirSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { startServer, unique, STEP_MS } from "./harness.mjs";

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
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-quic",
      "--use-fake-ui-for-media-stream",
      "--use-fake-device-for-media-stream",
    ],
  });
});

after(async () => {
  await browser?.close();
  await server?.close();
});

/** A fresh page (its own context, so its own agent) that reports its errors in `page.problems`. */
async function newPage(t) {
  const context = await browser.newContext({ viewport: { width: 1000, height: 640 } });
  t.after(() => context.close());
  const page = await context.newPage();
  page.setDefaultTimeout(STEP_MS);
  page.problems = [];
  page.on("pageerror", (e) => page.problems.push(e.message));
  page.on("console", (m) => m.type() === "error" && page.problems.push(m.text()));
  return page;
}

/** A page of the call example joined to `channel` as `agent`. */
async function callPage(t, channel, agent, { camera }) {
  const page = await newPage(t);
  await page.goto(`${server.httpUrl}/examples/call/?channel=${channel}&agent=${agent}&camera=${camera ? 1 : 0}#key=${server.apiKey}`);
  await page.click("#join button[type=submit]");
  await page.locator('#status[data-state="connected"]').waitFor();
  return page;
}

/** Places a call from `caller` to `callee` in the example and waits until both are connected. */
async function connectCall(caller, callee, calleeName) {
  await caller.locator(`#presence li[data-agent="${calleeName}"] button`).click();
  await callee.locator("#incoming:not([hidden])").waitFor();
  await callee.click("#answer");
  for (const page of [caller, callee]) {
    await page.locator('#call-state[data-state="connected"]').waitFor();
    await page.locator("#text:enabled").waitFor(); // the data channel is open
  }
}

async function say(page, text) {
  await page.fill("#text", text);
  await page.click("#composer button[type=submit]");
}

const chat = (page) => page.locator("#messages li .text").allTextContents();

/** The size of the next frame the `#remote` video element renders. */
const remoteFrame = (page) =>
  page.evaluate(
    () =>
      new Promise((resolve) => {
        const video = document.getElementById("remote");
        video.requestVideoFrameCallback((_now, meta) => resolve({ width: meta.width, height: meta.height, videoWidth: video.videoWidth }));
      }),
  );

test("two pages open a WebRTC data channel through the relay and chat over it", { skip }, async (t) => {
  const channel = unique("call");
  const alice = await callPage(t, channel, "alice", { camera: false });
  const bob = await callPage(t, channel, "bob", { camera: false });
  await alice.locator('#presence li[data-agent="bob"]').waitFor();
  assert.match(await bob.locator("#caller").textContent(), /^$/);

  await connectCall(alice, bob, "bob");
  assert.equal(await bob.locator("#caller").textContent(), "alice");
  await say(alice, "hello over webrtc");
  await bob.locator("#messages li", { hasText: "hello over webrtc" }).waitFor();
  await say(bob, "hi alice, peer to peer");
  await alice.locator("#messages li", { hasText: "peer to peer" }).waitFor();
  assert.deepEqual(await chat(alice), ["hello over webrtc", "hi alice, peer to peer"]);
  assert.deepEqual(await chat(bob), ["hello over webrtc", "hi alice, peer to peer"]);
  await alice.screenshot({ path: `${ARTIFACTS}call-data-alice.png` });
  await bob.screenshot({ path: `${ARTIFACTS}call-data-bob.png` });

  // Bob hangs up: alice's page hears the bye.
  await bob.click("#hangup");
  await alice.locator('#call-state[data-state="ended"]', { hasText: "bob: hang_up" }).waitFor();
  await bob.locator('#call-state[data-state="ended"]', { hasText: "hang_up" }).waitFor();
  assert.equal(await alice.locator("#text").isDisabled(), true);
  assert.deepEqual([alice.problems, bob.problems], [[], []], "the pages reported no errors");
});

test("a video call: each page receives the other's camera (Chromium's fake device)", { skip }, async (t) => {
  const channel = unique("video");
  const alice = await callPage(t, channel, "alice", { camera: true });
  const bob = await callPage(t, channel, "bob", { camera: true });
  await alice.locator('#presence li[data-agent="bob"]').waitFor();
  await connectCall(alice, bob, "bob");

  for (const page of [alice, bob]) {
    const frame = await remoteFrame(page);
    assert.ok(frame.width > 0 && frame.height > 0, JSON.stringify(frame));
    assert.ok(frame.videoWidth > 0, JSON.stringify(frame));
    const tracks = await page.evaluate(() => document.getElementById("remote").srcObject.getTracks().map((track) => track.kind).sort());
    assert.deepEqual(tracks, ["audio", "video"]);
  }
  await say(bob, "I can see you");
  await alice.locator("#messages li", { hasText: "I can see you" }).waitFor();
  await remoteFrame(alice); // a fresh frame for the screenshot
  await alice.screenshot({ path: `${ARTIFACTS}call-video-alice.png` });
  await bob.screenshot({ path: `${ARTIFACTS}call-video-bob.png` });

  // Alice leaves the channel altogether: bob's call ends because she left.
  await alice.click("#leave");
  await bob.locator('#call-state[data-state="ended"]').waitFor();
  assert.match(await bob.locator("#call-state").textContent(), /alice: (hang_up|peer_left)/);
  assert.deepEqual([alice.problems, bob.problems], [[], []], "the pages reported no errors");
});

test("WebRtcHelper in pages: auto-answer, a data channel both ways, a busy callee, hang-up", { skip }, async (t) => {
  const channel = unique("helper");
  const names = ["alice", "bob", "carol"];
  const [alice, bob, carol] = await Promise.all(names.map(() => newPage(t)));
  for (const [page, name] of [[alice, "alice"], [bob, "bob"], [carol, "carol"]]) {
    // Any page with the bundle will do: these drive the helper directly.
    await page.goto(`${server.httpUrl}/examples/call/`);
    await page.evaluate(
      async ({ url, apiKey, channel, name }) => {
        const { AgentConnection, WebRtcHelper } = window.Switchboard;
        const agent = new AgentConnection();
        await agent.connect({ url, apiKey, channelName: channel, agentName: name, enableWebrtcRelay: true });
        // Bob answers every call by himself and echoes what his data channel hears.
        const rtc = new WebRtcHelper(agent, { autoAnswer: name === "bob" });
        window.incoming = [];
        rtc.onIncomingCall((call) => {
          window.incoming.push(call);
          call.onDataChannel((dc) => (dc.onmessage = ({ data }) => dc.send(`echo:${data}`)));
        });
        window.rtc = rtc;
      },
      { url: server.httpUrl, apiKey: server.apiKey, channel, name },
    );
  }

  const first = await alice.evaluate(async () => {
    const call = await window.rtc.call("bob", { dataChannel: "chat" });
    window.call = call;
    await call.connected;
    const dc = call.dataChannel;
    if (dc.readyState !== "open") await new Promise((r) => dc.addEventListener("open", r, { once: true }));
    const reply = new Promise((r) => (dc.onmessage = ({ data }) => r(data)));
    dc.send("ping");
    return { label: dc.label, labels: [...call.dataChannels.keys()], state: call.state, direction: call.direction, calls: window.rtc.calls.length, reply: await reply };
  });
  assert.deepEqual(first, { label: "chat", labels: ["chat"], state: "connected", direction: "outgoing", calls: 1, reply: "echo:ping" });
  assert.deepEqual(
    await bob.evaluate(() => window.incoming.map((c) => [c.peer, c.direction, c.state, [...c.dataChannels.keys()]])),
    [["alice", "incoming", "connected", ["chat"]]],
  );

  // Carol does not answer by herself: her hang-up while ringing declines the call.
  await alice.evaluate(async () => {
    const call = await window.rtc.call("carol", { dataChannel: true });
    window.toCarol = Promise.all([new Promise((r) => call.onEnded(r)), call.connected.catch((e) => e.code)]).then(([end, failure]) => ({ end, failure, state: call.state }));
  });
  await carol.waitForFunction(() => window.incoming.length === 1);
  assert.deepEqual(await carol.evaluate(() => [window.incoming[0].peer, window.incoming[0].state]), ["alice", "ringing"]);
  await carol.evaluate(() => window.incoming[0].hangUp());
  assert.deepEqual(await alice.evaluate(() => window.toCarol), {
    end: { reason: "declined", remote: true },
    failure: "call_ended",
    state: "ended",
  });
  assert.deepEqual(await carol.evaluate(() => [window.incoming[0].state, window.incoming[0].end]), ["ended", { reason: "declined", remote: false }]);

  // Calling an agent that is not in the channel fails with the relay's code.
  assert.equal(await alice.evaluate(() => window.rtc.call("nobody").then(() => "resolved", (e) => e.code)), "agent_not_present");

  // Alice hangs up the call with bob: bob's side ends by her bye.
  await alice.evaluate(() => window.call.hangUp());
  await bob.waitForFunction(() => window.incoming[0].state === "ended");
  assert.deepEqual(await bob.evaluate(() => window.incoming[0].end), { reason: "hang_up", remote: true });
  assert.deepEqual(await Promise.all([alice, bob].map((p) => p.evaluate(() => window.rtc.calls.length))), [0, 0]);
  assert.deepEqual([alice.problems, bob.problems, carol.problems], [[], [], []], "the pages reported no errors");
});

test("the examples index links the call example", { skip }, async (t) => {
  const page = await newPage(t);
  await page.goto(`${server.httpUrl}/examples/`);
  await page.click("text=Video call");
  await page.locator("#join").waitFor();
  assert.equal(new URL(page.url()).pathname, "/examples/call/");
  await page.screenshot({ path: `${ARTIFACTS}call-join.png` });
});
