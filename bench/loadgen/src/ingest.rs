//! `loadgen ingest`: POSTs distinct signed orders to storehook over kept-alive HTTP/1.1
//! connections, one per virtual user, in a closed loop or at a fixed rate.
//!
//! Closed loop: each connection sends its next order as soon as the previous answer is in;
//! latency is from send to answer.
//!
//! Fixed rate: a scheduler thread releases one request every 1/rate seconds into a queue the
//! connections take from. Latency is counted from when the request was *due*, not when it
//! was sent, so a server that stalls is charged for every request that waited behind the
//! stall (no coordinated omission). The time from send to answer is reported too
//! ("service latency"), and so is how late requests left ("send lag").
//!
//! Several URLs (`--url` repeated, e.g. one per server of a cluster) share the load in turn,
//! as a round-robin balancer would: connection `i` goes to URL `i mod n`, and at a fixed rate
//! the scheduler deals the due times to the URLs in turn, each URL's connections taking from
//! its own queue.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1;
use hyper::header::{HOST, HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request, Uri};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use crate::orders::{
    OrderMaker, OrderPool, OrderTemplate, RunBase, SIGNATURE_HEADER, request_headers,
};
use storehook::fixture::Fixture;

#[derive(Debug, clap::Args)]
pub struct IngestArgs {
    /// Where to POST the orders. Repeat it to spread the load over several servers: the
    /// connections go to the URLs in turn, and at a fixed rate so do the requests.
    #[arg(
        long = "url",
        value_name = "URL",
        default_value = "http://127.0.0.1:8080/webhooks/haravan"
    )]
    pub urls: Vec<String>,
    /// The Haravan source's webhook secret.
    #[arg(long, env = "HARAVAN_WEBHOOK_SECRET", hide_env_values = true)]
    pub secret: String,
    /// The recorded webhook each order is made from; NAME.headers beside it gives the
    /// headers to send (the signature is computed per order).
    #[arg(long, default_value = "fixtures/haravan/paid-two-items-discount.json")]
    pub fixture: PathBuf,
    /// Connections (virtual users), each one kept-alive HTTP/1.1 connection.
    #[arg(long, default_value_t = 64)]
    pub connections: usize,
    /// How long to measure (e.g. 10s, 500ms, 2m).
    #[arg(long, default_value = "10s", value_parser = crate::parse_duration)]
    pub duration: Duration,
    /// How long to run before measuring (not counted).
    #[arg(long, default_value = "2s", value_parser = crate::parse_duration)]
    pub warmup: Duration,
    /// Fixed-rate mode: requests per second in all, spread over the connections. Without
    /// it, a closed loop.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Orders to make before the clock starts [default: rate × (warm-up + duration) in
    /// fixed-rate mode, else min(25,000/s × (warm-up + duration), 200,000)]. If they run
    /// out, a background thread makes more during the run (reported).
    #[arg(long)]
    pub prepare: Option<u64>,
    /// First order id [default: Unix seconds × 1,000,000, so later runs never repeat an
    /// id of an earlier one].
    #[arg(long)]
    pub id_base: Option<u64>,
    /// A request without an answer after this long counts as an error and its connection
    /// is replaced.
    #[arg(long, default_value = "30s", value_parser = crate::parse_duration)]
    pub timeout: Duration,
    /// Worker threads of the generator's runtime (the machine's cores are shared with the
    /// server under test).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Print one JSON object with the results instead of the text report.
    #[arg(long)]
    pub json: bool,
}

/// Where requests go.
struct Target {
    addr: SocketAddr,
    host: HeaderValue,
    path: Uri,
    headers: HeaderMap,
    signature_header: HeaderName,
}

impl Target {
    fn new(url: &str, headers: HeaderMap) -> anyhow::Result<Target> {
        let uri: Uri = url
            .parse()
            .with_context(|| format!("`{url}` is not a URL"))?;
        if uri.scheme_str() != Some("http") {
            bail!("`{url}`: only http:// URLs are supported");
        }
        let authority = uri.authority().context("the URL has no host")?.clone();
        let port = authority.port_u16().unwrap_or(80);
        let addr = std::net::ToSocketAddrs::to_socket_addrs(&(authority.host(), port))
            .with_context(|| format!("cannot resolve {authority}"))?
            .next()
            .with_context(|| format!("{authority} resolves to no address"))?;
        let path = uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/")
            .parse()?;
        Ok(Target {
            addr,
            host: HeaderValue::from_str(authority.as_str())?,
            path,
            headers,
            signature_header: HeaderName::from_bytes(SIGNATURE_HEADER.as_bytes())?,
        })
    }

    async fn connect(&self) -> anyhow::Result<http1::SendRequest<Full<Bytes>>> {
        let stream = TcpStream::connect(self.addr)
            .await
            .with_context(|| format!("cannot connect to {}", self.addr))?;
        stream.set_nodelay(true)?;
        let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            // Its errors surface on the sender.
            let _ = connection.await;
        });
        Ok(sender)
    }
}

/// What the answers said.
#[derive(Default)]
struct Tally {
    requests: u64,
    statuses: BTreeMap<u16, u64>,
    errors: BTreeMap<String, u64>,
    /// Answers `200 {"duplicate": false, …}`: stored as new webhooks.
    stored: u64,
    duplicates: u64,
    /// Sum of the answers' `deliveries`: deliveries storehook created.
    deliveries: u64,
}

impl Tally {
    fn count(&mut self, outcome: &anyhow::Result<(u16, Bytes)>) {
        self.requests += 1;
        match outcome {
            Ok((status, body)) => {
                *self.statuses.entry(*status).or_default() += 1;
                if *status == 200
                    && let Ok(answer) = serde_json::from_slice::<Value>(body)
                {
                    if answer["duplicate"] == Value::Bool(true) {
                        self.duplicates += 1;
                    } else if answer.get("webhook_id").is_some() {
                        self.stored += 1;
                    }
                    self.deliveries += answer["deliveries"].as_u64().unwrap_or(0);
                }
            }
            Err(err) => *self.errors.entry(format!("{err:#}")).or_default() += 1,
        }
    }

    fn merge(&mut self, other: Tally) {
        self.requests += other.requests;
        for (status, n) in other.statuses {
            *self.statuses.entry(status).or_default() += n;
        }
        for (error, n) in other.errors {
            *self.errors.entry(error).or_default() += n;
        }
        self.stored += other.stored;
        self.duplicates += other.duplicates;
        self.deliveries += other.deliveries;
    }

    fn ok(&self) -> u64 {
        self.statuses.get(&200).copied().unwrap_or(0)
    }

    fn non_200(&self) -> BTreeMap<String, u64> {
        self.statuses
            .iter()
            .filter(|(status, _)| **status != 200)
            .map(|(status, n)| (status.to_string(), *n))
            .collect()
    }

    fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }
}

/// What one connection saw.
struct Stats {
    /// Microseconds from due (fixed rate) or sent (closed loop) to the whole answer.
    latency: Histogram<u64>,
    /// Microseconds from sent to the whole answer.
    service: Histogram<u64>,
    /// Microseconds from due to sent (fixed rate).
    send_lag: Histogram<u64>,
    /// Requests due while measuring.
    measured: Tally,
    /// Requests due during the warm-up (not in the figures).
    warmup: Tally,
    /// Due while measuring but never sent: the server fell behind the fixed rate.
    unsent: u64,
    /// Answers (any status) that arrived while measuring, whenever their request was due:
    /// the throughput. (In an overloaded fixed-rate run, requests due in the warm-up are
    /// still being answered while measuring.)
    answered_in_window: u64,
}

impl Stats {
    fn new() -> Stats {
        let histogram = || Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds");
        Stats {
            latency: histogram(),
            service: histogram(),
            send_lag: histogram(),
            measured: Tally::default(),
            warmup: Tally::default(),
            unsent: 0,
            answered_in_window: 0,
        }
    }

    fn merge(&mut self, other: Stats) {
        self.latency.add(&other.latency).expect("same bounds");
        self.service.add(&other.service).expect("same bounds");
        self.send_lag.add(&other.send_lag).expect("same bounds");
        self.measured.merge(other.measured);
        self.warmup.merge(other.warmup);
        self.unsent += other.unsent;
        self.answered_in_window += other.answered_in_window;
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}

/// The run's clock: measuring starts at `measure_from` and ends at `end`.
#[derive(Clone, Copy)]
struct Clock {
    start: Instant,
    measure_from: Instant,
    end: Instant,
}

/// The URL (its index) each of `connections` connections goes to: in turn, so each of the
/// `urls` URLs gets connections / urls of them, the first ones one more when that does not
/// divide.
fn spread(connections: usize, urls: usize) -> Vec<usize> {
    (0..connections).map(|i| i % urls).collect()
}

/// One virtual user: its connection (replaced after an error) and what it saw.
struct User {
    /// Which of the URLs it sends to.
    url: usize,
    target: Arc<Target>,
    pool: Arc<OrderPool>,
    sender: Option<http1::SendRequest<Full<Bytes>>>,
    timeout: Duration,
    stats: Stats,
}

impl User {
    /// Sends the next order; `due` is when it should have left (now, in a closed loop).
    async fn request(&mut self, clock: &Clock, due: Instant) {
        let order = self.pool.next().await;
        let counted = due >= clock.measure_from;
        let sent = Instant::now();
        let outcome = tokio::time::timeout(self.timeout, self.send(order.body, order.signature))
            .await
            .unwrap_or_else(|_| Err(anyhow::anyhow!("timed out")));
        let done = Instant::now();
        if outcome.is_err() {
            self.sender = None;
        }
        let stats = &mut self.stats;
        if outcome.is_ok() && done >= clock.measure_from && done < clock.end {
            stats.answered_in_window += 1;
        }
        if !counted {
            stats.warmup.count(&outcome);
            return;
        }
        stats.measured.count(&outcome);
        stats.latency.saturating_record(micros(done - due));
        stats.service.saturating_record(micros(done - sent));
        stats
            .send_lag
            .saturating_record(micros(sent.saturating_duration_since(due)));
    }

    async fn send(&mut self, body: Bytes, signature: HeaderValue) -> anyhow::Result<(u16, Bytes)> {
        let sender = match &mut self.sender {
            Some(sender) => sender,
            None => self.sender.insert(self.target.connect().await?),
        };
        sender.ready().await?;
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(self.target.path.clone())
            .body(Full::new(body))?;
        let headers = request.headers_mut();
        headers.clone_from(&self.target.headers);
        headers.insert(HOST, self.target.host.clone());
        headers.insert(self.target.signature_header.clone(), signature);
        let response = sender.send_request(request).await?;
        let status = response.status().as_u16();
        let body = response.into_body().collect().await?.to_bytes();
        Ok((status, body))
    }
}

/// CPU time (user + system) this process has used, from /proc/self/stat (Linux; clock ticks
/// of 1/100 s, as on every Linux the bench runs on).
fn cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    // After the command name: state is field 3, utime 14 and stime 15 (1-based).
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(Duration::from_millis((utime + stime) * 10))
}

pub fn run(args: IngestArgs) -> anyhow::Result<()> {
    if args.connections == 0 {
        bail!("--connections must be at least 1");
    }
    if let Some(rate) = args.rate
        && !(rate > 0.0 && rate.is_finite())
    {
        bail!("--rate must be above 0");
    }
    if args.duration.is_zero() {
        bail!("--duration must be above 0");
    }
    if args.connections < args.urls.len() {
        bail!(
            "--connections ({}) must be at least the number of URLs ({}), or some would get none",
            args.connections,
            args.urls.len()
        );
    }
    let fixture = Fixture::load(&args.fixture)?;
    let headers = request_headers(&fixture)?;
    let targets = args
        .urls
        .iter()
        .map(|url| Target::new(url, headers.clone()).map(Arc::new))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut base = RunBase::from_clock();
    if let Some(id_base) = args.id_base {
        base.id_base = id_base;
    }
    let maker = OrderMaker {
        template: OrderTemplate::new(&fixture.body, base)?,
        signer: crate::orders::Signer::new(&args.secret),
    };
    let body_bytes = maker.template.render(0).len();
    let total_secs = (args.warmup + args.duration).as_secs_f64();
    let prepared = args.prepare.unwrap_or(match args.rate {
        Some(rate) => (rate * total_secs).ceil() as u64 + args.connections as u64 + 16,
        None => ((25_000.0 * total_secs) as u64).min(200_000),
    });
    eprintln!(
        "loadgen: making {prepared} distinct signed orders of ~{body_bytes} bytes from {} \
         (topic {}, first id {}, {} phone fields changed per order)",
        fixture.path.display(),
        fixture.header("X-Haravan-Topic").unwrap_or("none"),
        base.id_base,
        maker.template.phone_fields
    );
    let made = Instant::now();
    let pool = Arc::new(OrderPool::prepare(maker, prepared));
    eprintln!("loadgen: made in {:.2} s", made.elapsed().as_secs_f64());

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()?;
    let report = runtime.block_on(drive(&args, &targets, pool.clone()))?;
    let report = Report {
        body_bytes,
        prepared,
        made_during_run: pool.made_during_run(),
        ..report
    };
    if args.json {
        println!("{}", report.json(&args));
    } else {
        report.print(&args);
    }
    // The order maker thread may be blocked on a full buffer: do not wait for it.
    runtime.shutdown_timeout(Duration::from_secs(1));
    Ok(())
}

struct Report {
    stats: Stats,
    /// Requests due while measuring, per URL (in the order of `--url`).
    requests_per_url: Vec<u64>,
    measured: Duration,
    cpu: Option<Duration>,
    body_bytes: usize,
    prepared: u64,
    made_during_run: u64,
}

async fn drive(
    args: &IngestArgs,
    targets: &[Arc<Target>],
    pool: Arc<OrderPool>,
) -> anyhow::Result<Report> {
    // Every connection is open before the clock starts.
    let mut users = Vec::with_capacity(args.connections);
    for url in spread(args.connections, targets.len()) {
        let target = &targets[url];
        users.push(User {
            url,
            sender: Some(target.connect().await?),
            target: target.clone(),
            pool: pool.clone(),
            timeout: args.timeout,
            stats: Stats::new(),
        });
    }
    let start = Instant::now() + Duration::from_millis(20);
    let clock = Clock {
        start,
        measure_from: start + args.warmup,
        end: start + args.warmup + args.duration,
    };
    eprintln!(
        "loadgen: {} {} connections to {}, {:.1} s warm-up then {:.1} s measured",
        match args.rate {
            Some(rate) => format!("{rate} req/s over"),
            None => "closed loop,".to_string(),
        },
        args.connections,
        match args.urls.as_slice() {
            [url] => url.clone(),
            urls => format!("{} URLs in turn ({})", urls.len(), urls.join(", ")),
        },
        args.warmup.as_secs_f64(),
        args.duration.as_secs_f64()
    );

    let cpu_probe = tokio::spawn(async move {
        tokio::time::sleep_until(clock.measure_from.into()).await;
        let before = cpu_time();
        tokio::time::sleep_until(clock.end.into()).await;
        Some(cpu_time()?.saturating_sub(before?))
    });

    let mut tasks = Vec::with_capacity(users.len());
    match args.rate {
        None => {
            for mut user in users {
                tasks.push(tokio::spawn(async move {
                    tokio::time::sleep_until(clock.start.into()).await;
                    loop {
                        let now = Instant::now();
                        if now >= clock.end {
                            break;
                        }
                        user.request(&clock, now).await;
                        if user.sender.is_none() {
                            // After an error: do not spin through orders while the server is down.
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                    }
                    (user.url, user.stats)
                }));
            }
        }
        Some(rate) => {
            // One queue per URL, which the scheduler deals the due times to in turn.
            let (txs, queues): (Vec<_>, Vec<_>) = targets
                .iter()
                .map(|_| {
                    let (tx, rx) = mpsc::unbounded_channel::<Instant>();
                    (tx, Arc::new(tokio::sync::Mutex::new(rx)))
                })
                .unzip();
            std::thread::Builder::new()
                .name("scheduler".into())
                .spawn(move || schedule(clock, rate, txs))?;
            for mut user in users {
                let queue = queues[user.url].clone();
                tasks.push(tokio::spawn(async move {
                    loop {
                        let due = queue.lock().await.recv().await;
                        let Some(due) = due else { break };
                        if Instant::now() >= clock.end {
                            // Due during the run but never sent: the server fell behind.
                            user.stats.unsent += 1;
                            continue;
                        }
                        user.request(&clock, due).await;
                    }
                    (user.url, user.stats)
                }));
            }
        }
    }
    let mut stats = Stats::new();
    let mut requests_per_url = vec![0; targets.len()];
    for task in tasks {
        let (url, user_stats) = task.await?;
        requests_per_url[url] += user_stats.measured.requests;
        stats.merge(user_stats);
    }
    let cpu = cpu_probe.await.ok().flatten();
    Ok(Report {
        stats,
        requests_per_url,
        measured: args.duration,
        cpu,
        body_bytes: 0,
        prepared: 0,
        made_during_run: 0,
    })
}

/// Releases one due time every 1/rate s from the clock's start until its end (a sleeping OS
/// thread: much finer than the runtime's 1 ms timer), to each of the queues in turn.
fn schedule(clock: Clock, rate: f64, queues: Vec<mpsc::UnboundedSender<Instant>>) {
    let interval = Duration::from_secs_f64(1.0 / rate);
    for (n, tx) in (0u32..).zip(queues.iter().cycle()) {
        let due = clock.start + interval * n;
        if due >= clock.end {
            break;
        }
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        if tx.send(due).is_err() {
            break;
        }
    }
}

fn ms(h: &Histogram<u64>, q: f64) -> f64 {
    if h.is_empty() {
        return 0.0;
    }
    h.value_at_quantile(q) as f64 / 1000.0
}

fn latency_json(h: &Histogram<u64>) -> Value {
    let round = |v: f64| (v * 1000.0).round() / 1000.0;
    json!({
        "p50": round(ms(h, 0.50)),
        "p90": round(ms(h, 0.90)),
        "p99": round(ms(h, 0.99)),
        "p99_9": round(ms(h, 0.999)),
        "max": round(if h.is_empty() { 0.0 } else { h.max() as f64 / 1000.0 }),
        "mean": round(if h.is_empty() { 0.0 } else { h.mean() / 1000.0 }),
    })
}

impl Report {
    /// Answers received per second while measuring.
    fn rps(&self) -> f64 {
        self.stats.answered_in_window as f64 / self.measured.as_secs_f64()
    }

    fn cpu_percent(&self) -> Option<f64> {
        self.cpu
            .map(|cpu| (cpu.as_secs_f64() / self.measured.as_secs_f64() * 1000.0).round() / 10.0)
    }

    fn json(&self, args: &IngestArgs) -> Value {
        let s = &self.stats;
        let m = &s.measured;
        json!({
            "mode": if args.rate.is_some() { "fixed_rate" } else { "closed_loop" },
            "url": args.urls[0],
            "urls": args.urls,
            "requests_per_url": self.requests_per_url,
            "connections": args.connections,
            "rate": args.rate,
            "warmup_s": args.warmup.as_secs_f64(),
            "duration_s": args.duration.as_secs_f64(),
            "requests": m.requests,
            "ok": m.ok(),
            "non_200": m.non_200(),
            "errors": m.error_count(),
            "error_kinds": m.errors,
            "unsent": s.unsent,
            "rps": (self.rps() * 10.0).round() / 10.0,
            "answered_in_window": s.answered_in_window,
            "latency_ms": latency_json(&s.latency),
            "service_latency_ms": latency_json(&s.service),
            "send_lag_ms": latency_json(&s.send_lag),
            "stored": m.stored,
            "duplicates": m.duplicates,
            "deliveries_created": m.deliveries,
            "warmup": {
                "requests": s.warmup.requests,
                "ok": s.warmup.ok(),
                "non_200": s.warmup.non_200(),
                "errors": s.warmup.error_count(),
                "stored": s.warmup.stored,
                "duplicates": s.warmup.duplicates,
                "deliveries_created": s.warmup.deliveries,
            },
            "body_bytes": self.body_bytes,
            "orders_prepared": self.prepared,
            "orders_made_during_run": self.made_during_run,
            "generator_cpu_percent": self.cpu_percent(),
        })
    }

    fn print(&self, args: &IngestArgs) {
        let s = &self.stats;
        let m = &s.measured;
        let line = |name: &str, h: &Histogram<u64>| {
            println!(
                "{name:<16} p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}",
                ms(h, 0.5),
                ms(h, 0.9),
                ms(h, 0.99),
                ms(h, 0.999),
                if h.is_empty() {
                    0.0
                } else {
                    h.max() as f64 / 1000.0
                }
            );
        };
        match args.rate {
            Some(rate) => println!(
                "fixed rate {rate} req/s over {} connections, {:.1} s measured after {:.1} s warm-up",
                args.connections,
                args.duration.as_secs_f64(),
                args.warmup.as_secs_f64()
            ),
            None => println!(
                "closed loop, {} connections, {:.1} s measured after {:.1} s warm-up",
                args.connections,
                args.duration.as_secs_f64(),
                args.warmup.as_secs_f64()
            ),
        }
        println!(
            "requests         {} due while measuring ({} answered 200)",
            m.requests,
            m.ok()
        );
        if args.urls.len() > 1 {
            for (url, requests) in args.urls.iter().zip(&self.requests_per_url) {
                println!("  {requests} to {url}");
            }
        }
        println!(
            "throughput       {:.1} req/s ({} answers while measuring)",
            self.rps(),
            s.answered_in_window
        );
        let non_200: Vec<String> = m
            .non_200()
            .iter()
            .map(|(status, n)| format!("{status}: {n}"))
            .collect();
        if !non_200.is_empty() {
            println!("non-200          {}", non_200.join(", "));
        }
        if !m.errors.is_empty() {
            println!("errors           {}", m.error_count());
            for (error, n) in &m.errors {
                println!("  {n} × {error}");
            }
        }
        if s.unsent > 0 {
            println!(
                "unsent           {} (due, but the server fell behind)",
                s.unsent
            );
        }
        if args.rate.is_some() {
            line("latency ms (due)", &s.latency);
            line("service ms", &s.service);
            line("send lag ms", &s.send_lag);
        } else {
            line("latency ms", &s.latency);
        }
        println!(
            "stored           {} new, {} duplicates, {} deliveries created",
            m.stored, m.duplicates, m.deliveries
        );
        println!(
            "warm-up          {} requests ({} answered 200, {} errors), {} deliveries created",
            s.warmup.requests,
            s.warmup.ok(),
            s.warmup.error_count(),
            s.warmup.deliveries
        );
        println!(
            "generator        {} CPU, {} orders prepared (~{} bytes each), {} made during the run",
            self.cpu_percent()
                .map(|p| format!("{p}% of one core"))
                .unwrap_or_else(|| "unknown".into()),
            self.prepared,
            self.body_bytes,
            self.made_during_run
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        let t = Target::new("http://127.0.0.1:9999/webhooks/haravan", HeaderMap::new()).unwrap();
        assert_eq!(t.addr, "127.0.0.1:9999".parse().unwrap());
        assert_eq!(t.host, "127.0.0.1:9999");
        assert_eq!(t.path, "/webhooks/haravan");
        assert!(Target::new("https://127.0.0.1/", HeaderMap::new()).is_err());
    }

    #[test]
    fn a_stalled_server_is_charged_from_the_due_time() {
        let start = Instant::now();
        let clock = Clock {
            start,
            measure_from: start + Duration::from_millis(10),
            end: start + Duration::from_millis(60),
        };
        let (tx, mut rx) = mpsc::unbounded_channel();
        std::thread::sleep(Duration::from_millis(30));
        // The scheduler started late (a stall): the due times still follow the schedule.
        schedule(clock, 100.0, vec![tx]);
        let mut dues = Vec::new();
        while let Ok(due) = rx.try_recv() {
            dues.push(due);
        }
        assert_eq!(dues.len(), 6);
        for (n, due) in dues.iter().enumerate() {
            assert_eq!(*due - start, Duration::from_millis(10) * n as u32);
        }
    }

    #[test]
    fn connections_go_to_the_urls_in_turn() {
        assert_eq!(spread(4, 1), [0, 0, 0, 0]);
        assert_eq!(spread(5, 2), [0, 1, 0, 1, 0]);
        let per_url = |connections, urls| {
            let mut counts = vec![0; urls];
            for url in spread(connections, urls) {
                counts[url] += 1;
            }
            counts
        };
        assert_eq!(per_url(64, 3), [22, 21, 21]);
        assert_eq!(per_url(64, 4), [16, 16, 16, 16]);
        assert_eq!(per_url(3, 3), [1, 1, 1]);
    }

    #[test]
    fn a_fixed_rate_is_dealt_to_the_urls_in_turn() {
        let start = Instant::now();
        let clock = Clock {
            start,
            measure_from: start,
            end: start + Duration::from_millis(70),
        };
        let (txs, mut rxs): (Vec<_>, Vec<_>) = (0..3).map(|_| mpsc::unbounded_channel()).unzip();
        schedule(clock, 100.0, txs);
        let dues: Vec<Vec<u32>> = rxs
            .iter_mut()
            .map(|rx| {
                let mut dues = Vec::new();
                while let Ok(due) = rx.try_recv() {
                    dues.push(((due - start).as_millis() / 10) as u32);
                }
                dues
            })
            .collect();
        assert_eq!(dues, [vec![0, 3, 6], vec![1, 4], vec![2, 5]]);
    }

    #[test]
    fn stats_merge() {
        let mut a = Stats::new();
        a.measured.count(&Ok((
            200,
            Bytes::from_static(br#"{"webhook_id":1,"duplicate":false,"deliveries":2}"#),
        )));
        a.measured.count(&Ok((
            200,
            Bytes::from_static(br#"{"webhook_id":1,"duplicate":true,"deliveries":0}"#),
        )));
        a.latency.record(1000).unwrap();
        a.latency.record(1000).unwrap();
        let mut b = Stats::new();
        b.measured.count(&Ok((503, Bytes::from_static(b"{}"))));
        b.measured.count(&Err(anyhow::anyhow!("timed out")));
        b.warmup.count(&Ok((
            200,
            Bytes::from_static(br#"{"webhook_id":2,"duplicate":false,"deliveries":2}"#),
        )));
        b.latency.record(3000).unwrap();
        a.merge(b);
        assert_eq!(a.measured.requests, 4);
        assert_eq!(a.measured.ok(), 2);
        assert_eq!(a.measured.non_200()["503"], 1);
        assert_eq!(a.measured.error_count(), 1);
        assert_eq!((a.measured.stored, a.measured.duplicates), (1, 1));
        assert_eq!(a.measured.deliveries, 2);
        assert_eq!((a.warmup.requests, a.warmup.deliveries), (1, 2));
        assert_eq!(a.latency.len(), 3);
        assert!((ms(&a.latency, 1.0) - 3.0).abs() < 0.01);
        assert!((ms(&a.latency, 0.5) - 1.0).abs() < 0.01);
    }
}
