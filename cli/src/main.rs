//! `linzumi`: the headless runner. A thin front over `linzumi-engine`.
mod args;
mod commands;
mod editor_progress;
mod flag_errors;
mod help;
mod session;
mod settings;
mod sign_in;
mod update_notice;

use std::process::ExitCode;

use clap::Parser;
use linzumi_engine::secrets;

use args::{Cli, Command};
use commands::CommandError;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            return match flag_errors::message(&error) {
                Some(message) => {
                    eprintln!("{message}");
                    ExitCode::FAILURE
                }
                None => {
                    // Help and version go to stdout with status 0; any other error exits
                    // 1, as every error does in the seed.
                    let _ = error.print();
                    if error.exit_code() == 0 {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::FAILURE
                    }
                }
            };
        }
    };
    init_logging(&cli);
    let notice = update_notice::UpdateNotice::from_env().filter(|_| !launches_tui(&cli));
    // One thread: the runner is all I/O, and a small footprint matters for a
    // process that idles in the background.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("cannot start: {error}");
            return ExitCode::FAILURE;
        }
    };
    let runner = matches!(
        cli.command,
        Some(Command::Connect(_) | Command::Start(_) | Command::Demo(_))
    );
    let outcome = runtime.block_on(async {
        // A runner runs for long: its notice comes whenever the feed answers.
        let notice = match notice {
            Some(notice) if runner => {
                tokio::spawn(print_notice(notice));
                None
            }
            other => other,
        };
        match cli.command {
            None => {
                println!("{}\n\n{}", help::ABOUT, help::GUIDE);
                Ok(ExitCode::SUCCESS)
            }
            Some(Command::Version) => {
                println!("linzumi {}", env!("CARGO_PKG_VERSION"));
                if let Some(notice) = notice {
                    print_notice(notice).await;
                }
                Ok(ExitCode::SUCCESS)
            }
            Some(Command::Guide) => {
                print!("{}", help::GUIDE);
                Ok(ExitCode::SUCCESS)
            }
            Some(Command::Auth(args)) => commands::sign_in(args).await,
            Some(Command::Connect(args)) => commands::connect(args).await,
            Some(Command::Start(args)) => commands::start(args).await,
            Some(Command::Demo(args)) => commands::demo(args).await,
        }
    });
    // The seed's way with every error: its message alone on stderr, exit 1.
    match outcome {
        Ok(code) => code,
        Err(CommandError::Flag(error)) => {
            eprintln!("{error}");
            ExitCode::FAILURE
        }
        Err(CommandError::Failed(message)) => {
            eprintln!("{message}");
            ExitCode::FAILURE
        }
    }
}

async fn print_notice(notice: update_notice::UpdateNotice) {
    if let Some(line) = notice.check().await {
        eprintln!("{line}");
    }
}

/// Whether the Codex TUI will own the terminal.
fn launches_tui(cli: &Cli) -> bool {
    matches!(
        &cli.command,
        Some(Command::Connect(args)) if args.runner.launch_tui
    ) || matches!(&cli.command, Some(Command::Start(args)) if args.runner.launch_tui)
        || matches!(&cli.command, Some(Command::Demo(args)) if args.runner.launch_tui)
}

/// Warnings and the runner's own lines on stderr; `RUST_LOG` for more. Nothing while
/// the Codex TUI owns the terminal.
fn init_logging(cli: &Cli) {
    let default = if launches_tui(cli) { "off" } else { "warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // Libraries log request lines and headers at trace level: every line is masked.
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| secrets::MaskingWriter::new(std::io::stderr()))
        .init();
}
