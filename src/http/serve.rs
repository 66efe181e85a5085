//! Serving a router on a TCP listener so that no client can hold it: the public listener faces
//! the Internet (Meta's webhooks must reach it), and one that can be filled with idle or
//! trickling connections stops taking calls.
//!
//! *Owns*: accepting connections, the caps on how many are held (per listener and per client
//! address), the header-read and idle timeout of each connection (hyper's
//! `header_read_timeout`, which runs from the accept, or from the end of the previous response,
//! to the end of the next request's headers), and the layers every request goes through: a
//! deadline on the whole request (`tower-http`'s `TimeoutLayer`, which covers reading the
//! body), an inactivity timeout on the body (`RequestBodyTimeoutLayer`), and the response
//! headers every answer carries.
//!
//! *Does not touch*: routes or what handlers do; per-route body limits are set where the route
//! is (`tower-http`'s `RequestBodyLimitLayer`, which refuses a declared `Content-Length` over
//! the limit with 413 before reading anything).

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{Notify, Semaphore};
use tower::ServiceExt;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::{RequestBodyTimeoutLayer, TimeoutLayer};
use tracing::{debug, warn};

use crate::config::HttpLimits;
use crate::ops::names;

/// What a listener holds and for how long, resolved for one listener.
#[derive(Debug, Clone, Copy)]
pub struct ListenerLimits {
    /// Headers, and idleness between requests.
    pub header_timeout: Duration,
    /// A whole request, body included.
    pub request_timeout: Duration,
    /// Connections held at once.
    pub max_connections: usize,
    /// What one client may hold.
    pub per_client: ClientCap,
}

/// The cap on one client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientCap {
    /// Connections from one peer address.
    Connections(usize),
    /// Behind a trusted proxy every connection is the proxy's: requests in flight per
    /// `X-Forwarded-For` address instead (429 beyond).
    ForwardedRequests(usize),
}

/// Open files kept free of HTTP connections: the store, Redis, PostgreSQL, the Graph API
/// client's connections, logs.
const FD_RESERVE: u64 = 128;
/// The most connections a listener holds when the setting is left unset.
const DEFAULT_MAX_CONNECTIONS: usize = 4096;
/// The metrics listener's cap: Prometheus and an operator, not the Internet.
pub const METRICS_MAX_CONNECTIONS: usize = 64;

impl ListenerLimits {
    /// The public listener's limits. Unset, the connection cap is what the open-file limit
    /// leaves after the media sockets and a reserve, so that `accept` never fails for want of
    /// a file descriptor (then nothing at all is served until sockets close).
    pub fn public(limits: &HttpLimits, trust_forwarded_for: bool, media_sockets: usize) -> Self {
        let max_connections = match limits.max_connections {
            Some(n) => n.get(),
            None => connections_the_fd_limit_allows(media_sockets),
        };
        ListenerLimits {
            header_timeout: limits.header_timeout,
            request_timeout: limits.request_timeout,
            max_connections,
            per_client: if trust_forwarded_for {
                ClientCap::ForwardedRequests(limits.max_connections_per_client.get())
            } else {
                ClientCap::Connections(limits.max_connections_per_client.get())
            },
        }
    }

    /// The metrics listener's: the same timeouts, a small cap.
    pub fn metrics(limits: &HttpLimits) -> Self {
        ListenerLimits {
            header_timeout: limits.header_timeout,
            request_timeout: limits.request_timeout,
            max_connections: METRICS_MAX_CONNECTIONS,
            per_client: ClientCap::Connections(METRICS_MAX_CONNECTIONS / 2),
        }
    }
}

fn connections_the_fd_limit_allows(media_sockets: usize) -> usize {
    let Ok((soft, _)) = rlimit::getrlimit(rlimit::Resource::NOFILE) else {
        return DEFAULT_MAX_CONNECTIONS;
    };
    // Each accepted connection is one descriptor; the metrics listener's cap is kept apart.
    let spare = soft
        .saturating_sub(media_sockets as u64)
        .saturating_sub(FD_RESERVE + METRICS_MAX_CONNECTIONS as u64);
    (spare.min(DEFAULT_MAX_CONNECTIONS as u64) as usize).max(16)
}

/// The layers every request of a listener goes through, outermost last: the per-client cap
/// on requests behind a proxy, the deadline on the whole request, the inactivity timeout on its
/// body, and the headers every answer carries.
fn harden(router: Router, limits: &ListenerLimits, name: &'static str) -> Router {
    let router = match limits.per_client {
        ClientCap::ForwardedRequests(max) => router.layer(axum::middleware::from_fn_with_state(
            (PerClient::new(max), name),
            limit_forwarded_client,
        )),
        ClientCap::Connections(_) => router,
    };
    router
        .layer(RequestBodyTimeoutLayer::new(limits.header_timeout))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            limits.request_timeout,
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::HeaderName::from_static("permissions-policy"),
            HeaderValue::from_static(
                "microphone=(self), camera=(), geolocation=(), payment=(), usb=()",
            ),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(axum::middleware::from_fn(no_store_for_api))
        .layer(axum::middleware::from_fn(json_limit_errors))
}

/// The limit layers answer in plain text (or nothing); every other error of the API is a JSON
/// `{"error": …}`, and clients read it so.
async fn json_limit_errors(req: Request, next: Next) -> Response {
    let resp = next.run(req).await;
    let why = match resp.status() {
        StatusCode::PAYLOAD_TOO_LARGE => "the request body is larger than this route takes",
        StatusCode::REQUEST_TIMEOUT => "the request took longer than allowed",
        _ => return resp,
    };
    let json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if json {
        return resp;
    }
    (
        resp.status(),
        axum::Json(serde_json::json!({ "error": why })),
    )
        .into_response()
}

/// Answers of `/api/*` hold a person's data (records, sessions): never kept by a cache.
async fn no_store_for_api(req: Request, next: Next) -> Response {
    let api = req.uri().path().starts_with("/api/");
    let mut resp = next.run(req).await;
    if api {
        resp.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    resp
}

/// Counts of one client address's connections (or requests), each released when its guard
/// drops. Touched once per connection, never per packet: a std `Mutex` is enough.
#[derive(Debug, Clone)]
pub struct PerClient {
    max: usize,
    held: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

/// One connection (or request) of a client, counted until dropped.
#[derive(Debug)]
pub struct ClientSlot {
    ip: IpAddr,
    of: PerClient,
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut held = self.of.held();
        if let Some(n) = held.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                held.remove(&self.ip);
            }
        }
    }
}

impl PerClient {
    /// At most `max` at once per address.
    pub fn new(max: usize) -> Self {
        PerClient {
            max,
            held: Arc::default(),
        }
    }

    fn held(&self) -> MutexGuard<'_, HashMap<IpAddr, usize>> {
        // Nothing panics while holding it; a poisoned map is still a valid count.
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A slot for `ip`, or `None` when it holds `max` already.
    pub fn take(&self, ip: IpAddr) -> Option<ClientSlot> {
        let mut held = self.held();
        let n = held.entry(ip).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(ClientSlot {
            ip,
            of: self.clone(),
        })
    }

    /// Addresses holding at least one slot.
    #[cfg(test)]
    fn clients(&self) -> usize {
        self.held().len()
    }
}

/// [`ClientCap::ForwardedRequests`]: one request more than its share from a forwarded address
/// gets 429.
async fn limit_forwarded_client(
    State((clients, name)): State<(PerClient, &'static str)>,
    req: Request,
    next: Next,
) -> Response {
    let ip = crate::signaling::auth::forwarded_client(req.headers()).or_else(|| {
        req.extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(a)| a.ip())
    });
    let Some(ip) = ip else {
        return next.run(req).await;
    };
    match clients.take(ip) {
        Some(_slot) => next.run(req).await,
        None => {
            metrics::counter!(names::HTTP_REFUSED, "listener" => name, "reason" => "per_client")
                .increment(1);
            (
                StatusCode::TOO_MANY_REQUESTS,
                [(header::RETRY_AFTER, "1")],
                "too many requests at once from this address",
            )
                .into_response()
        }
    }
}

/// Serves `router` on `listener` within `limits` until `shutdown` completes; then stops
/// accepting and gives requests in flight up to their deadline to finish. `name` labels the
/// listener's metrics (`public`, `metrics`).
///
/// At the connection cap, the oldest connection with no request in flight (one trickling its
/// headers, or idle between requests) is closed to make room: a flood of idle connections from
/// many addresses cannot keep a webhook or a sign-in out, and the file descriptors the process
/// may open are never exceeded. Upgraded connections (WebSockets, which need a session) leave
/// the count once upgraded.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ListenerLimits,
    name: &'static str,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let router = harden(router, &limits, name);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let peers = match limits.per_client {
        ClientCap::Connections(max) => Some(PerClient::new(max)),
        ClientCap::ForwardedRequests(_) => None,
    };
    let mut held = Held::default();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        // Headers are small; a client sending megabytes of them gets 431, not our memory.
        .max_buf_size(64 * 1024);
    let (stopping_tx, stopping) = tokio::sync::watch::channel(false);
    let open = metrics::gauge!(names::HTTP_CONNECTIONS, "listener" => name);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            biased;
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    accept_failed(name, &e).await;
                    continue;
                }
            },
        };
        // A connection is here: at the cap, room is made for it (one descriptor past the cap
        // at most, which the reserve covers).
        let slot = match slots.clone().try_acquire_owned() {
            Ok(s) => s,
            Err(_) => {
                if held.evict_oldest_idle() {
                    metrics::counter!(names::HTTP_CLOSED, "listener" => name, "reason" => "evicted")
                        .increment(1);
                }
                // Nothing idle to close (every connection mid-request): wait for one to end,
                // later connections waiting in the kernel's backlog meanwhile.
                tokio::select! {
                    biased;
                    _ = &mut shutdown => break,
                    slot = slots.clone().acquire_owned() => match slot {
                        Ok(s) => s,
                        Err(_) => break, // never closed
                    },
                }
            }
        };
        let peer_slot = match &peers {
            Some(p) => match p.take(peer.ip()) {
                Some(s) => Some(s),
                None => {
                    // Closed at once: the address holds its share; others are still served.
                    metrics::counter!(names::HTTP_REFUSED, "listener" => name, "reason" => "per_client")
                        .increment(1);
                    debug!(%peer, "connection refused: this address holds its share");
                    drop(stream);
                    continue;
                }
            },
            None => None,
        };
        let _ = stream.set_nodelay(true);
        let ctl = held.add();
        let router = router.clone();
        let service_ctl = ctl.clone();
        let service =
            hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                let in_flight = InFlight::start(&service_ctl);
                req.extensions_mut().insert(ConnectInfo(peer));
                let answer = router.clone().oneshot(req);
                async move {
                    let r = answer.await;
                    drop(in_flight);
                    r
                }
            });
        let conn = http
            .serve_connection(TokioIo::new(stream), service)
            .with_upgrades();
        let mut stopping = stopping.clone();
        let conn_future = async move {
            let mut conn = std::pin::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => return r,
                _ = ctl.evict.notified() => {}
                _ = stopping.wait_for(|s| *s) => {}
            }
            if !ctl.served.load(Ordering::Acquire) {
                // Never got through its first request's headers: nothing is owed to it.
                return Ok(());
            }
            // Closes at once if idle, else after the response in progress.
            conn.as_mut().graceful_shutdown();
            conn.await
        };
        open.increment(1.0);
        let open = open.clone();
        tokio::spawn(async move {
            if let Err(e) = conn_future.await {
                let reason = if e.is_timeout() {
                    "header_timeout"
                } else {
                    "error"
                };
                metrics::counter!(names::HTTP_CLOSED, "listener" => name, "reason" => reason)
                    .increment(1);
                debug!(%peer, error = %e, "connection closed");
            }
            open.decrement(1.0);
            drop(peer_slot);
            drop(slot);
        });
    }
    drop(listener);
    let _ = stopping_tx.send(true);
    // Idle connections close now; requests in flight get their deadline. Every connection's
    // slot back means every connection has ended.
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    if tokio::time::timeout(limits.request_timeout, slots.acquire_many(all))
        .await
        .is_err()
    {
        warn!(
            listener = name,
            "requests still in flight at shutdown were cut"
        );
    }
}

/// What the accept loop knows of a connection it holds.
#[derive(Debug, Default)]
struct ConnCtl {
    /// Requests being answered on it now.
    in_flight: AtomicUsize,
    /// It has had a request: it is owed a clean close.
    served: AtomicBool,
    /// Told to close to make room.
    evict: Notify,
}

/// A request being answered on a connection, until dropped.
struct InFlight(Arc<ConnCtl>);

impl InFlight {
    fn start(ctl: &Arc<ConnCtl>) -> InFlight {
        ctl.in_flight.fetch_add(1, Ordering::AcqRel);
        ctl.served.store(true, Ordering::Release);
        InFlight(ctl.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The connections a listener holds, oldest first. Only the accept loop touches it.
#[derive(Debug, Default)]
struct Held {
    conns: std::collections::VecDeque<Weak<ConnCtl>>,
    /// Past this length, ended connections anywhere in the list are swept out.
    sweep_at: usize,
}

impl Held {
    fn add(&mut self) -> Arc<ConnCtl> {
        let ctl = Arc::new(ConnCtl::default());
        // Ended connections are dropped from the front as they come, so the list stays near
        // the number held.
        while self.conns.front().is_some_and(|c| c.strong_count() == 0) {
            self.conns.pop_front();
        }
        if self.conns.len() >= self.sweep_at {
            self.conns.retain(|c| c.strong_count() > 0);
            self.sweep_at = (2 * self.conns.len()).max(64);
        }
        self.conns.push_back(Arc::downgrade(&ctl));
        ctl
    }

    /// Tells the oldest connection with no request in flight to close; false when there is
    /// none (every connection is answering a request).
    fn evict_oldest_idle(&mut self) -> bool {
        let conns = &mut self.conns;
        let idle = conns.iter().position(|c| {
            c.upgrade()
                .is_some_and(|c| c.in_flight.load(Ordering::Acquire) == 0)
        });
        let Some(i) = idle else {
            return false;
        };
        if let Some(victim) = conns.remove(i).and_then(|c| c.upgrade()) {
            victim.evict.notify_one();
        }
        true
    }
}

/// `accept` failed. For a connection reset before it was taken, nothing to do; for a full
/// file table (which the cap is there to prevent), say so and pause, or the loop would spin.
async fn accept_failed(name: &'static str, e: &std::io::Error) {
    use std::io::ErrorKind;
    if matches!(
        e.kind(),
        ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset | ErrorKind::ConnectionRefused
    ) {
        return;
    }
    metrics::counter!(names::HTTP_REFUSED, "listener" => name, "reason" => "accept_error")
        .increment(1);
    warn!(listener = name, error = %e, "accepting a connection failed; pausing 100 ms");
    tokio::time::sleep(Duration::from_millis(100)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_holds_at_most_its_share_and_gets_it_back() {
        let clients = PerClient::new(2);
        let a: IpAddr = [127, 0, 0, 2].into();
        let b: IpAddr = [127, 0, 0, 3].into();
        let first = clients.take(a).unwrap();
        let _second = clients.take(a).unwrap();
        assert!(clients.take(a).is_none(), "a third from one address");
        assert!(
            clients.take(b).is_some(),
            "another address is not held back"
        );
        drop(first);
        assert!(clients.take(a).is_some(), "a slot given back is free again");
    }

    #[test]
    fn an_address_with_nothing_held_is_forgotten() {
        let clients = PerClient::new(1);
        for i in 0..100u8 {
            drop(clients.take([10, 0, 0, i].into()).unwrap());
        }
        assert_eq!(clients.clients(), 0);
    }
}
