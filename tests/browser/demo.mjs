// The demo thread page in headless Chromium: a person types in the reply box, approves
// Codex's command with the Approve button, and sees the answer stream into the thread.
// Usage: node demo.mjs <demo page URL> <artifact folder>
import { chromium } from "playwright-core";
import { mkdirSync } from "node:fs";
import { join } from "node:path";

const [url, artifacts] = process.argv.slice(2);
if (!url || !artifacts) {
  console.error("usage: node demo.mjs <demo page URL> <artifact folder>");
  process.exit(2);
}
mkdirSync(artifacts, { recursive: true });

// A fresh profile each run (playwright's default), and the flags a closed network needs
// (Chromium otherwise keeps dialing Google).
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM_BIN || "/usr/bin/chromium",
  args: [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
});
const page = await browser.newPage({ viewport: { width: 1100, height: 900 } });
const timeout = 30_000;

try {
  await page.goto(url);
  await page.locator('.row[data-kind="local_runner_availability"]').waitFor({ timeout });

  const prompt = 'mock: {"steps": [{"exec": "echo approved-from-the-browser"}, {"text": "All done."}]}';
  await page.fill("#reply-input", prompt);
  await page.click("#reply-send");

  // Codex asks before running the command; the page offers Approve and Deny.
  const approve = page.locator(".approval button.approve").first();
  await approve.waitFor({ timeout });
  await approve.click();

  const command = page.locator('.row[data-kind="codex_command"]').first();
  await command.filter({ hasText: "approved-from-the-browser" }).waitFor({ timeout });
  const answer = page.locator('.row[data-kind="codex_assistant_message"]', { hasText: "All done." });
  await answer.first().waitFor({ timeout });
  await page.locator(".approval").waitFor({ state: "detached", timeout });
  // The person's message ends up marked processed.
  await page.locator('.row .state[data-status="processed"]').first().waitFor({ timeout });

  await page.screenshot({ path: join(artifacts, "demo-thread.png"), fullPage: true });
  console.log("demo page: reply, approval and streamed answer all worked");
} catch (error) {
  await page.screenshot({ path: join(artifacts, "demo-thread-failure.png"), fullPage: true }).catch(() => {});
  console.error(`demo page check failed: ${error.message}`);
  console.error((await page.locator("#threads").innerText().catch(() => "")).slice(0, 4000));
  await browser.close();
  process.exit(1);
}
await browser.close();
