//! Where the admin token comes from: `STOREHOOK_ADMIN_TOKEN`; else, with a SQLite store, a
//! random one `serve` makes once and keeps in a `0600` file beside the database, so that it
//! survives restarts; else none, and the admin surface stays off.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use base64::Engine as _;

use crate::config::{ADMIN_TOKEN_VARIABLE, Config};
use crate::domain::Secret;

/// The name of the token file, in the SQLite database's directory.
pub const TOKEN_FILE: &str = "admin-token";

/// The admin token in force, and where it came from.
#[derive(Debug)]
pub enum AdminToken {
    /// From `STOREHOOK_ADMIN_TOKEN`.
    Configured(Secret),
    /// Read from, or just written to, this file.
    Kept {
        token: Secret,
        file: PathBuf,
        /// Made at this start (else read from a former one).
        made_now: bool,
    },
    /// None: the store is not a SQLite file and the variable is not set.
    Off,
}

impl AdminToken {
    pub fn secret(&self) -> Option<&Secret> {
        match self {
            AdminToken::Configured(token) | AdminToken::Kept { token, .. } => Some(token),
            AdminToken::Off => None,
        }
    }
}

/// The admin token for `config`: the variable's, else the one kept beside a SQLite store
/// (made now when there is none yet).
pub fn resolve(config: &Config) -> anyhow::Result<AdminToken> {
    if let Some(token) = &config.admin.token {
        return Ok(AdminToken::Configured(token.clone()));
    }
    let Some(db) = sqlite_file(&config.store_url) else {
        return Ok(AdminToken::Off);
    };
    let dir = db
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let file = dir.join(TOKEN_FILE);
    match std::fs::read_to_string(&file) {
        Ok(text) if !text.trim().is_empty() => {
            warn_if_readable_by_others(&file);
            Ok(AdminToken::Kept {
                token: Secret::new(text.trim()),
                file,
                made_now: false,
            })
        }
        Ok(_) => anyhow::bail!(
            "the admin token file {} is empty: remove it (a new token is made) or set {ADMIN_TOKEN_VARIABLE}",
            file.display()
        ),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let token = new_token()?;
            write_private(&file, token.expose())?;
            Ok(AdminToken::Kept {
                token,
                file,
                made_now: true,
            })
        }
        Err(error) => Err(anyhow::anyhow!(
            "cannot read the admin token file {}: {error}",
            file.display()
        )),
    }
}

/// The database file of a `sqlite://PATH` (or `sqlite:PATH`) URL.
fn sqlite_file(url: &str) -> Option<PathBuf> {
    url.strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .filter(|path| !path.is_empty() && !path.contains('?') && !path.starts_with(':'))
        .map(PathBuf::from)
}

/// 32 random bytes from the operating system, base64url: 43 characters.
fn new_token() -> anyhow::Result<Secret> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|error| anyhow::anyhow!("cannot get random bytes for the admin token: {error}"))?;
    Ok(Secret::new(
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes),
    ))
}

/// Writes `text` to a new file only its owner may read or write (`0600`), creating its
/// directory; an existing file is never overwritten.
fn write_private(file: &Path, text: &str) -> anyhow::Result<()> {
    if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut out = options.open(file).map_err(|error| {
        anyhow::anyhow!(
            "cannot create the admin token file {}: {error}",
            file.display()
        )
    })?;
    writeln!(out, "{text}")?;
    out.sync_all()?;
    Ok(())
}

/// A kept token file others may read is a token others may use: said at each start.
fn warn_if_readable_by_others(file: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        if let Ok(meta) = std::fs::metadata(file)
            && meta.permissions().mode() & 0o077 != 0
        {
            tracing::warn!(
                file = %file.display(),
                mode = format!("{:o}", meta.permissions().mode() & 0o777),
                "the admin token file may be read by other users: chmod 600 it"
            );
        }
    }
    #[cfg(not(unix))]
    let _ = file;
}

/// Says at start-up how to reach the admin surface, never putting the token in a log line:
/// on an interactive terminal, a token made now is printed once, in the dashboard's URL;
/// otherwise the log names the file it is kept in (or the variable it came from).
pub fn announce(token: &AdminToken, address: std::net::SocketAddr, on_terminal: bool) {
    match token {
        AdminToken::Configured(_) => {
            tracing::info!(admin_listen = %address, "admin API on /api, token from {ADMIN_TOKEN_VARIABLE}")
        }
        AdminToken::Kept {
            token,
            file,
            made_now,
        } => {
            if *made_now && on_terminal {
                let host = if address.ip().is_unspecified() {
                    std::net::SocketAddr::new([127, 0, 0, 1].into(), address.port())
                } else {
                    address
                };
                // To the terminal only, once: never into the log.
                eprintln!(
                    "\nstorehook admin: http://{host}/admin/login?token={}\n(the token is kept in {}; set {ADMIN_TOKEN_VARIABLE} to choose your own)\n",
                    token.expose(),
                    file.display()
                );
            }
            tracing::info!(
                admin_listen = %address,
                token_file = %file.display(),
                made_now,
                "admin API on /api; its bearer token is kept in the token file"
            );
        }
        AdminToken::Off => tracing::warn!(
            "admin API off: the store is not a SQLite file, so set {ADMIN_TOKEN_VARIABLE} to turn it on"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(store_url: &str, token: Option<&str>) -> Config {
        let env = |name: &str| match name {
            "STOREHOOK_STORE_URL" => Some(store_url.to_string()),
            ADMIN_TOKEN_VARIABLE => token.map(str::to_string),
            _ => None,
        };
        Config::parse(crate::config::EMBEDDED, "storehook.toml", &env).unwrap()
    }

    #[test]
    fn a_token_is_made_once_beside_a_sqlite_store_readable_by_its_owner_alone() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("data/store.db").display());
        let made = resolve(&config(&url, None)).unwrap();
        let AdminToken::Kept {
            token,
            file,
            made_now: true,
        } = &made
        else {
            panic!("{made:?}")
        };
        assert_eq!(file, &dir.path().join("data").join(TOKEN_FILE));
        assert_eq!(token.expose().len(), 43);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(file).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let again = resolve(&config(&url, None)).unwrap();
        let AdminToken::Kept {
            token: kept,
            made_now: false,
            ..
        } = &again
        else {
            panic!("{again:?}")
        };
        assert_eq!(kept, token, "the same token after a restart");
    }

    #[test]
    fn the_variable_wins_and_another_store_needs_it() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("store.db").display());
        let configured = resolve(&config(&url, Some("chosen"))).unwrap();
        assert_eq!(configured.secret().unwrap().expose(), "chosen");
        assert!(!dir.path().join(TOKEN_FILE).exists());
        let postgres = resolve(&config("postgres://db/storehook", None)).unwrap();
        assert!(matches!(postgres, AdminToken::Off));
        let postgres = resolve(&config("postgres://db/storehook", Some("t"))).unwrap();
        assert!(matches!(postgres, AdminToken::Configured(_)));
    }
}
