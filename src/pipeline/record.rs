//! One input message as ingest sees it, whatever it was read from.

use rdkafka::Message;
use rdkafka::message::{BorrowedHeaders, BorrowedMessage};

/// One input message as the router sees it, whatever it was read from: the ingest loop
/// builds it from a Kafka message without copying ([`Record::from_message`]); in-process
/// benchmarks build it from plain slices.
#[derive(Clone, Copy)]
pub struct Record<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    /// Creation or log-append time, Unix epoch milliseconds, when the broker gave one.
    pub timestamp: Option<i64>,
    pub key: Option<&'a [u8]>,
    /// `None` for a tombstone (null value).
    pub payload: Option<&'a [u8]>,
    /// Read only for the repartition topic's copies (where the original was read).
    pub headers: Option<&'a BorrowedHeaders>,
}

impl<'a> Record<'a> {
    /// Borrows everything from `msg`: no copy, no allocation.
    pub(crate) fn from_message(msg: &'a BorrowedMessage<'_>) -> Self {
        Record {
            topic: msg.topic(),
            partition: msg.partition(),
            offset: msg.offset(),
            timestamp: msg.timestamp().to_millis(),
            key: msg.key(),
            payload: msg.payload(),
            headers: msg.headers(),
        }
    }
}

impl Record<'_> {
    /// Where it was read, as dead letters and re-keyed copies name it.
    pub(crate) fn from(&self) -> crate::deadletter::From<'_> {
        crate::deadletter::From {
            topic: self.topic,
            partition: self.partition,
            offset: self.offset,
            timestamp: self.timestamp,
        }
    }
}
