//! The pipeline tests' own piece: an oracle computed from what was actually written to
//! the input topic. The cluster, the running pipeline and the traffic are the tests'
//! shared [`crate::support`].

use std::collections::{BTreeMap, BTreeSet};

use vitalwatch::alert::{Source, alert_id};
use vitalwatch::rules::RuleSet;
use vitalwatch::vitals::decode;

pub use crate::support::cluster::*;
pub use crate::support::kafka::{Record, produce};
pub use crate::support::traffic::*;

/// What the input topic should produce: alert ids for valid messages, reason codes for
/// invalid ones, computed with the library's own decoder and rules.
pub struct Oracle {
    pub alert_ids: BTreeSet<String>,
    /// (partition, offset) → reason code.
    pub dlq: BTreeMap<(i32, i64), String>,
    pub valid: usize,
}

pub fn oracle(cluster: &Cluster, input: &[Record], rules: &RuleSet) -> Oracle {
    let limits = test_limits();
    let now = vitalwatch::clock::now_ms();
    let mut o = Oracle {
        alert_ids: BTreeSet::new(),
        dlq: BTreeMap::new(),
        valid: 0,
    };
    for r in input {
        match decode(r.value(), &limits, now) {
            Ok(obs) => {
                o.valid += 1;
                let source = Source {
                    topic: &cluster.input,
                    partition: r.partition,
                    offset: r.offset,
                };
                for rule in rules.evaluate(&obs) {
                    o.alert_ids.insert(alert_id(&source, &rule.id).to_string());
                }
            }
            Err(e) => {
                o.dlq.insert((r.partition, r.offset), e.reason().to_owned());
            }
        }
    }
    o
}
