//! The words the CLI shows: descriptions, examples (good and bad, as in the reference
//! runner's help), and the guide.

pub const DEFAULT_KANDAN_URL: &str = "wss://serve.kandanai.com";

pub const ABOUT: &str = "Kandan local Codex runner

Connects this computer to a Kandan workspace: teammates write in a chat thread, and a
local Codex app-server works in your folder and reports back.";

pub const EXAMPLES: &str = "Examples:
  Good:
    linzumi start ~/
    linzumi start ~/code/my-app --kandan-url wss://serve.kandanai.com
    linzumi connect --kandan-url wss://serve.kandanai.com --workspace linzumi --channel seans-playground --codex-bin codex --launch-tui
    linzumi connect --kandan-url wss://serve.kandanai.com --workspace linzumi --channel seans-playground --codex-bin codex --model gpt-5.5 --reasoning-effort low --fast --launch-tui
    linzumi auth --kandan-url ws://127.0.0.1:4160 --workspace default --channel seans-playground
    linzumi connect --kandan-url ws://127.0.0.1:4160 --token \"$TOKEN\" --workspace default --channel seans-playground --cwd /tmp/kandan-runner-a
    linzumi connect --kandan-url ws://127.0.0.1:4160 --workspace default --channel seans-playground
    linzumi connect --kandan-url ws://127.0.0.1:4160 --token \"$TOKEN\" --channel default/seans-playground --listen-user all --launch-tui
    linzumi connect --kandan-url ws://127.0.0.1:4160 --workspace default --channel seans-playground --allowed-cwd ~/code/linzumi,~/scratch
    linzumi connect --kandan-url ws://127.0.0.1:4160 --workspace default --channel seans-playground --forward-port 3000,5173

  Bad:
    linzumi connect --kandan-url ws://127.0.0.1:4160 --token not-a-jwt --workspace default --channel seans-playground
      Missing --listen-user and authenticated user is unavailable.
    linzumi connect --kandan-url ws://127.0.0.1:4160 --token \"$TOKEN\" --listen-users sean
      Invalid flag: use --listen-user.
    linzumi connect --kandan-url ws://127.0.0.1:4160 --workspace default --channel seans-playground --allowed-cwd /does/not/exist
      Invalid --allowed-cwd: allowed cwd roots must exist locally.
    linzumi connect --kandan-url ws://127.0.0.1:4160 --workspace default --channel seans-playground --forward-port vite
      Invalid --forward-port: value must be a TCP port from 1 to 65535.";

pub const START_ABOUT: &str = "Linzumi one-command local runner

Opens Kandan in your browser, creates or reuses your personal coding space, grants a
scoped local-runner token, and starts this computer as a runner for Codex sessions,
local previews, and the Kandan editor.";

pub const START_EXAMPLES: &str = "Examples:
  linzumi start ~/
  linzumi start ~/code/my-app --kandan-url ws://100.71.192.98:4162 --oauth-callback-host 100.71.192.98";

pub const DEMO_ABOUT: &str = "Try Linzumi locally

Starts a local stand-in for Kandan on 127.0.0.1 (the project's test server) with a live
thread page, and connects a runner that shares the folder with your own codex. Write in
the page's reply box: your message becomes a Codex turn, and its answer, commands, file
changes and approval requests stream into the thread. Nothing leaves this computer
except what your codex itself sends to its model.";

pub const GUIDE: &str = "linzumi start

Fastest path:
  linzumi start ~/

This opens Kandan in your browser, creates or reuses your personal coding
space, and starts this computer as a local Codex runner.

Advanced:
  linzumi connect

Connect this computer to Kandan as a local Codex runner.

  linzumi connect --kandan-url wss://serve.kandanai.com --workspace <slug> --channel <slug>

The first run opens your browser to sign in; the token is cached in ~/.kandan/auth.json
(change it with --auth-file) and reused while Kandan accepts it. Replies from the
signed-in user in the bound Kandan thread become Codex turns in --cwd; use
--listen-user all to accept everyone in the channel. Let Kandan start sessions in other
folders with --allowed-cwd, and expose local dev servers with --forward-port.

Run `linzumi connect --help` for every option.
";
