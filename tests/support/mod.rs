//! What the test binaries share: the broker side ([`kafka`]), the pipeline on the mock
//! cluster ([`cluster`]), traffic with one malformed message per dead-letter reason
//! ([`traffic`]), the binary as a process ([`process`]), its HTTP listener and
//! Prometheus scrape ([`http`]), and waiting on conditions ([`wait`]).
//!
//! Each test binary includes this module (`mod support;`, or `#[path]` from a
//! subdirectory) and uses the part it needs; what one binary leaves unused is not dead.
#![allow(dead_code)]

pub mod cluster;
pub mod http;
pub mod kafka;
pub mod process;
pub mod traffic;
pub mod wait;
