//! `kandan-test-server`: runs the fake Kandan server for the local demo and non-Rust tests.
//!
//! Prints `listening on http://HOST:PORT`, then `ready user=SLUG token=TOKEN` (a token for the
//! first user), `admin key=KEY` (this run's admin key, needed by `/__admin/*`, `/demo` and the
//! OAuth consent page) and, with `--demo`, `demo http://HOST:PORT/demo?key=KEY`; serves until
//! interrupted.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use kandan_test_server::{AdminKey, DemoConfig, KandanTestServer, ServerConfig, TestUser};

#[derive(Debug, Parser)]
#[command(about = "A protocol-faithful fake Kandan server (Phoenix Channels V2, runner OAuth)")]
struct Args {
    /// Address to listen on. Requests must name a loopback host (or this address) in `Host`.
    #[arg(long, default_value = "127.0.0.1:4160")]
    bind: SocketAddr,

    /// A user as SLUG:ID, e.g. `--user sean:1`; repeatable. The first one gets the ready token
    /// and is the consent page's first choice. Defaults to tester:1.
    #[arg(long = "user", value_parser = parse_user)]
    users: Vec<TestUser>,

    /// Close sockets that send nothing for this many seconds.
    #[arg(long, default_value_t = 60)]
    idle_timeout_secs: u64,

    /// Serve the live chat page /demo for WORKSPACE/CHANNEL; it posts as the first user.
    #[arg(long, value_name = "WORKSPACE/CHANNEL", value_parser = parse_channel)]
    demo: Option<(String, String)>,
}

fn parse_channel(text: &str) -> Result<(String, String), String> {
    match text.split_once('/') {
        Some((workspace, channel))
            if !workspace.is_empty() && !channel.is_empty() && !channel.contains('/') =>
        {
            Ok((workspace.to_owned(), channel.to_owned()))
        }
        _ => Err(format!("expected WORKSPACE/CHANNEL, got {text:?}")),
    }
}

fn parse_user(text: &str) -> Result<TestUser, String> {
    let (slug, id) = text
        .rsplit_once(':')
        .ok_or_else(|| format!("expected SLUG:ID, got {text:?}"))?;
    let id = id
        .parse()
        .map_err(|err| format!("user id {id:?} is not an integer: {err}"))?;
    if slug.is_empty() {
        return Err(format!("empty user slug in {text:?}"));
    }
    Ok(TestUser {
        id,
        slug: slug.to_owned(),
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "kandan_test_server=info".into()),
        )
        .with_writer(std::io::stderr)
        .init();

    let args = Args::parse();
    if args.bind.ip().is_unspecified() {
        tracing::warn!(bind = %args.bind, "only requests for a loopback name are served; name a specific address to be reached by it");
    }
    // Never started without a key: whoever can reach the port is not necessarily whoever ran it.
    let mut config = ServerConfig {
        bind: args.bind,
        heartbeat_idle_timeout: Duration::from_secs(args.idle_timeout_secs),
        admin_key: Some(AdminKey::generate()),
        ..ServerConfig::default()
    };
    if !args.users.is_empty() {
        config.users = args.users;
    }
    let first_user = config.users.first().map(|user| user.slug.clone());
    if let (Some((workspace, channel)), Some(user_slug)) = (args.demo, &first_user) {
        config.demo = Some(DemoConfig {
            workspace,
            channel,
            user_slug: user_slug.clone(),
        });
    }
    let demo = config.demo.is_some();

    let server = KandanTestServer::start(config).await?;
    println!("listening on {}", server.http_url());
    if let Some(slug) = first_user {
        let token = server.issue_token(&slug, None);
        println!("ready user={slug} token={token}");
    }
    if let Some(key) = server.admin_key() {
        println!("admin key={key}");
    }
    if demo {
        println!("demo {}", server.demo_url());
    }

    shutdown_signal().await?;
    server.shutdown().await;
    Ok(())
}

/// Ctrl-C, or SIGTERM from whatever started the demo.
async fn shutdown_signal() -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut terminate = signal(SignalKind::terminate())?;
        tokio::select! {
            result = tokio::signal::ctrl_c() => result,
            _ = terminate.recv() => Ok(()),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_users() {
        assert_eq!(
            parse_user("sean:1"),
            Ok(TestUser {
                id: 1,
                slug: "sean".into()
            })
        );
        assert!(parse_user("sean").is_err());
        assert!(parse_user("sean:x").is_err());
        assert!(parse_user(":1").is_err());
    }

    #[test]
    fn parses_demo_channels() {
        assert_eq!(
            parse_channel("acme/codex"),
            Ok(("acme".into(), "codex".into()))
        );
        for bad in ["acme", "/codex", "acme/", "a/b/c"] {
            assert!(parse_channel(bad).is_err(), "{bad}");
        }
    }
}
