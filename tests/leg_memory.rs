//! What a connected call holds in heap (issue 26, docs/performance.md "What a leg holds"): the
//! engine's two legs of a call (WhatsApp and browser) and the two str0m peers of the in-memory
//! network, after twelve seconds of audio with RTCP both ways. Heap is counted by this test's own
//! allocator, so the figure is exact rather than sampled; it is taken as the difference
//! between 10 and 30 calls, so what the engine holds whatever the number of calls is left out.
//!
//! The vendored str0m's memory changes (vendor/str0m/PATCH.md: send stream boxed, resend
//! buffers allocated on first use, drained RTCP queues released) took this from 274 KiB to
//! 170 KiB per call (four str0m instances: ~42 KiB each), and issue 26's third step (unused
//! subsystems boxed, per-thread scratch buffers, an SRTP decryption buffer made at first use,
//! dimpl's handshake freed: vendor/str0m and vendor/dimpl PATCH.md) to 106 KiB; the bound
//! leaves room for noise, not for one of them to come undone.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use switchboard::sim::memory::MemoryNet;

/// Heap bytes live right now, across the process.
static LIVE: AtomicIsize = AtomicIsize::new(0);

struct Counting;

// SAFETY: every call is passed to the system allocator unchanged; only the count is added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Heap held by `calls` connected calls after twelve seconds of audio, in bytes.
fn held_by(calls: usize) -> isize {
    let before = LIVE.load(Ordering::Relaxed);
    let mut net = MemoryNet::new(calls);
    // Each step is one caller packet, 50 a second per call; every peer's timers run often
    // enough for RTCP (every ~5 s for audio) to flow both ways.
    for n in 0..calls * 50 * 12 {
        net.step();
        if n % 20 == 0 {
            net.pump(true);
        }
    }
    for i in 0..calls {
        assert_eq!(net.rtcp_seen(i), (true, true), "call {i} had its RTCP");
    }
    assert!(net.received_by_agents() > 0);
    let held = LIVE.load(Ordering::Relaxed) - before;
    drop(net);
    held
}

/// The two tests count the same process-wide allocator, so they take turns.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

#[test]
fn a_connected_call_holds_under_150_kib_of_heap() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let small = held_by(10);
    let large = held_by(30);
    let per_call = (large - small) / 20;
    eprintln!(
        "heap per call (two engine legs, two str0m peers): {} KiB",
        per_call / 1024
    );
    assert!(per_call > 0, "calls hold something: {per_call}");
    assert!(
        per_call < 150 * 1024,
        "a call holds {} KiB of heap",
        per_call / 1024
    );
}

/// Moves every datagram `from` has to send into `to`; whether `from` said it is connected.
fn deliver(from: &mut dimpl::Dtls, to: &mut dimpl::Dtls, buf: &mut [u8]) -> (bool, bool) {
    let (mut moved, mut connected) = (false, false);
    loop {
        match from.poll_output(buf) {
            dimpl::Output::Packet(p) => {
                let p = p.to_vec();
                to.handle_packet(&p).expect("a well-formed record");
                moved = true;
            }
            dimpl::Output::Connected => connected = true,
            dimpl::Output::Timeout(_) => return (moved, connected),
            dimpl::Output::BufferTooSmall { needed } => panic!("a record of {needed} bytes"),
            _ => {}
        }
    }
}

/// The vendored dimpl's patch (vendor/dimpl/PATCH.md): once its handshake is complete, a DTLS
/// endpoint frees the transcript, the spare buffers, the saved flight of a client and the
/// reassembly buffers. Before it, a connected client held ~10 KB and a server ~9 KB.
#[test]
fn a_connected_dtls_endpoint_keeps_little_of_its_handshake() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    // The engine's settings that decide what a connected endpoint keeps (no server cookie, a
    // WhatsApp leg's MTU; src/media/engine/dtls.rs), not its resend timing, which does not.
    let config = Arc::new(
        dimpl::Config::builder()
            .use_server_cookie(false)
            .mtu(1150)
            .build()
            .expect("a valid configuration"),
    );
    let client_cert = dimpl::certificate::generate_self_signed_certificate().unwrap();
    let server_cert = dimpl::certificate::generate_self_signed_certificate().unwrap();
    let now = Instant::now();
    let mut buf = vec![0u8; 2048];

    let before = LIVE.load(Ordering::Relaxed);
    let mut client = Box::new(dimpl::Dtls::new_12(config.clone(), client_cert, now));
    let mut server = Box::new(dimpl::Dtls::new_12(config, server_cert, now));
    client.set_active(true);
    client.handle_timeout(now).unwrap();
    server.handle_timeout(now).unwrap();
    let (mut client_up, mut server_up) = (false, false);
    for _ in 0..20 {
        let (a, up) = deliver(&mut client, &mut server, &mut buf);
        client_up |= up;
        let (b, up) = deliver(&mut server, &mut client, &mut buf);
        server_up |= up;
        if !a && !b {
            break;
        }
    }
    assert!(client_up && server_up, "the handshake completed");
    let both = LIVE.load(Ordering::Relaxed) - before;
    drop(server);
    let client_holds = LIVE.load(Ordering::Relaxed) - before;
    let server_holds = both - client_holds;
    eprintln!("connected DTLS: client {client_holds} B, server {server_holds} B of heap");
    // The instance itself is ~3.4 KB of that (boxed here, as str0m boxes it).
    assert!(client_holds < 7 * 1024, "client holds {client_holds} B");
    assert!(server_holds < 7 * 1024, "server holds {server_holds} B");
    drop(client);
}
