//! The answer to Meta's real offer (reference §3.1) keeps every one of Meta's SDP rules; offers
//! that could not be answered so are refused up front, by the engine and by the offer check alike;
//! and every offer the offer check takes gets an answer the answer check takes (a property test).

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};

use common::*;
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestCaseError, TestRunner};
use switchboard::media::MediaError;
use switchboard::whatsapp::sdp::{check_answer, check_offer, describe};

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

/// Meta's offer with `from` replaced by `to` (each must occur).
fn offer_with(pairs: &[(&str, &str)]) -> String {
    let mut offer = META_OFFER.to_owned();
    for (from, to) in pairs {
        assert!(offer.contains(from), "{from}");
        offer = offer.replace(from, to);
    }
    offer
}

/// An offer the offer check refuses with `expected` in its reason, and so does the engine, up
/// front and saying why: nothing is answered.
async fn refused_by_both(offer: &str, expected: &str) {
    let violations = check_offer(offer).expect_err("the offer check refuses it");
    let why = describe(&violations);
    assert!(why.contains(expected), "{why}");
    let e = engine();
    match e.handle.answer_whatsapp(offer.to_owned()).await {
        Err(err @ MediaError::InvalidOffer { .. }) => {
            let err = err.to_string();
            assert!(err.contains(expected), "{err}");
        }
        Err(other) => panic!("refused for another reason: {other}"),
        Ok(a) => panic!("answered:\n{}", a.sdp),
    }
}

#[tokio::test]
async fn an_opus_rtpmap_for_a_payload_type_the_m_line_does_not_list_is_refused_up_front() {
    // Answered before with payload type 110, which the m= line (111 126) never offered.
    let offer = offer_with(&[
        (
            "a=rtpmap:111 opus/48000/2\r\n",
            "a=rtpmap:110 opus/48000/2\r\na=rtpmap:111 opus/48000/2\r\n",
        ),
        (
            "a=rtpmap:126 telephone-event/8000",
            "a=rtpmap:126 telephone-event",
        ),
    ]);
    refused_by_both(
        &offer,
        "a=rtpmap:110 names a payload type the m= line does not list",
    )
    .await;
    // The garbled telephone-event rtpmap alone is refused too, rather than DTMF quietly lost.
    let garbled = offer_with(&[(
        "a=rtpmap:126 telephone-event/8000",
        "a=rtpmap:126 telephone-event",
    )]);
    refused_by_both(&garbled, "is not <payload type> <encoding>/<clock rate>").await;
}

#[tokio::test]
async fn a_malformed_telephone_event_fmtp_is_refused_rather_than_dtmf_lost() {
    let offer = offer_with(&[(
        "a=rtpmap:126 telephone-event/8000\r\n",
        "a=rtpmap:126 telephone-event/8000\r\na=fmtp:126 0z16\r\n",
    )]);
    refused_by_both(&offer, "is not a telephone-event range").await;
    // A well-formed event list is answered, telephone-event kept.
    let fine = offer_with(&[(
        "a=rtpmap:126 telephone-event/8000\r\n",
        "a=rtpmap:126 telephone-event/8000\r\na=fmtp:126 0-15\r\n",
    )]);
    check_offer(&fine).unwrap();
    let e = engine();
    let answer = e.handle.answer_whatsapp(fine.clone()).await.unwrap();
    if let Err(v) = check_answer(&fine, &answer.sdp) {
        panic!("{}\n{}", describe(&v), answer.sdp);
    }
}

#[tokio::test]
async fn a_one_way_offer_is_refused_up_front_by_both_checks() {
    // Meta's offers are sendrecv; a one-way one could only get a one-way answer, which Meta's
    // answer rules refuse. Session-level directions count too (RFC 8866 §6.7).
    for (from, to) in [
        ("a=sendrecv\r\n", "a=recvonly\r\n"),
        ("a=sendrecv\r\n", "a=sendonly\r\n"),
        ("a=sendrecv\r\n", "a=inactive\r\n"),
        ("a=sendrecv\r\n", ""),
    ] {
        let mut offer = offer_with(&[(from, to)]);
        if to.is_empty() {
            offer = offer.replace("a=ice-lite\r\n", "a=ice-lite\r\na=recvonly\r\n");
        }
        refused_by_both(
            &offer,
            "only a two-way (sendrecv) audio offer can carry a call",
        )
        .await;
    }
}

/// Offers made from Meta's real one: its payload types, `rtpmap`/`fmtp` lines, direction and a
/// few extra lines changed. Most changes keep the offer within the offer check (extra formats
/// with their own lines), some do not (stray lines, repeated formats, other directions).
fn mutated_offers() -> impl Strategy<Value = String> {
    let encoding = prop::sample::select(vec![
        "opus/48000/2",
        "opus/48000",
        "opus/16000/2",
        "telephone-event/8000",
        "telephone-event/48000",
        "PCMU/8000",
        "PCMA/8000",
        "G722/8000",
        "red/48000/2",
        "telephone-event",
        "x/y/z",
    ]);
    let params = prop::sample::select(vec![
        "minptime=10;useinbandfec=1",
        "maxaveragebitrate=20000;maxplaybackrate=16000;minptime=20;sprop-maxcapturerate=16000;useinbandfec=1",
        "0-15",
        "0-16",
        "0-15,66",
        "0z16",
        "15-0",
        "111/111",
    ]);
    let direction = prop::sample::select(vec![
        None,
        Some("sendrecv"),
        Some("sendrecv"),
        Some("sendonly"),
        Some("recvonly"),
        Some("inactive"),
    ]);
    let extra = prop::sample::select(vec![
        "a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level",
        "a=rtcp-fb:111 nack",
        "a=rtcp-fb:* transport-cc",
        "b=AS:64",
        "a=foo",
        "a=ssrc:3435760938 msid:a b",
    ]);
    let format = (
        prop::option::weighted(0.7, encoding.clone()),
        prop::option::weighted(0.3, params.clone()),
    );
    (
        (
            prop::bool::weighted(0.85),
            prop::sample::subsequence(vec![0u8, 8, 9, 63, 96, 101, 110, 127], 0..=3),
            prop::collection::vec(format, 3),
            prop::option::weighted(0.3, params),
            prop::option::weighted(0.1, (prop::sample::select(vec![110u8, 120]), encoding)),
            prop::bool::weighted(0.05),
        ),
        (
            direction.clone(),
            prop::option::weighted(0.2, direction),
            prop::collection::vec(extra, 0..3),
            prop::bool::weighted(0.5),
        ),
    )
        .prop_map(
            |(
                (meta_pts, extras, formats, meta_fmtp, stray, repeat),
                (media_dir, session_dir, extra_lines, extras_first),
            )| {
                let mut pts: Vec<String> = vec![];
                let mut lines: Vec<String> = vec![];
                if meta_pts {
                    pts.extend(["111".to_owned(), "126".to_owned()]);
                    lines.extend(
                        [
                            "a=rtpmap:111 opus/48000/2",
                            "a=rtcp-fb:111 transport-cc",
                            "a=fmtp:111 maxaveragebitrate=20000;maxplaybackrate=16000;minptime=20;sprop-maxcapturerate=16000;useinbandfec=1",
                            "a=rtpmap:126 telephone-event/8000",
                        ]
                        .map(str::to_owned),
                    );
                    if let Some(p) = meta_fmtp {
                        lines.push(format!("a=fmtp:126 {p}"));
                    }
                }
                let mut extra_pts = vec![];
                let mut extra_maps = vec![];
                for (pt, (enc, params)) in extras.iter().zip(formats) {
                    extra_pts.push(pt.to_string());
                    if let Some(enc) = enc {
                        extra_maps.push(format!("a=rtpmap:{pt} {enc}"));
                    }
                    if let Some(p) = params {
                        extra_maps.push(format!("a=fmtp:{pt} {p}"));
                    }
                }
                if extras_first {
                    pts.splice(0..0, extra_pts);
                    lines.splice(0..0, extra_maps);
                } else {
                    pts.extend(extra_pts);
                    lines.extend(extra_maps);
                }
                if let Some((pt, enc)) = stray {
                    lines.push(format!("a=rtpmap:{pt} {enc}"));
                }
                if repeat {
                    if let Some(first) = pts.first().cloned() {
                        pts.push(first);
                    }
                }
                lines.extend(extra_lines.iter().map(|l| (*l).to_owned()));
                if let Some(d) = media_dir {
                    lines.push(format!("a={d}"));
                }
                let mut offer = String::new();
                for line in META_OFFER.split("\r\n").filter(|l| !l.is_empty()) {
                    if line.starts_with("m=audio") {
                        offer.push_str(&format!(
                            "m=audio 9 UDP/TLS/RTP/SAVPF {}\r\n",
                            pts.join(" ")
                        ));
                        continue;
                    }
                    let dropped = ["a=rtpmap:", "a=fmtp:", "a=rtcp-fb:", "a=sendrecv"];
                    if dropped.iter().any(|d| line.starts_with(d)) {
                        continue;
                    }
                    offer.push_str(line);
                    offer.push_str("\r\n");
                    if line == "a=ice-lite" {
                        if let Some(d) = session_dir.flatten() {
                            offer.push_str(&format!("a={d}\r\n"));
                        }
                    }
                    if line == "a=rtcp-mux" {
                        for l in &lines {
                            offer.push_str(l);
                            offer.push_str("\r\n");
                        }
                    }
                }
                // Loopback addresses: nothing is sent anywhere real.
                offer
                    .replace("57.144.125.35", "127.0.0.1")
                    .replace("2a03:2880:f33e:120:face:b00c:0:699c", "::1")
            },
        )
}

#[test]
fn every_offer_the_offer_check_takes_gets_an_answer_the_answer_check_takes() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let e = rt.block_on(async { engine() });
    let taken = AtomicUsize::new(0);
    let mut runner = TestRunner::new(ProptestConfig {
        cases: 192,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    runner
        .run(&mutated_offers(), |offer| {
            if check_offer(&offer).is_err() {
                return Ok(());
            }
            taken.fetch_add(1, Ordering::Relaxed);
            let answer = rt
                .block_on(e.handle.answer_whatsapp(offer.clone()))
                .map_err(|err| {
                    TestCaseError::fail(format!("offer taken, engine refused: {err}\n{offer}"))
                })?;
            let _ = rt.block_on(e.handle.close(answer.leg));
            check_answer(&offer, &answer.sdp).map_err(|v| {
                TestCaseError::fail(format!(
                    "answer refused: {}\noffer:\n{offer}\nanswer:\n{}",
                    describe(&v),
                    answer.sdp
                ))
            })
        })
        .unwrap();
    // The generator must reach offers the check takes, or the property says nothing.
    assert!(taken.load(Ordering::Relaxed) >= 16, "{taken:?}");
}
