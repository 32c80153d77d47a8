//! Produces `KEY<TAB>VALUE` lines from stdin to a Kafka topic (scripts/bench-fleet.sh:
//! the test broker does not answer the librdkafka of Debian's kcat).
//!
//!     cargo run --release --example produce -- BROKERS TOPIC < lines.tsv
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use std::io::BufRead;
use std::time::Duration;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, brokers, topic] = args.as_slice() else {
        return Err("usage: produce BROKERS TOPIC < KEY<TAB>VALUE lines".into());
    };
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "20")
        .set("compression.type", "lz4")
        .create()?;
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
    eprintln!("{sent} messages produced to {topic}");
    Ok(())
}
