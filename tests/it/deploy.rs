//! The deployment files agree with the server: `fly.toml`'s port, health check, volume and
//! limits with the configuration storehook reads, the `Dockerfile` with how it is built and
//! run. No Docker engine or Fly.io account is needed: the files are read, the server is real.

use std::path::Path;
use std::time::Duration;

use storehook::config::{Config, EMBEDDED};

use crate::harness::*;

fn read(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn fly() -> toml::Table {
    read("fly.toml").parse().expect("fly.toml is TOML")
}

/// The shipped configuration as it loads on Fly.io: with fly.toml's `[env]`.
fn config_on_fly(fly: &toml::Table) -> Config {
    let env: std::collections::BTreeMap<String, String> = fly["env"]
        .as_table()
        .expect("an [env] table")
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                v.as_str().expect("env values are strings").to_string(),
            )
        })
        .collect();
    Config::parse(EMBEDDED, "storehook.toml", &|name| env.get(name).cloned())
        .expect("the shipped configuration loads with fly.toml's environment")
}

/// A duration as fly.toml writes it ("45s").
fn seconds(text: &str) -> Duration {
    Duration::from_secs(text.strip_suffix('s').unwrap().parse().unwrap())
}

#[test]
fn fly_serves_the_port_the_server_listens_on_and_keeps_its_store_on_the_volume() {
    let fly = fly();
    let service = fly["http_service"].as_table().unwrap();
    let internal_port = service["internal_port"].as_integer().unwrap();
    let default = Config::parse(EMBEDDED, "storehook.toml", &|_| None).unwrap();
    assert_eq!(
        internal_port,
        i64::from(default.listen.port()),
        "the default port"
    );
    let config = config_on_fly(&fly);
    assert_eq!(
        internal_port,
        i64::from(config.listen.port()),
        "with fly.toml's env"
    );
    assert_eq!(service["force_https"].as_bool(), Some(true));

    let mount = fly["mounts"]["destination"].as_str().unwrap();
    let file = config
        .store_url
        .strip_prefix("sqlite://")
        .unwrap_or_else(|| panic!("a SQLite store on Fly: {}", config.store_url));
    assert!(
        Path::new(file).is_absolute() && Path::new(file).starts_with(mount),
        "the SQLite file {file} lies on the volume mounted at {mount}"
    );
}

#[test]
fn fly_never_stops_the_one_machine_and_gives_it_time_to_stop_cleanly() {
    let fly = fly();
    let service = fly["http_service"].as_table().unwrap();
    assert_eq!(service["auto_stop_machines"].as_str(), Some("off"));
    assert_eq!(service["min_machines_running"].as_integer(), Some(1));
    let config = config_on_fly(&fly);
    let hard_limit = service["concurrency"]["hard_limit"].as_integer().unwrap();
    assert!(
        hard_limit >= i64::try_from(config.limits.max_concurrent_requests).unwrap(),
        "Fly's hard limit ({hard_limit}) lets storehook's own cap answer first"
    );
    assert_eq!(fly["kill_signal"].as_str(), Some("SIGTERM"));
    let kill_timeout = seconds(fly["kill_timeout"].as_str().unwrap());
    assert!(
        kill_timeout >= config.limits.request_timeout + config.delivery.shutdown_grace,
        "{kill_timeout:?} covers a request's arrival and the delivery grace"
    );
}

#[tokio::test]
async fn fly_checks_a_route_the_server_answers_when_ready() {
    let fly = fly();
    let checks = fly["http_service"]["checks"].as_array().unwrap();
    assert!(!checks.is_empty());
    let app = spawn_app().await;
    for check in checks {
        assert_eq!(check["method"].as_str(), Some("GET"));
        let path = check["path"].as_str().unwrap();
        assert_eq!(path, "/readyz", "the check that asks the store");
        let answer = app
            .client
            .get(format!("{}{path}", app.address))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200, "{path}");
    }
}

/// The Dockerfile's instructions, continuation lines joined, comments left out: (keyword,
/// arguments).
fn dockerfile() -> Vec<(String, String)> {
    let text = read("Dockerfile");
    let mut instructions = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || (line.is_empty() && current.is_empty()) {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(start) => current.push_str(start),
            None => {
                current.push_str(line);
                let (keyword, arguments) = current.split_once(' ').unwrap_or((&current, ""));
                instructions.push((keyword.to_uppercase(), arguments.trim().to_string()));
                current.clear();
            }
        }
    }
    instructions
}

#[test]
fn the_image_is_built_locked_and_runs_storehook_serve_as_a_user_owning_the_store() {
    let instructions = dockerfile();
    let all = |keyword: &str| -> Vec<&str> {
        instructions
            .iter()
            .filter(|(k, _)| k == keyword)
            .map(|(_, a)| a.as_str())
            .collect()
    };
    let froms = all("FROM");
    assert!(froms.len() >= 2, "a multi-stage build: {froms:?}");
    assert!(
        all("RUN")
            .iter()
            .any(|run| run.contains("cargo build --release --locked")),
        "built with the locked dependencies"
    );
    let user = *all("USER").last().expect("a USER instruction");
    assert!(
        user != "root" && user != "0" && !user.starts_with("0:"),
        "USER {user}"
    );
    let cmd = *all("CMD").last().expect("a CMD");
    let cmd: Vec<String> =
        serde_json::from_str(cmd).expect("CMD in exec form (signals reach storehook)");
    assert_eq!(cmd, ["storehook", "serve"]);

    // The store is in a directory the image makes and gives to that user.
    let env = all("ENV").join(" ");
    assert!(env.contains("STOREHOOK_LOG_FORMAT=json"), "{env}");
    let store = env
        .split_whitespace()
        .find_map(|pair| pair.strip_prefix("STOREHOOK_STORE_URL=sqlite://"))
        .expect("the image sets a SQLite store URL");
    let dir = Path::new(store).parent().unwrap().display().to_string();
    // Made in the build stage (the runtime image has no shell) under a root directory that
    // is copied into the image owned by the user.
    let runs = all("RUN").join(" && ");
    let made = runs
        .split("&&")
        .filter_map(|run| run.trim().strip_prefix("mkdir -p "))
        .find_map(|path| path.trim().strip_suffix(&dir))
        .unwrap_or_else(|| panic!("the build stage makes ROOT{dir}: {runs}"));
    let copied = format!("--from=build --chown={user}:{user} {made}/ /");
    assert!(
        all("COPY").contains(&copied.as_str()),
        "COPY {copied} in {:?}",
        all("COPY")
    );
    // The port it listens on by default is the one fly.toml sends to.
    assert!(env.contains("PORT=8080"), "{env}");
    assert_eq!(all("EXPOSE"), ["8080"]);
}
