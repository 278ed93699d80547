//! The `sluice` binary: parses flags and runs a subcommand.

use clap::Parser;

/// Stack of every runtime thread (async workers and the blocking pool that
/// evaluates PromQL). Expression depth is capped (`sluice_promql::limits`),
/// and this leaves room for the deepest accepted query in any build profile;
/// only the pages a thread touches are committed.
const THREAD_STACK_BYTES: usize = 16 << 20;

fn main() -> std::process::ExitCode {
    sluice::tls::install_default_provider();
    let cli = sluice::cli::Cli::parse();
    sluice::cli::init_logging(&cli);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(THREAD_STACK_BYTES)
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sluice: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(sluice::cli::run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "sluice failed");
            eprintln!("sluice: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
