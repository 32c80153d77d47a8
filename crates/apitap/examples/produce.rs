//! Produces `KEY<TAB>VALUE` lines from stdin to a Kafka topic (scripts/bench-fleet.sh:
//! the test broker does not answer the librdkafka of Debian's kcat). Exits non-zero if
//! any message was not delivered.
//!
//!     cargo run --release --example produce -- BROKERS TOPIC < lines.tsv
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::ClientContext;
use std::io::BufRead;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Counts the deliveries that failed.
struct Failures(AtomicU64);

impl ClientContext for Failures {}

impl ProducerContext for Failures {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if result.is_err() {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, brokers, topic] = args.as_slice() else {
        return Err("usage: produce BROKERS TOPIC < KEY<TAB>VALUE lines".into());
    };
    let producer: BaseProducer<Failures> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "20")
        .set("compression.type", "lz4")
        .create_with_context(Failures(AtomicU64::new(0)))?;
    let mut sent = 0u64;
    for line in std::io::stdin().lock().lines() {
        let line = line?;
        let (key, value) = line.split_once('\t').unwrap_or(("", line.as_str()));
        loop {
            match producer.send(BaseRecord::to(topic).key(key).payload(value)) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    producer.poll(Duration::from_millis(50));
                }
                Err((e, _)) => return Err(e.into()),
            }
        }
        sent += 1;
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(60))?;
    let failed = producer.context().0.load(Ordering::Relaxed);
    if failed > 0 {
        return Err(format!("{failed} of {sent} messages not delivered to {topic}").into());
    }
    eprintln!("{sent} messages produced to {topic}");
    Ok(())
}
