//! The command line: `serve`, `send`, `sign`, `check`, `test`, `translate`, `deliveries`,
//! `replay`, `cancel`, `webhooks`, `webhook`, `delivery`, `migrate`, `copy-store`.

/// Writes a line of the command's output to stdout. A closed pipe (`storehook … | head`)
/// ends the process quietly, with success: whoever read the output has what it wanted.
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::cli::write_line(format_args!($($arg)*))
    };
}

mod copy_store;
mod mapping;
mod outbox;
mod test;
mod views;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};

use crate::app::App;
use crate::config::{Config, SourceConfig};
use crate::domain::PlatformKind;
use crate::fixture::Fixture;
use crate::source::signed_headers;
use crate::store;

/// See [`say!`].
pub(crate) fn write_line(line: std::fmt::Arguments<'_>) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    if let Err(error) = writeln!(out, "{line}").and_then(|()| out.flush()) {
        if error.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: cannot write the output: {error}");
        std::process::exit(1);
    }
}

#[derive(Debug, Parser)]
#[command(
    name = "storehook",
    version,
    about = "Storefront webhooks in, marketing tools out."
)]
pub struct Cli {
    /// Configuration file [default: ./storehook.toml, else the embedded defaults]
    #[arg(long, global = true, env = "STOREHOOK_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Receive webhooks on POST /webhooks/{source} until SIGTERM or Ctrl-C.
    Serve,
    /// Sign a recorded webhook as its platform would and POST it; prints status and body.
    Send {
        /// Body file (e.g. fixtures/shopify/paid-two-items-discount.json); the headers
        /// recorded beside it (NAME.headers) are sent too.
        file: PathBuf,
        /// The source whose secret signs it.
        #[arg(long)]
        source: String,
        /// Where to POST [default: http://127.0.0.1:PORT/webhooks/SOURCE, PORT the configured one]
        #[arg(long)]
        url: Option<String>,
        /// Topic to send instead of the recorded one.
        #[arg(long)]
        topic: Option<String>,
    },
    /// Print the headers `send` would send (for curl --data-binary @FILE).
    Sign {
        /// Body file; the headers recorded beside it (NAME.headers) are printed too.
        file: PathBuf,
        /// The source whose secret signs it.
        #[arg(long)]
        source: String,
        /// Topic to sign for instead of the recorded one.
        #[arg(long)]
        topic: Option<String>,
    },
    /// Load every mapping, run every fixture through them, validate every output; exit 1 on
    /// any error.
    Check {
        /// Directory of mapping files
        #[arg(long, default_value = "mappings")]
        mappings: PathBuf,
        /// Directory of recorded webhooks (PLATFORM/NAME.json with NAME.headers beside)
        #[arg(long, default_value = "fixtures")]
        fixtures: PathBuf,
        /// Translate the fixtures of this source's platform as its webhooks, with its values
        /// from the configuration [default: the source a fixture names in NAME.source, else
        /// the platform name]
        #[arg(long)]
        source: Option<String>,
    },
    /// Run the tests written beside the mappings (NAME.test.toml tests NAME.toml): one line
    /// per case, a diff for each that fails; exit 1 on any failure or invalid test file.
    Test {
        /// Directory of mapping files, searched for *.test.toml below it
        #[arg(long, default_value = "mappings")]
        mappings: PathBuf,
    },
    /// Print the delivery plans a recorded webhook becomes, as a JSON array.
    Translate {
        /// Body file of a recorded webhook (e.g. fixtures/haravan/paid-two-items-discount.json)
        file: PathBuf,
        /// Directory of mapping files
        #[arg(long, default_value = "mappings")]
        mappings: PathBuf,
        /// Platform of the webhook [default: the fixture's directory name, or the source's]
        #[arg(long)]
        platform: Option<PlatformKind>,
        /// Topic [default: the one recorded in NAME.headers]
        #[arg(long)]
        topic: Option<String>,
        /// Source id bound as $source, its values from the configuration applied [default:
        /// the one the fixture names in NAME.source, else the platform name]
        #[arg(long)]
        source: Option<String>,
    },
    /// List deliveries (newest first, 50 unless --limit says otherwise).
    Deliveries {
        #[command(flatten)]
        filter: outbox::FilterArgs,
        /// JSON instead of a table
        #[arg(long)]
        json: bool,
    },
    /// Put deliveries back in the queue (by default the dead ones), or with --retranslate
    /// run the current mappings over their stored webhooks first (after a mapping fix).
    Replay {
        #[command(flatten)]
        filter: outbox::FilterArgs,
        /// Run the current mappings over the stored webhooks of the chosen deliveries, and
        /// over the untranslated webhooks: deliveries they make that do not exist yet are
        /// added, those not yet delivered take the new payload (a dry run only with
        /// --status dry_run), delivered ones are never sent again
        #[arg(long)]
        retranslate: bool,
        /// With --retranslate: write only the deliveries of this mapping (e.g.
        /// haravan/crm-paid)
        #[arg(long, requires = "retranslate")]
        mapping: Option<String>,
        /// Do it without asking (needed when there is no terminal to ask on)
        #[arg(long, short = 'y')]
        yes: bool,
    },
    /// Cancel deliveries that are pending, waiting or dead: they are never sent, unless a
    /// replay names one by its id (`storehook replay --id N`). Status updates waiting for a
    /// cancelled delivery are skipped. Needs a filter (e.g. --id, --webhook, --status dead).
    Cancel {
        #[command(flatten)]
        filter: outbox::FilterArgs,
        /// Do it without asking (needed when there is no terminal to ask on)
        #[arg(long, short = 'y')]
        yes: bool,
    },
    /// List stored webhooks (newest first, 50 unless --limit says otherwise), with how many
    /// deliveries and skips each made and why its translation failed. A repeated webhook
    /// (the same source and dedupe id) is refused, not stored: it has no row.
    Webhooks {
        #[command(flatten)]
        args: views::WebhooksArgs,
    },
    /// Show one stored webhook: its headers (signatures redacted), its body, its status, and
    /// each delivery made from it with every attempt.
    Webhook {
        /// The webhook's id (as `webhooks` lists it)
        id: i64,
        /// JSON instead of text
        #[arg(long)]
        json: bool,
    },
    /// Show one delivery: its payload, the request it is sent as (secrets shown as ***),
    /// every attempt, and what it waits for.
    Delivery {
        /// The delivery's id (as `deliveries` lists it)
        id: i64,
        /// JSON instead of text
        #[arg(long)]
        json: bool,
    },
    /// Create or upgrade the store's tables (SQLite or PostgreSQL), then exit.
    Migrate {
        /// The store to migrate [default: store.url of the configuration]
        #[arg(long, value_name = "URL")]
        store: Option<String>,
    },
    /// Copy every webhook, delivery and attempt of one store into another, empty one, with
    /// their ids (e.g. SQLite to PostgreSQL).
    ///
    /// Deliveries are copied in every state, so each keeps its Legion event id and its
    /// Idempotency-Key; prints how many of each were copied. The target is created or
    /// migrated first and refused unless it holds no row, and written in one transaction:
    /// a copy that fails leaves it without a row. The source is read as one snapshot and
    /// never written to. A delivery in flight keeps its lease: the target sends it again
    /// once the lease ends. New ids on the target follow the copied ones. Stop the source's
    /// `serve` first: a source with a running instance (a heartbeat in the last 20 s) is
    /// refused. Exits 0 once the copy is committed, 2 when nothing was copied.
    CopyStore {
        /// The store to copy from (sqlite://PATH or postgres://…)
        #[arg(long, value_name = "URL")]
        from: String,
        /// The store to copy into (sqlite://PATH or postgres://…): created when missing,
        /// migrated, and it must hold no webhook, delivery or attempt
        #[arg(long, value_name = "URL")]
        to: String,
        /// Copy even though a storehook serve is running on the source: the copy holds what
        /// the source held when it began; a webhook the instance accepts after that is not
        /// in it, and a delivery it sends after that is still due in it
        #[arg(long)]
        allow_running_source: bool,
    },
}

pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let config = match Config::load(cli.config.as_deref()) {
        Ok(config) => config,
        // `check` and `test` find problems: a configuration that does not load is one, exit 1.
        Err(error) if matches!(cli.command, Command::Check { .. } | Command::Test { .. }) => {
            eprintln!("error: {error}");
            return Ok(ExitCode::FAILURE);
        }
        Err(error) => return Err(error.into()),
    };
    match cli.command {
        Command::Serve => {
            let app = App::build(config).await?;
            app.run(shutdown_signal()).await?;
            tracing::info!("stopped");
            Ok(ExitCode::SUCCESS)
        }
        Command::Send {
            file,
            source,
            url,
            topic,
        } => send(&config, &file, &source, url, topic.as_deref()).await,
        Command::Sign {
            file,
            source,
            topic,
        } => {
            for (name, value) in
                signed_fixture_headers(&config, &file, &source, topic.as_deref())?.1
            {
                say!("{name}: {value}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Check {
            mappings,
            fixtures,
            source,
        } => mapping::check(&config, &mappings, &fixtures, source.as_deref()).or_else(|error| {
            // Whatever stops `check` is an error it found: exit 1, as for any other.
            eprintln!("error: {error:#}");
            Ok(ExitCode::FAILURE)
        }),
        Command::Test { mappings } => test::test(&config, &mappings).or_else(|error| {
            eprintln!("error: {error:#}");
            Ok(ExitCode::FAILURE)
        }),
        Command::Translate {
            file,
            mappings,
            platform,
            topic,
            source,
        } => mapping::translate(
            &config,
            mapping::TranslateArgs {
                file: &file,
                mappings: &mappings,
                platform,
                topic: topic.as_deref(),
                source: source.as_deref(),
            },
        ),
        Command::Deliveries { filter, json } => outbox::deliveries(&config, &filter, json).await,
        Command::Replay {
            filter,
            retranslate,
            mapping,
            yes,
        } => {
            outbox::replay(
                &config,
                &filter,
                outbox::ReplayArgs {
                    retranslate,
                    mapping: mapping.as_deref(),
                    yes,
                },
            )
            .await
        }
        Command::Cancel { filter, yes } => outbox::cancel(&config, &filter, yes).await,
        Command::Webhooks { args } => views::webhooks(&config, &args).await,
        Command::Webhook { id, json } => views::webhook(&config, id, json).await,
        Command::Delivery { id, json } => views::delivery(&config, id, json).await,
        Command::Migrate { store: url } => {
            let url = url.unwrap_or(config.store_url);
            store::open_with(&url, store::Migrations::Apply)
                .await
                .context("the store was not migrated")?;
            say!("store ready: {}", store::redacted_url(&url));
            Ok(ExitCode::SUCCESS)
        }
        Command::CopyStore {
            from,
            to,
            allow_running_source,
        } => copy_store::copy_store(&from, &to, allow_running_source).await,
    }
}

fn find_source<'a>(config: &'a Config, id: &str) -> anyhow::Result<&'a SourceConfig> {
    config.sources.get(id).with_context(|| {
        let known: Vec<_> = config.sources.keys().map(String::as_str).collect();
        format!(
            "no source `{id}` in {} (configured: {})",
            config.origin,
            known.join(", ")
        )
    })
}

/// The fixture and the headers its platform would send with it, signed with the source's
/// first configured secret.
fn signed_fixture_headers(
    config: &Config,
    file: &std::path::Path,
    source_id: &str,
    topic: Option<&str>,
) -> anyhow::Result<(Fixture, Vec<(String, String)>)> {
    let source = find_source(config, source_id)?;
    let Some(secret) = source.secrets.values.first() else {
        bail!(
            "source `{source_id}` has no secret to sign with; set {}",
            source.secrets.unset_variables.join(" or ")
        );
    };
    let fixture = Fixture::load(file)?;
    let platform = crate::source::platform(source.platform);
    if topic.is_none() && fixture.header(platform.topic_header()).is_none() {
        bail!(
            "{} records no {} header: pass --topic",
            fixture.path.display(),
            platform.topic_header()
        );
    }
    let headers = signed_headers(platform, &fixture.headers, &fixture.body, secret, topic);
    Ok((fixture, headers))
}

async fn send(
    config: &Config,
    file: &std::path::Path,
    source_id: &str,
    url: Option<String>,
    topic: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let (fixture, headers) = signed_fixture_headers(config, file, source_id, topic)?;
    let url = url.unwrap_or_else(|| {
        format!(
            "http://127.0.0.1:{}/webhooks/{source_id}",
            config.listen.port()
        )
    });
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let mut request = client.post(&url).body(fixture.body);
    for (name, value) in &headers {
        request = request.header(name, value);
    }
    let response = request
        .send()
        .await
        .with_context(|| format!("cannot POST to {url}"))?;
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    say!("HTTP {status}");
    say!("{body}");
    Ok(if status.is_success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %err, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                tracing::error!(error = %err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutdown requested: finishing requests in flight");
}
