use std::io::IsTerminal as _;
use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

/// mimalloc: translating an order allocates hundreds of small values; glibc's malloc spent
/// about a third of the time (measured with perf on `bench/jq-compare.sh`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The log thread's write buffer: about a hundred lines.
const LOG_BUFFER_BYTES: usize = 32 * 1024;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = storehook::cli::Cli::parse();
    // Held until main returns, so every line is written before the process exits.
    let _log_writer = init_logging();
    match storehook::cli::run(cli).await {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(2)
        }
    }
}

/// Logs go to stderr (stdout is the CLI's output): `RUST_LOG` filters them (default `info`),
/// `STOREHOOK_LOG_FORMAT=json` writes one JSON object a line. Lines are written by a
/// background thread, so a request never waits on a write to stderr; when that thread falls
/// behind, logging waits rather than dropping lines. The thread writes whatever lines are
/// waiting in one write, not one write each (it flushes its buffer each time no more lines
/// are waiting, so a line is never held back): under load, a line per webhook was a system
/// call per webhook.
fn init_logging() -> tracing_appender::non_blocking::WorkerGuard {
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .finish(std::io::BufWriter::with_capacity(
            LOG_BUFFER_BYTES,
            std::io::stderr(),
        ));
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,rusqlite_migration=warn,tower_http=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(writer);
    if std::env::var("STOREHOOK_LOG_FORMAT").as_deref() == Ok("json") {
        builder.json().init();
    } else {
        builder.init();
    }
    guard
}
