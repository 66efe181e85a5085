//! The answer to Meta's real offer (reference §3.1) keeps every one of Meta's SDP rules.

mod common;

use common::*;
use switchboard::whatsapp::sdp::{check_answer, describe};

const META_OFFER: &str = include_str!("fixtures/meta_offer.sdp");

fn lines_with<'a>(sdp: &'a str, prefix: &str) -> Vec<&'a str> {
    sdp.split("\r\n")
        .filter(|l| l.starts_with(prefix))
        .collect()
}

#[tokio::test]
async fn the_answer_to_metas_real_offer_keeps_every_rule() {
    let e = engine();
    // Meta's offer verbatim, its addresses rewritten to a loopback peer.
    let peer = std::net::UdpSocket::bind((LOOPBACK, 0)).unwrap();
    let port = peer.local_addr().unwrap().port().to_string();
    let offer = META_OFFER
        .replace("57.144.125.35", "127.0.0.1")
        .replace("2a03:2880:f33e:120:face:b00c:0:699c", "::1")
        .replace("3484", &port);
    let answer = e.handle.answer_whatsapp(offer.clone()).await.unwrap();
    let sdp = answer.sdp.as_str();

    // The shared checker of Meta's rules (the fake Graph API uses the same one).
    if let Err(v) = check_answer(&offer, sdp) {
        panic!("answer breaks Meta's rules: {}\n{sdp}", describe(&v));
    }

    // And each rule spelled out.
    assert!(sdp.split("\r\n").all(|l| l != "a=ice-lite"), "full ICE");
    assert_eq!(
        lines_with(sdp, "a=setup:"),
        vec!["a=setup:active"],
        "DTLS client"
    );
    let fps = lines_with(sdp, "a=fingerprint:");
    assert_eq!(fps.len(), 1, "exactly one fingerprint");
    assert!(fps[0].starts_with("a=fingerprint:sha-256 "));
    assert_eq!(fps[0].split(' ').nth(1).unwrap().split(':').count(), 32);
    assert_eq!(
        lines_with(sdp, "m="),
        vec!["m=audio 9 UDP/TLS/RTP/SAVPF 111 126"]
    );
    assert_eq!(lines_with(sdp, "a=mid:"), vec!["a=mid:audio"], "Meta's mid");
    assert_eq!(
        lines_with(sdp, "a=group:BUNDLE"),
        vec!["a=group:BUNDLE audio"]
    );
    assert_eq!(
        lines_with(sdp, "a=rtpmap:111"),
        vec!["a=rtpmap:111 opus/48000/2"]
    );
    assert_eq!(
        lines_with(sdp, "a=rtpmap:126"),
        vec!["a=rtpmap:126 telephone-event/8000"]
    );
    assert_eq!(lines_with(sdp, "a=ptime:"), vec!["a=ptime:20"]);
    assert_eq!(lines_with(sdp, "a=sendrecv").len(), 1);
    assert_eq!(lines_with(sdp, "a=rtcp-mux").len(), 1);
    let ssrcs: std::collections::BTreeSet<&str> = lines_with(sdp, "a=ssrc:")
        .iter()
        .map(|l| l["a=ssrc:".len()..].split(' ').next().unwrap())
        .collect();
    assert_eq!(ssrcs.len(), 1, "exactly one SSRC");
    let cands = lines_with(sdp, "a=candidate:");
    assert!(!cands.is_empty(), "candidates inline");
    let engine_port = e.driver.local_addr().port().to_string();
    assert!(
        cands.iter().all(
            |c| c.contains(" udp ") && c.contains(&format!("127.0.0.1 {engine_port} typ host"))
        ),
        "{cands:?}"
    );
    assert!(
        lines_with(sdp, "a=ice-options:trickle").is_empty(),
        "no trickle: Meta cannot"
    );
    assert!(sdp.ends_with("\r\n") && !sdp.contains("\n\n"));
}
