//! The per-message CPU cost of the hot path: decode + validate, then rule evaluation.
//!
//! The input is the shared deterministic mix (`common`): ~90% normal readings, ~7%
//! abnormal readings that breach one NEWS2 red flag, ~3% invalid messages spread over the
//! DLQ reason codes. Criterion reports time per batch and elements/s; each benchmark also
//! prints its mean ns per message.
//!
//! `cargo bench --bench decode_evaluate -- --warm-up-time 1 --measurement-time 3`

mod common;

use std::hint::black_box;

use common::{NOW, workload};
use criterion::Criterion;
use std::sync::Arc;
use vitalwatch::rules::RuleSet;
use vitalwatch::rules::state::{Evaluator, Reading};
use vitalwatch::vitals::decode;

fn bench(c: &mut Criterion, name: &str, per_pass: usize, pass: impl FnMut() -> usize) {
    let mut group = c.benchmark_group("decode_evaluate");
    common::bench(&mut group, name, per_pass, pass);
    group.finish();
}

fn main() {
    let rules = RuleSet::news2_red_flags();
    let limits = vitalwatch::settings::defaults().decode_limits();
    let work = workload(&rules, &limits);
    let payloads: Vec<&[u8]> = work.payloads().collect();
    let mut c = Criterion::default().configure_from_args();

    bench(&mut c, "decode", payloads.len(), || {
        payloads
            .iter()
            .filter(|p| decode(black_box(p), &limits, NOW).is_ok())
            .count()
    });
    bench(&mut c, "evaluate", work.decoded.len(), || {
        work.decoded
            .iter()
            .map(|obs| rules.evaluate(black_box(obs)).count())
            .sum()
    });
    // The shipped rules as the workers run them: per-patient state for cooldown,
    // hysteresis and the NEWS2 aggregate (one state, the mix's 1 000 patients, built afresh every pass).
    let shared = Arc::new(rules.clone());
    bench(&mut c, "evaluate_stateful", work.decoded.len(), || {
        let mut eval = Evaluator::new(
            shared.clone(),
            vitalwatch::settings::defaults().state_limits(),
        );
        let mut out = Vec::new();
        for obs in &work.decoded {
            let reading = Reading::of(obs);
            eval.observe(black_box(&obs.patient_id), reading, (0, 0), 0, &mut out);
        }
        out.len()
    });
    bench(&mut c, "decode+evaluate", payloads.len(), || {
        payloads
            .iter()
            .map(|p| match decode(black_box(p), &limits, NOW) {
                Ok(obs) => rules.evaluate(&obs).count(),
                Err(e) => e.reason().len(),
            })
            .sum()
    });

    c.final_summary();
}
