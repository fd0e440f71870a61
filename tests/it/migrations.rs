//! Migrations as an operator runs them: `storehook migrate --store URL` applies either
//! backend's, and a store opened without applying them (`serve` with `store.migrate =
//! false`) refuses a schema that lacks any, naming the command that applies them.

use std::process::Command;

use storehook::store::{Migrations, open_with};

/// `storehook migrate --store URL`, run in an empty directory with no configuration of its
/// own; its stdout and stderr.
fn migrate(url: &str) -> (bool, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_storehook"))
        .args(["migrate", "--store", url])
        .current_dir(dir.path())
        .env_remove("STOREHOOK_STORE_URL")
        .env_remove("STOREHOOK_CONFIG")
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Refused unmigrated, migrated by the command, then opened as it is (twice: the command
/// applies nothing the second time).
async fn migrate_command_applies_what_a_store_opened_without_migrating_requires(url: &str) {
    let refused = open_with(url, Migrations::Require).await.err().unwrap();
    assert!(
        refused.to_string().contains("run `storehook migrate`"),
        "{refused}"
    );
    for _ in 0..2 {
        let (ok, stdout, stderr) = migrate(url);
        assert!(ok, "{stdout}{stderr}");
        assert!(stdout.starts_with("store ready: "), "{stdout}");
    }
    let store = open_with(url, Migrations::Require).await.unwrap();
    store.check_ready().await.unwrap();
}

#[tokio::test]
async fn sqlite_is_migrated_by_the_command_and_refused_unmigrated() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("store.db").display());
    migrate_command_applies_what_a_store_opened_without_migrating_requires(&url).await;
}

#[tokio::test]
async fn postgresql_is_migrated_by_the_command_and_refused_unmigrated() {
    let Some(schema) = crate::postgres::fresh_schema("migrations on PostgreSQL").await else {
        return;
    };
    migrate_command_applies_what_a_store_opened_without_migrating_requires(&schema.store_url())
        .await;
}

/// The command's output and errors never show the URL's password.
#[test]
fn a_store_url_with_a_password_is_never_printed_with_it() {
    let (ok, stdout, stderr) =
        migrate("postgres://storehook:hunter2-secret@127.0.0.1:1/none?connect_timeout=2");
    assert!(!ok);
    assert!(stderr.contains("storehook:***@127.0.0.1:1"), "{stderr}");
    assert!(!format!("{stdout}{stderr}").contains("hunter2"), "{stderr}");
}

#[test]
fn an_unknown_store_scheme_is_refused_naming_the_ones_there_are() {
    let (ok, _, stderr) = migrate("mysql://u:pw-secret@h/d");
    assert!(!ok);
    assert!(stderr.contains("sqlite://PATH or postgres://"), "{stderr}");
    assert!(!stderr.contains("pw-secret"), "{stderr}");
}
