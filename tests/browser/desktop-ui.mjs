// The desktop window's web UI (ui/) in headless Chromium, against a fake Tauri bridge:
// the page is served from a tiny local HTTP server and `window.__TAURI__` is replaced by a
// recorder of invokes that lets the test emit "snapshot" events.
// Usage: node tests/browser/desktop-ui.mjs [artifact folder]   (default: .artifacts)
import { chromium } from "playwright-core";
import { createServer } from "node:http";
import { mkdirSync, readFileSync } from "node:fs";
import { extname, join, normalize, resolve, sep } from "node:path";
import { fileURLToPath } from "node:url";

const artifacts = resolve(process.argv[2] || ".artifacts");
mkdirSync(artifacts, { recursive: true });
const uiDir = resolve(fileURLToPath(new URL("../../ui/", import.meta.url)));

// ------------------------------------------------------------------ serve ui/

const TYPES = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".mjs": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".json": "application/json",
};
// The app's CSP (tauri.conf.json), so the test catches inline scripts and foreign loads.
const csp = JSON.parse(readFileSync(new URL("../../tauri.conf.json", import.meta.url), "utf8")).app.security.csp;

const server = createServer((request, response) => {
  const path = decodeURIComponent(new URL(request.url, "http://x").pathname);
  const file = normalize(join(uiDir, path === "/" ? "index.html" : path));
  if (!file.startsWith(uiDir + sep)) {
    response.writeHead(403).end();
    return;
  }
  try {
    const body = readFileSync(file);
    response.writeHead(200, {
      "content-type": TYPES[extname(file)] || "application/octet-stream",
      "content-security-policy": csp,
      "cache-control": "no-store",
    });
    response.end(body);
  } catch {
    response.writeHead(404).end("not found");
  }
});
await new Promise((done) => server.listen(0, "127.0.0.1", done));
const url = `http://127.0.0.1:${server.address().port}/`;

// ------------------------------------------------------------------ snapshots

const now = Date.now();
const settings = {
  kandanUrl: "wss://serve.kandanai.com",
  codexBin: "codex",
  codeServerBin: null,
  model: null,
  reasoningEffort: null,
  fast: false,
  listenUser: null,
  allowedRoots: [],
  forwardPorts: [],
  streamFlushMs: 150,
  startAtLogin: false,
};
const emptySnapshot = {
  account: { signedIn: true, kandanUrl: "wss://serve.kandanai.com", user: "ada", tokenStorage: "keyring", warning: null },
  trayState: "idle",
  folders: [],
  activity: [],
  settings,
  autostart: false,
  notice: null,
};
const folderApp = {
  id: "f1",
  path: "/home/ada/code/clients/acme-corporation/storefront-web-app",
  runnerId: "desktop-1",
  workspace: "acme",
  channel: "codex",
  state: "working",
  detail: "Running a turn for @grace",
  approvals: [],
  portPrompts: [{ requestId: "p1", port: 5173, command: "vite", cwd: "/home/ada/code/clients/acme-corporation/storefront-web-app" }],
  forwardedPorts: [{ port: 3000, previewUrl: "https://p3000-desktop-1.preview.kandanai.com/" }],
  editor: { running: true, port: 43121 },
};
const folderApi = {
  id: "f2",
  path: "/home/ada/api",
  runnerId: "desktop-1",
  workspace: "acme",
  channel: "backend",
  state: "awaiting_approval",
  detail: null,
  approvals: [{ requestId: "7", kind: "item/commandExecution/requestApproval", summary: "npm test", reason: "runs the tests" }],
  portPrompts: [],
  forwardedPorts: [],
  editor: { running: false, port: null },
};
const twoFolders = {
  ...emptySnapshot,
  account: { ...emptySnapshot.account, tokenStorage: "file", warning: "No system keyring: your sign-in token is kept in ~/.kandan/auth.json." },
  trayState: "attention",
  folders: [folderApp, folderApi],
  activity: [
    { at: now - 2 * 60_000, folderId: "f2", level: "warning", text: "Codex asks to run `npm test`" },
    { at: now - 40 * 60_000, folderId: "f1", level: "info", text: "Grace started a turn" },
    { at: now - 10_000, folderId: "f1", level: "info", text: "vite is listening on 5173" },
    { at: now - 3 * 3_600_000, folderId: "f1", level: "error", text: "code-server exited (status 1)" },
    { at: now - 26 * 3_600_000, folderId: "f2", level: "info", text: "Shared /home/ada/api with acme / #backend" },
  ],
};

// ------------------------------------------------------------------ browser

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM_BIN || "/usr/bin/chromium",
  args: [
    "--no-sandbox", "--disable-gpu", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
});
const page = await browser.newPage({ viewport: { width: 900, height: 640 }, colorScheme: "light" });
const problems = [];
page.on("pageerror", (error) => problems.push(`page error: ${error.stack || error.message}`));
page.on("console", (message) => {
  if (message.type() === "error") problems.push(`console error: ${message.text()}`);
});
page.on("response", (response) => { if (response.status() >= 400) problems.push(`HTTP ${response.status()}: ${response.url()}`); });
page.on("requestfailed", (request) => problems.push(`request failed: ${request.url()} ${request.failure()?.errorText}`));

await page.addInitScript((initial) => {
  const listeners = new Map();
  const test = {
    calls: [],
    handlers: {},
    snapshot: initial,
    emit(name, payload) {
      for (const callback of listeners.get(name) || []) callback({ event: name, id: 1, payload });
    },
    callsOf(command) {
      return test.calls.filter((call) => call.cmd === command);
    },
  };
  window.__test = test;
  window.__TAURI__ = {
    core: {
      invoke(cmd, args = {}) {
        test.calls.push({ cmd, args: JSON.parse(JSON.stringify(args)) });
        const handler = test.handlers[cmd];
        if (handler) return Promise.resolve().then(() => handler(args));
        if (cmd === "get_snapshot") return Promise.resolve(JSON.parse(JSON.stringify(test.snapshot)));
        return Promise.resolve(null);
      },
    },
    event: {
      listen(name, callback) {
        if (!listeners.has(name)) listeners.set(name, []);
        listeners.get(name).push(callback);
        return Promise.resolve(() => listeners.set(name, listeners.get(name).filter((cb) => cb !== callback)));
      },
    },
  };
}, emptySnapshot);

const timeout = 5_000;
const steps = [];
async function step(name, body) {
  try {
    await body();
    steps.push(`ok   ${name}`);
  } catch (error) {
    steps.push(`FAIL ${name}`);
    throw new Error(`${name}: ${error.message.split("\n")[0]}`);
  }
}
function assert(condition, message) {
  if (!condition) throw new Error(message);
}
const text = async (locator) => (await locator.innerText()).replace(/\s+/g, " ").trim();
const lastCall = (command) => page.evaluate((cmd) => window.__test.callsOf(cmd).at(-1) || null, command);
// Colours ease between themes; let them settle before a screenshot.
const shoot = async (name) => {
  await page.waitForTimeout(300);
  await page.screenshot({ path: join(artifacts, name) });
};
const emit = (snapshot) => page.evaluate((s) => window.__test.emit("snapshot", s), snapshot);

try {
  await page.goto(url);

  await step("empty state offers to share a folder", async () => {
    const empty = page.locator("#folders .empty");
    await empty.waitFor({ timeout });
    const words = await text(empty);
    assert(words.includes("No folders shared yet"), `empty state says "${words}"`);
    const share = empty.getByRole("button", { name: "Share a folder…" });
    await share.waitFor({ timeout });
    await shoot("desktop-ui-empty-light.png");
    assert(await text(page.locator("#tray-pill")) === "Status: Ready", `pill says "${await text(page.locator("#tray-pill"))}"`);
    assert((await text(page.locator("#account"))).includes("ada"), "the account shows the user");
    await share.click();
    const call = await lastCall("share_folder");
    assert(call && JSON.stringify(call.args) === "{}", `share_folder was invoked with ${JSON.stringify(call)}`);
  });

  await step("an error from share_folder shows next to the button", async () => {
    await page.evaluate(() => {
      window.__test.handlers.share_folder = () => Promise.reject("The folder picker was closed without a choice.");
    });
    await page.locator("#share-empty").click();
    await page.locator("#folders .empty .error-text").filter({ hasText: "folder picker was closed" }).waitFor({ timeout });
    assert(await page.locator("#share-empty").getAttribute("aria-busy") === null, "the share button is busy after its command ended");
  });

  await step("a snapshot with two folders renders both with their state", async () => {
    await emit(twoFolders);
    const cards = page.locator("#folders .folder-card");
    await page.waitForFunction(() => document.querySelectorAll("#folders .folder-card").length === 2, null, { timeout });
    const first = await text(cards.nth(0));
    const second = await text(cards.nth(1));
    assert(first.includes("storefront-web-app") && first.includes("Working"), `first card: "${first}"`);
    assert(second.includes("api") && second.includes("Waiting for approval"), `second card: "${second}"`);
    assert(second.includes("npm test") && second.includes("runs the tests"), `second card lacks its approval: "${second}"`);
    assert(first.includes("vite is listening on 5173"), `first card lacks its port prompt: "${first}"`);
    assert(first.includes("Editor running on port 43121"), `first card lacks its editor: "${first}"`);
    assert(await cards.nth(0).locator(".path").getAttribute("title") === folderApp.path, "the full path is in the title");
    assert(await text(page.locator("#tray-pill")) === "Status: Needs you", `pill says "${await text(page.locator("#tray-pill"))}"`);
    assert((await text(page.locator("#banners"))).includes("kept in ~/.kandan/auth.json"), "the account warning is shown");
    assert(await page.locator("#tab-badge").innerText() === "2", "the Folders tab counts the two waiting requests");
    const activity = await page.locator("#activity .activity-item").allInnerTexts();
    assert(activity.length === 5, `activity has ${activity.length} entries`);
    assert(activity[0].includes("vite is listening") && activity[0].includes("just now"), `latest activity first: ${activity[0]}`);
    assert(activity[1].includes("2 min ago"), `relative time: ${activity[1]}`);
  });

  await step("dark mode changes the background", async () => {
    await page.evaluate(() => document.activeElement && document.activeElement.blur());
    await page.mouse.move(0, 0);
    await shoot("desktop-ui-light.png");
    const background = () => page.evaluate(() => getComputedStyle(document.body).backgroundColor);
    const light = await background();
    await page.emulateMedia({ colorScheme: "dark" });
    const dark = await background();
    assert(light !== dark, `the background stayed ${light}`);
    const luminance = (rgb) => rgb.match(/\d+/g).slice(0, 3).reduce((sum, v) => sum + Number(v), 0);
    assert(luminance(dark) < luminance(light), `dark ${dark} is not darker than light ${light}`);
    await shoot("desktop-ui-dark.png");
    await page.emulateMedia({ colorScheme: "light" });
  });

  await step("Approve invokes resolve_approval with the folder and request, busy while it runs", async () => {
    await page.evaluate(() => {
      window.__test.handlers.resolve_approval = () => new Promise((done) => { window.__test.finishApproval = done; });
    });
    const approve = page.locator('.folder-card[data-folder="f2"] .request-approval').getByRole("button", { name: "Approve" });
    await approve.click();
    const call = await lastCall("resolve_approval");
    assert(
      call && JSON.stringify(call.args) === JSON.stringify({ folderId: "f2", requestId: "7", approve: true }),
      `resolve_approval was invoked with ${JSON.stringify(call && call.args)}`,
    );
    assert(await approve.getAttribute("aria-busy") === "true", "the Approve button shows busy while its command runs");
    await approve.click({ force: true }); // ignored while busy
    assert((await page.evaluate(() => window.__test.callsOf("resolve_approval").length)) === 1, "a busy button invoked again");
    await page.evaluate(() => window.__test.finishApproval(null));
    await page.waitForFunction(
      () => !document.querySelector('.folder-card[data-folder="f2"] .request-approval .btn[aria-busy="true"]'),
      null,
      { timeout },
    );
  });

  await step("Deny on a port prompt invokes resolve_port_forward; its error shows by the prompt", async () => {
    await page.evaluate(() => {
      window.__test.handlers.resolve_port_forward = () => Promise.reject("The request expired.");
    });
    const prompt = page.locator('.folder-card[data-folder="f1"] .request-port');
    await prompt.getByRole("button", { name: "Deny" }).click();
    await prompt.locator(".error-text").filter({ hasText: "The request expired." }).waitFor({ timeout });
    const call = await lastCall("resolve_port_forward");
    assert(
      JSON.stringify(call.args) === JSON.stringify({ folderId: "f1", requestId: "p1", approve: false }),
      `resolve_port_forward was invoked with ${JSON.stringify(call.args)}`,
    );
  });

  await step("Open preview and Open in Kandan invoke their commands", async () => {
    const card = page.locator('.folder-card[data-folder="f1"]');
    await card.getByRole("button", { name: "Open preview of port 3000" }).click();
    let call = await lastCall("open_preview");
    assert(JSON.stringify(call.args) === JSON.stringify({ folderId: "f1", port: 3000 }), `open_preview: ${JSON.stringify(call.args)}`);
    await card.getByRole("button", { name: "Open in Kandan" }).click();
    call = await lastCall("open_in_kandan");
    assert(JSON.stringify(call.args) === JSON.stringify({ folderId: "f1" }), `open_in_kandan: ${JSON.stringify(call.args)}`);
  });

  await step("Stop sharing asks inline first", async () => {
    const card = page.locator('.folder-card[data-folder="f2"]');
    await card.getByRole("button", { name: "Stop sharing" }).click();
    await card.locator(".confirm-text").waitFor({ timeout });
    assert((await page.evaluate(() => window.__test.callsOf("stop_sharing").length)) === 0, "stop_sharing ran before the confirmation");
    assert(await page.evaluate(() => document.activeElement.textContent.trim()) === "Cancel", "focus moves to Cancel");
    await card.getByRole("button", { name: "Cancel" }).click();
    await card.locator(".confirm-text").waitFor({ state: "detached", timeout });
    await card.getByRole("button", { name: "Stop sharing" }).click();
    await card.locator(".confirming").getByRole("button", { name: "Stop sharing" }).click();
    const call = await lastCall("stop_sharing");
    assert(JSON.stringify(call.args) === JSON.stringify({ folderId: "f2" }), `stop_sharing: ${JSON.stringify(call.args)}`);
  });

  await step("a rejected save_settings shows its message by the form", async () => {
    await page.getByRole("tab", { name: "Settings" }).click();
    await page.locator("#panel-settings").waitFor({ state: "visible", timeout });
    await shoot("desktop-ui-settings-light.png");
    await page.emulateMedia({ colorScheme: "dark" });
    await shoot("desktop-ui-settings-dark.png");
    await page.emulateMedia({ colorScheme: "light" });
    assert(await page.locator("#s-kandanUrl").inputValue() === "wss://serve.kandanai.com", "the form is filled from the snapshot");
    assert(await page.locator("#s-streamFlushMs").inputValue() === "150", "the flush interval is filled in");
    await page.evaluate(() => {
      window.__test.handlers.save_settings = () => Promise.reject("The Kandan server must be a ws:// or wss:// address.");
    });
    await page.locator("#s-kandanUrl").fill("https://serve.kandanai.com");
    await page.locator("#s-forwardPorts").fill("3000, 5173");
    await page.locator("#s-allowedRoots").fill("/home/ada/src\n/srv/projects");
    await page.getByRole("button", { name: "Save settings" }).click();
    await page.locator("#settings-error").filter({ hasText: "must be a ws:// or wss:// address" }).waitFor({ timeout });
    const call = await lastCall("save_settings");
    const sent = call.args.settings;
    assert(sent.kandanUrl === "https://serve.kandanai.com", `sent kandanUrl ${sent.kandanUrl}`);
    assert(JSON.stringify(sent.forwardPorts) === "[3000,5173]", `sent forwardPorts ${JSON.stringify(sent.forwardPorts)}`);
    assert(JSON.stringify(sent.allowedRoots) === '["/home/ada/src","/srv/projects"]', `sent allowedRoots ${JSON.stringify(sent.allowedRoots)}`);
    assert(sent.model === null && sent.streamFlushMs === 150 && sent.startAtLogin === false, `sent ${JSON.stringify(sent)}`);
  });

  await step("an invalid port is caught before saving", async () => {
    const before = await page.evaluate(() => window.__test.callsOf("save_settings").length);
    await page.locator("#s-forwardPorts").fill("3000, http");
    await page.getByRole("button", { name: "Save settings" }).click();
    await page.locator("#settings-error").filter({ hasText: "“http” is not a port number" }).waitFor({ timeout });
    assert(await page.locator("#s-forwardPorts").getAttribute("aria-invalid") === "true", "the port field is marked invalid");
    assert((await page.evaluate(() => window.__test.callsOf("save_settings").length)) === before, "save_settings was invoked anyway");
    await page.locator("#s-forwardPorts").fill("3000");
  });

  await step("a second snapshot updates in place and keeps the focused input's value", async () => {
    const model = page.locator("#s-model");
    await model.click();
    await model.pressSequentially("gpt-5.5");
    const cardBefore = await page.locator('.folder-card[data-folder="f1"]').elementHandle();
    const changed = structuredClone(twoFolders);
    changed.folders[0].state = "ready";
    changed.folders[0].detail = null;
    changed.folders[1].approvals = [];
    changed.folders[1].state = "ready";
    changed.trayState = "idle";
    changed.settings = { ...settings, model: "from-elsewhere", codexBin: "/opt/codex/bin/codex" };
    changed.activity = [{ at: Date.now(), folderId: "f2", level: "info", text: "Approved npm test" }, ...twoFolders.activity];
    await emit(changed);
    await page.waitForFunction(() => document.querySelector("#tray-pill").dataset.state === "idle", null, { timeout });
    assert(await page.evaluate(() => document.activeElement.id) === "s-model", "focus left the model input");
    assert(await model.inputValue() === "gpt-5.5", `the model input now says "${await model.inputValue()}"`);
    assert(await cardBefore.evaluate((el) => el.isConnected), "the folder card was replaced instead of updated");
    assert(await cardBefore.evaluate((el) => el.querySelector(".badge").textContent.trim()) === "Ready", "the card's badge did not update");
    assert((await page.locator("#activity .activity-item").count()) === 6, "the new activity entry is listed");
    // The form is being edited, so the rest of it is not overwritten either.
    assert(await page.locator("#s-kandanUrl").inputValue() === "https://serve.kandanai.com", "an edited form was overwritten");
    await page.evaluate(() => {
      window.__test.handlers.save_settings = ({ settings }) => settings;
    });
    await page.getByRole("button", { name: "Save settings" }).click();
    await page.locator("#settings-status").filter({ hasText: "Saved" }).waitFor({ timeout });
    assert(await page.locator("#settings-error").innerText() === "", "the old error stays after a successful save");
    assert((await lastCall("save_settings")).args.settings.model === "gpt-5.5", "the typed model was saved");
  });

  await step("Start at login invokes set_autostart", async () => {
    await page.locator("#autostart").check();
    const call = await lastCall("set_autostart");
    assert(JSON.stringify(call.args) === '{"enabled":true}', `set_autostart: ${JSON.stringify(call.args)}`);
  });

  await step("Look for updates is on by default and saves as checkForUpdates", async () => {
    await page.getByRole("tab", { name: "Settings" }).click();
    const box = page.locator("#s-checkForUpdates");
    assert(await box.isChecked(), "Look for updates starts off");
    await box.uncheck();
    await page.getByRole("button", { name: "Save settings" }).click();
    await page.locator("#settings-status").filter({ hasText: "Saved" }).waitFor({ timeout });
    assert((await lastCall("save_settings")).args.settings.checkForUpdates === false, "the unticked box was not saved");
  });

  await step("an update shows in a banner: Install where it can, the package manager where not", async () => {
    const offer = {
      state: "available", version: "0.2.0", current: "0.1.0", notes: null, install: "inApp",
      releaseUrl: "https://github.com/linzumi/linzumi-desktop/releases/tag/v0.2.0", text: "Update available: Linzumi 0.2.0.",
    };
    await page.evaluate((o) => window.__test.emit("update", o), offer);
    const banner = page.locator('#update [data-update="available"]');
    await banner.waitFor({ timeout });
    assert((await text(banner)).includes("Update available: Linzumi 0.2.0"), `banner says "${await text(banner)}"`);
    await shoot("desktop-update-available.png");
    await banner.getByRole("button", { name: "Install" }).click();
    assert((await page.evaluate(() => window.__test.callsOf("install_update").length)) === 1, "Install did not invoke install_update");
    const viaPackages = "Update available: Linzumi 0.2.0. Update it with your package manager (apt or dnf), or download it from the release page.";
    await page.evaluate(([o, text]) => window.__test.emit("update", { ...o, install: "packageManager", text }), [offer, viaPackages]);
    await banner.filter({ hasText: "package manager" }).waitFor({ timeout });
    assert((await banner.getByRole("button", { name: "Install" }).count()) === 0, "a .deb copy offers Install");
    await banner.getByRole("button", { name: "Release page" }).click();
    assert((await page.evaluate(() => window.__test.callsOf("open_release_page").length)) === 1, "Release page did not invoke open_release_page");
    await shoot("desktop-update-package-manager.png");
    const refused = "The update feed offers Linzumi 0.0.9, older than this 0.1.0; it was refused.";
    await page.evaluate((message) => window.__test.emit("update", { state: "refused", message, text: message }), refused);
    await page.locator('#update [data-update="refused"]').filter({ hasText: refused }).waitFor({ timeout });
  });

  assert(problems.length === 0, `the page reported problems:\n  ${problems.join("\n  ")}`);
  console.log(steps.join("\n"));
  console.log(`desktop UI: all checks passed; screenshots in ${artifacts}`);
} catch (error) {
  await page.screenshot({ path: join(artifacts, "desktop-ui-failure.png") }).catch(() => {});
  console.error(steps.join("\n"));
  console.error(`desktop UI test failed: ${error.message}`);
  if (problems.length) console.error(`page problems:\n  ${problems.join("\n  ")}`);
  process.exitCode = 1;
} finally {
  await browser.close();
  server.close();
}
