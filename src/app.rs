//! `App::build(Config)` binds the address and opens the store; `App::run(shutdown)` serves
//! until the shutdown future completes.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};

use crate::config::Config;
use crate::config::ServerLimits;
use crate::delivery::Worker;
use crate::http::{AppState, ConcurrencyLimit, admin, router};
use crate::mapping::Catalog;
pub use crate::ops::{Mappings, wiring_problems};
use crate::store;

pub struct App {
    listener: TcpListener,
    /// The admin surface's own listener, when `[admin] listen` names an address (else the
    /// admin routes are on the main one, or off).
    admin: Option<(TcpListener, axum::Router)>,
    mappings: Mappings,
    router: axum::Router,
    limits: ServerLimits,
    workers: Vec<Worker>,
    /// Each destination's worker's wake-up, by destination id.
    wake: Arc<HashMap<String, Arc<Notify>>>,
    store: Arc<dyn store::Store>,
    retention: Duration,
    shutdown_grace: Duration,
}

/// How often the retention purge runs, among all the instances sharing the store.
const PURGE_EVERY: Duration = Duration::from_secs(3600);
/// How often an instance asks whether the purge is due (see [`store::periodic`]): when the
/// instance that ran it last stopped, another takes over within this.
const PURGE_CHECK_EVERY: Duration = Duration::from_secs(900);

/// How much lower the delivery threads' CPU priority is than the receive path's (a Linux
/// nice value: 10 gives them about a tenth of the CPU the receive path gets when both want
/// more than there is).
#[cfg(target_os = "linux")]
const DELIVERY_NICENESS: i32 = 10;

/// The name of the delivery runtime's threads (at most 15 bytes: Linux cuts thread names).
const DELIVERY_THREAD_NAME: &str = "delivery-worker";

/// How much longer than `delivery.shutdown_grace` a stop waits for the workers to release
/// their leases (a store that hangs must not hang the stop).
const RELEASE_DEADLINE: Duration = Duration::from_secs(5);

impl App {
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let migrations = if config.store_migrate {
            store::Migrations::Apply
        } else {
            store::Migrations::Require
        };
        let store = store::open_with(&config.store_url, migrations)
            .await
            .with_context(|| {
                format!(
                    "cannot open the store ({})",
                    store::redacted_url(&config.store_url)
                )
            })?;
        log_sources(&config);
        let catalog = load_catalog(&config.mappings_dir)?.with_source_vars(config.source_vars());
        check_destinations(&config, &catalog)?;
        let mappings = Mappings::new(catalog, Arc::new(config.clone()));
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        // Resolved before the workers start: the admin token is a secret their
        // destinations' answers are redacted of too.
        let token = admin::token::resolve(&config)?;
        let secrets = config.secrets().with(token.secret());
        let mut wake = HashMap::new();
        let mut workers = Vec::new();
        for destination in config.destinations.values() {
            let notify = Arc::new(Notify::new());
            wake.insert(destination.id.clone(), notify.clone());
            workers.push(Worker::new(
                destination,
                &config.delivery,
                store.clone(),
                notify,
                secrets.clone(),
            ));
        }
        let wake = Arc::new(wake);
        let sources = Arc::new(config.sources.clone());
        let state = AppState {
            sources: sources.clone(),
            store: store.clone(),
            catalog: mappings.live(),
            wake: wake.clone(),
            max_body_bytes: config.max_body_bytes,
            concurrency: ConcurrencyLimit::new(&config.limits),
        };
        let mut main_router = router(state);
        let circuits: Arc<std::collections::BTreeMap<_, _>> = Arc::new(
            workers
                .iter()
                .map(|w| (w.destination_id().to_string(), w.circuit()))
                .collect(),
        );
        let metrics = config.metrics.enabled.then(|| {
            crate::http::metrics::router(crate::http::metrics::MetricsState {
                handle: crate::observe::install(),
                store: store.clone(),
                circuits: circuits.clone(),
            })
        });
        let mut admin = None;
        if let Some(secret) = token.secret() {
            let admin_state = admin::AdminState {
                store: store.clone(),
                mappings: mappings.clone(),
                sources,
                destinations: Arc::new(config.destinations.clone()),
                circuits,
                wake: wake.clone(),
                gate: Arc::new(admin::Gate::new(
                    secret.clone(),
                    config.admin.trusted_proxy_header.clone(),
                )),
            };
            if let Some(metrics) = metrics {
                main_router = main_router.merge(if config.metrics.require_token {
                    metrics.layer(axum::middleware::from_fn_with_state(
                        admin_state.clone(),
                        admin::require_token,
                    ))
                } else {
                    metrics
                });
            }
            let admin_router = admin::router(admin_state);
            let address = match config.admin.listen {
                Some(address) => {
                    let admin_listener = TcpListener::bind(address)
                        .await
                        .with_context(|| format!("cannot listen on {address} ([admin] listen)"))?;
                    let bound = admin_listener.local_addr()?;
                    admin = Some((admin_listener, admin_router));
                    bound
                }
                None => {
                    main_router = main_router.merge(admin_router);
                    listener.local_addr()?
                }
            };
            use std::io::IsTerminal as _;
            admin::token::announce(&token, address, std::io::stderr().is_terminal());
        } else {
            admin::token::announce(&token, listener.local_addr()?, false);
            match metrics {
                Some(_) if config.metrics.require_token => tracing::warn!(
                    "GET /metrics is off: [metrics] require_token is set and there is no admin token (set STOREHOOK_ADMIN_TOKEN)"
                ),
                Some(metrics) => main_router = main_router.merge(metrics),
                None => {}
            }
        }
        Ok(Self {
            listener,
            admin,
            mappings,
            router: main_router,
            limits: config.limits.clone(),
            workers,
            wake,
            store,
            retention: Duration::from_secs(u64::from(config.retention_days) * 86_400),
            shutdown_grace: config.delivery.shutdown_grace,
        })
    }

    /// The address the admin surface listens on when it has one of its own.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin
            .as_ref()
            .and_then(|(listener, _)| listener.local_addr().ok())
    }

    /// Takes the delivery worker of `destination` out of the app, which then runs without
    /// it: for a test that drives that worker itself ([`Worker::step`]). The receive path
    /// still wakes it; nothing else sends to that destination.
    pub fn take_worker(&mut self, destination: &str) -> Option<Worker> {
        let at = self
            .workers
            .iter()
            .position(|worker| worker.destination_id() == destination)?;
        Some(self.workers.remove(at))
    }

    /// The live mappings, to load again ([`Mappings::reload`]).
    pub fn mappings(&self) -> Mappings {
        self.mappings.clone()
    }

    /// The store the app writes, for tests and tools that check state through it.
    pub fn store(&self) -> Arc<dyn store::Store> {
        self.store.clone()
    }

    /// The address actually bound (port 0 becomes a real port).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        tracing::info!(address = %self.local_addr(), "listening");
        let (stop, stopped) = watch::channel(false);
        let delivery = delivery_runtime()?;
        let mut workers: Vec<_> = self
            .workers
            .into_iter()
            .map(|worker| delivery.spawn(worker.run(stopped.clone())))
            .collect();
        workers.push(tokio::spawn(reload_on_hangup(
            self.mappings.clone(),
            stopped.clone(),
        )));
        if let Some(announcements) = self.store.subscribe() {
            workers.push(tokio::spawn(heed_announcements(
                announcements,
                self.wake,
                self.mappings,
                stopped.clone(),
            )));
        }
        workers.push(store::heartbeat::start(self.store.clone(), stopped.clone()).await);
        workers.push(tokio::spawn(purge_periodically(
            self.store,
            self.retention,
            stopped.clone(),
        )));
        // One shutdown for both listeners.
        let (serving, stop_serving) = watch::channel(false);
        tokio::spawn(async move {
            shutdown.await;
            let _ = serving.send(true);
        });
        let until_stop = |mut stopped: watch::Receiver<bool>| async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        };
        let admin = self.admin.map(|(listener, router)| {
            tracing::info!(admin_listen = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(), "admin API listening");
            tokio::spawn(crate::http::serve(
                listener,
                router,
                self.limits.clone(),
                until_stop(stop_serving.clone()),
            ))
        });
        let served = crate::http::serve(
            self.listener,
            self.router,
            self.limits,
            until_stop(stop_serving),
        )
        .await;
        if let Some(admin) = admin {
            match admin.await {
                Ok(Err(error)) => tracing::error!(%error, "the admin listener failed"),
                Err(error) => tracing::error!(%error, "the admin listener stopped abnormally"),
                Ok(Ok(())) => {}
            }
        }
        let _ = stop.send(true);
        let deadline = self.shutdown_grace + RELEASE_DEADLINE;
        let finished = tokio::time::timeout(deadline, futures_join(workers)).await;
        if finished.is_err() {
            tracing::warn!(
                "delivery workers did not stop in time; their leases expire and the deliveries are claimed again at the next start"
            );
        }
        // Whatever is left (workers past the deadline) is dropped with `delivery`.
        served
    }
}

/// The runtime the delivery workers run on: their own threads, at a lower CPU priority than
/// the receive path's. When the machine is short of CPU, acknowledging the shops' webhooks
/// comes first; the deliveries, already stored, catch up when it has CPU to spare (on the
/// 2-core bench, the closed loop's ingest rose by about a tenth: `bench/README.md`). On a
/// machine with CPU to spare they run as fast as before.
fn delivery_runtime() -> std::io::Result<DeliveryRuntime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(std::thread::available_parallelism().map_or(2, |n| n.get()))
        .thread_name(DELIVERY_THREAD_NAME)
        .on_thread_start(lower_this_threads_priority)
        .enable_all()
        .build()
        .map(|runtime| DeliveryRuntime(Some(runtime)))
}

/// The delivery runtime, shut down without waiting for its tasks when dropped. It is
/// dropped inside the main runtime (at the end of [`App::run`], or when that future is
/// cancelled), where a runtime's ordinary drop, which blocks until its tasks are gone,
/// panics.
struct DeliveryRuntime(Option<tokio::runtime::Runtime>);

impl std::ops::Deref for DeliveryRuntime {
    type Target = tokio::runtime::Runtime;

    fn deref(&self) -> &Self::Target {
        self.0.as_ref().expect("present until dropped")
    }
}

impl Drop for DeliveryRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

/// Raises the calling thread's nice value by `DELIVERY_NICENESS` (10), up to 19, the
/// lowest priority: relative, so that a process started under `nice` keeps its deliveries
/// below its own receive path. On Linux a nice value belongs to a thread, not to the whole
/// process. Elsewhere it does nothing.
fn lower_this_threads_priority() {
    #[cfg(target_os = "linux")]
    {
        use rustix::process::{getpriority_process, setpriority_process};
        let lowered = getpriority_process(None)
            .and_then(|nice| setpriority_process(None, (nice + DELIVERY_NICENESS).min(19)));
        if let Err(error) = lowered {
            // Only possible under a seccomp policy that refuses the call: the deliveries
            // then share the CPU evenly with the receive path, as they did before.
            static WARNED: std::sync::Once = std::sync::Once::new();
            WARNED.call_once(|| {
                tracing::warn!(%error, "cannot lower the delivery threads' CPU priority; they share the CPU evenly with the receive path");
            });
        }
    }
}

/// Runs the retention purge once every [`PURGE_EVERY`] among the instances sharing the
/// store, until the stop: at start and then every [`PURGE_CHECK_EVERY`], this instance
/// claims the run (see [`store::periodic`]) and purges when the claim is granted.
async fn purge_periodically(
    store: Arc<dyn store::Store>,
    retention: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let every_ms = i64::try_from(PURGE_EVERY.as_millis()).unwrap_or(i64::MAX);
    loop {
        let now = store::now_ms();
        match store
            .claim_run(store::periodic::RETENTION, now, every_ms)
            .await
        {
            Ok(true) => {
                let cutoff = now - i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
                match store.purge_before(cutoff).await {
                    Ok(purged) => tracing::info!(purged, "retention: old webhooks purged"),
                    Err(err) => {
                        tracing::error!(error = %err, "retention purge failed; run again next period")
                    }
                }
            }
            Ok(false) => {
                tracing::debug!("retention: purged within the last period; not run now")
            }
            Err(err) => {
                tracing::error!(error = %err, "retention: cannot claim the purge; asked again later")
            }
        }
        tokio::select! {
            () = tokio::time::sleep(PURGE_CHECK_EVERY) => {}
            _ = stop.changed() => return,
        }
    }
}

/// Acts on what the store announces (see [`store::Store::subscribe`]) until the stop: wakes
/// the worker of a destination whose deliveries fell due (another instance received a
/// webhook, or a replay ran; workers poll as well, so a lost announcement only delays), and
/// loads the mappings again when an operator reloaded another instance's, or once when the
/// store listens again after losing its connection (a reload may have been announced
/// meanwhile).
async fn heed_announcements(
    mut announcements: tokio::sync::mpsc::Receiver<store::Announcement>,
    wake: Arc<HashMap<String, Arc<Notify>>>,
    mappings: Mappings,
    mut stopped: watch::Receiver<bool>,
) {
    loop {
        let announced = tokio::select! {
            announced = announcements.recv() => announced,
            _ = stopped.wait_for(|stop| *stop) => return,
        };
        match announced {
            Some(store::Announcement::Due(destination)) => {
                if let Some(worker) = wake.get(&destination) {
                    worker.notify_one();
                }
            }
            Some(store::Announcement::Listening { again }) => {
                wake.values().for_each(|worker| worker.notify_one());
                if again {
                    reload_as_announced(&mappings, None).await;
                }
            }
            Some(store::Announcement::Reload(reload)) => {
                reload_as_announced(&mappings, Some(&reload)).await;
            }
            None => return,
        }
    }
}

/// Loads the mappings again because another instance announced its operator's reload
/// (`reload`), or because the store listens again after losing its connection (`None`), and
/// logs the outcome: how many are live, or why the ones in force stay.
async fn reload_as_announced(mappings: &Mappings, reload: Option<&store::ReloadAnnounced>) {
    let reloading = mappings.clone();
    let reloaded = tokio::task::spawn_blocking(move || reloading.reload())
        .await
        .expect("a reload does not panic");
    let dir = mappings.dir();
    let (client, why) = match reload {
        Some(reload) => (
            reload.client.as_str(),
            format!(
                "as announced by another instance ({}, asked via the {} by {})",
                reload.from, reload.via, reload.client
            ),
        ),
        None => (
            "none",
            "after the store's LISTEN connection was made again (a reload announced while it \
             was lost would have been missed)"
                .to_string(),
        ),
    };
    match reloaded {
        Ok(count) => tracing::info!(
            action = "reload",
            client = %client,
            mappings = %dir,
            count,
            "mappings reloaded {why}; {count} live"
        ),
        Err(error) => {
            let live = mappings.count();
            // On one line: the log reader sees every file it names.
            tracing::error!(
                action = "reload",
                client = %client,
                mappings = %dir,
                count = live,
                error = %error.replace('\n', "; "),
                "mappings not reloaded {why}; the {live} in force stay live: fix the files in \
                 {dir} on this instance, then reload it (SIGHUP, or the admin API)"
            )
        }
    }
}

async fn futures_join(handles: Vec<tokio::task::JoinHandle<()>>) {
    for handle in handles {
        let _ = handle.await;
    }
}

/// Loads the mappings again on every `SIGHUP` until the stop, logging how many are live, or
/// why the ones in force stay.
async fn reload_on_hangup(mappings: Mappings, mut stopped: watch::Receiver<bool>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hangup = match signal(SignalKind::hangup()) {
            Ok(hangup) => hangup,
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGHUP: mappings reload only with a restart");
                return;
            }
        };
        loop {
            tokio::select! {
                _ = hangup.recv() => {}
                _ = stopped.wait_for(|stop| *stop) => return,
            }
            let dir = mappings.dir();
            match mappings.reload() {
                Ok(count) => {
                    tracing::info!(mappings = %dir, count, "SIGHUP: mappings reloaded; {count} live")
                }
                // On one line: the log reader sees every file it names.
                Err(error) => tracing::error!(
                    mappings = %dir,
                    count = mappings.count(),
                    error = %error.replace('\n', "; "),
                    "SIGHUP: mappings not reloaded; the ones in force stay live"
                ),
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (mappings, stopped.wait_for(|stop| *stop).await);
    }
}

/// Loads the mapping files; every problem in them stops the start, listed in full. A missing
/// directory leaves the catalog empty (webhooks are then stored as untranslated) and says so.
fn load_catalog(dir: &str) -> anyhow::Result<Catalog> {
    let path = Path::new(dir);
    if !path.is_dir() {
        tracing::warn!(
            mappings = dir,
            "mappings directory not found: every webhook is stored as untranslated until mappings are added"
        );
        return Ok(Catalog::from_mappings(Vec::new()));
    }
    match Catalog::load(path) {
        Ok(catalog) => {
            let count = catalog.mappings().len();
            tracing::info!(mappings = dir, count, "mappings loaded; {count} live");
            Ok(catalog)
        }
        Err(errors) => {
            let listed: Vec<String> = errors.iter().map(ToString::to_string).collect();
            anyhow::bail!(
                "{} error(s) in the mapping files:\n{}",
                errors.len(),
                listed.join("\n")
            )
        }
    }
}

/// Logs each destination as live or dry, and refuses to start on a configuration whose
/// mappings cannot be delivered (see [`wiring_problems`]).
fn check_destinations(config: &Config, catalog: &Catalog) -> anyhow::Result<()> {
    for (id, destination) in &config.destinations {
        if destination.is_dry() {
            tracing::warn!(
                destination = %id,
                set = %destination.unset_variables.join(", "),
                "destination runs dry: its deliveries are recorded, nothing is sent"
            );
        } else {
            tracing::info!(destination = %id, kind = %destination.kind, "destination live");
        }
    }
    let problems = wiring_problems(config, catalog);
    if problems.is_empty() {
        Ok(())
    } else {
        anyhow::bail!("{}", problems.join("\n"))
    }
}

fn log_sources(config: &Config) {
    tracing::info!(origin = %config.origin, store = %store::redacted_url(&config.store_url), "configuration loaded");
    for source in config.sources.values() {
        if source.secrets.is_set() {
            tracing::info!(
                source = %source.id,
                platform = %source.platform,
                secrets = source.secrets.values.len(),
                url_path = %format!("/webhooks/{}", source.id),
                "source live"
            );
        } else {
            tracing::warn!(
                source = %source.id,
                platform = %source.platform,
                set = %source.secrets.unset_variables.join(" or "),
                "source not configured: its webhooks are answered 503 until the secret is set"
            );
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use rustix::process::getpriority_process;

    /// The nice value of the calling thread.
    fn niceness() -> i32 {
        getpriority_process(None).expect("getpriority")
    }

    #[test]
    fn deliveries_run_on_threads_of_lower_priority_and_the_caller_keeps_its_own() {
        let before = niceness();
        let runtime = super::delivery_runtime().unwrap();
        let (name, nice) = runtime
            .block_on(runtime.spawn(async {
                let name = std::thread::current().name().map(str::to_string);
                (name, niceness())
            }))
            .unwrap();
        assert_eq!(name.as_deref(), Some(super::DELIVERY_THREAD_NAME));
        assert_eq!(nice, (before + super::DELIVERY_NICENESS).min(19));
        assert_eq!(
            niceness(),
            before,
            "the thread that built the runtime keeps its priority"
        );
    }

    #[tokio::test]
    async fn the_delivery_runtime_can_be_dropped_inside_another_with_tasks_unfinished() {
        let runtime = super::delivery_runtime().unwrap();
        runtime.spawn(tokio::time::sleep(std::time::Duration::from_secs(3600)));
        drop(runtime);
    }
}
