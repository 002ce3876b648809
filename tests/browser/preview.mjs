// A dev server's page through Kandan's preview in headless Chromium: the page loads its
// script, calls its API and opens a WebSocket on its own (preview) origin, all of which
// travel through the runner's forward tunnel.
// Usage: node preview.mjs <preview URL> <artifact folder>
import { chromium } from "playwright-core";
import { mkdirSync } from "node:fs";
import { join } from "node:path";

const [url, artifacts] = process.argv.slice(2);
if (!url || !artifacts) {
  console.error("usage: node preview.mjs <preview URL> <artifact folder>");
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
const page = await browser.newPage({ viewport: { width: 900, height: 600 } });
const failed = [];
page.on("requestfailed", (request) => failed.push(`${request.url()}: ${request.failure()?.errorText}`));
const timeout = 30_000;

try {
  const response = await page.goto(url);
  if (response.status() !== 200) {
    throw new Error(`the page answered ${response.status()}: ${await response.text()}`);
  }
  // Both are filled in by the page's script: the API over HTTP, the echo over WebSocket.
  await page.waitForFunction(() => document.getElementById("api")?.textContent === "world", null, { timeout });
  await page.waitForFunction(
    () => document.getElementById("echo")?.textContent === "echo: hello from the page",
    null,
    { timeout },
  );
  await page.screenshot({ path: join(artifacts, "preview.png") });
  console.log(JSON.stringify({ title: await page.title(), origin: new URL(page.url()).origin }));
} catch (error) {
  await page.screenshot({ path: join(artifacts, "preview-failure.png") }).catch(() => {});
  console.error(`${error.message}\nfailed requests: ${JSON.stringify(failed)}`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
