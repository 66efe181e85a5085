//! The session token on the wire: read from a request (`Authorization: Bearer` first, else the
//! `switchboard_session` cookie), and set or cleared with `Set-Cookie` (`Path=/; HttpOnly;
//! SameSite=Strict; Max-Age`, and `Secure` unless configured off).
//!
//! *Owns*: [`COOKIE_NAME`], [`token_from`] and the cookie's attributes.
//!
//! *Does not touch*: what a token means (`session`), or making one (`login`).

use std::time::Duration;

use axum::http::{header, HeaderMap, HeaderValue};

use super::AuthHandle;

/// The session cookie's name.
pub const COOKIE_NAME: &str = "switchboard_session";

/// The WebSocket subprotocol switchboard speaks; a browser page of another origin, which can
/// set no header on a WebSocket, offers it with its token as a second one:
/// `new WebSocket(url, ["switchboard.v1", "bearer." + token])`.
pub const WS_PROTOCOL: &str = "switchboard.v1";

/// The token a request carries: `Authorization: Bearer` first, else the session cookie, else
/// (a WebSocket upgrade only) a `bearer.<token>` subprotocol.
pub fn token_from(headers: &HeaderMap) -> Option<&str> {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let value = value.to_str().ok()?;
        let (scheme, token) = value.split_once(' ')?;
        return scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| token.trim())
            .filter(|t| !t.is_empty());
    }
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE_NAME)
        .map(|(_, value)| value.trim())
        .filter(|t| !t.is_empty())
        .or_else(|| {
            headers
                .get_all(header::SEC_WEBSOCKET_PROTOCOL)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .find_map(|p| p.trim().strip_prefix("bearer."))
                .filter(|t| !t.is_empty())
        })
}

impl AuthHandle {
    pub(super) fn cookie(&self, token: &str, max_age: Duration) -> HeaderValue {
        let secure = if self.inner.cookie_secure {
            "; Secure"
        } else {
            ""
        };
        let value = format!(
            "{COOKIE_NAME}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
            max_age.as_secs()
        );
        // A token is hex and the rest is fixed ASCII.
        HeaderValue::from_str(&value).expect("a cookie of hex and ASCII is a header value")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_comes_from_bearer_first_then_the_cookie() {
        let mut h = HeaderMap::new();
        assert_eq!(token_from(&h), None);
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=b; switchboard_session=abc ; c=d"),
        );
        assert_eq!(token_from(&h), Some("abc"));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer xyz"),
        );
        assert_eq!(token_from(&h), Some("xyz"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic xyz"));
        assert_eq!(token_from(&h), None);
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("bearer  "));
        assert_eq!(token_from(&h), None);
    }
}
