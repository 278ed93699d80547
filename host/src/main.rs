//! The `sluice` binary: parses flags and runs a subcommand.

use clap::{CommandFactory, FromArgMatches};

/// Stack of every runtime thread (async workers and the blocking pool that
/// evaluates PromQL). Expression depth is capped (`sluice_promql::limits`),
/// and this leaves room for the deepest accepted query in any build profile;
/// only the pages a thread touches are committed.
const THREAD_STACK_BYTES: usize = 16 << 20;

fn main() -> std::process::ExitCode {
    sluice::tls::install_default_provider();
    let command = sluice::cli::Cli::command();
    let matches = command.clone().get_matches();
    let cli = match sluice::cli::Cli::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    sluice::api::status::set_process_flags(&matches, &command);
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
