//! End-to-end replay throughput: the whole pipeline (read, decode, shard, reassemble,
//! parse, encode, order, write) on a capture, 1 and 2 workers, output to /dev/null.
//!
//! `cargo bench --bench replay` uses the bundled nginx capture;
//! `APITAP_BENCH_PCAP=big.pcap cargo bench --bench replay` a capture of your own.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use apitap::{replay, Config, Output};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::path::PathBuf;

fn bench_replay(c: &mut Criterion) {
    let pcap = std::env::var_os("APITAP_BENCH_PCAP")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/nginx/nginx-mixed.pcap")
        });
    let size = std::fs::metadata(&pcap).unwrap().len();
    let mut g = c.benchmark_group("replay");
    g.throughput(Throughput::Bytes(size));
    g.sample_size(10);
    for workers in [1, 2] {
        let mut cfg = Config::default();
        cfg.pipeline.workers = workers;
        g.bench_function(format!("workers_{workers}"), |b| {
            b.iter(|| {
                replay(
                    std::slice::from_ref(&pcap),
                    Some(Output::File("/dev/null".into())),
                    &cfg,
                )
                .unwrap()
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench_replay);
criterion_main!(benches);
