//! `mock-model-api`: runs the mock Responses API until Ctrl-C, for manual runs and demos.

use clap::Parser;
use mock_model_api::MockModelApi;

/// A scriptable mock of the OpenAI Responses API for running codex offline.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Port on 127.0.0.1 (0: any free port).
    #[arg(long, default_value_t = 0)]
    port: u16,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("mock_model_api=debug")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let args = Args::parse();
    let mock = MockModelApi::start_on_port(args.port).await?;
    println!("listening on {}", mock.base_url());
    tokio::signal::ctrl_c().await?;
    mock.shutdown().await;
    Ok(())
}
