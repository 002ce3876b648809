// Drives kandan-test-server with the official phoenix.js client, to prove the server speaks
// Phoenix Channels V2 the way a real Phoenix server does, reconnects and rejoins included.
//
// Usage: node conformance.mjs <server-http-url> <token>
// Exits 0 when every check passes; otherwise prints the failed check, the client's log, and
// exits 1. Run by testing/kandan-test-server/tests/phoenix_js_conformance.rs.

import { deepStrictEqual } from "node:assert/strict";
import { Socket } from "phoenix";
import WebSocket from "ws";

const STEP_TIMEOUT_MS = 10_000;
const TOPIC = "conformance:room";

const [httpUrl, token] = process.argv.slice(2);
if (!httpUrl || !token) {
  console.error("usage: node conformance.mjs <server-http-url> <token>");
  process.exit(2);
}
const wsUrl = httpUrl.replace(/^http/, "ws");

// --- bookkeeping: counters bumped by phoenix.js callbacks, and waiters woken by them -------
const seen = { opens: 0, closes: 0, joinOks: 0, channelErrors: 0, shouts: [], channelCloses: 0 };
const clientLog = [];
const waiters = new Set();

function notify() {
  for (const waiter of [...waiters]) {
    if (waiter.done()) {
      waiters.delete(waiter);
      waiter.resolve();
    }
  }
}

/** Resolves once `done()` holds; re-checked whenever a phoenix.js callback fires. */
function until(done, what) {
  if (done()) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      waiters.delete(waiter);
      reject(new Error(`timed out after ${STEP_TIMEOUT_MS} ms waiting for ${what}`));
    }, STEP_TIMEOUT_MS);
    const waiter = { done, resolve: () => { clearTimeout(timer); resolve(); } };
    waiters.add(waiter);
  });
}

/** Pushes and resolves with `{status, response}`; a timeout is a failure. */
function push(channel, event, payload) {
  return new Promise((resolve, reject) => {
    channel
      .push(event, payload)
      .receive("ok", (response) => resolve({ status: "ok", response }))
      .receive("error", (response) => resolve({ status: "error", response }))
      .receive("timeout", () => reject(new Error(`push ${event} got no reply`)));
  });
}

async function adminPost(path) {
  const response = await fetch(`${httpUrl}/__admin${path}`, { method: "POST" });
  if (!response.ok) throw new Error(`admin ${path} answered HTTP ${response.status}`);
}

let passed = 0;
async function check(name, body) {
  try {
    await body();
  } catch (error) {
    throw new Error(`check "${name}" failed: ${error.message}`);
  }
  passed += 1;
  console.log(`ok - ${name}`);
}

// --- the client under test ------------------------------------------------------------------
const socket = new Socket(`${wsUrl}/socket`, {
  params: { token },
  // Node 20 has no global WebSocket; phoenix.js takes the constructor as its transport.
  transport: WebSocket,
  // Short heartbeats so a wrong heartbeat reply shows up as a spurious reconnect below.
  heartbeatIntervalMs: 300,
  logger: (kind, msg, data) => clientLog.push(`${kind}: ${msg} ${JSON.stringify(data) ?? ""}`),
});
socket.onOpen(() => { seen.opens += 1; notify(); });
socket.onClose(() => { seen.closes += 1; notify(); });

const channel = socket.channel(TOPIC, { hello: "world" });
channel.on("shout", (payload) => { seen.shouts.push(payload); notify(); });
channel.onError(() => { seen.channelErrors += 1; notify(); });
channel.onClose(() => { seen.channelCloses += 1; notify(); });

async function main() {
  await check("connects with the token param", async () => {
    socket.connect();
    await until(() => seen.opens === 1, "the socket to open");
  });

  await check("answers heartbeats (socket.ping)", async () => {
    const rtt = await new Promise((resolve, reject) => {
      if (!socket.ping(resolve)) reject(new Error("socket not connected"));
      setTimeout(() => reject(new Error("no heartbeat reply")), STEP_TIMEOUT_MS);
    });
    if (typeof rtt !== "number") throw new Error(`bad rtt ${rtt}`);
  });

  await check("joins and gets the join response", async () => {
    let joinResponse;
    let joinError;
    // These hooks stay on the join push, so they also fire for every automatic rejoin.
    channel
      .join()
      .receive("ok", (response) => { joinResponse = response; seen.joinOks += 1; notify(); })
      .receive("error", (response) => { joinError = response; notify(); });
    await until(() => seen.joinOks === 1 || joinError !== undefined, "the join reply");
    if (joinError !== undefined) throw new Error(`join refused: ${JSON.stringify(joinError)}`);
    deepStrictEqual(joinResponse, { joined: TOPIC, payload: { hello: "world" } });
  });

  await check("push gets an ok reply", async () => {
    deepStrictEqual(await push(channel, "echo", { n: 1 }), {
      status: "ok",
      response: { event: "echo", payload: { n: 1 } },
    });
  });

  await check("push gets an error reply", async () => {
    deepStrictEqual(await push(channel, "fail", {}), {
      status: "error",
      response: { reason: "requested failure" },
    });
  });

  await check("receives a broadcast", async () => {
    const reply = await push(channel, "broadcast", { event: "shout", payload: { text: "hi" } });
    deepStrictEqual(reply, { status: "ok", response: {} });
    await until(() => seen.shouts.length === 1, "the shout broadcast");
    deepStrictEqual(seen.shouts[0], { text: "hi" });
  });

  await check("binary push is decoded", async () => {
    const bytes = new Uint8Array([1, 2, 3]).buffer;
    deepStrictEqual(await push(channel, "echo", bytes), {
      status: "ok",
      response: { event: "echo", payload: { binary_base64: "AQID" } },
    });
  });

  await check("reconnects and rejoins after the server drops connections", async () => {
    await adminPost("/drop-connections");
    await until(() => seen.closes === 1, "the socket to notice the drop");
    await until(() => seen.opens === 2, "the socket to reconnect");
    await until(() => seen.joinOks === 2, "the channel to rejoin");
    deepStrictEqual((await push(channel, "echo", { n: 2 })).status, "ok");
  });

  await check("rejoins after a channel crash (phx_error)", async () => {
    // A crashing channel never replies, so nobody waits for this push's reply.
    channel.push("crash", {});
    await until(() => seen.channelErrors === 1, "phx_error to error the channel");
    await until(() => seen.joinOks === 3, "the automatic rejoin");
    deepStrictEqual((await push(channel, "echo", { n: 3 })).status, "ok");
  });

  await check("leaves the channel", async () => {
    await new Promise((resolve, reject) => {
      channel.leave().receive("ok", resolve).receive("timeout", () => reject(new Error("leave timed out")));
    });
    await until(() => seen.channelCloses === 1, "the channel to close");
  });

  await check("no spurious reconnects (heartbeats were answered all along)", async () => {
    deepStrictEqual({ opens: seen.opens, closes: seen.closes }, { opens: 2, closes: 1 });
  });
}

try {
  await main();
  console.log(`phoenix.js conformance: all ${passed} checks passed`);
  socket.disconnect();
  process.exit(0);
} catch (error) {
  console.error(`phoenix.js conformance FAILED after ${passed} passing checks: ${error.message}`);
  console.error("phoenix.js log (last 40 lines):");
  for (const line of clientLog.slice(-40)) console.error(`  ${line}`);
  process.exit(1);
}
