//! The `sluice` binary: parses flags and runs a subcommand.

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    sluice::tls::install_default_provider();
    let cli = sluice::cli::Cli::parse();
    sluice::cli::init_logging(&cli);
    match sluice::cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "sluice failed");
            eprintln!("sluice: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
