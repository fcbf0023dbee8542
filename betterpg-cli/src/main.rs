//! `bpg`: the betterpg command line, a thin layer over `betterpg-core`.
//!
//! [`args`] says what the command line accepts, [`commands`] has one module
//! per command, [`wire`] the JSON each prints with `--json`
//! (`docs/cli-json.md`), [`output`] the text and the exit statuses. This
//! file only sets up logging and the async runtime and dispatches.

use std::process::ExitCode;

use clap::Parser;

mod args;
mod commands;
mod output;
mod wire;

fn main() -> ExitCode {
    let cli = args::Cli::parse();
    let filter = match cli.verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("BPG_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(filter)),
        )
        .with_writer(std::io::stderr)
        .init();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(commands::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => output::fail(&e),
    }
}
