//! What a connected call holds in heap (issue 26, docs/performance.md "What a leg holds"): the
//! engine's two legs of a call (WhatsApp and browser) and the two str0m peers of the in-memory
//! network, after twelve seconds of audio with RTCP both ways. Heap is counted by this test's own
//! allocator, so the figure is exact rather than sampled; it is taken as the difference
//! between 10 and 30 calls, so what the engine holds whatever the number of calls is left out.
//!
//! The vendored str0m's memory changes (vendor/str0m/PATCH.md: send stream boxed, resend
//! buffers allocated on first use, drained RTCP queues released) took this from 274 KiB to
//! 170 KiB per call (four str0m instances: ~42 KiB each); the bound leaves room for noise, not
//! for one of them to come undone.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

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

#[test]
fn a_connected_call_holds_under_200_kib_of_heap() {
    let small = held_by(10);
    let large = held_by(30);
    let per_call = (large - small) / 20;
    eprintln!(
        "heap per call (two engine legs, two str0m peers): {} KiB",
        per_call / 1024
    );
    assert!(per_call > 0, "calls hold something: {per_call}");
    assert!(
        per_call < 200 * 1024,
        "a call holds {} KiB of heap",
        per_call / 1024
    );
}
