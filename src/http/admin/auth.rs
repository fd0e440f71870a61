//! Who may use the admin surface: the bearer token, compared in constant time; wrong tokens
//! throttled per client address; the client's address and scheme from a trusted proxy
//! header when one is configured; and the cookie session and CSRF token a dashboard's login
//! form and its forms use, both derived from the token (so changing the token ends every
//! session). No token or cookie value is ever logged.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use base64::Engine as _;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::domain::Secret;

/// Wrong tokens a client address may send within [`LOCKOUT`] before it is locked out.
pub const FAILURES_ALLOWED: u32 = 5;
/// How long a client address that sent too many wrong tokens is answered 429, whatever it
/// sends (a right token too: else a guess that hits would still be let in).
pub const LOCKOUT: Duration = Duration::from_secs(60);
/// The name of the dashboard's session cookie.
pub const SESSION_COOKIE: &str = "storehook_session";

/// What a request's credentials came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    /// No token, or a wrong one.
    Refused,
    /// Too many wrong tokens from this address: wait this long.
    Throttled {
        retry_after: Duration,
    },
}

/// The admin surface's gate.
pub struct Gate {
    token: Secret,
    /// Counts each address's wrong tokens: [`FAILURES_ALLOWED`] at once, one more back
    /// every [`LOCKOUT`] / [`FAILURES_ALLOWED`].
    failures: DefaultKeyedRateLimiter<IpAddr>,
    /// Addresses locked out, until when.
    locked: Mutex<HashMap<IpAddr, Instant>>,
    /// See [`ClientOrigin`].
    proxy_header: Option<String>,
}

impl Gate {
    pub fn new(token: Secret, proxy_header: Option<String>) -> Gate {
        let burst = NonZeroU32::new(FAILURES_ALLOWED).expect("above zero");
        let quota = Quota::with_period(LOCKOUT / FAILURES_ALLOWED)
            .expect("a period above zero")
            .allow_burst(burst);
        Gate {
            token,
            failures: RateLimiter::keyed(quota),
            locked: Mutex::new(HashMap::new()),
            proxy_header,
        }
    }

    /// Whether `presented` is the token, in time that does not depend on where they differ.
    pub fn is_token(&self, presented: &str) -> bool {
        bool::from(presented.as_bytes().ct_eq(self.token.expose().as_bytes()))
    }

    /// Judges a request from `client` presenting `presented` (none when it sent no
    /// credentials). A locked-out address is refused before its token is looked at; only a
    /// wrong token counts towards a lockout, not a request without one.
    pub fn judge(&self, client: IpAddr, presented: Option<&str>) -> Verdict {
        let now = Instant::now();
        if let Some(left) = self.lockout_left(client, now) {
            return Verdict::Throttled { retry_after: left };
        }
        let Some(presented) = presented else {
            // No credentials is no guess: refused, not counted.
            return Verdict::Refused;
        };
        if self.is_token(presented) {
            return Verdict::Allowed;
        }
        if self.failures.check_key(&client).is_err() {
            let mut locked = self.locked.lock().expect("not poisoned");
            locked.retain(|_, until| *until > now);
            locked.insert(client, now + LOCKOUT);
            self.failures.retain_recent();
            return Verdict::Throttled {
                retry_after: LOCKOUT,
            };
        }
        Verdict::Refused
    }

    fn lockout_left(&self, client: IpAddr, now: Instant) -> Option<Duration> {
        let locked = self.locked.lock().expect("not poisoned");
        locked
            .get(&client)
            .and_then(|until| until.checked_duration_since(now))
            .filter(|left| !left.is_zero())
    }

    /// Where a request comes from, as far as this gate trusts its headers.
    pub fn origin(&self, peer: SocketAddr, headers: &HeaderMap) -> ClientOrigin {
        ClientOrigin::of(peer, headers, self.proxy_header.as_deref())
    }

    /// The session cookie's value: an HMAC of a fixed label under the token. The same for
    /// every login until the token changes.
    pub fn session_value(&self) -> String {
        self.derive("storehook admin session v1")
    }

    /// Whether `value` is the session cookie's value, compared in constant time.
    pub fn is_session(&self, value: &str) -> bool {
        bool::from(value.as_bytes().ct_eq(self.session_value().as_bytes()))
    }

    /// The `Set-Cookie` value that logs a browser in: `HttpOnly`, `SameSite=Strict`, the
    /// whole site's path, and `Secure` when the request came over HTTPS.
    pub fn session_cookie(&self, secure: bool) -> String {
        let secure = if secure { "; Secure" } else { "" };
        format!(
            "{SESSION_COOKIE}={}; Path=/; HttpOnly; SameSite=Strict{secure}",
            self.session_value()
        )
    }

    /// The CSRF token a dashboard form carries: an HMAC under the token of a label and
    /// the session, so only a page of a logged-in session can make it.
    pub fn csrf_token(&self) -> String {
        self.derive(&format!("storehook admin csrf v1:{}", self.session_value()))
    }

    /// Whether a form's `presented` CSRF token is this session's, in constant time.
    pub fn is_csrf_token(&self, presented: &str) -> bool {
        bool::from(presented.as_bytes().ct_eq(self.csrf_token().as_bytes()))
    }

    fn derive(&self, label: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(self.token.expose().as_bytes())
            .expect("HMAC takes a key of any length");
        mac.update(label.as_bytes());
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    }
}

/// The bearer token of an `Authorization: Bearer …` header, if any.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|token| !token.is_empty())
}

/// The value of the cookie `name` in a request's `Cookie` headers, if any.
pub fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

/// The client's address and whether it reached us over HTTPS. Without a trusted proxy
/// header, the TCP peer and plain HTTP; with one, the address the proxy wrote there (the
/// last of a list: the one the trusted proxy added) and `X-Forwarded-Proto`. A header
/// missing or unreadable falls back to the peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientOrigin {
    pub address: IpAddr,
    pub https: bool,
}

impl ClientOrigin {
    pub fn of(peer: SocketAddr, headers: &HeaderMap, proxy_header: Option<&str>) -> Self {
        let Some(name) = proxy_header else {
            return ClientOrigin {
                address: peer.ip(),
                https: false,
            };
        };
        let address = headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.rsplit(',').next())
            .and_then(|last| last.trim().parse().ok())
            .unwrap_or(peer.ip());
        let https = headers
            .get("x-forwarded-proto")
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.rsplit(',').next())
            .is_some_and(|proto| proto.trim().eq_ignore_ascii_case("https"));
        ClientOrigin { address, https }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate() -> Gate {
        Gate::new(Secret::new("the-admin-token"), None)
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn the_token_lets_in_and_anything_else_is_refused() {
        let gate = gate();
        let client = ip("127.0.0.1");
        assert_eq!(
            gate.judge(client, Some("the-admin-token")),
            Verdict::Allowed
        );
        for wrong in [
            None,
            Some(""),
            Some("the-admin-toke"),
            Some("the-admin-token2"),
        ] {
            assert_eq!(gate.judge(client, wrong), Verdict::Refused, "{wrong:?}");
        }
    }

    #[test]
    fn after_five_wrong_tokens_an_address_is_locked_out_even_with_the_right_one() {
        let gate = gate();
        let (client, other) = (ip("203.0.113.7"), ip("203.0.113.8"));
        for _ in 0..FAILURES_ALLOWED {
            assert_eq!(gate.judge(client, Some("guess")), Verdict::Refused);
        }
        assert_eq!(
            gate.judge(client, Some("guess")),
            Verdict::Throttled {
                retry_after: LOCKOUT
            }
        );
        assert!(matches!(
            gate.judge(client, Some("the-admin-token")),
            Verdict::Throttled { .. }
        ));
        assert_eq!(
            gate.judge(other, Some("the-admin-token")),
            Verdict::Allowed,
            "another address is not locked out"
        );
    }

    #[test]
    fn bearer_tokens_and_cookies_are_read_from_their_headers() {
        let mut headers = HeaderMap::new();
        assert_eq!(bearer(&headers), None);
        headers.insert("authorization", "Bearer abc".parse().unwrap());
        assert_eq!(bearer(&headers), Some("abc"));
        headers.insert("authorization", "Basic abc".parse().unwrap());
        assert_eq!(bearer(&headers), None);
        headers.insert("authorization", "bearer  ".parse().unwrap());
        assert_eq!(bearer(&headers), None);
        headers.insert("cookie", "a=1; storehook_session=xyz; b=2".parse().unwrap());
        assert_eq!(cookie(&headers, SESSION_COOKIE), Some("xyz"));
        assert_eq!(cookie(&headers, "c"), None);
    }

    #[test]
    fn the_client_comes_from_the_trusted_header_only_when_one_is_configured() {
        let peer: SocketAddr = "10.0.0.1:5000".parse().unwrap();
        let mut headers = HeaderMap::new();
        headers.insert("fly-client-ip", "198.51.100.4".parse().unwrap());
        headers.insert("x-forwarded-for", "1.1.1.1, 198.51.100.9".parse().unwrap());
        headers.insert("x-forwarded-proto", "https".parse().unwrap());
        let untrusted = ClientOrigin::of(peer, &headers, None);
        assert_eq!(
            untrusted,
            ClientOrigin {
                address: peer.ip(),
                https: false
            },
            "a header a client may set is not believed by default"
        );
        let fly = ClientOrigin::of(peer, &headers, Some("Fly-Client-IP"));
        assert_eq!(fly.address, ip("198.51.100.4"));
        assert!(fly.https);
        let forwarded = ClientOrigin::of(peer, &headers, Some("X-Forwarded-For"));
        assert_eq!(
            forwarded.address,
            ip("198.51.100.9"),
            "the proxy's own entry"
        );
        headers.insert("fly-client-ip", "not an address".parse().unwrap());
        let garbled = ClientOrigin::of(peer, &headers, Some("Fly-Client-IP"));
        assert_eq!(garbled.address, peer.ip());
    }

    #[test]
    fn the_session_cookie_and_csrf_token_come_from_the_token_and_change_with_it() {
        let gate = gate();
        let cookie = gate.session_cookie(false);
        assert!(cookie.starts_with("storehook_session="));
        assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
        assert!(!cookie.contains("Secure"));
        assert!(gate.session_cookie(true).ends_with("; Secure"));
        assert!(!cookie.contains("the-admin-token"));
        assert!(gate.is_session(&gate.session_value()));
        assert!(!gate.is_session("forged"));
        let csrf = gate.csrf_token();
        assert!(gate.is_csrf_token(&csrf) && !gate.is_csrf_token(""));
        assert_ne!(csrf, gate.session_value());
        let other = Gate::new(Secret::new("another-token"), None);
        assert!(!other.is_session(&gate.session_value()));
        assert!(!other.is_csrf_token(&csrf));
    }
}
