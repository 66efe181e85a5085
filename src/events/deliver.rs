//! The delivery task: works through the outbox, POSTing each due event to its endpoint, signed,
//! and keeps how each attempt went.
//!
//! *Owns*: the attempts in flight and the HTTP client they use ([`HttpTransport`]).
//!
//! *Does not touch*: the calls (it only reads what they wrote) or the accounts, except to
//! disable an endpoint that failed for the whole retry window (an audited change, like an
//! admin's).
//!
//! It wakes when rows are written ([`super::Emitter::written`]), when an attempt ends, when the
//! endpoints change, when the earliest retry is due, and at least every [`IDLE`]. An attempt
//! leases its row for the request's timeout and a margin, so a row is never tried twice at
//! once; a process that dies mid-attempt leaves the row to be tried again once the lease ends.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::{RetryPolicy, Targets};
use crate::calls::Pending;
use crate::ops::names::{EVENTS_PENDING, EVENT_DELIVERIES, EVENT_ENDPOINTS_DISABLED, EVENT_LAG};
use crate::store::{Attempted, DeliveryStatus, Due, StoreError, StoreHandle};

/// The longest the task sleeps without looking at the outbox.
pub const IDLE: Duration = Duration::from_secs(30);
/// Attempts in flight at once, over every endpoint.
pub const MAX_IN_FLIGHT: usize = 64;
/// How long delivered and failed rows are kept in the delivery log.
pub const KEEP: Duration = Duration::from_secs(7 * 24 * 3600);
/// How often the old rows are deleted.
const PURGE_EVERY: Duration = Duration::from_secs(3600);
/// Bytes of an endpoint's error answer kept in the log.
const ERROR_BYTES: usize = 200;

/// What an endpoint answered: its HTTP status, or why there was no answer.
pub type Answer = Result<u16, String>;

/// How events are sent: HTTP in the program, a fake in the tests.
pub trait Transport: Send + Sync + 'static {
    /// POSTs `body` (JSON) to `url` with `headers`.
    fn post(
        &self,
        url: String,
        headers: Vec<(&'static str, String)>,
        body: String,
    ) -> Pending<Answer>;
}

/// [`Transport`] over HTTP(S): no redirects followed (a 3xx is a failure), a timeout per
/// request, and, unless private targets are allowed, no connection to an address that is not
/// public, whatever the endpoint's name resolves to.
#[derive(Debug, Clone)]
pub struct HttpTransport {
    client: reqwest::Client,
}

impl HttpTransport {
    /// A client whose requests take at most `timeout`; `private`: loopback and private
    /// addresses may be reached (a deployment whose backends sit next to it, the tests).
    pub fn new(timeout: Duration, private: bool) -> HttpTransport {
        let mut b = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("switchboard/", env!("CARGO_PKG_VERSION")));
        if !private {
            b = b.dns_resolver(Arc::new(PublicOnly));
        }
        HttpTransport {
            client: b.build().unwrap_or_default(),
        }
    }
}

impl Transport for HttpTransport {
    fn post(
        &self,
        url: String,
        headers: Vec<(&'static str, String)>,
        body: String,
    ) -> Pending<Answer> {
        let client = self.client.clone();
        Box::pin(async move {
            let mut req = client
                .post(&url)
                .header(reqwest::header::CONTENT_TYPE, "application/json");
            for (name, value) in headers {
                req = req.header(name, value);
            }
            match req.body(body).send().await {
                Ok(r) => Ok(r.status().as_u16()),
                // The error's text, never the URL's query (it may carry a token of theirs).
                Err(e) => Err(describe(&e)),
            }
        })
    }
}

fn describe(e: &reqwest::Error) -> String {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "request failed"
    };
    let mut source = std::error::Error::source(e);
    let mut detail = String::new();
    while let Some(s) = source {
        detail = s.to_string();
        source = s.source();
    }
    if detail.is_empty() {
        what.to_owned()
    } else {
        format!("{what}: {detail}")
    }
}

/// Resolves names to public addresses only: an endpoint's name that points into the
/// deployment's own network is refused at every attempt, not only when it was registered.
struct PublicOnly;

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        Box::pin(async move {
            let found = tokio::net::lookup_host((name.as_str(), 0)).await?;
            let public: Vec<std::net::SocketAddr> = found
                .filter(|a| crate::accounts::is_public_ip(a.ip()))
                .collect();
            if public.is_empty() {
                return Err("the endpoint's name resolves to no public address".into());
            }
            let addrs: reqwest::dns::Addrs = Box::new(public.into_iter());
            Ok(addrs)
        })
    }
}

/// Wall-clock unix milliseconds read off the program's clock ([`crate::clock`]), so that the
/// task runs on simulated time in its tests.
#[derive(Debug, Clone, Copy)]
pub struct UnixClock {
    at: Instant,
    wall_ms: i64,
}

impl UnixClock {
    /// Now, as both clocks read it.
    pub fn start() -> UnixClock {
        UnixClock {
            at: crate::clock::now(),
            wall_ms: crate::store::unix_ms(SystemTime::now()),
        }
    }

    /// Unix milliseconds now.
    pub fn now_ms(&self) -> i64 {
        let since = crate::clock::now().saturating_duration_since(self.at);
        self.wall_ms
            .saturating_add(i64::try_from(since.as_millis()).unwrap_or(i64::MAX))
    }
}

/// Disables an endpoint in its account (audited) and tells every node; the program's own way
/// of changing an account ([`crate::app`] wires it to the admin API's).
pub type Disable =
    Arc<dyn Fn(String, String, String) -> Pending<Result<(), StoreError>> + Send + Sync>;

/// The delivery task's settings and ports.
pub struct Deliverer {
    /// The outbox.
    pub store: StoreHandle,
    /// How events are sent.
    pub transport: Arc<dyn Transport>,
    /// The enabled endpoints, their secrets opened.
    pub targets: watch::Receiver<Arc<Targets>>,
    /// Notified when rows are written.
    pub wake: Arc<Notify>,
    /// When to try again.
    pub policy: RetryPolicy,
    /// How long an attempt may take (the transport's timeout): its row's lease, with a margin.
    pub timeout: Duration,
    /// This node (PostgreSQL: whose rows).
    pub node: String,
    /// Disables an endpoint: (account, endpoint, reason).
    pub disable: Disable,
}

/// One attempt's end.
struct Ended {
    due: Due,
    answer: Answer,
}

impl Deliverer {
    /// Delivers until `stop` is cancelled; attempts in flight then are dropped (their rows'
    /// leases end and they are tried again at the next start).
    pub async fn run(self, stop: CancellationToken) {
        let clock = UnixClock::start();
        let mut targets = self.targets.clone();
        let mut enabled: HashSet<String> = HashSet::new();
        // The endpoints last looked at: held rows are looked for only when they change.
        let mut seen: Option<Arc<Targets>> = None;
        let mut flying: JoinSet<Ended> = JoinSet::new();
        let mut last_purge: Option<Instant> = None;
        loop {
            let now = clock.now_ms();
            let current = targets.borrow_and_update().clone();
            if !seen.as_ref().is_some_and(|s| Arc::ptr_eq(s, &current)) {
                self.resume(&current, &mut enabled, now).await;
                seen = Some(current.clone());
            }
            if last_purge
                .is_none_or(|t| crate::clock::now().saturating_duration_since(t) >= PURGE_EVERY)
            {
                last_purge = Some(crate::clock::now());
                let before = now.saturating_sub(ms(KEEP));
                match self.store.purge_events(before).await {
                    Ok(0) => {}
                    Ok(n) => info!(rows = n, "old rows of the event delivery log deleted"),
                    Err(e) => {
                        warn!(error = %e, "deleting old rows of the event delivery log failed")
                    }
                }
            }
            let room = MAX_IN_FLIGHT.saturating_sub(flying.len());
            if room > 0 {
                let lease = now.saturating_add(ms(self.timeout + Duration::from_secs(5)));
                match self
                    .store
                    .claim_due(self.node.clone(), now, lease, room as u32)
                    .await
                {
                    Ok(due) => {
                        for d in due {
                            self.start(&current, d, &mut flying, clock).await;
                        }
                    }
                    Err(e) => warn!(error = %e, "reading the event outbox failed"),
                }
            }
            let wait = match self.store.outbox_state(self.node.clone()).await {
                Ok((pending, next)) => {
                    metrics::gauge!(EVENTS_PENDING).set(pending as f64);
                    next.map_or(IDLE, |at| {
                        Duration::from_millis(u64::try_from(at - clock.now_ms()).unwrap_or(0))
                            .min(IDLE)
                    })
                }
                Err(_) => IDLE,
            };
            // With a full flight, the next row waits for an attempt to end, not for a timer.
            let wait = if flying.len() >= MAX_IN_FLIGHT {
                IDLE
            } else {
                wait
            };
            tokio::select! {
                _ = stop.cancelled() => break,
                Some(done) = flying.join_next(), if !flying.is_empty() => {
                    // With every other attempt that ended meanwhile: one write for them all.
                    let mut ended: Vec<Ended> = done.into_iter().collect();
                    while let Some(done) = flying.try_join_next() {
                        ended.extend(done);
                    }
                    self.finish(ended, clock.now_ms()).await;
                }
                _ = self.wake.notified() => {}
                // (Once the accounts' side is gone, at shutdown, this branch is off.)
                Ok(()) = targets.changed() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
        debug!("event delivery stopped");
    }

    /// Rows held for an endpoint that is enabled now go again.
    async fn resume(&self, targets: &Targets, enabled: &mut HashSet<String>, now: i64) {
        let now_enabled: HashSet<String> = targets.enabled().map(str::to_owned).collect();
        for id in now_enabled.difference(enabled) {
            match self.store.resume_endpoint(id.clone(), now).await {
                Ok(0) => {}
                Ok(n) => {
                    info!(endpoint = %id, events = n, "endpoint enabled; its held events go now")
                }
                Err(e) => warn!(endpoint = %id, error = %e, "resuming an endpoint's events failed"),
            }
        }
        *enabled = now_enabled;
    }

    async fn start(
        &self,
        targets: &Targets,
        due: Due,
        flying: &mut JoinSet<Ended>,
        clock: UnixClock,
    ) {
        let Some(target) = targets.target(&due.row.endpoint) else {
            // Disabled (or gone): its rows wait until it is enabled again.
            let endpoint = due.row.endpoint.clone();
            if let Err(e) = self.store.pause_endpoint(endpoint.clone()).await {
                warn!(%endpoint, error = %e, "holding a disabled endpoint's events failed");
            }
            return;
        };
        let timestamp = clock.now_ms().div_euclid(1000);
        let signature = target.sign(&due.row.msg_id, timestamp, &due.row.payload);
        let headers = vec![
            ("webhook-id", due.row.msg_id.clone()),
            ("webhook-timestamp", timestamp.to_string()),
            ("webhook-signature", signature),
        ];
        let post = self
            .transport
            .post(target.url.clone(), headers, due.row.payload.clone());
        flying.spawn(async move {
            let answer = post.await;
            Ended { due, answer }
        });
    }

    /// Keeps how attempts went, in one write; an event retried for its whole window fails,
    /// and its endpoint is disabled.
    async fn finish(&self, ended: Vec<Ended>, now: i64) {
        let mut rows = Vec::with_capacity(ended.len());
        let mut failed = vec![];
        for Ended { due, answer } in ended {
            let attempts = due.attempts.saturating_add(1);
            let (status, error) = match &answer {
                Ok(s) if (200..300).contains(s) => (Some(*s), None),
                Ok(s) => (Some(*s), Some(format!("HTTP {s}"))),
                Err(e) => (None, Some(e.chars().take(ERROR_BYTES).collect::<String>())),
            };
            let (outcome, next_at) = if error.is_none() {
                (DeliveryStatus::Delivered, None)
            } else {
                match self.policy.next_attempt(attempts, due.retry_from, now) {
                    Some(at) => (DeliveryStatus::Pending, Some(at)),
                    None => (DeliveryStatus::Failed, None),
                }
            };
            let result = match outcome {
                DeliveryStatus::Delivered => "delivered",
                DeliveryStatus::Failed => "failed",
                _ => "retry",
            };
            metrics::counter!(EVENT_DELIVERIES, "result" => result).increment(1);
            if outcome == DeliveryStatus::Delivered {
                let lag = (now - due.row.created_at).max(0) as f64 / 1000.0;
                metrics::histogram!(EVENT_LAG).record(lag);
            } else {
                debug!(endpoint = %due.row.endpoint, msg_id = %due.row.msg_id, attempts,
                    error = error.as_deref().unwrap_or(""), "event delivery failed");
            }
            rows.push(Attempted {
                seq: due.seq,
                attempts,
                at: now,
                status,
                error: error.clone(),
                outcome,
                next_at,
            });
            if outcome == DeliveryStatus::Failed {
                failed.push((due, error.unwrap_or_default()));
            }
        }
        if let Err(e) = self.store.attempted(rows).await {
            warn!(error = %e, "keeping the events' attempts failed; they are tried again");
        }
        for (due, error) in failed {
            let hours = self.policy.retry_for.as_secs_f64() / 3600.0;
            let reason = format!(
                "event {} ({}) was not taken in {hours:.3} h of retries: {error}",
                due.row.msg_id, due.row.kind,
            );
            warn!(account = %due.row.account, endpoint = %due.row.endpoint, %reason, "disabling the event endpoint");
            metrics::counter!(EVENT_ENDPOINTS_DISABLED).increment(1);
            if let Err(e) =
                (self.disable)(due.row.account.clone(), due.row.endpoint.clone(), reason).await
            {
                warn!(endpoint = %due.row.endpoint, error = %e, "disabling the event endpoint failed");
            }
            if let Err(e) = self.store.pause_endpoint(due.row.endpoint.clone()).await {
                warn!(endpoint = %due.row.endpoint, error = %e, "holding a disabled endpoint's events failed");
            }
        }
    }
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}
