//! The broker side of the tests, on any broker (the mock cluster or nisshi): topics
//! created and deleted through rdkafka's AdminClient, a topic read back, watermarks and
//! a group's committed offsets, a producer for hand-made input.
//!
//! Every helper takes the broker as a [`Client`]: bootstrap servers plus any librdkafka
//! properties the tests' own clients need to reach it (TLS, SASL: the security
//! scenario). A `&str` or `&String` of bootstrap servers converts into one.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{BaseProducer, BaseRecord, FutureProducer, FutureRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use vitalwatch::secret::ClientProps;

use super::wait::wait_for;

/// How the suite's own clients reach a broker.
#[derive(Clone, Debug, Default)]
pub struct Client {
    /// Bootstrap servers, host:port[,host:port...].
    pub brokers: String,
    /// Extra librdkafka properties for every client: `security.protocol`, `ssl.*`,
    /// `sasl.*`. Credentials print as `[redacted]`, as in vitalwatch's own settings.
    pub props: ClientProps,
}

impl Client {
    pub fn new(brokers: &str) -> Client {
        Client {
            brokers: brokers.to_owned(),
            props: ClientProps::default(),
        }
    }

    /// With one more librdkafka property.
    pub fn with(mut self, property: &str, value: &str) -> Client {
        self.props.insert(property, value);
        self
    }

    /// `bootstrap.servers` and the extra properties.
    pub fn config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.brokers);
        for (k, v) in self.props.expose() {
            config.set(k, v);
        }
        config
    }
}

impl From<&str> for Client {
    fn from(brokers: &str) -> Client {
        Client::new(brokers)
    }
}

impl From<&String> for Client {
    fn from(brokers: &String) -> Client {
        Client::new(brokers)
    }
}

impl From<&Client> for Client {
    fn from(client: &Client) -> Client {
        client.clone()
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn admin(client: &Client) -> AdminClient<DefaultClientContext> {
    client.config().create().expect("admin client")
}

/// Creates the topics and waits until the broker's metadata shows every partition.
pub fn create_topics(brokers: impl Into<Client>, topics: &[(&str, i32)]) {
    let client: Client = brokers.into();
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|&(name, partitions)| NewTopic::new(name, partitions, TopicReplication::Fixed(1)))
        .collect();
    let admin = admin(&client);
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = runtime()
        .block_on(admin.create_topics(&new, &opts))
        .expect("CreateTopics request");
    for r in results {
        if let Err((name, code)) = r {
            panic!("cannot create topic {name}: {code}");
        }
    }
    for &(name, partitions) in topics {
        wait_for(
            Duration::from_secs(30),
            &format!("topic {name} visible"),
            || {
                let n = partition_count(&client, name);
                if n == partitions as usize {
                    Ok(())
                } else {
                    Err(format!("{n} partitions"))
                }
            },
        );
    }
}

/// Deletes a topic and waits until the broker's metadata no longer lists it.
pub fn delete_topic(brokers: impl Into<Client>, name: &str) {
    let client: Client = brokers.into();
    let admin = admin(&client);
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = runtime()
        .block_on(admin.delete_topics(&[name], &opts))
        .expect("DeleteTopics request");
    for r in results {
        if let Err((name, code)) = r {
            panic!("cannot delete topic {name}: {code}");
        }
    }
    wait_for(
        Duration::from_secs(30),
        &format!("topic {name} gone"),
        || match partition_count(&client, name) {
            0 => Ok(()),
            n => Err(format!("still {n} partitions")),
        },
    );
}

/// A consumer that never joins a group: metadata, watermarks, assign-and-read.
pub fn reader(client: &Client) -> BaseConsumer {
    client
        .config()
        .set("group.id", "e2e-reader")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        // Never create a topic by asking about it (the sink-outage scenario deletes one).
        .set("allow.auto.create.topics", "false")
        .create()
        .expect("reader")
}

/// Partitions of `topic` in the broker's metadata; 0 when it does not exist.
pub fn partition_count(brokers: impl Into<Client>, topic: &str) -> usize {
    let md = match reader(&brokers.into()).fetch_metadata(Some(topic), Duration::from_secs(10)) {
        Ok(md) => md,
        Err(_) => return 0,
    };
    md.topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none())
        .map_or(0, |t| t.partitions().len())
}

/// Log end offset (high watermark) of every partition of `topic`.
pub fn end_offsets(brokers: impl Into<Client>, topic: &str) -> Vec<i64> {
    let client: Client = brokers.into();
    let consumer = reader(&client);
    let n = partition_count(&client, topic) as i32;
    (0..n)
        .map(|p| {
            consumer
                .fetch_watermarks(topic, p, Duration::from_secs(10))
                .unwrap_or_else(|e| panic!("watermarks of {topic}/{p}: {e}"))
                .1
        })
        .collect()
}

/// Committed offset of `group` per partition of `topic` (-1 when none).
pub fn committed(
    brokers: impl Into<Client>,
    group: &str,
    topic: &str,
    partitions: i32,
) -> Vec<i64> {
    let client: Client = brokers.into();
    let consumer: BaseConsumer = client
        .config()
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .expect("offset reader");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let c = consumer
        .committed_offsets(tpl, Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("committed offsets of {group}: {e}"));
    (0..partitions)
        .map(|p| {
            c.find_partition(topic, p)
                .and_then(|e| match e.offset() {
                    Offset::Offset(o) => Some(o),
                    _ => None,
                })
                .unwrap_or(-1)
        })
        .collect()
}

/// Members of a consumer group and the client ids they joined with.
pub fn group_members(brokers: impl Into<Client>, group: &str) -> Result<Vec<String>, String> {
    let list = reader(&brokers.into())
        .fetch_group_list(Some(group), Duration::from_secs(10))
        .map_err(|e| e.to_string())?;
    Ok(list
        .groups()
        .iter()
        .filter(|g| g.name() == group)
        .flat_map(|g| g.members().iter().map(|m| m.id().to_owned()))
        .collect())
}

/// One message as read back.
#[derive(Debug, Clone)]
pub struct Record {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
    pub timestamp: Option<i64>,
    pub headers: HashMap<String, String>,
}

impl Record {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }

    /// The payload's bytes; empty for a null payload.
    pub fn value(&self) -> &[u8] {
        self.payload.as_deref().unwrap_or_default()
    }

    fn of(m: &rdkafka::message::BorrowedMessage<'_>) -> Record {
        let mut headers = HashMap::new();
        if let Some(h) = m.headers() {
            for hd in h.iter() {
                headers.insert(
                    hd.key.to_owned(),
                    String::from_utf8_lossy(hd.value.unwrap_or_default()).into_owned(),
                );
            }
        }
        Record {
            partition: m.partition(),
            offset: m.offset(),
            key: m.key().map(<[u8]>::to_vec),
            payload: m.payload().map(<[u8]>::to_vec),
            timestamp: m.timestamp().to_millis(),
            headers,
        }
    }
}

/// Every message of `topic` from the beginning to the high watermarks as they are now.
pub fn read_all(brokers: impl Into<Client>, topic: &str) -> Vec<Record> {
    let client: Client = brokers.into();
    let ends = end_offsets(&client, topic);
    read_range(&client, topic, &vec![0; ends.len()], &ends)
}

/// The messages of `topic` with `from[p] <= offset < to[p]` on each partition `p`.
pub fn read_range(
    brokers: impl Into<Client>,
    topic: &str,
    from: &[i64],
    to: &[i64],
) -> Vec<Record> {
    let consumer = reader(&brokers.into());
    let mut tpl = TopicPartitionList::new();
    let mut left: BTreeMap<i32, i64> = BTreeMap::new();
    for (p, (&start, &end)) in from.iter().zip(to).enumerate() {
        if end > start {
            tpl.add_partition_offset(topic, p as i32, Offset::Offset(start))
                .expect("offset list");
            left.insert(p as i32, end);
        }
    }
    let mut out = Vec::new();
    if left.is_empty() {
        return out;
    }
    consumer.assign(&tpl).expect("assign");
    let deadline = Instant::now() + Duration::from_secs(180);
    while !left.is_empty() {
        assert!(
            Instant::now() < deadline,
            "reading {topic} back: partitions {left:?} not read to their end within 180 s"
        );
        let Some(polled) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let m = match polled {
            Ok(m) => m,
            // librdkafka reports a lost connection (all of them, even) as an error event
            // and reconnects by itself: the read goes on until the deadline. Anything
            // else about the topic is the test's failure.
            Err(KafkaError::MessageConsumption(
                code @ (RDKafkaErrorCode::AllBrokersDown
                | RDKafkaErrorCode::BrokerTransportFailure
                | RDKafkaErrorCode::BrokerNotAvailable),
            )) => {
                eprintln!("reading {topic}: {code:?}, reconnecting");
                continue;
            }
            Err(e) => panic!("reading {topic}: {e}"),
        };
        let p = m.partition();
        let Some(&end) = left.get(&p) else { continue };
        if m.offset() >= end {
            left.remove(&p);
            continue;
        }
        out.push(Record::of(&m));
        if m.offset() + 1 >= end {
            left.remove(&p);
        }
    }
    out
}

/// Every message of `topic` from the beginning, while it is still being written: until at
/// least `expect` messages were read and nothing more arrived for half a second, or
/// `timeout` passed.
pub fn read_until(
    brokers: impl Into<Client>,
    topic: &str,
    expect: usize,
    timeout: Duration,
) -> Vec<Record> {
    let client: Client = brokers.into();
    let consumer = reader(&client);
    let mut tpl = TopicPartitionList::new();
    for p in 0..partition_count(&client, topic) as i32 {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .expect("offset list");
    }
    consumer.assign(&tpl).expect("assign");
    let deadline = Instant::now() + timeout;
    let mut out = Vec::new();
    let mut last = Instant::now();
    while Instant::now() < deadline
        && (out.len() < expect || last.elapsed() < Duration::from_millis(500))
    {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(50)) {
            last = Instant::now();
            out.push(Record::of(&m));
        }
    }
    out
}

/// A producer that batches for 5 ms, for [`produce`].
pub fn producer(brokers: impl Into<Client>) -> FutureProducer {
    brokers
        .into()
        .config()
        .set("linger.ms", "5")
        .create()
        .expect("producer")
}

/// Produces `(key, payload)` pairs to `topic` with `producer`, keyed so that one
/// patient's messages share a partition; returns once all are acknowledged.
pub async fn produce(producer: &FutureProducer, topic: &str, messages: &[(String, Vec<u8>)]) {
    // In chunks below librdkafka's local queue limit (100 000 messages).
    for chunk in messages.chunks(50_000) {
        let mut pending = Vec::with_capacity(chunk.len());
        for (key, payload) in chunk {
            let record = FutureRecord::to(topic).key(key).payload(payload);
            pending.push(producer.send_result(record).expect("enqueue"));
        }
        for p in pending {
            p.await.expect("delivery future").expect("delivered");
        }
    }
    producer.flush(Duration::from_secs(10)).expect("flush");
}

/// A plain producer for hand-made input (the poison and security scenarios).
pub struct Feeder {
    producer: BaseProducer,
    topic: String,
}

impl Feeder {
    pub fn new(brokers: impl Into<Client>, topic: &str) -> Feeder {
        let client: Client = brokers.into();
        let producer = client
            .config()
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "5")
            .set("message.max.bytes", "2000000")
            // As a Java client partitions (vitalwatch's kafka.input_partitioner default).
            .set("partitioner", "murmur2_random")
            .create()
            .expect("producer");
        Feeder {
            producer,
            topic: topic.to_owned(),
        }
    }

    /// Sends one message to `partition`; delivery is checked by [`Feeder::finish`].
    pub fn send(&self, partition: i32, key: Option<&[u8]>, payload: Option<&[u8]>) {
        let mut record: BaseRecord<'_, [u8], [u8]> =
            BaseRecord::to(&self.topic).partition(partition);
        if let Some(k) = key {
            record = record.key(k);
        }
        if let Some(p) = payload {
            record = record.payload(p);
        }
        self.producer
            .send(record)
            .map_err(|(e, _)| e)
            .expect("enqueue");
        self.producer.poll(Duration::ZERO);
    }

    /// Sends one message keyed `key`, to the partition the producer's partitioner picks
    /// (Java's murmur2, as [`Feeder::new`] sets it).
    pub fn send_keyed(&self, key: &[u8], payload: &[u8]) {
        let record: BaseRecord<'_, [u8], [u8]> =
            BaseRecord::to(&self.topic).key(key).payload(payload);
        self.producer
            .send(record)
            .map_err(|(e, _)| e)
            .expect("enqueue");
        self.producer.poll(Duration::ZERO);
    }

    /// Waits until everything sent is acknowledged.
    pub fn finish(self) {
        self.producer
            .flush(Duration::from_secs(60))
            .expect("every hand-made message acknowledged");
    }
}
