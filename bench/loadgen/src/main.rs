//! `loadgen`: load for storehook's ingest path, and a double of its destinations.
//!
//! - `loadgen ingest`: distinct, correctly signed Haravan orders over kept-alive HTTP/1.1
//!   connections, closed loop or at a fixed rate; reports req/s and latency percentiles.
//! - `loadgen double`: answers like Legion, Scalef and Salekit, and counts what arrived.
//!
//! See bench/README.md.

mod double;
mod ingest;
mod orders;

use std::time::Duration;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "loadgen",
    version,
    about = "Load generator for storehook, and a destination double."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// POST distinct signed Haravan orders to storehook, closed loop or at a fixed rate.
    Ingest(ingest::IngestArgs),
    /// Answer like Legion, Scalef and Salekit; count requests; print the counts on exit.
    Double(double::DoubleArgs),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Ingest(args) => ingest::run(args),
        Command::Double(args) => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?
            .block_on(double::run(args)),
    }
}

/// `500ms`, `10s`, `2m`, or a plain number of seconds (`1.5`).
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration like 500ms, 10s or 2m"))?;
    let seconds = match unit.trim() {
        "ms" => value / 1000.0,
        "" | "s" => value,
        "m" | "min" => value * 60.0,
        other => return Err(format!("unknown unit `{other}` (use ms, s or m)")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("`{text}`: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("3h").is_err());
    }

    #[test]
    fn the_command_line_parses() {
        use clap::CommandFactory as _;
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from([
            "loadgen",
            "ingest",
            "--secret",
            "s",
            "--rate",
            "2000",
            "--duration",
            "20s",
        ])
        .unwrap();
        let Command::Ingest(args) = cli.command else {
            panic!("not ingest")
        };
        assert_eq!(args.rate, Some(2000.0));
        assert_eq!(args.connections, 64);
        assert_eq!(args.duration, Duration::from_secs(20));
        assert_eq!(args.warmup, Duration::from_secs(2));
        assert_eq!(args.urls, ["http://127.0.0.1:8080/webhooks/haravan"]);

        let cli = Cli::try_parse_from([
            "loadgen",
            "ingest",
            "--secret",
            "s",
            "--url",
            "http://127.0.0.1:1/a",
            "--url",
            "http://127.0.0.1:2/a",
        ])
        .unwrap();
        let Command::Ingest(args) = cli.command else {
            panic!("not ingest")
        };
        assert_eq!(args.urls, ["http://127.0.0.1:1/a", "http://127.0.0.1:2/a"]);
    }
}
