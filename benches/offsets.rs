//! The offset tracker's cost per message: claim and begin as ingest reads it, complete as
//! its Done arrives.
//!
//! Messages are spread round-robin over [`PARTITIONS`] partitions and handled in windows
//! of [`WINDOW`]: every message of a window is claimed and begun, then every one is
//! completed, either in read order (one worker, no alerts) or shuffled within the window
//! (several workers, deliveries finishing out of order). Each pass starts a fresh tracker
//! and checks that every partition's committable offset reached its end.
//!
//! `cargo bench --bench offsets -- --warm-up-time 1 --measurement-time 3`

mod common;

use common::Lcg;
use criterion::Criterion;
use vitalwatch::pipeline::offsets::{Claim, OffsetTracker};

const MESSAGES: usize = 10_240;
const PARTITIONS: i32 = 8;
const WINDOW: usize = 64;

/// (partition, offset) in read order.
fn reads() -> Vec<(i32, i64)> {
    (0..MESSAGES)
        .map(|i| {
            let partition = i as i32 % PARTITIONS;
            (partition, (i / PARTITIONS as usize) as i64)
        })
        .collect()
}

/// Completion order within each window: `0..WINDOW`, shuffled when `shuffle`.
fn completion_orders(shuffle: bool) -> Vec<Vec<usize>> {
    let mut rng = Lcg(0x0ff5e7);
    (0..MESSAGES / WINDOW)
        .map(|_| {
            let mut order: Vec<usize> = (0..WINDOW).collect();
            if shuffle {
                for i in (1..order.len()).rev() {
                    order.swap(i, rng.below(i as u64 + 1) as usize);
                }
            }
            order
        })
        .collect()
}

/// One pass: a fresh tracker through every read and completion. Returns the sum of the
/// committable offsets at the end (checked).
fn pass(reads: &[(i32, i64)], orders: &[Vec<usize>], claims: &mut Vec<Claim>) -> usize {
    let mut tracker = OffsetTracker::new();
    for p in 0..PARTITIONS {
        tracker.assign(p);
    }
    for (window, order) in reads.chunks(WINDOW).zip(orders) {
        claims.clear();
        for &(partition, offset) in window {
            let claim = tracker.claim(partition).unwrap();
            assert!(tracker.begin(claim, offset));
            claims.push(claim);
        }
        for &i in order {
            tracker.complete(claims[i], window[i].1).unwrap();
        }
    }
    assert_eq!(tracker.total_in_flight(), 0);
    let end = (MESSAGES / PARTITIONS as usize) as i64;
    (0..PARTITIONS)
        .map(|p| {
            let committable = tracker.committable(p).unwrap();
            assert_eq!(committable, end);
            committable as usize
        })
        .sum()
}

fn main() {
    let reads = reads();
    let mut c = Criterion::default().configure_from_args();
    let mut group = c.benchmark_group("offsets");
    // A pass is about a millisecond: 50 samples fit the usual 3 s.
    group.sample_size(50);
    for (name, shuffle) in [("in_order", false), ("shuffled_64", true)] {
        let orders = completion_orders(shuffle);
        let mut claims = Vec::with_capacity(WINDOW);
        common::bench(&mut group, name, MESSAGES, || {
            pass(&reads, &orders, &mut claims)
        });
    }
    group.finish();
    c.final_summary();
}
