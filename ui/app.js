// Linzumi Desktop's window. State comes from the Rust side as one snapshot: first from
// `get_snapshot`, then from every "snapshot" event. The folder list, activity and account
// are rendered as small virtual trees and patched into the page, so an update never
// rebuilds what did not change (focus, scroll and hover survive); the settings form is
// static HTML whose inputs are only refilled when the person is not editing them.

const tauri = window.__TAURI__;
const $ = (selector) => document.querySelector(selector);

// ---------------------------------------------------------------- tiny DOM patcher

const SVG_NS = "http://www.w3.org/2000/svg";

/** Flattens nested child lists, dropping null/false/"" and turning numbers into text. */
function normalize(children) {
  const kids = [];
  const add = (child) => {
    if (Array.isArray(child)) child.forEach(add);
    else if (child != null && child !== false && child !== "") kids.push(typeof child === "object" ? child : String(child));
  };
  add(children);
  return kids;
}

function h(tag, props, ...children) {
  const key = props && props.key != null ? String(props.key) : undefined;
  return { tag, props: props || {}, key, children: normalize(children) };
}

function createNode(vnode, parentNs) {
  if (typeof vnode === "string") return document.createTextNode(vnode);
  const ns = vnode.tag === "svg" ? SVG_NS : parentNs;
  const el = ns ? document.createElementNS(ns, vnode.tag) : document.createElement(vnode.tag);
  el._key = vnode.key;
  el._props = {};
  updateNode(el, vnode);
  return el;
}

function updateNode(el, vnode) {
  const old = el._props;
  const next = vnode.props;
  for (const name in old) if (!(name in next)) setProp(el, name, undefined);
  for (const name in next) if (old[name] !== next[name]) setProp(el, name, next[name]);
  el._props = next;
  patch(el, vnode.children);
}

function setProp(el, name, value) {
  if (name === "key") return;
  if (name.startsWith("on")) {
    const type = name.slice(2).toLowerCase();
    el._on = el._on || {};
    if (!(type in el._on)) el.addEventListener(type, (event) => el._on[type] && el._on[type](event));
    el._on[type] = value;
    return;
  }
  if (value == null || value === false) el.removeAttribute(name);
  else el.setAttribute(name, value === true ? "" : String(value));
}

/** Makes `parent`'s children match `vnodes`, reusing nodes by key, else by position and tag. */
function patch(parent, children) {
  const vnodes = normalize(children);
  const ns = parent.namespaceURI === SVG_NS ? SVG_NS : null;
  const keyed = new Map();
  const unkeyed = [];
  for (const node of parent.childNodes) {
    if (node._key != null) keyed.set(node._key, node);
    else unkeyed.push(node);
  }
  let u = 0;
  vnodes.forEach((vnode, i) => {
    let node = null;
    if (typeof vnode === "string") {
      const candidate = unkeyed[u];
      if (candidate && candidate.nodeType === Node.TEXT_NODE) {
        node = candidate;
        u += 1;
        if (node.data !== vnode) node.data = vnode;
      }
    } else {
      const candidate = vnode.key != null ? keyed.get(vnode.key) : unkeyed[u];
      if (candidate && candidate.nodeType === Node.ELEMENT_NODE && candidate.localName === vnode.tag) {
        node = candidate;
        if (vnode.key != null) keyed.delete(vnode.key);
        else u += 1;
        updateNode(node, vnode);
      }
    }
    if (!node) node = createNode(vnode, ns);
    const at = parent.childNodes[i];
    if (at !== node) parent.insertBefore(node, at || null);
  });
  while (parent.childNodes.length > vnodes.length) parent.lastChild.remove();
}

// ---------------------------------------------------------------- icons

const ICONS = {
  check: [["circle", { cx: 12, cy: 12, r: 9 }], "M8.5 12.5l2.5 2.5 4.5-5"],
  working: ["M12 3a9 9 0 1 0 9 9"],
  connecting: ["M20 12a8 8 0 1 1-2.6-5.9", "M20 4v4.5h-4.5"],
  alert: [["circle", { cx: 12, cy: 12, r: 9 }], "M12 7.5v5.5", "M12 16.5v.01"],
  offline: [["circle", { cx: 12, cy: 12, r: 9 }], "M5.7 5.7l12.6 12.6"],
  error: [["circle", { cx: 12, cy: 12, r: 9 }], "M15 9l-6 6", "M9 9l6 6"],
  stopped: [["circle", { cx: 12, cy: 12, r: 9 }], ["rect", { x: 9, y: 9, width: 6, height: 6, rx: 1 }]],
  info: [["circle", { cx: 12, cy: 12, r: 9 }], "M12 11v5.5", "M12 7.8v.01"],
  warn: ["M10.3 4.3L2.7 17.5A2 2 0 0 0 4.4 20.5h15.2a2 2 0 0 0 1.7-3L13.7 4.3a2 2 0 0 0-3.4 0z", "M12 9.5v4", "M12 17v.01"],
  folder: ["M3.5 7.5a2 2 0 0 1 2-2h3.6l2 2h7.4a2 2 0 0 1 2 2v7.5a2 2 0 0 1-2 2h-13a2 2 0 0 1-2-2z"],
  folderPlus: ["M3.5 7.5a2 2 0 0 1 2-2h3.6l2 2h7.4a2 2 0 0 1 2 2v7.5a2 2 0 0 1-2 2h-13a2 2 0 0 1-2-2z", "M12 10.5v5", "M9.5 13h5"],
  external: ["M14 4h6v6", "M20 4l-8.5 8.5", "M18 13.5V19a1 1 0 0 1-1 1H5a1 1 0 0 1-1-1V7a1 1 0 0 1 1-1h5.5"],
  code: ["M9 7.5L4.5 12 9 16.5", "M15 7.5l4.5 4.5-4.5 4.5"],
  terminal: [["rect", { x: 3, y: 4.5, width: 18, height: 15, rx: 2 }], "M7 9.5l3 2.5-3 2.5", "M12.5 15h4.5"],
  file: ["M14 3.5H7a2 2 0 0 0-2 2v13a2 2 0 0 0 2 2h10a2 2 0 0 0 2-2v-10z", "M14 3.5v5h5"],
  globe: [["circle", { cx: 12, cy: 12, r: 9 }], "M3 12h18", "M12 3c2.5 2.6 3.7 5.6 3.7 9s-1.2 6.4-3.7 9c-2.5-2.6-3.7-5.6-3.7-9S9.5 5.6 12 3z"],
  chat: ["M20.5 11.5a8 8 0 0 1-11.7 7.1L4 20l1.4-4.4a8 8 0 1 1 15.1-4.1z"],
  x: ["M6.5 6.5l11 11", "M17.5 6.5l-11 11"],
  key: [["circle", { cx: 8, cy: 15, r: 4 }], "M10.8 12.2L19 4", "M16 7l2.5 2.5", "M14 9l1.5 1.5"],
};

function icon(name, extraClass) {
  const shapes = (ICONS[name] || ICONS.info).map((shape) =>
    typeof shape === "string" ? h("path", { d: shape }) : h(shape[0], shape[1]),
  );
  return h(
    "svg",
    { class: extraClass ? `icon ${extraClass}` : "icon", viewBox: "0 0 24 24", "aria-hidden": "true", focusable: "false" },
    shapes,
  );
}

// ---------------------------------------------------------------- vocabulary

// The pill says where things stand in a word or two; the tray's status line is its title.
const PILL = {
  idle: { text: "Ready" },
  working: { text: "Working" },
  attention: { text: "Needs you" },
  offline: { text: "Offline" },
  signed_out: { text: "Signed out" },
  waiting: { text: "Waiting for browser" },
  ended: { text: "Session ended" },
};

const FOLDER_STATES = {
  connecting: { text: "Connecting", icon: "connecting", spin: true },
  ready: { text: "Ready", icon: "check" },
  working: { text: "Working", icon: "working", spin: true },
  awaiting_approval: { text: "Needs you", icon: "alert" },
  offline: { text: "Offline, retrying", icon: "offline" },
  error: { text: "Error", icon: "error" },
  stopped: { text: "Stopped", icon: "stopped" },
  waiting_for_sign_in: { text: "Waiting for sign-in", icon: "key" },
  missing: { text: "Moved or deleted", icon: "alert" },
};

const LEVELS = {
  info: { icon: "info", text: "Info" },
  warning: { icon: "warn", text: "Warning" },
  error: { icon: "error", text: "Error" },
};

function approvalIcon(kind) {
  const k = String(kind || "").toLowerCase();
  if (k.includes("command") || k.includes("exec")) return "terminal";
  if (k.includes("file") || k.includes("patch")) return "file";
  if (k.includes("permission")) return "key";
  return "alert";
}

// ---------------------------------------------------------------- state

let snapshot = null;
let gotEvent = false;
const busy = new Set(); // action keys whose command is running
const errors = new Map(); // action key -> {message, details} from the last failed run
const confirmingStop = new Set(); // folder ids showing the inline "stop sharing?" confirmation
let confirmingSignOut = false;
let copied = false; // "Copy link" just worked
let focusSerial = 0; // the last prompt focus request acted on
let pendingFocus = null; // id of an element to focus after the next render

/** A failure as {message, details}: commands reject with that shape, or a string. */
function failure(error) {
  if (typeof error === "string") return { message: error, details: null };
  if (error && typeof error.message === "string") return { message: error.message, details: error.details || null };
  try {
    return { message: JSON.stringify(error), details: null };
  } catch {
    return { message: String(error), details: null };
  }
}

async function invoke(command, args) {
  if (!tauri || !tauri.core) throw "Linzumi's window is not connected to the app.";
  return tauri.core.invoke(command, args);
}

/** Runs a command for the control `key`: busy while it runs, its error kept under `key`. */
async function run(key, command, args) {
  if (busy.has(key)) return { ok: false, skipped: true };
  busy.add(key);
  errors.delete(key);
  render();
  try {
    return { ok: true, value: await invoke(command, args) };
  } catch (error) {
    errors.set(key, failure(error));
    return { ok: false, error: failure(error), raw: error };
  } finally {
    busy.delete(key);
    render();
  }
}

// ---------------------------------------------------------------- helpers for views

function button(key, label, { variant = "secondary", size, iconName, onClick, describedBy, ariaLabel, id, title } = {}) {
  const isBusy = busy.has(key);
  const cls = ["btn", `btn-${variant}`, size ? `btn-${size}` : ""].filter(Boolean).join(" ");
  return h(
    "button",
    {
      type: "button",
      class: cls,
      id,
      title,
      "aria-label": ariaLabel,
      "aria-busy": isBusy ? "true" : null,
      "aria-disabled": isBusy ? "true" : null,
      "aria-describedby": describedBy,
      onClick: (event) => {
        event.preventDefault();
        if (!busy.has(key)) onClick();
      },
    },
    iconName ? icon(iconName) : null,
    h("span", { class: "btn-label" }, label),
  );
}

/** A "Details" disclosure for the raw error, URL or identifiers behind a sentence. */
function details(text, key) {
  if (!text) return null;
  return h(
    "details",
    { class: "details", key },
    h("summary", null, "Details"),
    h("pre", { class: "details-text" }, text),
  );
}

function errorLine(key, id) {
  const error = errors.get(key);
  if (!error) return null;
  return h(
    "div",
    { class: "error-text", role: "alert", id },
    icon("error"),
    h("div", { class: "error-body" }, h("span", null, error.message), details(error.details)),
  );
}

const domId = (...parts) => parts.map((part) => String(part).replace(/[^A-Za-z0-9_-]/g, "_")).join("-");

function splitPath(path) {
  const cut = Math.max(path.lastIndexOf("/"), path.lastIndexOf("\\"));
  if (cut <= 0 || cut === path.length - 1) return ["", path];
  return [path.slice(0, cut + 1), path.slice(cut + 1)];
}

/** Text with `backticked` parts shown as code (the Rust side quotes commands that way). */
function richText(text) {
  const parts = String(text == null ? "" : text).split("`");
  if (parts.length < 3 || parts.length % 2 === 0) return [String(text)];
  return parts.map((part, i) => (i % 2 ? h("code", { class: "inline" }, part) : part));
}

function relativeTime(at, now = Date.now()) {
  const seconds = Math.round((now - at) / 1000);
  if (seconds < 45) return "just now";
  const minutes = Math.round(seconds / 60);
  if (minutes < 60) return `${minutes} min ago`;
  const hours = Math.round(minutes / 60);
  if (hours < 24) return hours === 1 ? "1 hour ago" : `${hours} hours ago`;
  const days = Math.round(hours / 24);
  if (days === 1) return "yesterday";
  if (days < 7) return `${days} days ago`;
  return new Date(at).toLocaleDateString(undefined, { month: "short", day: "numeric" });
}

const clock = (at) => new Date(at).toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" });

const account = () => (snapshot && snapshot.account) || {};
const signedIn = () => Boolean(account().signedIn);
const folderCount = () => ((snapshot && snapshot.folders) || []).length;

// ---------------------------------------------------------------- views

function pillState() {
  if (!snapshot) return "connecting";
  const a = account();
  if (a.signIn) return "waiting";
  if (a.sessionEnded) return "ended";
  if (!a.signedIn) return "signed_out";
  return snapshot.trayState;
}

function renderPill() {
  const pill = $("#tray-pill");
  const state = pillState();
  const info = PILL[state] || { text: snapshot ? String(state) : "Starting…" };
  if (pill.dataset.state !== state) pill.dataset.state = state;
  pill.title = (snapshot && snapshot.statusLine) || "";
  const text = pill.querySelector(".pill-text");
  if (text.textContent !== info.text) text.textContent = info.text;
}

// Commands with one button (or one per place it can appear) and no arguments.
const ACTIONS = {
  signin: () => run("signin", "sign_in", {}),
  cancelSignin: () => run("cancel-signin", "cancel_sign_in", {}),
  signout: () => run("signout", "sign_out", {}),
  share: () => run("share", "share_folder", {}),
};

function signOutClicked() {
  if (!folderCount()) {
    ACTIONS.signout();
    return;
  }
  confirmingSignOut = true;
  pendingFocus = "cancel-signout";
  render();
}

function accountView() {
  if (!snapshot) return [];
  const a = account();
  if (a.signedIn && confirmingSignOut) {
    const n = folderCount();
    return [
      h("p", { class: "confirm-text", id: "confirm-signout" }, `Sign out? ${n === 1 ? "Your shared folder stops" : `Your ${n} shared folders stop`} until you sign in again.`),
      h(
        "div",
        { class: "account-action", role: "group", "aria-labelledby": "confirm-signout" },
        button("signout", "Sign out", {
          variant: "danger",
          size: "sm",
          onClick: async () => {
            const result = await ACTIONS.signout();
            if (result.ok) confirmingSignOut = false;
            render();
          },
        }),
        button("cancel-signout", "Cancel", {
          size: "sm",
          id: "cancel-signout",
          onClick: () => {
            confirmingSignOut = false;
            pendingFocus = "signout";
            render();
          },
        }),
      ),
      errorLine("signout", "err-signout"),
    ];
  }
  if (a.signedIn) {
    const user = a.user || "Signed in";
    return [
      h(
        "div",
        { class: "who" },
        h("span", { class: "avatar", "aria-hidden": "true" }, user.slice(0, 1).toUpperCase()),
        h("span", { class: "who-text" }, h("span", { class: "who-user" }, user), h("span", { class: "who-host" }, a.kandanHost)),
      ),
      h("div", { class: "account-action" }, button("signout", "Sign out", { variant: "ghost", size: "sm", id: "signout", onClick: signOutClicked })),
      errorLine("signout", "err-signout"),
    ];
  }
  // Signed out the sign-in card below the header has the one primary action.
  return [
    h(
      "span",
      { class: "who who-out" },
      h("span", { class: "who-text" }, h("span", { class: "who-user" }, a.sessionEnded && a.user ? a.user : "Not signed in"), h("span", { class: "who-host" }, a.kandanHost)),
    ),
  ];
}

/** Signed out, ended or waiting for the browser: the card that says what to do. */
function signInView() {
  if (!snapshot) return [];
  const a = account();
  if (a.signIn) {
    const minutes = Math.max(1, Math.round((a.signIn.expiresAt - Date.now()) / 60000));
    return [
      h(
        "section",
        { class: "signin-card waiting", key: "waiting", "aria-labelledby": "signin-title" },
        h("span", { class: "signin-icon spin-slow" }, icon("connecting")),
        h(
          "div",
          { class: "signin-body" },
          h("h2", { id: "signin-title" }, "Waiting for your browser…"),
          h(
            "p",
            null,
            "Finish signing in to ",
            h("strong", null, a.kandanHost),
            ` in the browser window that opened. Linzumi stops waiting in ${minutes} min.`,
          ),
          h(
            "div",
            { class: "signin-link" },
            h("input", { id: "signin-url", class: "mono", readonly: true, value: a.signIn.url, "aria-label": "Sign-in link", onFocus: (event) => event.target.select() }),
            button("copy-link", copied ? "Copied" : "Copy link", { size: "sm", iconName: copied ? "check" : null, onClick: copyLink }),
          ),
          h("p", { class: "hint" }, "Signing in with a browser on another profile? Copy the link and open it there."),
        ),
        h("div", { class: "signin-actions" }, button("cancel-signin", "Cancel", { size: "sm", onClick: ACTIONS.cancelSignin })),
        errorLine("cancel-signin"),
      ),
    ];
  }
  if (a.signedIn) return [];
  const ended = a.sessionEnded;
  return [
    h(
      "section",
      { class: `signin-card${ended ? " ended" : ""}`, key: ended ? "ended" : "signed-out", "aria-labelledby": "signin-title" },
      h("span", { class: "signin-icon" }, icon(ended ? "warn" : "key")),
      h(
        "div",
        { class: "signin-body" },
        h("h2", { id: "signin-title" }, ended ? "Your Kandan session ended — Sign in again" : "Sign in to Kandan to start sharing"),
        h(
          "p",
          null,
          ended
            ? "Kandan no longer accepts the saved sign-in (it was revoked or it expired). Your folders stay shared and resume as soon as you sign in."
            : folderCount()
              ? "Your shared folders start by themselves once you are signed in."
              : "Linzumi opens Kandan in your browser; come back here when it says you are signed in.",
        ),
      ),
      h(
        "div",
        { class: "signin-actions" },
        button("signin", ended ? "Sign in again" : "Sign in to Kandan", { variant: "primary", onClick: ACTIONS.signin, id: "signin-primary" }),
      ),
      errorLine("signin", "err-signin"),
    ),
  ];
}

async function copyLink() {
  const a = account();
  if (!a.signIn) return;
  const input = document.getElementById("signin-url");
  let ok = false;
  try {
    await navigator.clipboard.writeText(a.signIn.url);
    ok = true;
  } catch {
    if (input) {
      input.select();
      ok = document.execCommand("copy");
    }
  }
  if (ok) {
    copied = true;
    errors.delete("copy-link");
    setTimeout(() => {
      copied = false;
      render();
    }, 2000);
  } else {
    errors.set("copy-link", { message: "Could not copy: select the link and copy it yourself.", details: null });
  }
  render();
}

function bannersView() {
  const warning = account().warning;
  if (!warning) return [];
  return [h("div", { class: "banner banner-warn", key: "account-warning" }, icon("key"), h("span", { class: "banner-text" }, warning))];
}

/** What a problem's or notice's next step is called, and what it does. */
function nextStep(next, key, folder) {
  switch (next) {
    case "signIn":
      // Signed out, the sign-in card above already has the primary button.
      return button(`${key}:signin`, "Sign in", { size: "sm", onClick: ACTIONS.signin });
    case "retry":
      return folder ? button(`retry:${folder.id}`, "Retry", { variant: "primary", size: "sm", onClick: () => run(`retry:${folder.id}`, "retry_folder", { folderId: folder.id }) }) : null;
    case "locate":
      return folder
        ? button(`locate:${folder.id}`, "Locate…", { variant: "primary", size: "sm", onClick: () => run(`locate:${folder.id}`, "locate_folder", { folderId: folder.id }) })
        : null;
    case "settings":
      return button(`${key}:settings`, "Open Settings", { size: "sm", onClick: () => openSettingsAt(folder && folder.problem && folder.problem.field) });
    default:
      return null;
  }
}

function openSettingsAt(field) {
  selectTab($("#tab-settings"), false);
  const input = field && fields[field];
  if (input) {
    input.focus();
    input.scrollIntoView({ block: "center" });
  }
}

function noticesView() {
  const now = Date.now();
  const notices = ((snapshot && snapshot.notices) || []).filter((notice) => !notice.expiresAt || notice.expiresAt > now);
  return notices.map((notice) => {
    const kind = notice.level === "error" ? "bad" : notice.level === "warning" ? "warn" : "info";
    const key = `notice:${notice.id}`;
    return h(
      "div",
      { class: `banner banner-${kind}`, key, role: notice.level === "error" ? "alert" : null },
      icon((LEVELS[notice.level] || LEVELS.info).icon),
      h("div", { class: "banner-text" }, h("span", null, richText(notice.text)), details(notice.details)),
      nextStep(notice.action, key, null),
      h(
        "button",
        {
          type: "button",
          class: "icon-btn",
          "aria-label": "Dismiss",
          title: "Dismiss",
          onClick: () => run(key, "dismiss_notice", { id: notice.id }),
        },
        icon("x"),
      ),
    );
  });
}

function emptyView() {
  const canShare = signedIn();
  return h(
    "div",
    { class: "empty", key: "empty" },
    h("div", { class: "empty-art", "aria-hidden": "true" }, icon("folderPlus")),
    h("h3", null, "No folders shared yet"),
    h(
      "p",
      null,
      "Share a folder and your teammates can ask Codex to work in it from a Kandan thread. ",
      "Commands and file changes wait for your approval here.",
    ),
    button("share", "Share a folder…", { variant: canShare ? "primary" : "secondary", size: "lg", iconName: "folderPlus", onClick: ACTIONS.share, id: "share-empty" }),
    errorLine("share", "err-share"),
  );
}

function requestView(folder, { requestId, icon: iconName, question, lines, answerKey }) {
  const key = `${answerKey}:${folder.id}:${requestId}`;
  const titleId = domId("rq", folder.id, requestId);
  return h(
    "li",
    { class: "request", key, role: "group", "aria-labelledby": titleId, id: domId("request", folder.id, requestId) },
    h("span", { class: "request-icon" }, icon(iconName)),
    h(
      "div",
      { class: "request-body" },
      h("p", { class: "request-title", id: titleId }, richText(question)),
      lines.filter(Boolean).map((line) => h("p", { class: "request-reason" }, richText(line))),
      errorLine(key),
    ),
    h(
      "div",
      { class: "request-actions" },
      button(`${key}:approve`, "Approve", {
        variant: "primary",
        size: "sm",
        id: domId("approve", folder.id, requestId),
        onClick: () => decide(key, folder.id, requestId, true),
      }),
      button(`${key}:deny`, "Deny", { size: "sm", onClick: () => decide(key, folder.id, requestId, false) }),
    ),
  );
}

async function decide(key, folderId, requestId, approve) {
  // Both buttons of a request share one error slot; the clicked one shows busy.
  if (busy.has(`${key}:approve`) || busy.has(`${key}:deny`)) return;
  const clicked = `${key}:${approve ? "approve" : "deny"}`;
  const result = await run(clicked, "answer_prompt", { folderId, requestId, approve });
  errors.delete(clicked);
  if (!result.ok && !result.skipped) errors.set(key, result.error);
  else errors.delete(key);
  render();
}

function resourcesView(folder) {
  const items = [];
  for (const forwarded of folder.forwardedPorts || []) {
    const key = `preview:${folder.id}:${forwarded.port}`;
    const stopKey = `stop-preview:${folder.id}:${forwarded.port}`;
    items.push(
      h(
        "li",
        { class: "resource", key },
        icon("globe"),
        h("span", { class: "resource-label" }, `Preview of port ${forwarded.port}`),
        button(key, "Open", {
          variant: "link",
          iconName: "external",
          title: forwarded.previewUrl || null,
          ariaLabel: `Open the preview of port ${forwarded.port}`,
          onClick: () => run(key, "open_preview", { folderId: folder.id, port: forwarded.port }),
        }),
        button(stopKey, "Stop preview", {
          variant: "ghost",
          size: "sm",
          ariaLabel: `Stop the preview of port ${forwarded.port}`,
          onClick: () => run(stopKey, "stop_preview", { folderId: folder.id, port: forwarded.port }),
        }),
        errorLine(key),
        errorLine(stopKey),
      ),
    );
  }
  // A running folder can open the editor: the app starts it on demand.
  const live = ["ready", "working", "awaiting_approval", "offline"].includes(folder.state);
  if (live) {
    const key = `editor:${folder.id}`;
    const running = Boolean(folder.editor && folder.editor.running);
    items.push(
      h(
        "li",
        { class: "resource", key: "editor" },
        icon("code"),
        button(key, "Open editor", { variant: "link", iconName: "external", onClick: () => run(key, "open_editor", { folderId: folder.id }) }),
        running ? h("span", { class: "resource-label" }, "running") : null,
        errorLine(key),
      ),
    );
  }
  return items.length ? h("ul", { class: "resources", "aria-label": "Previews and editor" }, items) : null;
}

function problemView(folder) {
  const problem = folder.problem;
  if (!problem) return null;
  // The same colour as the folder's badge.
  const kind = { waiting_for_sign_in: "info", offline: "warn", missing: "warn" }[folder.state] || (problem.next ? "bad" : "warn");
  // Signed out the sign-in card has the button; the folder only says it waits.
  const step = problem.next === "signIn" && !signedIn() ? null : nextStep(problem.next, `problem:${folder.id}`, folder);
  const more = [problem.details, `Folder: ${folder.path}`, folder.runnerId ? `Runner: ${folder.runnerId}` : null].filter(Boolean).join("\n");
  return h(
    "div",
    { class: `problem problem-${kind}`, role: kind === "bad" ? "alert" : null },
    h(
      "div",
      { class: "problem-body" },
      // The badge may say it already ("Waiting for sign-in").
      problem.title !== (FOLDER_STATES[folder.state] || {}).text ? h("p", { class: "problem-title" }, problem.title) : null,
      h("p", { class: "problem-message" }, problem.message),
      details(more),
    ),
    step ? h("div", { class: "problem-actions" }, step) : null,
    errorLine(`retry:${folder.id}`),
    errorLine(`locate:${folder.id}`),
  );
}

function folderActionsView(folder) {
  const kandanKey = `kandan:${folder.id}`;
  const stopKey = `stop:${folder.id}`;
  const confirmId = domId("confirm-stop", folder.id);
  const cancelId = domId("cancel-stop", folder.id);
  if (confirmingStop.has(folder.id)) {
    return h(
      "div",
      { class: "card-actions confirming", role: "group", "aria-labelledby": confirmId },
      h("p", { class: "confirm-text", id: confirmId }, "Stop sharing this folder? The thread stays in Kandan; Codex stops working here."),
      h(
        "div",
        { class: "card-buttons" },
        button(stopKey, "Stop sharing", {
          variant: "danger",
          size: "sm",
          onClick: async () => {
            const result = await run(stopKey, "stop_sharing", { folderId: folder.id });
            if (result.ok) {
              confirmingStop.delete(folder.id);
              render();
            }
          },
        }),
        button(`cancel-stop:${folder.id}`, "Cancel", {
          size: "sm",
          id: cancelId,
          onClick: () => {
            confirmingStop.delete(folder.id);
            errors.delete(stopKey);
            pendingFocus = domId("stop", folder.id);
            render();
          },
        }),
      ),
      errorLine(stopKey),
    );
  }
  const live = ["ready", "working", "awaiting_approval", "offline"].includes(folder.state);
  return h(
    "div",
    { class: "card-actions" },
    h(
      "div",
      { class: "card-buttons" },
      live && folder.channel
        ? button(kandanKey, "Open in Kandan", { size: "sm", iconName: "chat", onClick: () => run(kandanKey, "open_in_kandan", { folderId: folder.id }) })
        : null,
      button(stopKey, "Stop sharing", {
        variant: "ghost",
        size: "sm",
        id: domId("stop", folder.id),
        onClick: () => {
          confirmingStop.add(folder.id);
          pendingFocus = cancelId;
          render();
        },
      }),
    ),
    errorLine(kandanKey),
  );
}

function folderView(folder) {
  const state = FOLDER_STATES[folder.state] || { text: String(folder.state || "Unknown"), icon: "info" };
  const [head, tail] = splitPath(folder.path || "");
  const titleId = domId("folder", folder.id);
  const where = [folder.workspace, folder.channel ? `#${folder.channel}` : null].filter(Boolean).join(" / ");
  const requests = [
    ...(folder.approvals || []).map((approval) =>
      requestView(folder, {
        requestId: approval.requestId,
        icon: approvalIcon(approval.kind),
        question: approval.question,
        lines: [approval.asked, approval.reason],
        answerKey: "approval",
      }),
    ),
    ...(folder.portPrompts || []).map((prompt) =>
      requestView(folder, { requestId: prompt.requestId, icon: "globe", question: prompt.question, lines: [prompt.context], answerKey: "port" }),
    ),
  ];
  return h(
    "article",
    { class: "folder-card", key: folder.id, "data-state": folder.state, "data-folder": folder.id, "aria-labelledby": titleId, tabindex: "-1" },
    h(
      "div",
      { class: "card-head" },
      h("span", { class: "folder-icon" }, icon("folder")),
      h(
        "div",
        { class: "card-title" },
        h("h3", { class: "path", id: titleId, title: folder.path }, head ? h("span", { class: "path-head" }, head) : null, h("span", { class: "path-tail" }, tail)),
        h("p", { class: "meta" }, h("span", null, where || "Kandan picks a channel when it starts")),
      ),
      h("span", { class: "badge", "data-state": folder.state }, icon(state.icon, state.spin ? "spin" : null), h("span", { class: "badge-text" }, state.text)),
    ),
    folder.detail && !requests.length ? h("p", { class: "detail" }, richText(folder.detail)) : null,
    problemView(folder),
    requests.length ? h("ul", { class: "requests", "aria-label": "Waiting for you" }, requests) : null,
    resourcesView(folder),
    folderActionsView(folder),
  );
}

function foldersView() {
  const folders = (snapshot && snapshot.folders) || [];
  if (!snapshot) return [h("div", { class: "loading", key: "loading" }, "Loading…")];
  if (!folders.length) return [emptyView()];
  return folders.map(folderView);
}

function shareSlotView() {
  if (!folderCount()) return [];
  return [
    button("share", "Share a folder…", { variant: signedIn() ? "primary" : "secondary", size: "sm", iconName: "folderPlus", onClick: ACTIONS.share, id: "share-head" }),
    errorLine("share", "err-share"),
  ];
}

function activityView() {
  const entries = (snapshot && snapshot.activity) || [];
  if (!entries.length) {
    return [h("li", { class: "activity-empty", key: "empty" }, "Nothing yet. What Codex does in your shared folders shows up here.")];
  }
  const folders = new Map(((snapshot && snapshot.folders) || []).map((folder) => [folder.id, folder]));
  const now = Date.now();
  return entries.slice(0, 100).map((entry) => {
    const level = LEVELS[entry.level] || LEVELS.info;
    const folder = folders.get(entry.folderId);
    const repeated = entry.count > 1;
    return h(
      "li",
      { class: "activity-item", key: `${entry.firstAt}|${entry.folderId}|${entry.text}`, "data-level": entry.level || "info" },
      h("span", { class: "activity-icon", role: "img", "aria-label": level.text }, icon(level.icon)),
      h(
        "div",
        { class: "activity-body" },
        h("p", { class: "activity-text" }, richText(entry.text), repeated ? h("span", { class: "count", title: `${entry.count} times` }, `×${entry.count}`) : null),
        h(
          "p",
          { class: "activity-meta" },
          h(
            "time",
            { datetime: new Date(entry.at).toISOString(), title: new Date(entry.at).toLocaleString() },
            // A range only when it spans more than a minute.
            repeated && clock(entry.firstAt) !== clock(entry.at) ? `${clock(entry.firstAt)}–${clock(entry.at)}` : relativeTime(entry.at, now),
          ),
          folder ? h("span", { title: folder.path }, folder.name) : null,
        ),
        details(entry.details),
      ),
    );
  });
}

function pendingCount() {
  let count = 0;
  for (const folder of (snapshot && snapshot.folders) || []) {
    count += (folder.approvals || []).length + (folder.portPrompts || []).length;
  }
  return count;
}

/** A notification's body was clicked: bring its prompt into view. */
function applyFocus() {
  const focus = snapshot && snapshot.focus;
  if (!focus || focus.serial <= focusSerial) return;
  focusSerial = focus.serial;
  selectTab($("#tab-folders"), false);
  const request = document.getElementById(domId("request", focus.folderId, focus.requestId));
  if (request) {
    request.scrollIntoView({ block: "center" });
    request.classList.add("flash");
    setTimeout(() => request.classList.remove("flash"), 1600);
    const approve = document.getElementById(domId("approve", focus.folderId, focus.requestId));
    if (approve) approve.focus();
  }
}

// ---------------------------------------------------------------- settings form

const form = $("#settings-form");
const fields = {
  kandanUrl: $("#s-kandanUrl"),
  listenUser: $("#s-listenUser"),
  codexBin: $("#s-codexBin"),
  codeServerBin: $("#s-codeServerBin"),
  model: $("#s-model"),
  reasoningEffort: $("#s-reasoningEffort"),
  approvalPolicy: $("#s-approvalPolicy"),
  sandbox: $("#s-sandbox"),
  fast: $("#s-fast"),
  checkForUpdates: $("#s-checkForUpdates"),
  allowedRoots: $("#s-allowedRoots"),
  forwardPorts: $("#s-forwardPorts"),
  streamFlushMs: $("#s-streamFlushMs"),
};
let settingsDirty = false;
let settingsSavedAt = 0;

function fillSettings(settings, { force = false } = {}) {
  if (!settings) return;
  const values = {
    kandanUrl: settings.kandanUrl || "",
    listenUser: settings.listenUser || "",
    codexBin: settings.codexBin || "",
    codeServerBin: settings.codeServerBin || "",
    model: settings.model || "",
    reasoningEffort: settings.reasoningEffort || "",
    approvalPolicy: settings.approvalPolicy || "",
    sandbox: settings.sandbox || "",
    allowedRoots: (settings.allowedRoots || []).join("\n"),
    forwardPorts: (settings.forwardPorts || []).join(", "),
    streamFlushMs: settings.streamFlushMs == null ? "" : String(settings.streamFlushMs),
  };
  const effort = fields.reasoningEffort;
  if (values.reasoningEffort && ![...effort.options].some((option) => option.value === values.reasoningEffort)) {
    effort.append(new Option(values.reasoningEffort, values.reasoningEffort));
  }
  for (const [name, value] of Object.entries(values)) {
    const input = fields[name];
    if (!force && input === document.activeElement) continue;
    if (input.value !== value) input.value = value;
  }
  if (force || fields.fast !== document.activeElement) fields.fast.checked = !!settings.fast;
  if (force || fields.checkForUpdates !== document.activeElement) {
    fields.checkForUpdates.checked = settings.checkForUpdates !== false;
  }
}

/** Shows each problem under its field ({field, message}); none clears them all. */
function setFieldErrors(problems) {
  for (const [name, input] of Object.entries(fields)) {
    const problem = problems.find((p) => p.field === name);
    const slot = document.getElementById(`e-${name}`);
    if (problem) input.setAttribute("aria-invalid", "true");
    else input.removeAttribute("aria-invalid");
    if (slot) patch(slot, problem ? [icon("error"), h("span", null, problem.message)] : []);
    const described = new Set((input.getAttribute("aria-describedby") || "").split(" ").filter(Boolean));
    if (problem) described.add(`e-${name}`);
    else described.delete(`e-${name}`);
    if (described.size) input.setAttribute("aria-describedby", [...described].join(" "));
    else input.removeAttribute("aria-describedby");
  }
}

/** The form's settings, or the problems to show at their fields. */
function readSettings() {
  const text = (name) => fields[name].value.trim();
  const optional = (name) => text(name) || null;
  const problems = [];
  const fail = (field, message) => problems.push({ field, message });
  if (!text("kandanUrl")) fail("kandanUrl", "Enter the Kandan server, like kandan.example.com.");
  if (!text("codexBin")) fail("codexBin", "Enter the Codex program (usually just “codex”).");
  const ports = [];
  for (const part of text("forwardPorts").split(/[\s,]+/).filter(Boolean)) {
    const port = Number(part);
    if (!Number.isInteger(port) || port < 1 || port > 65535) fail("forwardPorts", `“${part}” is not a port number (1–65535).`);
    else if (!ports.includes(port)) ports.push(port);
  }
  let flush = null;
  if (text("streamFlushMs")) {
    flush = Number(text("streamFlushMs"));
    if (!Number.isInteger(flush) || flush < 10 || flush > 10000) {
      fail("streamFlushMs", "Enter a whole number of milliseconds from 10 to 10000.");
    }
  }
  if (problems.length) return { problems };
  const base = (snapshot && snapshot.settings) || {};
  return {
    settings: {
      ...base,
      kandanUrl: text("kandanUrl"),
      listenUser: optional("listenUser"),
      codexBin: text("codexBin"),
      codeServerBin: optional("codeServerBin"),
      model: optional("model"),
      reasoningEffort: optional("reasoningEffort"),
      approvalPolicy: optional("approvalPolicy"),
      sandbox: optional("sandbox"),
      fast: fields.fast.checked,
      checkForUpdates: fields.checkForUpdates.checked,
      allowedRoots: fields.allowedRoots.value.split(/[\n,]/).map((root) => root.trim()).filter(Boolean),
      forwardPorts: ports,
      streamFlushMs: flush == null ? base.streamFlushMs ?? null : flush,
    },
  };
}

function renderSettings() {
  const save = $("#settings-save");
  const saving = busy.has("save");
  save.setAttribute("aria-busy", saving ? "true" : "false");
  if (saving) save.setAttribute("aria-disabled", "true");
  else save.removeAttribute("aria-disabled");
  $("#settings-revert").hidden = !settingsDirty;
  const error = errors.get("save");
  patch($("#settings-error"), error ? [icon("error"), h("span", null, error.message)] : []);
  const status = $("#settings-status");
  const statusText = settingsDirty ? "Unsaved changes" : settingsSavedAt ? "Saved" : "";
  if (status.textContent !== statusText) status.textContent = statusText;
  status.dataset.kind = settingsDirty ? "dirty" : "saved";
  if (snapshot && !settingsDirty) fillSettings(snapshot.settings);

  const toggle = $("#autostart");
  const toggling = busy.has("autostart");
  toggle.setAttribute("aria-busy", toggling ? "true" : "false");
  if (snapshot && !toggling && toggle.checked !== !!snapshot.autostart) toggle.checked = !!snapshot.autostart;
  const autostartError = errors.get("autostart");
  patch($("#autostart-error"), autostartError ? [icon("error"), h("span", null, autostartError.message)] : []);
}

form.addEventListener("input", () => {
  settingsDirty = true;
  settingsSavedAt = 0;
  render();
});

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  if (busy.has("save")) return;
  const read = readSettings();
  if (read.problems) {
    errors.set("save", { message: "Fix the marked fields, then save again.", details: null });
    setFieldErrors(read.problems);
    render();
    fields[read.problems[0].field].focus();
    return;
  }
  setFieldErrors([]);
  const result = await run("save", "save_settings", { settings: read.settings });
  if (!result.ok && !result.skipped) {
    // A rejection names its fields ({message, problems: [{field, message}]}): shown there.
    const problems = (result.raw && Array.isArray(result.raw.problems) && result.raw.problems) || [];
    const known = problems.filter((problem) => fields[problem.field]);
    setFieldErrors(known);
    if (known.length) {
      errors.set("save", { message: "Fix the marked fields, then save again.", details: null });
      fields[known[0].field].focus();
    }
    render();
  }
  if (result.ok) {
    settingsDirty = false;
    settingsSavedAt = Date.now();
    if (snapshot) snapshot.settings = result.value || read.settings;
    fillSettings(result.value || read.settings, { force: true });
    render();
  }
});

$("#settings-revert").addEventListener("click", () => {
  settingsDirty = false;
  errors.delete("save");
  setFieldErrors([]);
  if (snapshot) fillSettings(snapshot.settings, { force: true });
  render();
  $("#settings-save").focus();
});

$("#autostart").addEventListener("click", (event) => {
  if (busy.has("autostart")) event.preventDefault();
});
$("#autostart").addEventListener("change", async (event) => {
  const enabled = event.target.checked;
  const result = await run("autostart", "set_autostart", { enabled });
  if (!result.ok && snapshot) event.target.checked = !!snapshot.autostart;
  if (result.ok && snapshot) {
    snapshot.autostart = enabled;
    render();
  }
});

// ---------------------------------------------------------------- tabs

const tabs = [$("#tab-folders"), $("#tab-settings")];
function selectTab(tab, focus) {
  for (const other of tabs) {
    const selected = other === tab;
    other.setAttribute("aria-selected", String(selected));
    other.tabIndex = selected ? 0 : -1;
    document.getElementById(other.getAttribute("aria-controls")).hidden = !selected;
  }
  if (focus) tab.focus();
}
for (const tab of tabs) {
  tab.addEventListener("click", () => selectTab(tab, false));
  tab.addEventListener("keydown", (event) => {
    const index = tabs.indexOf(tab);
    let next = null;
    if (event.key === "ArrowRight") next = tabs[(index + 1) % tabs.length];
    else if (event.key === "ArrowLeft") next = tabs[(index - 1 + tabs.length) % tabs.length];
    else if (event.key === "Home") next = tabs[0];
    else if (event.key === "End") next = tabs[tabs.length - 1];
    if (next) {
      event.preventDefault();
      selectTab(next, true);
    }
  });
}

document.addEventListener("keydown", (event) => {
  if (event.key !== "Escape") return;
  if (confirmingSignOut) {
    confirmingSignOut = false;
    pendingFocus = "signout";
    render();
    return;
  }
  const card = event.target.closest && event.target.closest("[data-folder]");
  if (card && confirmingStop.has(card.dataset.folder)) {
    confirmingStop.delete(card.dataset.folder);
    pendingFocus = domId("stop", card.dataset.folder);
    render();
  }
});

// ---------------------------------------------------------------- render

function render() {
  const active = document.activeElement;
  const activeCard = active && active.closest ? active.closest("[data-folder]") : null;
  const activeCardId = activeCard ? activeCard.dataset.folder : null;

  renderPill();
  patch($("#account"), accountView());
  patch($("#banners"), bannersView());
  patch($("#signin"), signInView());
  patch($("#notice"), noticesView());
  patch($("#share-slot"), shareSlotView());
  patch($("#folders"), foldersView());
  patch($("#activity"), activityView());
  const pending = pendingCount();
  const badge = $("#tab-badge");
  badge.hidden = pending === 0;
  const badgeText = pending ? String(pending) : "";
  if (badge.textContent !== badgeText) badge.textContent = badgeText;
  badge.setAttribute("aria-hidden", "true");
  const tabName = pending ? `Folders, ${pending === 1 ? "1 request" : `${pending} requests`} waiting` : "Folders";
  if ($("#tab-folders").getAttribute("aria-label") !== tabName) $("#tab-folders").setAttribute("aria-label", tabName);
  renderSettings();

  if (pendingFocus) {
    const target = document.getElementById(pendingFocus);
    pendingFocus = null;
    if (target) target.focus();
  } else if (activeCardId && (!document.activeElement || document.activeElement === document.body)) {
    // The focused control went away (e.g. an approval was answered): keep focus in its card.
    const card = document.querySelector(`[data-folder="${CSS.escape(activeCardId)}"]`);
    if (card) card.focus({ preventScroll: true });
  }
  applyFocus();
}

function applySnapshot(next, fromEvent) {
  if (!next || typeof next !== "object") return;
  if (!fromEvent && gotEvent) return; // an event already brought a newer one
  if (fromEvent) gotEvent = true;
  const before = snapshot ? (snapshot.folders || []).length : 0;
  snapshot = next;
  if ((snapshot.folders || []).length > before) errors.delete("share"); // a share went through
  if (!signedIn()) confirmingSignOut = false;
  for (const id of [...confirmingStop]) {
    if (!(snapshot.folders || []).some((folder) => folder.id === id)) confirmingStop.delete(id);
  }
  render();
}

// Relative times age, and a notice that needs nothing goes after a few seconds: refresh
// those now and then (no state is polled).
setInterval(() => {
  patch($("#activity"), activityView());
  patch($("#notice"), noticesView());
  patch($("#signin"), signInView());
}, 1_000);

async function start() {
  render();
  if (!tauri || !tauri.core || !tauri.event) {
    snapshot = {
      account: { signedIn: false },
      trayState: "offline",
      folders: [],
      activity: [],
      settings: {},
      autostart: false,
      notices: [{ id: 0, level: "error", text: "This page runs inside Linzumi Desktop; it cannot reach the app from here." }],
    };
    render();
    return;
  }
  try {
    await tauri.event.listen("snapshot", (event) => applySnapshot(event.payload, true));
  } catch (error) {
    console.error("listening for snapshots failed", error);
  }
  try {
    applySnapshot(await invoke("get_snapshot", {}), false);
  } catch (error) {
    snapshot = snapshot || { account: {}, trayState: "offline", folders: [], activity: [], settings: {}, autostart: false, notices: [] };
    const { message, details } = failure(error);
    snapshot.notices = [{ id: 0, level: "error", text: `Could not load Linzumi's state: ${message}`, details }];
    render();
  }
}

start();
