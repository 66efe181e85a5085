//! The report: figures per run (switchboard, bare relay), their comparison, as a table and as
//! JSON.

use serde::Serialize;

use crate::media::{Direction, Figures};

/// What was asked for, and where it ran.
#[derive(Debug, Clone, Serialize)]
pub struct Setup {
    /// Concurrent calls.
    pub calls: u32,
    /// Calls per second while ramping.
    pub rate: f64,
    /// The measurement window, seconds.
    pub hold_secs: f64,
    /// switchboard's media engine threads, when the run set them (else its default: one per
    /// core).
    pub shards: Option<usize>,
    /// The machine.
    pub machine: String,
}

/// The machine: CPU model and cores, from /proc/cpuinfo.
pub fn machine() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = info
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map_or("unknown CPU".to_owned(), |m| m.trim().to_owned());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{model}, {cores} cores")
}

/// Percentiles of a sample, or `None` when empty.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Spread {
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Largest.
    pub max: f64,
}

fn spread(values: &mut [f64]) -> Option<Spread> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let at =
        |q: f64| values[((values.len() as f64 * q).ceil() as usize).clamp(1, values.len()) - 1];
    Some(Spread {
        p50: at(0.50),
        p99: at(0.99),
        p999: at(0.999),
        max: values[values.len() - 1],
    })
}

/// The measurement window: CPU seconds of the relay and of the generator, and its length.
#[derive(Debug, Clone, Copy, Default)]
pub struct Window {
    /// The relay's CPU seconds.
    pub cpu_secs: f64,
    /// The generator's CPU seconds.
    pub gen_cpu_secs: f64,
    /// Seconds.
    pub secs: f64,
}

/// What one run measured, raw.
pub struct Measured {
    /// `switchboard` or `bare relay`.
    pub target: &'static str,
    /// Calls asked for.
    pub calls: u32,
    /// Calls that carried audio both ways.
    pub set_up: u32,
    /// What went wrong, in words.
    pub failures: Vec<String>,
    /// Webhook sent → pre_accept received by the fake Graph API, ms.
    pub pre_accept_ms: Vec<f64>,
    /// Webhook sent → audio both ways, ms.
    pub setup_ms: Vec<f64>,
    /// Webhook sent → the agent's session told `ringing`, ms (a call that waited for an agent
    /// counts its wait).
    pub ringing_ms: Vec<f64>,
    /// The steps between the webhook and audio both ways, each from the webhook, ms.
    pub steps: Steps,
    /// The media thread's figures.
    pub figures: Figures,
    /// CPU and time in the window.
    pub window: Window,
    /// The relay's resident memory at start, before calls, and in the window.
    pub rss_idle: u64,
    /// Before the calls (agents signed in).
    pub rss_before: u64,
    /// With every call up.
    pub rss_window: u64,
    /// Packets the relay forwarded in the window (switchboard's own count; the generator's
    /// for the bare relay).
    pub forwarded_in_window: u64,
    /// Calls switchboard ended as failed.
    pub failed_calls_at_switchboard: u64,
    /// switchboard's own webhook → pre_accept sent, p50 and p99 ms (its histogram).
    pub own_pre_accept_ms: Option<(f64, f64)>,
    /// The relay exited cleanly when stopped.
    pub exit_ok: bool,
    /// With `--events`: each call event's lag, state change → the receiver, ms.
    pub event_lags_ms: Option<Vec<f64>>,
    /// With `--events`: call events the receiver got.
    pub events_received: u64,
    /// With `--events`: switchboard's own state change → delivered, p50 and p99 ms.
    pub own_event_lag_ms: Option<(f64, f64)>,
}

/// Where a call's set-up time goes: each step's time from the webhook, ms, one entry per call
/// that reached it.
#[derive(Debug, Default)]
pub struct Steps {
    /// The caller's ICE and DTLS up with switchboard's WhatsApp leg.
    pub caller_connected_ms: Vec<f64>,
    /// The agent's session told `talking` (answered, `accept` sent and acknowledged).
    pub talking_ms: Vec<f64>,
    /// The agent heard the caller's first packet.
    pub agent_heard_ms: Vec<f64>,
    /// The caller heard the agent's first packet.
    pub caller_heard_ms: Vec<f64>,
}

/// One direction's summary.
#[derive(Debug, Clone, Serialize)]
pub struct Flow {
    /// Tagged packets sent in the window.
    pub sent: u64,
    /// Received.
    pub received: u64,
    /// Lost, percent.
    pub loss_pct: f64,
}

fn flow(d: &Direction) -> Flow {
    Flow {
        sent: d.sent,
        received: d.received,
        loss_pct: if d.sent == 0 {
            0.0
        } else {
            100.0 * (d.sent.saturating_sub(d.received)) as f64 / d.sent as f64
        },
    }
}

/// One run's report.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    /// `switchboard` or `bare relay`.
    pub target: &'static str,
    /// Calls asked for.
    pub calls: u32,
    /// Calls that carried audio both ways.
    pub set_up: u32,
    /// Failures, in words (first 20).
    pub failures: Vec<String>,
    /// Webhook → pre_accept, ms.
    pub webhook_to_pre_accept_ms: Option<Spread>,
    /// Webhook → audio both ways, ms.
    pub setup_ms: Option<Spread>,
    /// Webhook → ringing at the agent, ms.
    pub webhook_to_ringing_ms: Option<Spread>,
    /// Webhook → the caller's ICE and DTLS up, ms.
    pub webhook_to_caller_connected_ms: Option<Spread>,
    /// Webhook → the agent's session told `talking`, ms.
    pub webhook_to_talking_ms: Option<Spread>,
    /// Webhook → the agent hears the caller, ms.
    pub webhook_to_agent_hears_ms: Option<Spread>,
    /// Webhook → the caller hears the agent, ms.
    pub webhook_to_caller_hears_ms: Option<Spread>,
    /// switchboard's own webhook received → pre_accept sent, p50 and p99 ms.
    pub own_webhook_to_pre_accept_ms: Option<(f64, f64)>,
    /// With `--events`: state change → the host's receiver, ms.
    pub event_lag_ms: Option<Spread>,
    /// With `--events`: events received.
    pub events_received: u64,
    /// With `--events`: switchboard's own histogram of the same, p50 and p99 ms.
    pub own_event_lag_ms: Option<(f64, f64)>,
    /// Caller → agent.
    pub to_agent: Flow,
    /// Agent → caller.
    pub to_caller: Flow,
    /// Added forwarding delay (send → receive, including the generator's own str0m work), µs.
    pub delay_us: Option<Spread>,
    /// Sequence/timestamp continuity violations seen by receivers.
    pub continuity_violations: u64,
    /// Callers that went 20 s without a packet once media flowed (Meta would end the call).
    pub silent_20s: u64,
    /// Calls switchboard ended as failed.
    pub failed_calls: u64,
    /// Datagrams on the relay socket from an address no caller was filed under.
    pub unrouted: u64,
    /// The window, seconds.
    pub window_secs: f64,
    /// The relay's CPU, percent of one core, in the window.
    pub cpu_pct: f64,
    /// Of one core, per call, percent.
    pub cpu_pct_per_call: f64,
    /// Calls one core would carry at this cost.
    pub calls_per_core: f64,
    /// Packets the relay sent in the window, per second.
    pub packets_per_sec: f64,
    /// CPU per forwarded packet, ns.
    pub ns_per_packet: f64,
    /// Resident memory per live call (window minus before the calls), KiB.
    pub memory_per_call_kib: f64,
    /// Resident memory at start, MiB.
    pub rss_idle_mib: f64,
    /// The generator's CPU in the window, percent of one core (whole process).
    pub generator_cpu_pct: f64,
    /// The generator's busiest media thread in the window, percent of one core.
    pub generator_media_thread_pct: f64,
    /// Longest the generator fell behind its send grid, ms.
    pub generator_max_lag_ms: f64,
    /// The generator, not the relay, was the limit (its media thread near a full core).
    pub generator_bound: bool,
    /// The relay exited cleanly.
    pub exit_ok: bool,
}

impl RunReport {
    /// Summarises a run.
    pub fn new(m: Measured) -> RunReport {
        let mut pre = m.pre_accept_ms;
        let mut setup = m.setup_ms;
        let mut ringing = m.ringing_ms;
        let mut steps = m.steps;
        let mut delays: Vec<f64> = m
            .figures
            .to_agent
            .delays_us
            .iter()
            .chain(&m.figures.to_caller.delays_us)
            .map(|d| f64::from(*d))
            .collect();
        let w = m.window.secs.max(1e-9);
        let cpu = m.window.cpu_secs / w;
        let per_call = cpu / f64::from(m.calls.max(1));
        let gen = m.window.gen_cpu_secs / w;
        RunReport {
            target: m.target,
            calls: m.calls,
            set_up: m.set_up,
            failures: m.failures.into_iter().take(20).collect(),
            webhook_to_pre_accept_ms: spread(&mut pre),
            setup_ms: spread(&mut setup),
            webhook_to_ringing_ms: spread(&mut ringing),
            webhook_to_caller_connected_ms: spread(&mut steps.caller_connected_ms),
            webhook_to_talking_ms: spread(&mut steps.talking_ms),
            webhook_to_agent_hears_ms: spread(&mut steps.agent_heard_ms),
            webhook_to_caller_hears_ms: spread(&mut steps.caller_heard_ms),
            own_webhook_to_pre_accept_ms: m.own_pre_accept_ms,
            event_lag_ms: m.event_lags_ms.and_then(|mut l| spread(&mut l)),
            events_received: m.events_received,
            own_event_lag_ms: m.own_event_lag_ms,
            to_agent: flow(&m.figures.to_agent),
            to_caller: flow(&m.figures.to_caller),
            delay_us: spread(&mut delays),
            continuity_violations: m.figures.continuity_violations,
            silent_20s: m.figures.silent_20s,
            failed_calls: m.failed_calls_at_switchboard,
            unrouted: m.figures.unrouted,
            window_secs: m.window.secs,
            cpu_pct: cpu * 100.0,
            cpu_pct_per_call: per_call * 100.0,
            calls_per_core: if per_call > 0.0 { 1.0 / per_call } else { 0.0 },
            packets_per_sec: m.forwarded_in_window as f64 / w,
            ns_per_packet: if m.forwarded_in_window > 0 {
                m.window.cpu_secs * 1e9 / m.forwarded_in_window as f64
            } else {
                0.0
            },
            memory_per_call_kib: m.rss_window.saturating_sub(m.rss_before) as f64
                / 1024.0
                / f64::from(m.calls.max(1)),
            rss_idle_mib: m.rss_idle as f64 / (1024.0 * 1024.0),
            generator_cpu_pct: gen * 100.0,
            generator_media_thread_pct: 100.0 * m.figures.thread_cpu_secs
                / m.figures.window_secs.max(1e-9),
            generator_max_lag_ms: m.figures.max_lag_us as f64 / 1000.0,
            generator_bound: m.figures.thread_cpu_secs > 0.9 * m.figures.window_secs
                || m.figures.max_lag_us > 20_000,
            exit_ok: m.exit_ok,
        }
    }
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// What was asked.
    pub setup: Setup,
    /// switchboard's run.
    pub switchboard: RunReport,
    /// The bare relay's run.
    pub bare_relay: Option<RunReport>,
    /// switchboard's CPU per packet over the bare relay's.
    pub cost_vs_bare: Option<f64>,
}

impl Report {
    /// Puts the runs together.
    pub fn new(setup: &Setup, sb: RunReport, bare: Option<RunReport>) -> Report {
        let cost_vs_bare = bare
            .as_ref()
            .filter(|b| b.ns_per_packet > 0.0)
            .map(|b| sb.ns_per_packet / b.ns_per_packet);
        Report {
            setup: setup.clone(),
            switchboard: sb,
            bare_relay: bare,
            cost_vs_bare,
        }
    }

    /// What `--check` refuses.
    pub fn check_problems(&self) -> Vec<String> {
        let mut out = vec![];
        for r in std::iter::once(&self.switchboard).chain(self.bare_relay.as_ref()) {
            let t = r.target;
            if r.set_up < r.calls {
                out.push(format!("{t}: {} of {} calls set up", r.set_up, r.calls));
            }
            if !r.failures.is_empty() {
                out.push(format!("{t}: {:?}", r.failures));
            }
            if r.to_agent.received == 0 || r.to_caller.received == 0 {
                out.push(format!("{t}: no audio one way"));
            }
            if r.to_agent.loss_pct > 0.0 || r.to_caller.loss_pct > 0.0 {
                out.push(format!(
                    "{t}: loss {:.3} % / {:.3} %",
                    r.to_agent.loss_pct, r.to_caller.loss_pct
                ));
            }
            if r.continuity_violations > 0 {
                out.push(format!(
                    "{t}: {} continuity violations",
                    r.continuity_violations
                ));
            }
            if r.failed_calls > 0 {
                out.push(format!("{t}: {} calls failed", r.failed_calls));
            }
            if !r.exit_ok {
                out.push(format!("{t}: did not exit cleanly"));
            }
        }
        out
    }

    /// The report as a text table.
    pub fn table(&self) -> String {
        let runs: Vec<&RunReport> = std::iter::once(&self.switchboard)
            .chain(self.bare_relay.as_ref())
            .collect();
        let shards = self
            .setup
            .shards
            .map_or("one per core".to_owned(), |n| n.to_string());
        let mut out = format!(
            "loadtest: {} calls, ramp {}/s, held {} s, media threads {}, on {}\n",
            self.setup.calls, self.setup.rate, self.setup.hold_secs, shards, self.setup.machine
        );
        let ms = |s: &Option<Spread>| {
            s.map_or("-".to_owned(), |s| format!("{:.1} / {:.1}", s.p50, s.p99))
        };
        let us = |s: &Option<Spread>| {
            s.map_or("-".to_owned(), |s| {
                format!("{:.0} / {:.0} / {:.0}", s.p50, s.p99, s.p999)
            })
        };
        type Cell<'a> = Box<dyn Fn(&RunReport) -> String + 'a>;
        let rows: Vec<(&str, Cell)> = vec![
            (
                "calls set up",
                Box::new(|r| format!("{} / {}", r.set_up, r.calls)),
            ),
            (
                "webhook → pre_accept p50/p99 ms",
                Box::new(move |r| ms(&r.webhook_to_pre_accept_ms)),
            ),
            (
                "  the same, switchboard's histogram",
                Box::new(|r| {
                    r.own_webhook_to_pre_accept_ms
                        .map_or("-".to_owned(), |(a, b)| format!("{a:.1} / {b:.1}"))
                }),
            ),
            (
                "webhook → ringing p50/p99 ms",
                Box::new(move |r| ms(&r.webhook_to_ringing_ms)),
            ),
            (
                "  … the caller's ICE and DTLS up",
                Box::new(move |r| ms(&r.webhook_to_caller_connected_ms)),
            ),
            (
                "  … the agent told talking",
                Box::new(move |r| ms(&r.webhook_to_talking_ms)),
            ),
            (
                "  … the agent hears the caller",
                Box::new(move |r| ms(&r.webhook_to_agent_hears_ms)),
            ),
            (
                "  … the caller hears the agent",
                Box::new(move |r| ms(&r.webhook_to_caller_hears_ms)),
            ),
            (
                "webhook → audio both ways p50/p99 ms",
                Box::new(move |r| ms(&r.setup_ms)),
            ),
            (
                "call events received",
                Box::new(|r| r.events_received.to_string()),
            ),
            (
                "event lag state change → host p50/p99 ms",
                Box::new(move |r| ms(&r.event_lag_ms)),
            ),
            (
                "  the same, switchboard's histogram",
                Box::new(|r| {
                    r.own_event_lag_ms
                        .map_or("-".to_owned(), |(a, b)| format!("{a:.1} / {b:.1}"))
                }),
            ),
            (
                "loss caller→agent %",
                Box::new(|r| format!("{:.3}", r.to_agent.loss_pct)),
            ),
            (
                "loss agent→caller %",
                Box::new(|r| format!("{:.3}", r.to_caller.loss_pct)),
            ),
            ("delay p50/p99/p99.9 µs", Box::new(move |r| us(&r.delay_us))),
            (
                "continuity violations",
                Box::new(|r| r.continuity_violations.to_string()),
            ),
            (
                "calls failed / silent 20 s",
                Box::new(|r| format!("{} / {}", r.failed_calls, r.silent_20s)),
            ),
            (
                "packets/s sent by the relay",
                Box::new(|r| format!("{:.0}", r.packets_per_sec)),
            ),
            (
                "relay CPU % of a core",
                Box::new(|r| format!("{:.1}", r.cpu_pct)),
            ),
            (
                "CPU per packet ns",
                Box::new(|r| format!("{:.0}", r.ns_per_packet)),
            ),
            (
                "calls per core",
                Box::new(|r| format!("{:.0}", r.calls_per_core)),
            ),
            (
                "memory per call KiB",
                Box::new(|r| format!("{:.1}", r.memory_per_call_kib)),
            ),
            (
                "generator CPU % (bound?)",
                Box::new(|r| {
                    format!(
                        "{:.0} ({})",
                        r.generator_cpu_pct,
                        if r.generator_bound { "yes" } else { "no" }
                    )
                }),
            ),
        ];
        out.push_str(&format!("{:<40}", ""));
        for r in &runs {
            out.push_str(&format!("{:>24}", r.target));
        }
        out.push('\n');
        for (label, f) in &rows {
            out.push_str(&format!("{label:<40}"));
            for r in &runs {
                out.push_str(&format!("{:>24}", f(r)));
            }
            out.push('\n');
        }
        if let Some(x) = self.cost_vs_bare {
            out.push_str(&format!(
                "switchboard's CPU per packet is {x:.2}× the bare relay's\n"
            ));
        }
        out
    }
}

/// The `q` quantile of a label-less Prometheus histogram in a scrape, interpolated within its
/// bucket (as PromQL's `histogram_quantile`); `None` without samples.
pub fn histogram_quantile(scrape: &str, name: &str, q: f64) -> Option<f64> {
    let prefix = format!("{name}_bucket{{le=\"");
    let mut buckets: Vec<(f64, f64)> = scrape
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(&prefix)?;
            let (le, count) = rest.split_once("\"} ")?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, count.trim().parse().ok()?))
        })
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let mut prev = (0.0, 0.0);
    for &(le, count) in &buckets {
        if count >= rank {
            if le.is_infinite() {
                return Some(prev.0);
            }
            let within = if count > prev.1 {
                (rank - prev.1) / (count - prev.1)
            } else {
                1.0
            };
            return Some(prev.0 + (le - prev.0) * within);
        }
        prev = (le, count);
    }
    None
}

/// The sum of every series of `name` in a Prometheus scrape (`name` may include labels).
pub fn metric_sum(scrape: &str, name: &str) -> f64 {
    scrape
        .lines()
        .filter(|l| {
            l.starts_with(name)
                && l[name.len()..]
                    .chars()
                    .next()
                    .is_some_and(|c| c == ' ' || c == '{')
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_and_sums() {
        let mut v: Vec<f64> = (1..=1000).map(f64::from).collect();
        let s = spread(&mut v).unwrap();
        assert_eq!((s.p50, s.p99, s.p999, s.max), (500.0, 990.0, 999.0, 1000.0));
        assert!(spread(&mut []).is_none());
        let scrape = "a_total{x=\"1\"} 2\na_total{x=\"2\"} 3\na_totally 9\n";
        assert_eq!(metric_sum(scrape, "a_total"), 5.0);
        let h = "h_bucket{le=\"0.01\"} 50\nh_bucket{le=\"0.02\"} 90\nh_bucket{le=\"+Inf\"} 100\n";
        assert_eq!(histogram_quantile(h, "h", 0.5), Some(0.01));
        let p = histogram_quantile(h, "h", 0.7).unwrap();
        assert!((p - 0.015).abs() < 1e-9, "{p}");
        assert_eq!(histogram_quantile(h, "h", 0.99), Some(0.02));
        assert_eq!(histogram_quantile("", "h", 0.5), None);
    }
}
