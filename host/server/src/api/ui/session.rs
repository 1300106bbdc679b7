//! The console's sessions: signed in with the API's access key and secret,
//! a random session id in an HttpOnly, SameSite=Strict cookie scoped to
//! `/ui`, kept in this process's memory with its expiry (a restart signs
//! everyone out), and a per-session CSRF token every mutating request
//! carries in a header.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::http::header::{COOKIE, HOST, ORIGIN};
use axum::http::{HeaderMap, HeaderValue};

/// The session cookie's name.
pub const COOKIE_NAME: &str = "berth_session";
/// The header that carries the session's CSRF token.
pub const CSRF_HEADER: &str = "x-berth-csrf";
/// How long a session lasts from sign-in.
pub const LIFETIME: Duration = Duration::from_secs(8 * 3600);
/// Sessions kept at most; signing in past it ends the oldest.
const MAX_SESSIONS: usize = 1024;

/// One signed-in browser.
#[derive(Debug, Clone)]
pub struct Session {
    /// The key it signed in with (recorded in the audit log).
    pub access_key_id: String,
    /// What its mutating requests must carry in [`CSRF_HEADER`].
    pub csrf: String,
    /// When it ends, in this process's clock.
    expires: Instant,
    /// When it ends, epoch seconds (for the page).
    pub expires_at: f64,
}

/// The sessions of this process, by id.
#[derive(Debug)]
pub struct Sessions {
    by_id: Mutex<HashMap<String, Session>>,
    lifetime: Duration,
}

impl Default for Sessions {
    fn default() -> Self {
        Sessions::with_lifetime(LIFETIME)
    }
}

/// 256 bits from the OS's random source (two UUID v4s, 244 random bits),
/// as hex.
fn random_token() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

/// Equality that takes as long whatever the first difference: tokens and
/// secrets are compared with it.
pub fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

impl Sessions {
    /// Sessions lasting `lifetime` from sign-in.
    pub fn with_lifetime(lifetime: Duration) -> Self {
        Sessions {
            by_id: Mutex::new(HashMap::new()),
            lifetime,
        }
    }

    /// How long a new session lasts.
    pub fn lifetime(&self) -> Duration {
        self.lifetime
    }

    /// A new session for `access_key_id`: its id (the cookie's value) and it.
    pub fn open(&self, access_key_id: &str) -> (String, Session) {
        let now = Instant::now();
        let session = Session {
            access_key_id: access_key_id.to_owned(),
            csrf: random_token(),
            expires: now + self.lifetime,
            expires_at: crate::control::now() + self.lifetime.as_secs_f64(),
        };
        let id = random_token();
        let mut map = self.by_id.lock().unwrap_or_else(PoisonError::into_inner);
        map.retain(|_, s| s.expires > now);
        if map.len() >= MAX_SESSIONS
            && let Some(oldest) = map
                .iter()
                .min_by_key(|(_, s)| s.expires)
                .map(|(k, _)| k.clone())
        {
            map.remove(&oldest);
        }
        map.insert(id.clone(), session.clone());
        (id, session)
    }

    /// The live session `id`, if any (an expired one is forgotten).
    pub fn get(&self, id: &str) -> Option<Session> {
        let mut map = self.by_id.lock().unwrap_or_else(PoisonError::into_inner);
        match map.get(id) {
            Some(s) if s.expires > Instant::now() => Some(s.clone()),
            Some(_) => {
                map.remove(id);
                None
            }
            None => None,
        }
    }

    /// Ends session `id` (signing out).
    pub fn close(&self, id: &str) {
        self.by_id
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(id);
    }

    /// The session a request's cookie names, with its id.
    pub fn of(&self, headers: &HeaderMap) -> Option<(String, Session)> {
        let id = cookie(headers)?;
        self.get(&id).map(|s| (id, s))
    }
}

/// The value of the session cookie among the request's cookies.
fn cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE_NAME)
        .map(|(_, value)| value.to_owned())
}

/// The `Set-Cookie` that signs a browser in for `max_age`.
pub fn set_cookie(id: &str, max_age: Duration) -> HeaderValue {
    let v = format!(
        "{COOKIE_NAME}={id}; Path=/ui; Max-Age={}; HttpOnly; SameSite=Strict",
        max_age.as_secs()
    );
    HeaderValue::from_str(&v).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The `Set-Cookie` that signs a browser out.
pub fn clear_cookie() -> HeaderValue {
    HeaderValue::from_static("berth_session=; Path=/ui; Max-Age=0; HttpOnly; SameSite=Strict")
}

/// False when the request names an `Origin` that is not this server (the
/// `Host` it was sent to): a page elsewhere posting here. No `Origin` (an
/// old browser, a script) passes; the CSRF token still has to.
pub fn origin_ok(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(ORIGIN) else {
        return true;
    };
    let host = headers.get(HOST).and_then(|h| h.to_str().ok());
    let authority = origin.to_str().ok().and_then(|o| {
        o.strip_prefix("http://")
            .or_else(|| o.strip_prefix("https://"))
    });
    matches!((authority, host), (Some(a), Some(h)) if a.eq_ignore_ascii_case(h))
}

/// Whether a mutating request carries `session`'s CSRF token and comes
/// from this server's pages.
pub fn csrf_ok(headers: &HeaderMap, session: &Session) -> bool {
    let token = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok());
    origin_ok(headers) && token.is_some_and(|t| same(t, &session.csrf))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn a_session_is_found_by_its_cookie_until_it_expires_or_closes() {
        let s = Sessions::default();
        let (id, session) = s.open("AKID");
        assert_eq!(id.len(), 64);
        assert_ne!(id, session.csrf);
        let h = headers(&[("cookie", &format!("a=b; {COOKIE_NAME}={id}; c=d"))]);
        let (found, got) = s.of(&h).expect("signed in");
        assert_eq!((found.as_str(), got.access_key_id.as_str()), (&*id, "AKID"));
        assert!(
            s.of(&headers(&[("cookie", "berth_session=nope")]))
                .is_none()
        );
        assert!(s.of(&HeaderMap::new()).is_none());
        s.close(&id);
        assert!(s.of(&h).is_none());

        let short = Sessions::with_lifetime(Duration::from_millis(1));
        let (id, _) = short.open("AKID");
        std::thread::sleep(Duration::from_millis(5));
        assert!(short.get(&id).is_none(), "expired");
    }

    #[test]
    fn csrf_needs_the_token_and_a_matching_origin() {
        let s = Sessions::default();
        let (_, session) = s.open("AKID");
        let token = session.csrf.clone();
        let ok = headers(&[("host", "127.0.0.1:7171"), (CSRF_HEADER, &token)]);
        assert!(csrf_ok(&ok, &session));
        let same_origin = headers(&[
            ("host", "127.0.0.1:7171"),
            ("origin", "http://127.0.0.1:7171"),
            (CSRF_HEADER, &token),
        ]);
        assert!(csrf_ok(&same_origin, &session));
        let elsewhere = headers(&[
            ("host", "127.0.0.1:7171"),
            ("origin", "http://evil.example"),
            (CSRF_HEADER, &token),
        ]);
        assert!(!csrf_ok(&elsewhere, &session));
        assert!(!csrf_ok(&headers(&[("host", "h")]), &session));
        let wrong = headers(&[("host", "h"), (CSRF_HEADER, "0")]);
        assert!(!csrf_ok(&wrong, &session));
    }

    #[test]
    fn cookies_are_http_only_strict_and_scoped_to_the_console() {
        let c = set_cookie("abc", LIFETIME);
        let c = c.to_str().unwrap();
        for part in [
            "berth_session=abc",
            "Path=/ui",
            "Max-Age=28800",
            "HttpOnly",
            "SameSite=Strict",
        ] {
            assert!(c.contains(part), "{c} lacks {part}");
        }
        assert!(clear_cookie().to_str().unwrap().contains("Max-Age=0"));
        assert!(same("abc", "abc") && !same("abc", "abd") && !same("abc", "ab"));
    }
}
