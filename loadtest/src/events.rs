//! `--events`: a receiver of switchboard's call events standing for a host's backend on
//! loopback, and each event's lag: from the state change (the body's `timestamp`) to its
//! arrival here. The endpoint is registered through the accounts API with the operator's key.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use anyhow::{anyhow, bail};

/// The operator's key and the secrets key the load test gives switchboard with `--events`.
pub const OPERATOR_KEY: &str = "loadtest-operator-key-0123456789abcdef0123";
/// 32 bytes in base64.
pub const SECRETS_KEY: &str = "bG9hZHRlc3Qtc2VjcmV0cy1rZXktMzItYnl0ZXMhIT8=";

/// What the receiver got so far.
#[derive(Debug, Default)]
pub struct Got {
    /// Each event's lag, ms.
    pub lags_ms: Vec<f64>,
    /// Events by type.
    pub by_type: std::collections::BTreeMap<String, u64>,
    /// When the last one came.
    pub last: Option<std::time::Instant>,
}

/// The receiver, serving until dropped.
pub struct Receiver {
    /// Where it listens.
    pub addr: SocketAddr,
    /// What it got.
    pub got: Arc<Mutex<Got>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Receiver {
    /// Serves on 127.0.0.1, answering 204 to every event.
    pub async fn start() -> anyhow::Result<Receiver> {
        let got: Arc<Mutex<Got>> = Arc::default();
        let kept = got.clone();
        let app = axum::Router::new().route(
            "/events",
            axum::routing::post(move |body: String| {
                let kept = kept.clone();
                async move {
                    let now = unix_ms(SystemTime::now());
                    let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
                    let at = v["timestamp"].as_str().and_then(parse_iso8601);
                    let mut g = kept.lock().unwrap_or_else(|p| p.into_inner());
                    if let Some(at) = at {
                        g.lags_ms.push((now - at).max(0) as f64);
                    }
                    let kind = v["type"].as_str().unwrap_or("?").to_owned();
                    *g.by_type.entry(kind).or_default() += 1;
                    g.last = Some(std::time::Instant::now());
                    axum::http::StatusCode::NO_CONTENT
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Receiver { addr, got, task })
    }

    /// Registers it as an endpoint of the `default` account on switchboard at `http`.
    pub async fn register(&self, web: &reqwest::Client, http: SocketAddr) -> anyhow::Result<()> {
        let r = web
            .post(format!("http://{http}/api/v1/accounts/default/endpoints"))
            .bearer_auth(OPERATOR_KEY)
            .json(&serde_json::json!({
                "url": format!("http://{}/events", self.addr),
                "description": "loadtest"
            }))
            .send()
            .await?;
        if r.status() != 201 {
            bail!(
                "registering the event endpoint: {} {}",
                r.status(),
                r.text().await.unwrap_or_default()
            );
        }
        Ok(())
    }

    /// Waits until no event came for a second (at most `limit`).
    pub async fn quiet(&self, limit: std::time::Duration) {
        let until = std::time::Instant::now() + limit;
        while std::time::Instant::now() < until {
            let last = self.got.lock().unwrap_or_else(|p| p.into_inner()).last;
            if last.is_some_and(|t| t.elapsed() >= std::time::Duration::from_secs(1)) {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    }
}

fn unix_ms(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// `2026-12-07T09:15:02.113Z` as unix ms.
pub fn parse_iso8601(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 24 || b[23] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hh, mm, ss, ms) = (num(11..13)?, num(14..16)?, num(17..19)?, num(20..23)?);
    // Howard Hinnant's days_from_civil.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 86_400 + hh * 3600 + mm * 60 + ss) * 1000) + ms)
}

/// The events figures of a run.
pub fn summary(got: &Got) -> anyhow::Result<(Vec<f64>, u64)> {
    let total = got.by_type.values().sum();
    if total == 0 {
        return Err(anyhow!("no call event arrived"));
    }
    Ok((got.lags_ms.clone(), total))
}

#[cfg(test)]
mod tests {
    #[test]
    fn switchboards_timestamps_parse_back() {
        assert_eq!(super::parse_iso8601("1970-01-01T00:00:00.000Z"), Some(0));
        assert_eq!(
            super::parse_iso8601("2021-02-25T15:02:10.123Z"),
            Some(1_614_265_330_123)
        );
        assert_eq!(
            super::parse_iso8601("2026-12-06T23:59:59.999Z"),
            Some(1_796_601_599_999)
        );
        assert_eq!(super::parse_iso8601("2026-12-06"), None);
    }
}
