// The update banner. Its state and sentence come from the Rust side (updates.rs): first
// from `get_update_state`, then from every "update" event. The app decides what may be
// installed; this only shows it and passes on the click.

const tauri = window.__TAURI__;
const slot = document.querySelector("#update");
let state = null;
let busy = false;
let error = "";

function button(text, onClick, primary) {
  const el = document.createElement("button");
  el.type = "button";
  el.className = primary ? "btn btn-primary" : "btn btn-ghost";
  el.textContent = text;
  el.disabled = busy;
  el.addEventListener("click", onClick);
  return el;
}

async function run(command) {
  busy = true;
  error = "";
  render();
  try {
    await tauri.core.invoke(command, {});
  } catch (failure) {
    error = String(failure);
  }
  busy = false;
  render();
}

function render() {
  const text = (state && state.text) || "";
  slot.replaceChildren();
  if (!text) return;
  const banner = document.createElement("div");
  banner.className = `banner ${state.state === "refused" ? "banner-warn" : "banner-info"}`;
  banner.dataset.update = state.state;
  const words = document.createElement("span");
  words.className = "banner-text";
  // A refused install already says why in its message.
  words.textContent = error && state.state !== "refused" ? `${text} ${error}` : text;
  banner.append(words);
  if (state.state === "available") {
    if (state.install === "inApp") banner.append(button("Install", () => run("install_update"), true));
    banner.append(button("Release page", () => run("open_release_page"), false));
  }
  slot.append(banner);
}

async function start() {
  if (!tauri || !tauri.core || !tauri.event || !slot) return;
  await tauri.event.listen("update", (event) => {
    state = event.payload;
    error = "";
    render();
  });
  try {
    state = await tauri.core.invoke("get_update_state", {});
    render();
  } catch (failure) {
    console.error("could not read the update state", failure);
  }
}

start();
