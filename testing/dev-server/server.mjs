// A dev server for the forwarding tests, shaped like the ones Codex starts (vite, next):
// a page whose script calls an API and opens a WebSocket on its own origin, plus routes
// that stream large bodies, echo uploads and hang. Test infrastructure only.
//
//   node server.mjs [--port N] [--host 127.0.0.1]
//
// Prints `listening on http://HOST:PORT` once it accepts connections.
import http from "node:http";
import { WebSocketServer } from "ws";

const args = process.argv.slice(2);
const option = (name, fallback) => {
  const at = args.indexOf(`--${name}`);
  return at >= 0 && at + 1 < args.length ? args[at + 1] : fallback;
};
const port = Number.parseInt(option("port", "0"), 10);
const host = option("host", "127.0.0.1");

const page = `<!doctype html>
<html>
  <head><meta charset="utf-8"><title>Linzumi preview test</title></head>
  <body>
    <h1>Dev server</h1>
    <p>API: <span id="api">waiting</span></p>
    <p>WebSocket: <span id="echo">waiting</span></p>
    <script src="/app.js"></script>
  </body>
</html>
`;

const app = `
fetch("/api/hello")
  .then((response) => response.json())
  .then((body) => { document.getElementById("api").textContent = body.hello; })
  .catch((error) => { document.getElementById("api").textContent = "failed: " + error; });
const scheme = location.protocol === "https:" ? "wss" : "ws";
const socket = new WebSocket(scheme + "://" + location.host + "/ws", "linzumi-test");
socket.onopen = () => socket.send("hello from the page");
socket.onmessage = (event) => { document.getElementById("echo").textContent = event.data; };
socket.onerror = () => { document.getElementById("echo").textContent = "failed"; };
`;

// A deterministic byte pattern, so a client can check every byte without a copy.
const PATTERN = Buffer.alloc(64 * 1024);
for (let i = 0; i < PATTERN.length; i++) PATTERN[i] = i % 251;

function streamBytes(response, size) {
  response.writeHead(200, { "content-type": "application/octet-stream", "content-length": size });
  let sent = 0;
  const pump = () => {
    while (sent < size) {
      const chunk = PATTERN.subarray(0, Math.min(PATTERN.length, size - sent));
      sent += chunk.length;
      // Respect backpressure: a slow reader slows this loop instead of filling memory.
      if (!response.write(chunk)) return response.once("drain", pump);
    }
    response.end();
  };
  pump();
}

const server = http.createServer((request, response) => {
  const url = new URL(request.url, "http://dev.invalid");
  switch (url.pathname) {
    case "/":
      response.writeHead(200, { "content-type": "text/html; charset=utf-8" });
      return response.end(page);
    case "/app.js":
      response.writeHead(200, { "content-type": "text/javascript" });
      return response.end(app);
    case "/api/hello":
      response.writeHead(200, { "content-type": "application/json", "x-dev-server": "yes" });
      return response.end(
        JSON.stringify({
          hello: "world",
          method: request.method,
          host: request.headers.host ?? null,
          origin: request.headers.origin ?? null,
          query: url.search,
          headers: request.headers,
        }),
      );
    case "/bytes":
      return streamBytes(response, Number.parseInt(url.searchParams.get("size") ?? "0", 10));
    case "/echo":
      response.writeHead(200, { "content-type": "application/octet-stream" });
      return request.pipe(response);
    case "/api/closes":
      response.writeHead(200, { "content-type": "application/json" });
      return response.end(JSON.stringify(closes));
    case "/hang":
      // Never answers: the tests kill the server while this request waits.
      return;
    default:
      response.writeHead(404, { "content-type": "text/plain" });
      return response.end("not found\n");
  }
});

// The code and reason of the last close a client sent, so tests can see it arrive.
// Every WebSocket close seen, in order: an earlier socket's close can land late.
const closes = [];
const sockets = new WebSocketServer({ server, path: "/ws", maxPayload: 16 * 1024 * 1024 });
sockets.on("connection", (socket) => {
  socket.on("message", (data, binary) => {
    if (binary) return socket.send(data, { binary: true });
    // `close <code> <reason>` makes the server close, so tests see its code arrive.
    const close = /^close (\d+) ?(.*)$/.exec(data.toString());
    if (close) return socket.close(Number(close[1]), close[2]);
    socket.send(`echo: ${data}`);
  });
  socket.on("close", (code, reason) => {
    closes.push({ code, reason: reason.toString() });
  });
  // `ws` answers pings itself and echoes the code of a close it receives.
});

server.listen(port, host, () => {
  const address = server.address();
  process.stdout.write(`listening on http://${host}:${address.port}\n`);
});
for (const signal of ["SIGTERM", "SIGINT"]) process.on(signal, () => process.exit(0));
