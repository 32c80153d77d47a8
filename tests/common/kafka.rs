//! A real Kafka-protocol broker for tests: tansu from `APITAP_TANSU_BIN` on a loopback
//! port, or the cluster named by `APITAP_TEST_KAFKA=host:port`; and a real consumer.

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// A tansu broker on a loopback port, stopped on drop.
pub struct Broker {
    child: Child,
    /// host:port
    pub addr: String,
}

pub fn tansu_bin() -> PathBuf {
    PathBuf::from(std::env::var("APITAP_TANSU_BIN").expect(
        "APITAP_TANSU_BIN is not set: run scripts/test.sh, or export it to the path printed by scripts/kafka-broker.sh",
    ))
}

impl Broker {
    pub fn start_on(port: u16) -> Broker {
        let addr = format!("127.0.0.1:{port}");
        let url = format!("tcp://{addr}");
        let child = Command::new(tansu_bin())
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start tansu");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(&addr).is_err() {
            assert!(Instant::now() < deadline, "tansu did not listen on {addr}");
            std::thread::sleep(Duration::from_millis(20));
        }
        Broker { child, addr }
    }

    pub fn start() -> Broker {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        Broker::start_on(port)
    }

    /// Freezes (SIGSTOP) or thaws (SIGCONT) the broker: an outage that keeps its data.
    pub fn freeze(&self, frozen: bool) {
        let signal = if frozen { "-STOP" } else { "-CONT" };
        let status = Command::new("kill")
            .arg(signal)
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    pub fn port(&self) -> u16 {
        self.addr.rsplit(':').next().unwrap().parse().unwrap()
    }

    pub fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The cluster for round-trip tests: `APITAP_TEST_KAFKA`, else a fresh tansu.
pub fn cluster() -> (String, Option<Broker>) {
    match std::env::var("APITAP_TEST_KAFKA") {
        Ok(addr) if !addr.is_empty() => (addr, None),
        _ => {
            let b = Broker::start();
            (b.addr.clone(), Some(b))
        }
    }
}

/// Topic names unique to this test run (so an external cluster is safe to reuse).
pub fn topics(tag: &str) -> (String, String) {
    static N: AtomicU32 = AtomicU32::new(0);
    let id = format!(
        "{}-{}-{}",
        std::process::id(),
        tag,
        N.fetch_add(1, Ordering::Relaxed)
    );
    (
        format!("apitap-test-{id}.events"),
        format!("apitap-test-{id}.alerts"),
    )
}

pub struct Record {
    pub partition: i32,
    pub key: String,
    pub payload: String,
    pub headers: BTreeMap<String, String>,
}

/// Reads `topic` from the beginning of every partition until `want` records arrived or
/// `wait` passed.
pub fn consume(brokers: &str, topic: &str, want: usize, wait: Duration) -> Vec<Record> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "apitap-test-reader")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let deadline = Instant::now() + wait;
    let partitions = loop {
        let md = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(5))
            .unwrap();
        let n = md
            .topics()
            .first()
            .map(|t| t.partitions().len())
            .unwrap_or(0);
        if n > 0 {
            break n;
        }
        if want == 0 && Instant::now() >= deadline {
            return Vec::new();
        }
        if Instant::now() >= deadline {
            let all = consumer
                .fetch_metadata(None, Duration::from_secs(5))
                .unwrap();
            let names: Vec<String> = all
                .topics()
                .iter()
                .map(|t| format!("{}:{}", t.name(), t.partitions().len()))
                .collect();
            eprintln!("topics on {brokers}: {names:?}");
        }
        assert!(Instant::now() < deadline, "topic {topic} never appeared");
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions as i32 {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let mut out = Vec::new();
    while out.len() < want && Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            let mut headers = BTreeMap::new();
            if let Some(h) = m.headers() {
                for hd in h.iter() {
                    let v = hd
                        .value
                        .map(|v| String::from_utf8_lossy(v).to_string())
                        .unwrap_or_default();
                    headers.insert(hd.key.to_string(), v);
                }
            }
            out.push(Record {
                partition: m.partition(),
                key: String::from_utf8_lossy(m.key().unwrap_or(&[])).to_string(),
                payload: String::from_utf8_lossy(m.payload().unwrap_or(&[])).to_string(),
                headers,
            });
        }
    }
    // Anything beyond `want` would be a duplicate or a stray: give it a moment to show up.
    let extra_deadline = Instant::now() + Duration::from_millis(500);
    while Instant::now() < extra_deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            out.push(Record {
                partition: m.partition(),
                key: String::from_utf8_lossy(m.key().unwrap_or(&[])).to_string(),
                payload: String::from_utf8_lossy(m.payload().unwrap_or(&[])).to_string(),
                headers: BTreeMap::new(),
            });
        }
    }
    out
}

/// Creates `topic` with `partitions` partitions (a group test needs more than the one a
/// broker gives a topic it creates on first use).
pub fn create_topic(brokers: &str, topic: &str, partitions: i32) {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let created = runtime
        .block_on(admin.create_topics(
            &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        ))
        .unwrap();
    for result in created {
        result.unwrap();
    }
}
