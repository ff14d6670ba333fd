// The air-hockey example in a real browser (Debian's Chromium driven by playwright-core) against
// the real server: two pages of one room take the left and right seats by compare-and-set, each
// sees the other's paddle through 60-per-second ephemeral messages, the right page's puck follows
// the left page's simulation, and a goal updates the score in channel storage, which a page
// loading afterwards shows at once. Screenshots go to test-artifacts/ (gitignored).
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
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
  });
});

after(async () => {
  await browser?.close();
  await server?.close();
});

/** A fresh page (its own context, so its own agent) that reports its errors in `page.problems`. */
async function newPage(t) {
  const context = await browser.newContext({ viewport: { width: 1000, height: 700 } });
  t.after(() => context.close());
  const page = await context.newPage();
  page.setDefaultTimeout(STEP_MS);
  page.problems = [];
  page.on("pageerror", (e) => page.problems.push(e.message));
  page.on("console", (m) => m.type() === "error" && page.problems.push(m.text()));
  return page;
}

/** A page of the game in `room`, once it has taken its seat (or chosen to watch). */
async function gamePage(t, room, role) {
  const page = await newPage(t);
  await page.goto(`${server.httpUrl}/examples/game/?room=${room}#key=${server.apiKey}`);
  await page.waitForFunction((role) => window.game.ready && window.game.role === role, role);
  return page;
}

const state = (page) => page.evaluate(() => ({ paddles: window.game.paddles, puck: window.game.puck, score: window.game.score }));

/** Moves the real mouse to table coordinates `(x, y)` of the page's canvas. */
async function mouseTo(page, x, y) {
  const box = await page.locator("#rink").boundingBox();
  await page.mouse.move(box.x + (x / 960) * box.width, box.y + (y / 540) * box.height);
}

test("two pages play: seats, paddles and the puck over ephemeral messages, the score in channel storage", { skip }, async (t) => {
  const room = unique("rink");
  const left = await gamePage(t, room, "left");
  const right = await gamePage(t, room, "right");
  assert.equal(await left.locator("#role").textContent(), "you are red (left)");
  assert.equal(await right.locator("#role").textContent(), "you are blue (right)");
  const seats = await left.evaluate(() => window.game.seats);
  assert.deepEqual(seats, await right.evaluate(() => window.game.seats));
  assert.notEqual(seats.left, seats.right);
  // Both players are here: no "waiting" banner.
  await left.locator("#banner").waitFor({ state: "hidden" });

  // The right player moves its paddle with the mouse: the left page sees it there.
  await mouseTo(right, 800, 150);
  await right.waitForFunction(() => Math.abs(window.game.paddles.right.x - 800) < 2 && Math.abs(window.game.paddles.right.y - 150) < 2);
  await left.waitForFunction(() => Math.abs(window.game.paddles.right.x - 800) < 2 && Math.abs(window.game.paddles.right.y - 150) < 2);
  // And the left player's paddle reaches the right page; it stays on its own half.
  await mouseTo(left, 700, 400);
  await right.waitForFunction(() => Math.abs(window.game.paddles.left.x - 446) < 2 && Math.abs(window.game.paddles.left.y - 400) < 2);

  // The left page runs the puck; the right page's puck follows it as it moves.
  await left.evaluate(() => Object.assign(window.game.puck, { x: 480, y: 100, vx: 0, vy: 300 }));
  const seen = await right.evaluate(() => window.game.puck.y);
  await right.waitForFunction((seen) => Math.abs(window.game.puck.y - seen) > 20 && window.game.puck.vy > 0, seen);
  const [a, b] = await Promise.all([state(left), state(right)]);
  assert.ok(Math.abs(a.puck.y - b.puck.y) < 40, `the right page's puck (${b.puck.y}) is near the left page's (${a.puck.y})`);
  await left.waitForFunction((y) => window.game.puck.y > y + 20, a.puck.y);
  assert.ok((await right.evaluate(() => window.game.received.puck)) > 10, "the right page received a stream of puck updates");
  await left.screenshot({ path: `${ARTIFACTS}game-left.png` });
  await right.screenshot({ path: `${ARTIFACTS}game-right.png` });

  // A goal: the puck is put behind the right goal line, so red (left) scores.
  await left.evaluate(() => Object.assign(window.game.puck, { x: 1000, y: 270, vx: 50, vy: 0 }));
  for (const page of [left, right]) {
    await page.waitForFunction(() => window.game.score.left === 1 && window.game.score.right === 0);
    assert.equal(await page.locator("#score-left").textContent(), "1");
  }
  await right.locator('#banner[data-goal="left"]').waitFor();
  await right.screenshot({ path: `${ARTIFACTS}game-goal.png` });
  // The score is in channel storage, as the HTTP API reads it with the original key.
  const res = await fetch(`${server.httpUrl}/v1/channels/game-${room}/kv/score`, { headers: { authorization: `Bearer ${server.apiKey}` } });
  assert.equal(res.status, 200);
  const entry = await res.json();
  assert.deepEqual(entry.value, { left: 1, right: 0 });

  // A third page, loading now, watches and shows the score at once.
  const watcher = await gamePage(t, room, "spectator");
  assert.deepEqual(await watcher.evaluate(() => window.game.score), { left: 1, right: 0 });
  assert.equal(await watcher.locator("#score-left").textContent(), "1");
  assert.equal(await watcher.locator("#role").textContent(), "watching");
  await watcher.waitForFunction(() => window.game.received.puck > 0 && window.game.received.paddle > 0);
  await watcher.screenshot({ path: `${ARTIFACTS}game-spectator.png` });

  // The right player leaves: the spectator takes the free seat.
  await right.context().close();
  await watcher.waitForFunction(() => window.game.role === "right");
  assert.equal(await left.evaluate(() => window.game.seats.right), await watcher.evaluate(() => window.game.me));
  assert.deepEqual([left.problems, right.problems, watcher.problems], [[], [], []], "the pages reported no errors");
});

test("the examples index links the game", { skip }, async (t) => {
  const page = await newPage(t);
  await page.goto(`${server.httpUrl}/examples/`);
  await page.click("text=Air hockey");
  await page.locator("#join").waitFor();
  assert.equal(new URL(page.url()).pathname, "/examples/game/");
  await page.screenshot({ path: `${ARTIFACTS}game-join.png` });
});
