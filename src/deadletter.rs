//! The dead-letter wire format: an invalid message, unchanged, with headers that say why
//! it was refused and where it was read.
//!
//! A dead letter keeps the original key and payload bytes (a tombstone stays a
//! tombstone) and carries `vitalwatch.error.reason` (the [`DecodeError`] reason code),
//! `vitalwatch.error.message` (what is wrong, never the payload) and the
//! `vitalwatch.source.*` headers of [`source_headers`], which the repartition topic's
//! copies carry too. One exception: a dead letter the DLQ topic refuses for its size
//! goes without its payload, with [`PAYLOAD_OMITTED`] saying how large it was
//! ([`without_payload`]).

use rdkafka::message::{Header, OwnedHeaders};

use crate::vitals::DecodeError;

pub(crate) const REASON: &str = "vitalwatch.error.reason";
pub(crate) const MESSAGE: &str = "vitalwatch.error.message";
pub(crate) const SOURCE_TOPIC: &str = "vitalwatch.source.topic";
pub(crate) const SOURCE_PARTITION: &str = "vitalwatch.source.partition";
pub(crate) const SOURCE_OFFSET: &str = "vitalwatch.source.offset";
pub(crate) const SOURCE_TIMESTAMP: &str = "vitalwatch.source.timestamp";
/// Set on a dead letter whose payload was too large for the DLQ topic: the payload's size
/// in bytes.
pub(crate) const PAYLOAD_OMITTED: &str = "vitalwatch.error.payload_omitted_bytes";

/// Where a message was read: the `vitalwatch.source.*` headers.
#[derive(Debug, Clone, Copy)]
pub(crate) struct From<'a> {
    pub(crate) topic: &'a str,
    pub(crate) partition: i32,
    pub(crate) offset: i64,
    /// The broker's timestamp of the message, when it had one ("" otherwise).
    pub(crate) timestamp: Option<i64>,
}

/// `headers` with the `vitalwatch.source.*` headers of `from` appended.
pub(crate) fn source_headers(headers: OwnedHeaders, from: From<'_>) -> OwnedHeaders {
    let partition = from.partition.to_string();
    let offset = from.offset.to_string();
    let timestamp = from.timestamp.map(|t| t.to_string()).unwrap_or_default();
    headers
        .insert(Header {
            key: SOURCE_TOPIC,
            value: Some(from.topic),
        })
        .insert(Header {
            key: SOURCE_PARTITION,
            value: Some(&partition),
        })
        .insert(Header {
            key: SOURCE_OFFSET,
            value: Some(&offset),
        })
        .insert(Header {
            key: SOURCE_TIMESTAMP,
            value: Some(&timestamp),
        })
}

/// The headers of the dead letter of the message at `from`, refused for `error`.
pub(crate) fn headers(from: From<'_>, error: &DecodeError) -> OwnedHeaders {
    refused(from, error.reason(), &error.to_string())
}

/// The headers of the dead letter of the message at `from`, refused with reason code
/// `reason` and `message` (which never quotes the record).
pub(crate) fn refused(from: From<'_>, reason: &str, message: &str) -> OwnedHeaders {
    let headers = OwnedHeaders::new_with_capacity(6)
        .insert(Header {
            key: REASON,
            value: Some(reason),
        })
        .insert(Header {
            key: MESSAGE,
            value: Some(message),
        });
    source_headers(headers, from)
}

/// A dead letter's headers for sending it without its payload of `payload_len` bytes.
pub(crate) fn without_payload(headers: Option<OwnedHeaders>, payload_len: usize) -> OwnedHeaders {
    let size = payload_len.to_string();
    headers.unwrap_or_default().insert(Header {
        key: PAYLOAD_OMITTED,
        value: Some(&size),
    })
}
