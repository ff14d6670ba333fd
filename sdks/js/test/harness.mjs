// Starts and stops the real `switchboard serve` for the tests, and small waiting helpers.
//
// Binary: $SWITCHBOARD_BIN or ../../target/debug/switchboard (build it with
// `cargo build -p switchboard`). Each server gets a fresh data directory; a restart reuses the
// directory and the port, so clients reconnect to the same URL and find their history.

import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { randomBytes } from "node:crypto";

const here = dirname(fileURLToPath(import.meta.url));
export const BIN = process.env.SWITCHBOARD_BIN || resolve(here, "../../../target/debug/switchboard");
export const STEP_MS = 10000; // the longest wait for any one thing to happen

const live = new Set();
process.on("exit", () => {
  for (const child of live) child.kill("SIGKILL");
});

/** A running server: `{httpUrl, wsUrl, apiKey, dataDir, port, stop(signal), restart(signal)}`.
 * `env` adds variables such as `SWITCHBOARD_LIMITS_MAX_FRAME_BYTES`. */
export async function startServer({ dataDir, port = 0, env = {} } = {}) {
  const dir = dataDir ?? mkdtempSync(join(tmpdir(), "switchboard-js-"));
  const server = { dataDir: dir };
  Object.assign(server, await spawnServer(dir, port, env));
  server.apiKey = readFileSync(join(dir, "default.key"), "utf8").trim();
  /** Stops the process: SIGTERM is a graceful shutdown (close 1001), SIGKILL a crash. */
  server.stop = async (signal = "SIGTERM") => {
    const { child } = server;
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((r) => child.once("exit", r));
      child.kill(signal);
      const timer = setTimeout(() => child.kill("SIGKILL"), 10000);
      await exited;
      clearTimeout(timer);
    }
    live.delete(child);
  };
  /** Starts the server again on the same port and data directory. */
  server.start = async () => {
    Object.assign(server, await spawnServer(dir, server.port, env));
  };
  server.restart = async (signal = "SIGTERM") => {
    await server.stop(signal);
    await server.start();
  };
  /** Stops the server and deletes its data directory. */
  server.close = async () => {
    await server.stop("SIGTERM");
    rmSync(dir, { recursive: true, force: true });
  };
  return server;
}

function spawnServer(dataDir, port, env) {
  const child = spawn(BIN, ["serve", "--listen", `127.0.0.1:${port}`, "--data-dir", dataDir], {
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, RUST_LOG: process.env.RUST_LOG || "warn", ...env },
  });
  live.add(child);
  let stderr = "";
  child.stderr.on("data", (chunk) => {
    stderr += chunk;
    if (process.env.SWITCHBOARD_TEST_LOG) process.stderr.write(chunk);
  });
  return new Promise((resolvePromise, reject) => {
    let settled = false;
    const fail = (e) => {
      if (settled) return;
      settled = true;
      child.kill("SIGKILL");
      reject(e);
    };
    const timer = setTimeout(() => fail(new Error(`server did not report its address within 20 s; stderr:\n${stderr}`)), 20000);
    child.on("error", (e) => {
      clearTimeout(timer);
      fail(new Error(`cannot start ${BIN}: ${e.message} (build it: cargo build -p switchboard)`));
    });
    child.on("exit", (code, signal) => {
      clearTimeout(timer);
      fail(new Error(`server exited early (${code ?? signal}); stderr:\n${stderr}`));
    });
    createInterface({ input: child.stdout }).on("line", (line) => {
      const m = line.match(/Switchboard listening on (http:\/\/\S+)/);
      if (!m || settled) return;
      settled = true;
      clearTimeout(timer);
      const httpUrl = m[1];
      resolvePromise({ child, httpUrl, wsUrl: httpUrl.replace(/^http/, "ws"), port: Number(new URL(httpUrl).port) });
    });
  });
}

/** Rejects after `ms` with a message naming what was awaited. */
export function withTimeout(promise, what, ms = STEP_MS) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Resolves with the detail of the next `type` event of `target` that satisfies `pred`. */
export function nextEvent(target, type, pred = () => true, what = type) {
  let listener;
  const got = new Promise((r) => {
    listener = (event) => {
      if (pred(event.detail)) r(event.detail);
    };
    target.addEventListener(type, listener);
  });
  return withTimeout(got, what).finally(() => target.removeEventListener(type, listener));
}

/** Collects every message an agent delivers; `until(n)` waits for the n-th. */
export function collect(agent) {
  const messages = [];
  const waiters = new Set();
  agent.onMessage((m) => {
    messages.push(m);
    for (const w of waiters) w();
  });
  const until = (pred, what) => {
    let waiter;
    const done = new Promise((r) => {
      waiter = () => {
        if (pred(messages)) r(messages);
      };
      waiters.add(waiter);
      waiter();
    });
    return withTimeout(done, what).finally(() => waiters.delete(waiter));
  };
  return { messages, until };
}

export const unique = (prefix) => `${prefix}-${randomBytes(4).toString("hex")}`;
