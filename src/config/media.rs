//! Checking the media engine's settings: the bind address and the pool of UDP ports, the public
//! address when none is given, the engine's limits and its thread count.
//!
//! *Owns*: the forms `SWITCHBOARD_MEDIA_ADDR` and `SWITCHBOARD_MEDIA_PORTS` take, the bounds of
//! the engine's limits and shards.
//!
//! *Does not touch*: sockets (only the default route is looked up, nothing is bound or sent),
//! the other sections.

use std::net::{IpAddr, SocketAddr};

use crate::media::{Limits, Ports};

use super::{defaults, ConfigError};

/// The local address of the interface that would carry traffic to the Internet. A UDP
/// `connect` only selects a route; nothing is sent.
pub(super) fn detect_local_ip() -> Option<IpAddr> {
    let sock = std::net::UdpSocket::bind((std::net::Ipv4Addr::UNSPECIFIED, 0)).ok()?;
    sock.connect((std::net::Ipv4Addr::new(192, 0, 2, 1), 9))
        .ok()?;
    let ip = sock.local_addr().ok()?.ip();
    (!ip.is_unspecified()).then_some(ip)
}

/// `SWITCHBOARD_MEDIA_ADDR` (an IP, or the older `IP:PORT` for a single port) and
/// `SWITCHBOARD_MEDIA_PORTS` into the bind address and the pool.
pub(super) fn media_bind(
    addr: Option<&str>,
    ports: Option<&str>,
) -> Result<(IpAddr, Ports), ConfigError> {
    let addr_text = addr.unwrap_or(defaults::MEDIA_ADDR).trim();
    let (ip, single) = if let Ok(ip) = addr_text.parse::<IpAddr>() {
        (ip, None)
    } else if let Ok(sa) = addr_text.parse::<SocketAddr>() {
        (sa.ip(), Some(sa.port()))
    } else {
        return Err(ConfigError::Invalid {
            key: "SWITCHBOARD_MEDIA_ADDR",
            reason: format!("{addr_text:?} is not an IP address (or IP:PORT)"),
        });
    };
    let ports = match (single, ports) {
        (Some(_), Some(_)) => {
            return Err(ConfigError::Invalid {
                key: "SWITCHBOARD_MEDIA_PORTS",
                reason: "SWITCHBOARD_MEDIA_ADDR names a port too; give the ports in one place"
                    .into(),
            })
        }
        (Some(0), None) => Ports::Ephemeral(1),
        (Some(p), None) => Ports::Range { first: p, last: p },
        (None, text) => parse_ports(text.unwrap_or(defaults::MEDIA_PORTS))?,
    };
    Ok((ip, ports))
}

fn parse_ports(text: &str) -> Result<Ports, ConfigError> {
    let text = text.trim();
    let invalid = |reason: String| ConfigError::Invalid {
        key: "SWITCHBOARD_MEDIA_PORTS",
        reason,
    };
    if let Some(n) = text.strip_prefix("ephemeral:") {
        return match n.trim().parse::<u16>() {
            Ok(n) if (1..=4096).contains(&n) => Ok(Ports::Ephemeral(n)),
            _ => Err(invalid(format!(
                "{text:?}: ephemeral:N takes N from 1 to 4096"
            ))),
        };
    }
    let port = |p: &str| -> Result<u16, ConfigError> {
        match p.trim().parse::<u16>() {
            Ok(p) if p > 0 => Ok(p),
            _ => Err(invalid(format!("{p:?} is not a port from 1 to 65535"))),
        }
    };
    let (first, last) = match text.split_once('-') {
        Some((a, b)) => (port(a)?, port(b)?),
        None => {
            let p = port(text)?;
            (p, p)
        }
    };
    if first > last {
        return Err(invalid(format!("{text:?}: the range runs backwards")));
    }
    if usize::from(last - first) >= 16_384 {
        return Err(invalid(format!("{text:?}: at most 16384 ports")));
    }
    Ok(Ports::Range { first, last })
}

/// The engine's limits, each at its default when not given, each refused at 0.
pub(super) fn media_limits(values: [Option<usize>; 4]) -> Result<Limits, ConfigError> {
    let d = Limits::default();
    let [legs, streams, events, dtmf] = values;
    let pick = |key: &'static str, v: Option<usize>, default: usize, max: usize| {
        let v = v.unwrap_or(default);
        if v == 0 || v > max {
            return Err(ConfigError::Invalid {
                key,
                reason: format!("{v} is not between 1 and {max}"),
            });
        }
        Ok(v)
    };
    Ok(Limits {
        max_legs: pick("SWITCHBOARD_MEDIA_MAX_LEGS", legs, d.max_legs, 1_000_000)?,
        max_browser_streams: pick(
            "SWITCHBOARD_MEDIA_MAX_BROWSER_STREAMS",
            streams,
            d.max_browser_streams,
            16,
        )?,
        max_pending_events: pick(
            "SWITCHBOARD_MEDIA_MAX_PENDING_EVENTS",
            events,
            d.max_pending_events,
            1_000_000,
        )?,
        max_dtmf_queue: pick(
            "SWITCHBOARD_MEDIA_MAX_DTMF_QUEUE",
            dtmf,
            d.max_dtmf_queue,
            4096,
        )?,
    })
}

/// `SWITCHBOARD_MEDIA_SHARDS`: 1 to 64 and no more than the ports (each shard owns at least
/// one); unset, one per core the process may run on, within the same bounds.
pub(super) fn media_shards(value: Option<usize>, ports: usize) -> Result<usize, ConfigError> {
    let Some(n) = value else {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        return Ok(cores.clamp(1, MAX_SHARDS).min(ports.max(1)));
    };
    if n == 0 || n > MAX_SHARDS || n > ports {
        return Err(ConfigError::Invalid {
            key: "SWITCHBOARD_MEDIA_SHARDS",
            reason: format!(
                "{n} media threads for {ports} ports: give 1 to {}, at most one per port",
                MAX_SHARDS.min(ports)
            ),
        });
    }
    Ok(n)
}

/// The most media engine threads: a leg's id names its shard in a byte, and past this many
/// cores the node is better split.
const MAX_SHARDS: usize = 64;
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_pool_forms() {
        let ports = |addr: Option<&str>, ports: Option<&str>| media_bind(addr, ports).unwrap().1;
        assert_eq!(
            ports(None, Some("40000-40009")),
            Ports::Range {
                first: 40000,
                last: 40009
            }
        );
        assert_eq!(
            ports(Some("127.0.0.1:7000"), None),
            Ports::Range {
                first: 7000,
                last: 7000
            }
        );
        assert_eq!(ports(Some("127.0.0.1:0"), None), Ports::Ephemeral(1));
        assert_eq!(
            ports(Some("127.0.0.1"), Some("ephemeral:20")),
            Ports::Ephemeral(20)
        );
        assert_eq!(ports(None, Some("ephemeral:20")).count(), 20);
        assert!(media_bind(None, Some("ephemeral:0")).is_err());
        assert!(media_bind(None, Some("0")).is_err());
        assert!(media_bind(None, Some("1-40000")).is_err());
    }
}
