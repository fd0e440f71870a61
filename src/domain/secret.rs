//! A value that must never be printed, and the redaction of every configured one from
//! texts that come from outside.

use std::borrow::Cow;
use std::fmt;

/// A webhook secret, a verify token or a credential. `Debug` shows a placeholder, and
/// nothing implements `Display` or `Serialize`, so a secret cannot slip into a log line or a
/// response by accident; [`Secret::expose`] is the one way to its text.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// What a configured secret found in a text from outside is replaced with.
pub const REDACTED: &str = "[redacted]";

/// The values of the configured secrets (destination credentials, webhook secrets, verify
/// tokens, the admin token), to take out of texts that come from outside before they are
/// logged or stored: a destination that quotes its request in an error (the `X-Api-Key` or
/// access token it was sent) must not put the credential in the log or in an attempt's
/// excerpt. Each occurrence, exactly as configured, becomes [`REDACTED`]; of a value
/// written as an authorization scheme and its credential (`Bearer <token>`, an `http`
/// destination's `Authorization = "Bearer ${TOKEN}"`), the credential alone too.
#[derive(Clone, Default)]
pub struct Redactions {
    /// Distinct, none empty, longest first: a secret that holds another is taken out whole.
    values: Vec<Secret>,
}

impl Redactions {
    pub fn new<'a>(secrets: impl IntoIterator<Item = &'a Secret>) -> Self {
        Redactions::default().with(secrets)
    }

    /// These and `more`.
    pub fn with<'a>(&self, more: impl IntoIterator<Item = &'a Secret>) -> Self {
        let mut values = self.values.clone();
        for secret in more {
            let credential = secret
                .expose()
                .split_once(' ')
                .filter(|(scheme, credential)| {
                    !scheme.is_empty()
                        && scheme.bytes().all(|b| b.is_ascii_alphabetic())
                        && !credential.trim().is_empty()
                })
                .map(|(_, credential)| Secret::new(credential.trim()));
            for secret in std::iter::once(secret.clone()).chain(credential) {
                if !secret.expose().is_empty() && !values.contains(&secret) {
                    values.push(secret);
                }
            }
        }
        values.sort_by_key(|secret| std::cmp::Reverse(secret.expose().len()));
        Redactions { values }
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// `text` with every occurrence of each secret replaced by [`REDACTED`].
    pub fn redact<'t>(&self, text: &'t str) -> Cow<'t, str> {
        let mut text = Cow::Borrowed(text);
        for secret in &self.values {
            if text.contains(secret.expose()) {
                text = Cow::Owned(text.replace(secret.expose(), REDACTED));
            }
        }
        text
    }
}

impl fmt::Debug for Redactions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Redactions({} secrets)", self.values.len())
    }
}

#[cfg(test)]
mod tests {
    use super::{Redactions, Secret};

    #[test]
    fn every_configured_secret_is_redacted_whole_and_nothing_else() {
        let secrets = [
            Secret::new("key-3f9a"),
            Secret::new("key-3f9a-long"),
            Secret::new(""),
        ];
        let redactions = Redactions::new(&secrets).with([&Secret::new("tok")]);
        assert_eq!(redactions.len(), 3, "distinct, the empty one left out");
        assert_eq!(
            redactions.redact(r#"{"X-Api-Key":"key-3f9a-long","again":"key-3f9a","t":"tok"}"#),
            r#"{"X-Api-Key":"[redacted]","again":"[redacted]","t":"[redacted]"}"#
        );
        assert!(matches!(
            redactions.redact("HTTP 422: no such event"),
            std::borrow::Cow::Borrowed(_)
        ));
        assert_eq!(format!("{redactions:?}"), "Redactions(3 secrets)");
    }

    #[test]
    fn an_authorization_value_has_its_credential_redacted_alone_too() {
        let redactions = Redactions::new([&Secret::new("Bearer crm-token-77")]);
        assert_eq!(
            redactions.redact("sent Bearer crm-token-77; token crm-token-77 unknown"),
            "sent [redacted]; token [redacted] unknown"
        );
        assert_eq!(
            redactions.redact("Bearer of bad news"),
            "Bearer of bad news",
            "the scheme alone stays"
        );
    }

    #[test]
    fn debug_never_shows_the_value() {
        let secret = Secret::new("hunter2");
        assert_eq!(format!("{secret:?}"), "Secret(***)");
        assert_eq!(secret.expose(), "hunter2");
    }
}
