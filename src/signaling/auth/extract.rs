//! The extractors that guard routes, and where a request comes from: [`Authenticated`] (any
//! signed-in person), [`RequireSupervisor`], [`SameOrigin`] (no page of a foreign origin), and the
//! client's address for the sign-in throttle (behind a trusted proxy, the last
//! `X-Forwarded-For` entry).
//!
//! *Owns*: the rules of roles (a supervisor may do all an agent may), of origins, and of the
//! client's address.
//!
//! *Does not touch*: the session table (`session` answers who holds a token), the token's wire
//! form (`cookie`).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use axum::extract::{ConnectInfo, FromRef, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};

use super::cookie::token_from;
use super::{AuthError, AuthHandle};
use crate::config::Role;
use crate::ids::AgentId;
use crate::signaling::tokens::SessionKey;

/// Who made a request: the result of the [`Authenticated`] extractor and of
/// [`AuthHandle::authenticate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authenticated {
    /// The person.
    pub person_id: AgentId,
    /// Their role.
    pub role: Role,
    /// The session the request came with (for [`AuthHandle::session_alive`] and sign-out).
    pub session: SessionKey,
}

impl Authenticated {
    /// True when the person may act as `needed`: each role may do all the ones below it may.
    pub fn has_role(&self, needed: Role) -> bool {
        self.role >= needed
    }

    /// `Ok` when the person may act as `needed`, else [`AuthError::Forbidden`] (403).
    pub fn require(&self, needed: Role) -> Result<(), AuthError> {
        if self.has_role(needed) {
            Ok(())
        } else {
            Err(AuthError::Forbidden { needed })
        }
    }
}

impl<S> FromRequestParts<S> for Authenticated
where
    AuthHandle: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = AuthError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let auth = AuthHandle::from_ref(state);
        let token = token_from(&parts.headers).ok_or(AuthError::Unauthenticated)?;
        auth.authenticate_anywhere(token).await
    }
}

/// A signed-in supervisor; anyone else is answered 403 (or 401 when not signed in).
#[derive(Debug, Clone)]
pub struct RequireSupervisor(pub Authenticated);

impl<S> FromRequestParts<S> for RequireSupervisor
where
    AuthHandle: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = AuthError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let who = Authenticated::from_request_parts(parts, state).await?;
        who.require(Role::Supervisor)?;
        Ok(RequireSupervisor(who))
    }
}

/// A request that is not from a browser page of another origin: its `Origin` header, if any, is
/// the request's own host (switchboard's pages) or one of `SWITCHBOARD_ALLOWED_ORIGINS`. Without
/// `Origin` (a non-browser client with a bearer token; browsers always send it on a WebSocket
/// upgrade and on a POST) it passes. Anything else, `null` included, is answered 403.
#[derive(Debug, Clone, Copy)]
pub struct SameOrigin;

impl<S> FromRequestParts<S> for SameOrigin
where
    AuthHandle: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = AuthError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let auth = AuthHandle::from_ref(state);
        if origin_allowed(parts, &auth.inner.allowed_origins) {
            Ok(SameOrigin)
        } else {
            Err(AuthError::ForeignOrigin)
        }
    }
}

/// See [`SameOrigin`].
fn origin_allowed(parts: &Parts, allowed: &[String]) -> bool {
    foreign_origin(&parts.headers, &parts.uri, allowed).is_none()
}

impl AuthHandle {
    /// The request's `Origin` when it is neither switchboard's own nor one of
    /// `SWITCHBOARD_ALLOWED_ORIGINS`: a page of another site (`None`: no `Origin`, or one of
    /// those). An account may allow such an origin for its own people's sessions.
    pub fn foreign_origin(&self, headers: &HeaderMap, uri: &axum::http::Uri) -> Option<String> {
        foreign_origin(headers, uri, &self.inner.allowed_origins)
    }
}

/// See [`AuthHandle::foreign_origin`]; an `Origin` that is not text is foreign (as `""`).
fn foreign_origin(
    headers: &HeaderMap,
    uri: &axum::http::Uri,
    allowed: &[String],
) -> Option<String> {
    let origin = headers.get(header::ORIGIN)?;
    let Ok(origin) = origin.to_str() else {
        return Some(String::new());
    };
    let origin = origin.trim().to_ascii_lowercase();
    if allowed.contains(&origin) || same_origin(headers, uri, &origin) {
        return None;
    }
    Some(origin)
}

/// True when `origin` is the request's own host.
fn same_origin(headers: &HeaderMap, uri: &axum::http::Uri, origin: &str) -> bool {
    let Some((scheme, authority)) = origin.split_once("://") else {
        return false;
    };
    let default_port = match scheme {
        "http" => ":80",
        "https" => ":443",
        _ => return false,
    };
    // HTTP/1.1 carries the host in `Host`, HTTP/2 in the URI's authority.
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
        .or_else(|| uri.authority().map(|a| a.to_string()));
    let Some(host) = host else {
        return false;
    };
    let host = host.trim().to_ascii_lowercase();
    let bare = |a: &str| a.strip_suffix(default_port).unwrap_or(a).to_owned();
    !authority.is_empty() && bare(authority) == bare(&host)
}

impl AuthHandle {
    /// The address a sign-in comes from, for the throttle.
    fn client_of(&self, parts: &Parts) -> IpAddr {
        if self.inner.trust_forwarded_for {
            if let Some(ip) = forwarded_client(&parts.headers) {
                return ip;
            }
        }
        parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(a)| a.ip())
            // Served without connect info (unit tests): everyone shares one address.
            .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
    }
}

/// The client's address a trusted proxy appended: the last entry of the last
/// `X-Forwarded-For` header (entries before it are the client's own word).
pub fn forwarded_client(headers: &HeaderMap) -> Option<IpAddr> {
    headers
        .get_all("x-forwarded-for")
        .iter()
        .next_back()
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.rsplit(',').next())
        .and_then(|ip| ip.trim().parse().ok())
}

/// The client's address, as [`AuthHandle::client_of`] sees it.
pub(super) struct ClientAddr(pub(super) IpAddr);

impl FromRequestParts<AuthHandle> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        auth: &AuthHandle,
    ) -> Result<Self, Self::Rejection> {
        Ok(ClientAddr(auth.client_of(parts)))
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_forwarded_client_is_the_proxys_last_entry() {
        let mut h = HeaderMap::new();
        h.append("x-forwarded-for", "1.1.1.1, 2.2.2.2".parse().unwrap());
        h.append("x-forwarded-for", "9.9.9.9, 3.3.3.3".parse().unwrap());
        assert_eq!(forwarded_client(&h), Some([3, 3, 3, 3].into()));
        assert_eq!(forwarded_client(&HeaderMap::new()), None);
    }

    #[test]
    fn a_supervisor_may_do_what_an_agent_may() {
        let who = |role| Authenticated {
            person_id: AgentId("x".into()),
            role,
            session: SessionKey::of("t"),
        };
        assert!(who(Role::Supervisor).has_role(Role::Agent));
        assert!(who(Role::Supervisor).has_role(Role::Supervisor));
        assert!(who(Role::Agent).has_role(Role::Agent));
        assert!(who(Role::Admin).has_role(Role::Supervisor));
        assert!(!who(Role::Supervisor).has_role(Role::Admin));
        assert!(matches!(
            who(Role::Agent).require(Role::Supervisor),
            Err(AuthError::Forbidden {
                needed: Role::Supervisor
            })
        ));
    }

    #[test]
    fn the_origin_must_be_this_host_or_allowed() {
        let parts = |origin: Option<&str>, host: &str| {
            let mut req = axum::http::Request::builder()
                .uri("/ws")
                .header("host", host);
            if let Some(o) = origin {
                req = req.header("origin", o);
            }
            req.body(()).unwrap().into_parts().0
        };
        let allowed = vec!["https://crm.example.com".to_owned()];
        for (origin, host, ok) in [
            (None, "sb.example.com", true),
            (Some("https://sb.example.com"), "sb.example.com", true),
            (Some("https://SB.example.com:443"), "sb.example.com", true),
            (Some("http://127.0.0.1:8080"), "127.0.0.1:8080", true),
            (Some("https://crm.example.com"), "sb.example.com", true),
            (Some("https://evil.example"), "sb.example.com", false),
            (Some("null"), "sb.example.com", false),
            (Some("http://127.0.0.1:8081"), "127.0.0.1:8080", false),
            (
                Some("https://sb.example.com.evil.example"),
                "sb.example.com",
                false,
            ),
            (Some("file://"), "sb.example.com", false),
        ] {
            assert_eq!(
                origin_allowed(&parts(origin, host), &allowed),
                ok,
                "{origin:?} on {host}"
            );
        }
    }
}
