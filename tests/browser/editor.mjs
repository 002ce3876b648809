// The local editor (code-server) through Kandan's preview in headless Chromium: the
// workbench loads, connects its WebSocket to the code-server on the runner's computer
// (through the forward tunnel, with Origin and Host matching), and lists the shared
// folder's files in the explorer.
// Usage: node editor.mjs <editor URL on the preview origin> <file name to see> <artifact folder>
import { chromium } from "playwright-core";
import { mkdirSync } from "node:fs";
import { join } from "node:path";

const [url, fileName, artifacts] = process.argv.slice(2);
if (!url || !fileName || !artifacts) {
  console.error("usage: node editor.mjs <editor URL> <file name> <artifact folder>");
  process.exit(2);
}
mkdirSync(artifacts, { recursive: true });

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM_BIN || "/usr/bin/chromium",
  args: [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
});
const page = await browser.newPage({ viewport: { width: 1200, height: 800 } });
const failed = [];
const sockets = [];
page.on("requestfailed", (request) => failed.push(`${request.url()}: ${request.failure()?.errorText}`));
page.on("websocket", (socket) => {
  const entry = { url: socket.url(), closed: false };
  sockets.push(entry);
  socket.on("close", () => { entry.closed = true; });
});
const timeout = 60_000;

try {
  const response = await page.goto(url);
  if (response.status() !== 200) {
    throw new Error(`the editor answered ${response.status()}: ${await response.text()}`);
  }
  await page.waitForSelector(".monaco-workbench", { timeout });
  // The explorer lists the folder only once the workbench's WebSocket to the server works.
  await page.waitForSelector(`.explorer-folders-view [aria-label^="${fileName}"], .explorer-folders-view :text("${fileName}")`, { timeout });
  await page.screenshot({ path: join(artifacts, "editor.png") });
  console.log(JSON.stringify({
    title: await page.title(),
    origin: new URL(page.url()).origin,
    websockets: sockets.map((socket) => ({ path: new URL(socket.url).pathname, closed: socket.closed })),
  }));
} catch (error) {
  await page.screenshot({ path: join(artifacts, "editor-failure.png") }).catch(() => {});
  console.error(`${error.message}\nfailed requests: ${JSON.stringify(failed)}\nwebsockets: ${JSON.stringify(sockets)}`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
