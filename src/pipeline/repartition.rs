//! One patient's observations meet in one place, whatever key their producer gave them.
//!
//! A worker holds a patient's rule state (the NEWS2 chart, open episodes), and a worker
//! sees only the partitions its instance owns. Producers that key by patient id put all
//! of a patient's observations in one partition, so one instance sees them all. A feed
//! keyed by device, or not keyed at all, spreads one patient over partitions that
//! different replicas own, and each replica would score its own part of the chart.
//!
//! As Kafka Streams does before a join, vitalwatch re-keys such observations through a
//! repartition topic (`kafka.repartition_topic`, as many partitions as the input). Each
//! patient has a *home*: the input partition their id maps to with the producers'
//! partitioner (`kafka.input_partitioner`). An observation read on its home partition is
//! evaluated there; any other is forwarded, unchanged, to the home partition of the
//! repartition topic, keyed by patient id, with headers naming where it was read, and
//! the input message counts as done once that copy is acknowledged. The repartition
//! topic's partition p is assigned together with the input's partition p (ingest adds it
//! to every assignment and revocation the group hands out), so the instance that owns a
//! patient's home partition reads both streams of that patient. The copy's alerts name
//! the original message as their source, so their `alertId` is the one the original would
//! have had.

use rdkafka::message::{BorrowedHeaders, Header, Headers, OwnedHeaders};

use super::record::Record;

/// How the input's producers choose a partition from a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Partitioner {
    /// The Java client's default (and Kafka Streams', Kafka Connect's): murmur2 of the
    /// key, made positive, modulo the partition count. librdkafka's `murmur2_random`.
    Murmur2,
    /// librdkafka's default, `consistent_random` (confluent-kafka for Python, Go, .NET,
    /// kcat): CRC-32 of the key modulo the partition count.
    Crc32,
}

impl Partitioner {
    /// The partition `key` goes to among `partitions` (at least 1).
    pub(crate) fn partition(self, key: &[u8], partitions: i32) -> i32 {
        let n = partitions.max(1) as u32;
        let h = match self {
            Partitioner::Murmur2 => murmur2::murmur2(key, murmur2::KAFKA_SEED) & 0x7fff_ffff,
            Partitioner::Crc32 => crc32fast::hash(key),
        };
        (h % n) as i32
    }

    /// The librdkafka `partitioner` property that matches, for vitalwatch's own
    /// producers of input (loadgen, the demo's ward, tests).
    pub const fn librdkafka_name(self) -> &'static str {
        match self {
            Partitioner::Murmur2 => "murmur2_random",
            Partitioner::Crc32 => "consistent_random",
        }
    }
}

/// Why an observation is not at its patient's home: the `reason` label of
/// `vitalwatch_messages_misplaced_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Misplaced {
    /// The message has no key.
    NoKey,
    /// Its key is not the payload's `patientId` (a device id, say).
    OtherKey,
    /// Keyed by patient id, but on another partition than the configured partitioner
    /// puts that key: the producers use another partitioner than
    /// `kafka.input_partitioner`.
    OtherPartition,
}

impl Misplaced {
    /// Its `reason` label (`metrics::MISPLACED_REASONS`, in this order).
    pub(crate) const fn as_str(self) -> &'static str {
        crate::metrics::MISPLACED_REASONS[self as usize]
    }
}

/// Where a patient's observations meet, and how to tell which are elsewhere.
#[derive(Debug, Clone)]
pub(crate) struct Route {
    pub(crate) partitioner: Partitioner,
    /// Partitions of the input topic (and of the repartition topic): 0 until known.
    pub(crate) partitions: i32,
}

impl Route {
    /// The home partition of `patient`, when the partition count is known.
    pub(crate) fn home(&self, patient: &str) -> Option<i32> {
        (self.partitions > 0).then(|| {
            self.partitioner
                .partition(patient.as_bytes(), self.partitions)
        })
    }

    /// Why the input message `record` of `patient` is not where it belongs (`None`: it is
    /// at home, or the partition count is not known yet and only the key can tell).
    pub(crate) fn misplaced(&self, record: &Record<'_>, patient: &str) -> Option<Misplaced> {
        match record.key {
            None => return Some(Misplaced::NoKey),
            Some(k) if k != patient.as_bytes() => return Some(Misplaced::OtherKey),
            Some(_) => {}
        }
        match self.home(patient) {
            Some(home) if home != record.partition => Some(Misplaced::OtherPartition),
            _ => None,
        }
    }
}

/// Headers of a forwarded copy: where the original was read, as a dead letter says it
/// (`crate::deadletter`), and its key.
pub(crate) use crate::deadletter::{SOURCE_OFFSET, SOURCE_PARTITION, SOURCE_TIMESTAMP};
/// The original message's key, when it had one (the copy is keyed by patient id).
pub(crate) const SOURCE_KEY: &str = "vitalwatch.source.key";

/// The headers of the copy of `record`.
pub(crate) fn copy_headers(record: &Record<'_>) -> OwnedHeaders {
    let h = crate::deadletter::source_headers(OwnedHeaders::new_with_capacity(5), record.from());
    match record.key {
        Some(key) => h.insert(Header {
            key: SOURCE_KEY,
            value: Some(key),
        }),
        None => h,
    }
}

/// The input partition and offset a copy was made from, from its headers; `None` for a
/// record vitalwatch did not write (its own coordinates then name it).
pub(crate) fn origin(headers: Option<&BorrowedHeaders>) -> Option<(i32, i64)> {
    let headers = headers?;
    let mut partition = None;
    let mut offset = None;
    for h in headers.iter() {
        let value = || std::str::from_utf8(h.value?).ok();
        match h.key {
            SOURCE_PARTITION => partition = value().and_then(|v| v.parse().ok()),
            SOURCE_OFFSET => offset = value().and_then(|v| v.parse().ok()),
            _ => {}
        }
    }
    Some((partition?, offset?))
}

/// The input message a copy was made from, as a record whose coordinates, timestamp and
/// key are the original's (its payload is the copy's: the same bytes). `None` when the
/// headers do not say (a record vitalwatch did not write).
pub(crate) fn original<'a>(copy: &Record<'a>, input_topic: &'a str) -> Option<Record<'a>> {
    let (partition, offset) = origin(copy.headers)?;
    let headers = copy.headers?;
    let mut timestamp = None;
    let mut key = None;
    for h in headers.iter() {
        match h.key {
            SOURCE_TIMESTAMP => {
                timestamp = h
                    .value
                    .and_then(|v| std::str::from_utf8(v).ok())
                    .and_then(|v| v.parse().ok());
            }
            SOURCE_KEY => key = h.value,
            _ => {}
        }
    }
    Some(Record {
        topic: input_topic,
        partition,
        offset,
        timestamp,
        key,
        payload: copy.payload,
        headers: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deadletter::SOURCE_TOPIC;

    #[test]
    fn murmur2_matches_the_java_client() {
        // Kafka's UtilsTest.testMurmur2 vectors (signed 32-bit results).
        for (key, expected) in [
            ("21", -973_932_308_i32),
            ("foobar", -790_332_482),
            ("a-little-bit-long-string", -985_981_536),
            ("a-little-bit-longer-string", -1_486_304_829),
            (
                "lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58_897_971,
            ),
        ] {
            assert_eq!(
                murmur2::murmur2(key.as_bytes(), murmur2::KAFKA_SEED) as i32,
                expected,
                "{key}"
            );
        }
        // The Java partitioner: toPositive(murmur2(key)) % partitions.
        let p = Partitioner::Murmur2.partition(b"foobar", 12);
        assert_eq!(p, ((-790_332_482_i32 & 0x7fff_ffff) % 12));
    }

    #[test]
    fn crc32_is_the_ieee_checksum() {
        assert_eq!(crc32fast::hash(b"123456789"), 0xCBF4_3926);
        assert_eq!(
            Partitioner::Crc32.partition(b"123456789", 7),
            (0xCBF4_3926_u32 % 7) as i32
        );
    }

    fn record<'a>(key: Option<&'a [u8]>, partition: i32) -> Record<'a> {
        Record {
            topic: "patient-data",
            partition,
            offset: 5,
            timestamp: Some(1),
            key,
            payload: None,
            headers: None,
        }
    }

    #[test]
    fn a_message_is_misplaced_without_its_patients_key_or_off_its_home() {
        let route = Route {
            partitioner: Partitioner::Murmur2,
            partitions: 12,
        };
        let home = route.home("P-1").unwrap();
        assert_eq!(route.misplaced(&record(Some(b"P-1"), home), "P-1"), None);
        assert_eq!(
            route.misplaced(&record(None, home), "P-1"),
            Some(Misplaced::NoKey)
        );
        assert_eq!(
            route.misplaced(&record(Some(b"monitor-7"), home), "P-1"),
            Some(Misplaced::OtherKey)
        );
        assert_eq!(
            route.misplaced(&record(Some(b"P-1"), (home + 1) % 12), "P-1"),
            Some(Misplaced::OtherPartition)
        );
        // Before the partition count is known only the key can tell.
        let unknown = Route {
            partitions: 0,
            ..route
        };
        assert_eq!(unknown.home("P-1"), None);
        assert_eq!(unknown.misplaced(&record(Some(b"P-1"), 3), "P-1"), None);
    }

    #[test]
    fn a_copy_carries_its_origin() {
        use rdkafka::message::{Headers, OwnedHeaders};
        let r = record(Some(b"dev-1"), 4);
        let h: OwnedHeaders = copy_headers(&r);
        assert_eq!(h.count(), 5);
        let names: Vec<&str> = h.iter().map(|h| h.key).collect();
        assert_eq!(
            names,
            [
                SOURCE_TOPIC,
                SOURCE_PARTITION,
                SOURCE_OFFSET,
                SOURCE_TIMESTAMP,
                SOURCE_KEY
            ]
        );
        assert_eq!(origin(Some(h.as_borrowed())), Some((4, 5)));
        let copy = Record {
            topic: "patient-data-repartition",
            partition: 1,
            offset: 99,
            timestamp: Some(7),
            key: Some(b"P-1"),
            payload: Some(b"{}"),
            headers: Some(h.as_borrowed()),
        };
        let o = original(&copy, "patient-data").unwrap();
        assert_eq!(
            (o.topic, o.partition, o.offset, o.timestamp, o.key),
            ("patient-data", 4, 5, Some(1), Some(&b"dev-1"[..]))
        );
        assert_eq!(origin(None), None);
        let foreign = OwnedHeaders::new().insert(Header {
            key: SOURCE_PARTITION,
            value: Some("x"),
        });
        assert_eq!(origin(Some(foreign.as_borrowed())), None);
    }
}
