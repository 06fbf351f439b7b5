//! A million distinct patients through one worker's rule state: the state stays within
//! `max_patients_per_worker`, and so does the memory it holds.
//!
//! Memory is measured exactly, not sampled: this test binary counts the bytes live on the
//! heap with a counting global allocator (its own process, so no other test allocates
//! meanwhile).

use std::alloc::{GlobalAlloc, Layout, System};
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::sync::atomic::{AtomicIsize, Ordering};

use vitalwatch::rules::RuleSet;
use vitalwatch::rules::state::{Evaluator, Reading, StateLimits};
use vitalwatch::vitals::Metric;

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: `ptr` came from `alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        // SAFETY: as `GlobalAlloc::realloc`'s contract, forwarded.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}

/// The counter is process-wide: the tests here measure one at a time.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

const PATIENTS: usize = 1_000_000;
const CAP: usize = 50_000; // the default rules.max_patients_per_worker
const T0: i64 = 1_763_798_400_000;

#[test]
fn a_million_distinct_patients_stay_within_the_cap_in_count_and_bytes() {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    // The shipped rules: NEWS2 on, so every patient observed gets state.
    let rules = Arc::new(RuleSet::news2_red_flags());
    let limits = StateLimits {
        ttl_ms: 3_600_000,
        capacity: NonZeroUsize::new(CAP).unwrap(),
    };
    let mut eval = Evaluator::new(rules, limits);
    let mut out = Vec::with_capacity(16);
    let before = live();
    let mut at_cap = 0;
    let mut peak = 0;
    let mut id = String::with_capacity(32);
    for n in 0..PATIENTS {
        id.clear();
        // Ids of a realistic length (12 bytes, inline in the state's key).
        use std::fmt::Write;
        let _ = write!(id, "P-{n:010}");
        let reading = Reading {
            metric: Metric::HeartRate,
            value: 72.0,
            timestamp: T0 + n as i64,
        };
        eval.observe(&id, reading, (0, 1), n as i64 / 1000, &mut out);
        assert!(eval.patients() <= CAP);
        if n + 1 == CAP {
            at_cap = live() - before;
        }
        if n % 10_000 == 0 {
            peak = peak.max(live() - before);
        }
    }
    let after = live() - before;
    peak = peak.max(after);
    let evicted = eval.take_evictions();
    assert_eq!(eval.patients(), CAP);
    assert_eq!(evicted.capacity, (PATIENTS - CAP) as u64);
    assert!(out.is_empty(), "a normal pulse alerted: {out:?}");

    let per_patient = at_cap as f64 / CAP as f64;
    eprintln!(
        "patient state: {CAP} patients held = {:.1} MiB ({per_patient:.0} B each); after {PATIENTS} \
         patients {:.1} MiB, peak {:.1} MiB; {} evicted for capacity",
        at_cap as f64 / 1048576.0,
        after as f64 / 1048576.0,
        peak as f64 / 1048576.0,
        evicted.capacity
    );
    // Nothing grows past the cap: after 20× the cap in distinct patients, the heap holds
    // what it held at the cap (hash-table slack aside).
    assert!(
        peak as f64 <= at_cap as f64 * 1.25,
        "state memory grew past the cap: {at_cap} B at the cap, peak {peak} B"
    );
    // And what it holds is a few hundred bytes a patient: the cap bounds memory at
    // workers × max_patients_per_worker × this.
    assert!(per_patient < 512.0, "{per_patient} B per patient");
}

#[test]
fn a_million_patient_contexts_cost_a_few_hundred_bytes_each() {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let rules = Arc::new(RuleSet::news2_red_flags());
    let limits = vitalwatch::settings::defaults().state_limits();
    let mut eval = Evaluator::new(rules.clone(), limits);
    let before = live();
    let mut bytes_read = 0usize;
    for n in 0..PATIENTS {
        let id = format!("P-{n:010}");
        // A third each: Scale 2, an override, a suppression (as a ward writes them, with
        // who and when).
        let value = match n % 3 {
            0 => format!(
                r#"{{"patientId":"{id}","spo2Scale":2,"updatedBy":"ward-7-nurse","updatedAt":{T0}}}"#
            ),
            1 => format!(
                r#"{{"patientId":"{id}","overrides":{{"heart_rate_high":{{"above":150}}}},"updatedBy":"ward-7-nurse","updatedAt":{T0}}}"#
            ),
            _ => format!(
                r#"{{"patientId":"{id}","suppress":{{"until":{T0},"reason":"procedure"}},"updatedBy":"ward-7-nurse","updatedAt":{T0}}}"#
            ),
        };
        bytes_read += id.len() + value.len();
        let (patient, context) = vitalwatch::rules::context::parse(
            Some(id.as_bytes()),
            Some(value.as_bytes()),
            n as i64,
            &rules,
        )
        .expect("a good record");
        eval.set_context(&patient, (n % 12) as i32, context);
    }
    let held = live() - before;
    assert_eq!(eval.contexts(), PATIENTS);
    assert_eq!(eval.patients(), 0, "contexts are not rule state");
    let per_patient = held as f64 / PATIENTS as f64;
    eprintln!(
        "patient context: {PATIENTS} patients held = {:.1} MiB ({per_patient:.0} B each), \
         from {:.1} MiB of records",
        held as f64 / 1048576.0,
        bytes_read as f64 / 1048576.0,
    );
    assert!(per_patient < 512.0, "{per_patient} B per patient context");
}
