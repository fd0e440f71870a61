use std::process::ExitCode;

use clap::Parser;

/// mimalloc: translating an order allocates hundreds of small values; glibc's malloc spent
/// about a third of the time (measured with perf on `bench/jq-compare.sh`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = storehook::cli::Cli::parse();
    // Held until main returns, so every line is written before the process exits.
    let _log_writer = storehook::logging::init();
    match storehook::cli::run(cli).await {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(2)
        }
    }
}
