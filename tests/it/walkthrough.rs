//! The walk-through of `mappings/README.md` ("paid Haravan orders to a CRM over `http`"), run
//! as written: every file it shows is written, every command it shows is run by the real
//! binary in a copy of the checkout, in order, with a CRM double on the loopback behind the
//! destination's URL. A step of the README that no longer works fails this test.
//!
//! The README marks its steps with HTML comments, invisible when it is read:
//! - `<!-- walkthrough: append FILE -->` / `<!-- walkthrough: write FILE -->` before a fenced
//!   block: the block is appended to / becomes FILE;
//! - `<!-- walkthrough: run -->` before a `sh` block: each line is a command that must
//!   succeed; with `until="TEXT"`, the last is run again until its output contains TEXT;
//! - `<!-- walkthrough: serve -->` before a `sh` block: the command is started and left
//!   running until the end, once it answers `/healthz`;
//! - `<!-- walkthrough: sighup -->`: the running server is sent `SIGHUP`, and its log must
//!   say the mappings were reloaded.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::doubles::Double;
use crate::harness::{free_port, secret_of};

const CRM_TOKEN: &str = "crm-token-for-the-walkthrough";

#[derive(Debug)]
enum Step {
    Write {
        path: String,
        text: String,
        append: bool,
    },
    Run {
        commands: Vec<String>,
        until: Option<String>,
    },
    Serve {
        command: String,
    },
    Sighup,
}

/// The walk-through's steps, in the README's order.
fn steps(readme: &str) -> Vec<Step> {
    let mut steps = Vec::new();
    let mut lines = readme.lines();
    while let Some(line) = lines.next() {
        let Some(directive) = line
            .trim()
            .strip_prefix("<!-- walkthrough:")
            .and_then(|rest| rest.strip_suffix("-->"))
        else {
            continue;
        };
        let directive = directive.trim();
        if directive == "sighup" {
            steps.push(Step::Sighup);
            continue;
        }
        let fence = lines
            .by_ref()
            .find(|l| !l.trim().is_empty())
            .unwrap_or_default();
        assert!(
            fence.starts_with("```"),
            "`{directive}` must be followed by a fenced block, not {fence:?}"
        );
        let block: Vec<&str> = lines
            .by_ref()
            .take_while(|l| !l.starts_with("```"))
            .collect();
        let (verb, argument) = directive.split_once(' ').unwrap_or((directive, ""));
        let commands = || -> Vec<String> {
            block
                .iter()
                .map(|l| l.trim())
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(str::to_string)
                .collect()
        };
        steps.push(match verb {
            "append" | "write" => Step::Write {
                path: argument.to_string(),
                text: block.join("\n") + "\n",
                append: verb == "append",
            },
            "run" => Step::Run {
                commands: commands(),
                until: argument
                    .strip_prefix("until=\"")
                    .and_then(|t| t.strip_suffix('"'))
                    .map(str::to_string),
            },
            "serve" => Step::Serve {
                command: commands().remove(0),
            },
            other => panic!("unknown walkthrough step `{other}`"),
        });
    }
    steps
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// A shell in the copy of the checkout, with `storehook` on its `PATH` and only the
/// environment the walk-through tells the reader to set.
fn shell(dir: &Path, port: u16, crm_url: &str, command: &str) -> Command {
    let bin: PathBuf = Path::new(env!("CARGO_BIN_EXE_storehook"))
        .parent()
        .unwrap()
        .to_path_buf();
    let path = format!("{}:/usr/local/bin:/usr/bin:/bin", bin.display());
    let mut shell = Command::new("sh");
    shell
        .arg("-c")
        .arg(command)
        .current_dir(dir)
        .env_clear()
        .env("PATH", path)
        .env("PORT", port.to_string())
        .env("HARAVAN_WEBHOOK_SECRET", secret_of("haravan"))
        .env("CRM_URL", crm_url)
        .env("CRM_TOKEN", CRM_TOKEN)
        .env("RUST_LOG", "info");
    shell
}

/// The CRM of the walk-through: bearer token, and `422` to a phone not in `+…` form.
async fn crm() -> (Double, String) {
    let (double, url) = Double::start_with(|request| {
        let authorized = request
            .headers
            .get("authorization")
            .is_some_and(|v| v == format!("Bearer {CRM_TOKEN}").as_str());
        if !authorized {
            return (401, vec![], r#"{"error":"unauthorized"}"#.into());
        }
        let phone = request.body["phone"].as_str().unwrap_or_default();
        let international =
            phone.starts_with('+') && phone[1..].bytes().all(|b| b.is_ascii_digit());
        if !international {
            return (
                422,
                vec![],
                r#"{"error":"phone must be in international form (+84…)"}"#.into(),
            );
        }
        (201, vec![], r#"{"id":"contact-1"}"#.into())
    })
    .await;
    (double, format!("{url}/api/contacts"))
}

struct Server {
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
}

impl Server {
    fn wait_for_log(&self, text: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if self.log.lock().unwrap().iter().any(|l| l.contains(text)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "the server never logged {text:?}:\n{}",
            self.log.lock().unwrap().join("\n")
        );
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_crm_walkthrough_of_the_mappings_readme_runs_as_written() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("mappings/README.md")).unwrap();
    let steps = steps(&readme);
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        root.join("storehook.toml"),
        dir.path().join("storehook.toml"),
    )
    .unwrap();
    copy_dir(&root.join("mappings"), &dir.path().join("mappings"));
    copy_dir(&root.join("fixtures"), &dir.path().join("fixtures"));
    let (double, crm_url) = crm().await;
    let port = free_port();

    let mut server: Option<Server> = None;
    let mut ran: Vec<String> = Vec::new();
    for step in steps {
        match step {
            Step::Write { path, text, append } => {
                let path = dir.path().join(path);
                let text = if append {
                    std::fs::read_to_string(&path).unwrap() + "\n" + &text
                } else {
                    text
                };
                std::fs::write(path, text).unwrap();
            }
            Step::Run { commands, until } => {
                let last = commands.len() - 1;
                for (index, command) in commands.into_iter().enumerate() {
                    let until = until.as_ref().filter(|_| index == last);
                    let deadline = Instant::now() + Duration::from_secs(60);
                    loop {
                        let output = tokio::task::block_in_place(|| {
                            shell(dir.path(), port, &crm_url, &command)
                                .output()
                                .unwrap()
                        });
                        let stdout = String::from_utf8_lossy(&output.stdout).to_string();
                        let stderr = String::from_utf8_lossy(&output.stderr);
                        assert!(
                            output.status.success(),
                            "`{command}` failed ({}):\n{stdout}\n{stderr}",
                            output.status
                        );
                        let done = until.is_none_or(|t| stdout.contains(t.as_str()));
                        if done {
                            break;
                        }
                        assert!(
                            Instant::now() < deadline,
                            "`{command}` never printed {until:?}:\n{stdout}\n{stderr}"
                        );
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                    ran.push(command);
                }
            }
            Step::Serve { command } => {
                let mut child = shell(dir.path(), port, &crm_url, &format!("exec {command}"))
                    .stderr(Stdio::piped())
                    .stdout(Stdio::null())
                    .spawn()
                    .unwrap();
                let log = Arc::new(Mutex::new(Vec::new()));
                let stderr = child.stderr.take().unwrap();
                let sink = log.clone();
                std::thread::spawn(move || {
                    for line in BufReader::new(stderr).lines() {
                        let Ok(line) = line else { break };
                        sink.lock().unwrap().push(line);
                    }
                });
                let started = Server { child, log };
                let client = reqwest::Client::new();
                let deadline = Instant::now() + Duration::from_secs(60);
                loop {
                    let healthy = client
                        .get(format!("http://127.0.0.1:{port}/healthz"))
                        .send()
                        .await
                        .is_ok_and(|r| r.status() == 200);
                    if healthy {
                        break;
                    }
                    assert!(
                        Instant::now() < deadline,
                        "`{command}` did not start:\n{}",
                        started.log.lock().unwrap().join("\n")
                    );
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                server = Some(started);
                ran.push(command);
            }
            Step::Sighup => {
                let server = server.as_ref().expect("SIGHUP needs a running server");
                let sent = Command::new("kill")
                    .args(["-HUP", &server.child.id().to_string()])
                    .status()
                    .unwrap();
                assert!(sent.success());
                tokio::task::block_in_place(|| server.wait_for_log("mappings reloaded"));
                ran.push("SIGHUP".into());
            }
        }
    }

    // Every step the issue of the walk-through names is there.
    for step in [
        "storehook check",
        "storehook test",
        "storehook translate",
        "storehook serve",
        "storehook send",
        "storehook webhook 1",
        "SIGHUP",
        "storehook replay --retranslate",
        "storehook deliveries",
    ] {
        assert!(
            ran.iter().any(|c| c.starts_with(step)),
            "the walk-through runs `{step}`: {ran:?}"
        );
    }

    // The CRM refused the phone as typed, then took the fixed one: the same delivery (one
    // Idempotency-Key), with the token from the environment and storehook's User-Agent.
    let received: Vec<_> = double
        .received()
        .into_iter()
        .filter(|r| r.path == "/api/contacts")
        .collect();
    assert_eq!(received.len(), 2, "{received:#?}");
    assert_eq!(received[0].body["phone"], "+84 987 654 321");
    assert_eq!(received[1].body["phone"], "+84987654321");
    assert_eq!(received[1].body["email"], "nguyenvanan@example.vn");
    let key = |i: usize| received[i].headers.get("idempotency-key").cloned();
    assert!(key(0).is_some());
    assert_eq!(key(0), key(1), "a replay keeps the Idempotency-Key");
    for request in &received {
        assert_eq!(
            request.headers["authorization"],
            format!("Bearer {CRM_TOKEN}").as_str()
        );
        let agent = request.headers["user-agent"].to_str().unwrap();
        assert!(agent.starts_with("storehook/"), "{agent}");
    }
    drop(server);
}
