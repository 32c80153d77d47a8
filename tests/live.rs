//! `apitap run` on a live interface: each test builds its own two hosts (network
//! namespaces joined by a veth pair), runs nginx in one and curl/ab/python clients in the
//! other, and captures on the client's veth end. Traffic never leaves those namespaces.
//!
//! Needs root and iproute2 (scripts/test.sh runs as root in CI). Without root the tests
//! fail unless `APITAP_SKIP_LIVE_TESTS=1` says to skip them.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;
use common::kafka::{consume, topics};
use common::nginx::{logged, mismatches};
use common::*;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

fn sh(cmd: &[&str]) -> Output {
    let out = Command::new(cmd[0])
        .args(&cmd[1..])
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// False (after saying so) when the tests cannot run here and were told to skip.
fn can_run() -> bool {
    let root = std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"));
    if root {
        return true;
    }
    assert!(
        std::env::var("APITAP_SKIP_LIVE_TESTS").is_ok_and(|v| v == "1"),
        "live capture tests need root (network namespaces); set APITAP_SKIP_LIVE_TESTS=1 to skip"
    );
    eprintln!("skipped: not root and APITAP_SKIP_LIVE_TESTS=1");
    false
}

/// Two network namespaces joined by a veth pair: `srv` (10.213.N.1) and `cli`
/// (10.213.N.2), whose veth end is `iface`. Deleted on drop (which also kills what runs
/// inside them and removes the veth pair).
struct Lab {
    srv: String,
    cli: String,
    iface: String,
    srv_ip: String,
    dir: PathBuf,
    nginx: Option<Child>,
    access_log: PathBuf,
}

impl Lab {
    fn new(tag: &str) -> Lab {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let id = format!("{}{}", std::process::id() % 100_000, n);
        let srv = format!("ats{id}");
        let cli = format!("atc{id}");
        let iface = format!("atc{id}");
        let peer = format!("ats{id}");
        let net = 1 + (std::process::id() % 200 + n) % 250;
        let srv_ip = format!("10.213.{net}.1");
        let cli_ip = format!("10.213.{net}.2");
        sh(&["ip", "netns", "add", &srv]);
        sh(&["ip", "netns", "add", &cli]);
        let lab = Lab {
            srv: srv.clone(),
            cli: cli.clone(),
            iface: iface.clone(),
            srv_ip: srv_ip.clone(),
            dir: scratch(tag),
            nginx: None,
            access_log: PathBuf::new(),
        };
        sh(&[
            "ip", "link", "add", &iface, "netns", &cli, "type", "veth", "peer", "name", &peer,
            "netns", &srv,
        ]);
        for (ns, dev, ip) in [(&srv, &peer, &srv_ip), (&cli, &iface, &cli_ip)] {
            sh(&[
                "ip",
                "-n",
                ns,
                "addr",
                "add",
                &format!("{ip}/24"),
                "dev",
                dev,
            ]);
            sh(&["ip", "-n", ns, "link", "set", dev, "up"]);
            sh(&["ip", "-n", ns, "link", "set", "lo", "up"]);
        }
        lab
    }

    /// Starts nginx in the server namespace (the fixtures' config, on the lab address).
    fn start_nginx(&mut self) {
        let prefix = self.dir.join("nginx");
        let www = prefix.join("www");
        std::fs::create_dir_all(&www).unwrap();
        std::fs::write(www.join("index.html"), "<html><body>hello</body></html>\n").unwrap();
        std::fs::write(www.join("notes.txt"), "line of text\n".repeat(400)).unwrap();
        std::fs::write(www.join("blob.bin"), vec![7u8; 60_000]).unwrap();
        for d in [&self.dir, &prefix, &www] {
            sh(&["chmod", "755", d.to_str().unwrap()]);
        }
        self.access_log = self.dir.join("access.log");
        let conf = std::fs::read_to_string(root().join("fixtures/nginx/nginx.conf"))
            .unwrap()
            .replace("@PREFIX@", prefix.to_str().unwrap())
            .replace("@LOG@", self.access_log.to_str().unwrap())
            .replace("listen [::1]:8080;", "")
            .replace("127.0.0.1", &self.srv_ip);
        let conf_path = prefix.join("nginx.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", &self.srv, "nginx", "-p"])
            .arg(&prefix)
            .arg("-c")
            .arg(&conf_path)
            .stderr(Stdio::null())
            .spawn()
            .expect("start nginx");
        self.nginx = Some(child);
        let url = format!("http://{}:8080/index.html", self.srv_ip);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self
            .cli_cmd(&["curl", "-s", "-o", "/dev/null", "--max-time", "1", &url])
            .status
            .success()
        {
            assert!(Instant::now() < deadline, "nginx did not come up");
            std::thread::sleep(Duration::from_millis(100));
        }
        // Start from an empty log: the readiness probes are not part of any test.
        std::fs::write(&self.access_log, "").unwrap();
    }

    /// Runs a command in the client namespace.
    fn cli_cmd(&self, cmd: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.cli])
            .args(cmd)
            .output()
            .unwrap()
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}:8080{path}", self.srv_ip)
    }

    /// GETs `path` from nginx with curl in the client namespace; it must succeed.
    fn request(&self, path: &str) {
        assert!(self
            .cli_cmd(&["curl", "-s", "-o", "/dev/null", &self.url(path)])
            .status
            .success());
    }

    /// GETs `path` of the sensor's metrics address: (HTTP status, body).
    fn sensor_http(&self, addr: &str, path: &str) -> (String, String) {
        let out = self.cli_cmd(&[
            "curl",
            "-s",
            "-w",
            "\n%{http_code}",
            &format!("http://{addr}{path}"),
        ]);
        let text = String::from_utf8(out.stdout).unwrap();
        let (body, code) = text.rsplit_once('\n').unwrap();
        (code.to_string(), body.to_string())
    }

    /// Starts `apitap run` in the client namespace on the veth; returns once the capture
    /// is open (the log says so).
    fn start_apitap(&self, extra: &[&str]) -> Sensor {
        let out = self.dir.join(format!("events-{}.jsonl", extra.len()));
        let log = self.dir.join(format!("apitap-{}.log", extra.len()));
        let stats = self.dir.join(format!("stats-{}.json", extra.len()));
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.cli,
                env!("CARGO_BIN_EXE_apitap"),
                "run",
            ])
            .args(["-i", &self.iface])
            .args(if extra.contains(&"--bpf") {
                &[][..]
            } else {
                &["--bpf", "tcp port 8080"][..]
            })
            .args(if extra.contains(&"--metrics-addr") {
                &[][..]
            } else {
                &["--metrics-addr", ""][..]
            })
            .arg("-o")
            .arg(&out)
            .arg("--stats-json")
            .arg(&stats)
            .args(extra)
            .env("APITAP_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let sensor = Sensor {
            child: Some(child),
            out,
            log,
            stats,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !sensor.log_text().contains("capture open") {
            assert!(
                Instant::now() < deadline,
                "apitap did not start:\n{}",
                sensor.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        sensor
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some(mut n) = self.nginx.take() {
            let _ = n.kill();
            let _ = n.wait();
        }
        // nginx workers are children of the master; kill whatever is left in the netns.
        for ns in [&self.srv, &self.cli] {
            if let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() {
                for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    let _ = Command::new("kill").args(["-9", pid]).status();
                }
            }
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// A running `apitap run`.
struct Sensor {
    child: Option<Child>,
    out: PathBuf,
    log: PathBuf,
    stats: PathBuf,
}

impl Sensor {
    fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, wait; returns the events and the final summary.
    fn stop(mut self) -> (Vec<Value>, Value) {
        let mut child = self.child.take().unwrap();
        sh(&["kill", "-TERM", &child.id().to_string()]);
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            assert!(Instant::now() < deadline, "apitap did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(
            status.success(),
            "apitap exited with {status}:\n{}",
            self.log_text()
        );
        let events = parse_lines(&std::fs::read(&self.out).unwrap());
        let stats: Value =
            serde_json::from_str(&std::fs::read_to_string(&self.stats).unwrap()).unwrap();
        (events, stats)
    }
}

impl Drop for Sensor {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The traffic of the live tests: keep-alive GETs, methods with bodies, HEAD, redirects,
/// errors, compressed and large responses, and ab load. (Not /upload: nginx proxies it to
/// itself over the server's loopback, which the veth never sees.)
fn client_traffic(lab: &Lab) {
    let u = |p: &str| lab.url(p);
    let curl = |args: &[&str]| {
        let mut cmd = vec!["curl", "-s", "-o", "/dev/null"];
        cmd.extend_from_slice(args);
        let out = lab.cli_cmd(&cmd);
        assert!(out.status.success(), "curl {args:?} failed");
    };
    curl(&[&u("/index.html"), &u("/api/users"), &u("/missing.html")]);
    curl(&[
        "-X",
        "POST",
        "-H",
        "Content-Type: application/json",
        "--data",
        r#"{"name":"widget"}"#,
        &u("/api/items"),
    ]);
    curl(&["-X", "PUT", "--data", "x=1", &u("/api/users/42")]);
    curl(&["-X", "DELETE", &u("/api/users/42")]);
    curl(&["--compressed", &u("/notes.txt"), &u("/blob.bin")]);
    curl(&["-I", &u("/index.html")]);
    curl(&[
        &u("/api/empty"),
        &u("/old"),
        &u("/api/users?page=2&limit=10"),
    ]);
    curl(&[
        "-X",
        "POST",
        "--data-binary",
        &"y".repeat(20_000),
        &u("/api/items"),
    ]);
    let ab = lab.cli_cmd(&["ab", "-q", "-k", "-n", "300", "-c", "4", &u("/api/users/7")]);
    assert!(ab.status.success(), "ab failed");
}

/// Waits until nginx has logged `n` requests (it logs when a request completes).
fn wait_for_log(lab: &Lab, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let have = std::fs::read_to_string(&lab.access_log)
            .unwrap_or_default()
            .lines()
            .count();
        if have >= n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "nginx logged {have} of {n} requests"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn responses(events: &[Value]) -> Vec<Value> {
    events
        .iter()
        .filter(|e| !field(e, "http.response.status_code").is_null())
        .cloned()
        .collect()
}

/// Every request nginx logged is one event, with one and two workers, and with two capture
/// readers in a kernel fanout group: under ab load (many keep-alive and one-shot
/// connections at once) nothing is dropped, nothing is seen twice, and both readers read a
/// share of the packets.
#[test]
fn every_request_nginx_logged_is_an_event_on_one_and_two_workers_and_readers() {
    if !can_run() {
        return;
    }
    let mut lab = Lab::new("live-nginx");
    lab.start_nginx();
    for (workers, readers) in [("1", "1"), ("2", "1"), ("2", "2")] {
        std::fs::write(&lab.access_log, "").unwrap();
        let sensor = lab.start_apitap(&[
            "--workers",
            workers,
            "--reader-threads",
            readers,
            "--user",
            "nobody",
        ]);
        client_traffic(&lab);
        let u = lab.url("/api/users/7");
        for args in [
            &["ab", "-q", "-k", "-n", "4000", "-c", "16", &u][..],
            &["ab", "-q", "-n", "1000", "-c", "8", &u][..],
        ] {
            assert!(lab.cli_cmd(args).status.success(), "{args:?} failed");
        }
        let logged_now = std::fs::read_to_string(&lab.access_log)
            .unwrap()
            .lines()
            .count();
        wait_for_log(&lab, logged_now);
        let (events, stats) = sensor.stop();
        let lines = logged(&lab.access_log);
        assert!(lines.len() >= 5300, "nginx logged only {}", lines.len());
        let answered = responses(&events);
        let problems = mismatches(&lines, &answered);
        assert!(
            problems.is_empty(),
            "{workers} worker(s), {readers} reader(s):\n{}",
            problems.join("\n")
        );
        assert_eq!(answered.len(), events.len(), "events without a response");
        assert_eq!(
            field(&stats, "capture.interfaces").as_array().unwrap()[0]["kernel_dropped"],
            0
        );
        assert_eq!(field(&stats, "capture.queue_dropped_packets"), 0);
        // A clean veth retransmits nothing: a packet that two readers both handed on would
        // show up here.
        assert_eq!(field(&stats, "reassembly.retransmitted_segments"), 0);
        let per_reader: Vec<u64> = field(&stats, "capture.reader_packets")
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n.as_u64().unwrap())
            .collect();
        assert_eq!(per_reader.len(), readers.parse::<usize>().unwrap());
        assert!(
            per_reader.iter().all(|&n| n > 0),
            "a reader read nothing: {per_reader:?}"
        );
        assert_eq!(
            per_reader.iter().sum::<u64>(),
            field(&stats, "input.packets").as_u64().unwrap()
        );
        assert_eq!(
            field(&stats, "transactions.total").as_u64(),
            Some(events.len() as u64)
        );
    }
}

/// Kafka from a live capture: the broker runs inside the client namespace (its loopback),
/// the sensor there sends what it captured on the veth; a real consumer reads it back.
#[test]
fn live_events_reach_kafka() {
    if !can_run() {
        return;
    }
    let mut lab = Lab::new("live-kafka");
    lab.start_nginx();
    let external = std::env::var("APITAP_TEST_KAFKA").unwrap_or_default();
    let (brokers, broker) = if external.is_empty() {
        // A tansu broker on the client namespace's loopback.
        let tansu = PathBuf::from(std::env::var("APITAP_TANSU_BIN").expect(
            "APITAP_TANSU_BIN is not set: run scripts/test.sh, or export it to the path printed by scripts/kafka-broker.sh",
        ));
        let url = "tcp://127.0.0.1:19092";
        let child = Command::new("ip")
            .args(["netns", "exec", &lab.cli])
            .arg(&tansu)
            .args([
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
            ])
            .current_dir(&lab.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        ("127.0.0.1:19092".to_string(), Some(KillOnDrop(child)))
    } else {
        (external, None)
    };
    let (events_topic, alerts_topic) = topics("live");
    let config = lab.dir.join("kafka.toml");
    if broker.is_some() {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !lab
            .cli_cmd(&[
                "python3",
                "-c",
                "import socket; socket.create_connection(('127.0.0.1', 19092))",
            ])
            .status
            .success()
        {
            assert!(
                Instant::now() < deadline,
                "tansu did not listen in the namespace"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    std::fs::write(
        &config,
        format!(
            "[kafka]\nbrokers = \"{brokers}\"\nevents_topic = \"{events_topic}\"\nalerts_topic = \"{alerts_topic}\"\n"
        ),
    )
    .unwrap();
    let sensor = lab.start_apitap(&[
        "--user",
        "nobody",
        "--config",
        config.to_str().unwrap(),
        "--metrics-addr",
        "127.0.0.1:19188",
    ]);
    for p in ["/api/users", "/api/users/1", "/index.html", "/missing"] {
        assert!(lab
            .cli_cmd(&["curl", "-s", "-o", "/dev/null", &lab.url(p)])
            .status
            .success());
    }
    wait_for_log(&lab, 4);
    // Every metric and label the Grafana dashboard queries is one this daemon serves. The
    // counters are published about once a second; nginx's version banner makes an alert, so
    // the per-rule family has a sample too.
    let deadline = Instant::now() + Duration::from_secs(10);
    let metrics = loop {
        let (code, body) = lab.sensor_http("127.0.0.1:19188", "/metrics");
        assert_eq!(code, "200");
        if body.contains("apitap_transactions_total 4") && body.contains("{rule=\"") {
            break body;
        }
        assert!(Instant::now() < deadline, "metrics incomplete:\n{body}");
        std::thread::sleep(Duration::from_millis(200));
    };
    let (names, labels) = dashboard_queries();
    for name in &names {
        assert!(
            metrics.contains(&format!("# TYPE {name} ")),
            "the dashboard queries {name}, which /metrics does not serve"
        );
    }
    for label in &labels {
        assert!(
            metrics.contains(&format!("{{{label}=\"")),
            "the dashboard groups by {label}, which no metric carries"
        );
    }
    let (events, _) = sensor.stop();
    assert_eq!(events.len(), 4, "stdout/file output alongside Kafka");
    // Read back inside the namespace when the broker lives there.
    let records = if broker.is_some() {
        let reader = lab.dir.join("reader-out.json");
        read_in_netns(&lab, &brokers, &events_topic, 4, &reader)
    } else {
        consume(&brokers, &events_topic, 4, Duration::from_secs(20))
            .into_iter()
            .map(|r| r.payload)
            .collect()
    };
    let mut got: Vec<Value> = records
        .iter()
        .map(|p| serde_json::from_str(p).unwrap())
        .collect();
    let mut want = events.clone();
    let id = |e: &Value| field(e, "event.id").as_str().unwrap_or("").to_string();
    got.sort_by_key(id);
    want.sort_by_key(id);
    assert_eq!(
        got, want,
        "Kafka carries exactly the events of the file output"
    );
    drop(broker);
}

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Consumes inside the client namespace by re-running this test binary's consumer in it.
fn read_in_netns(lab: &Lab, brokers: &str, topic: &str, want: usize, out: &Path) -> Vec<String> {
    let status = Command::new("ip")
        .args(["netns", "exec", &lab.cli])
        .arg(std::env::current_exe().unwrap())
        .args(["--exact", "consume_helper", "--nocapture", "--ignored"])
        .env("APITAP_CONSUME_BROKERS", brokers)
        .env("APITAP_CONSUME_TOPIC", topic)
        .env("APITAP_CONSUME_WANT", want.to_string())
        .env("APITAP_CONSUME_OUT", out)
        .status()
        .unwrap();
    assert!(status.success(), "consumer in the namespace failed");
    std::fs::read_to_string(out)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

/// Not a test on its own: the consumer `read_in_netns` runs inside a namespace.
#[test]
#[ignore = "helper run by live_events_reach_kafka inside a network namespace"]
fn consume_helper() {
    let var = |k: &str| std::env::var(k).unwrap();
    let records = consume(
        &var("APITAP_CONSUME_BROKERS"),
        &var("APITAP_CONSUME_TOPIC"),
        var("APITAP_CONSUME_WANT").parse().unwrap(),
        Duration::from_secs(20),
    );
    let text: String = records.iter().map(|r| format!("{}\n", r.payload)).collect();
    std::fs::write(var("APITAP_CONSUME_OUT"), text).unwrap();
}

/// `/proc/PID/status` fields of every thread of `pid`.
fn thread_status(pid: u32) -> Vec<String> {
    let mut out = Vec::new();
    for t in std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
    {
        out.push(std::fs::read_to_string(t.path().join("status")).unwrap());
    }
    out
}

fn status_field<'a>(status: &'a str, name: &str) -> &'a str {
    status
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .unwrap_or_else(|| panic!("{name} missing"))
        .trim()
}

#[test]
fn after_start_up_every_thread_runs_as_the_user_with_no_capabilities() {
    if !can_run() {
        return;
    }
    let lab = Lab::new("live-privs");
    let sensor = lab.start_apitap(&["--user", "nobody", "--workers", "2"]);
    let threads = thread_status(sensor.pid());
    // main, 2 workers, sink, telemetry (+ librdkafka's none: no Kafka here)
    assert!(threads.len() >= 5, "{} threads", threads.len());
    let nobody = String::from_utf8(sh(&["id", "-u", "nobody"]).stdout).unwrap();
    let nobody = nobody.trim();
    for st in &threads {
        let uids: Vec<&str> = status_field(st, "Uid:").split_whitespace().collect();
        assert_eq!(uids, vec![nobody; 4], "real, effective, saved, fs uid");
        for cap in ["CapInh:", "CapPrm:", "CapEff:", "CapAmb:"] {
            assert_eq!(status_field(st, cap), "0000000000000000", "{cap}");
        }
        assert_eq!(status_field(st, "NoNewPrivs:"), "1");
        assert_eq!(
            status_field(st, "Groups:"),
            status_field(st, "Gid:").split_whitespace().next().unwrap()
        );
    }
    assert!(sensor.log_text().contains("capabilities=none"));
    let _ = sensor.stop();
}

#[test]
fn refuses_to_keep_running_as_root_without_a_user() {
    if !can_run() {
        return;
    }
    let lab = Lab::new("live-root");
    let out = lab.cli_cmd(&[
        env!("CARGO_BIN_EXE_apitap"),
        "run",
        "-i",
        &lab.iface,
        "--metrics-addr",
        "",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("refusing to keep running as root"), "{err}");
    // A bad interface or filter is a clear start-up error too.
    let out = lab.cli_cmd(&[
        env!("CARGO_BIN_EXE_apitap"),
        "run",
        "-i",
        "nosuchif0",
        "--user",
        "nobody",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nosuchif0"));
    let out = lab.cli_cmd(&[
        env!("CARGO_BIN_EXE_apitap"),
        "run",
        "-i",
        &lab.iface,
        "--user",
        "nobody",
        "--bpf",
        "tcp port",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad BPF filter"));
}

/// SIGTERM right after the last response arrived: every transaction complete on the wire
/// is an event, including those on a keep-alive connection still open, and a request
/// still waiting for its response is reported as incomplete rather than lost.
#[test]
fn sigterm_loses_no_transaction_that_was_complete_on_the_wire() {
    if !can_run() {
        return;
    }
    let mut lab = Lab::new("live-sigterm");
    lab.start_nginx();
    let sensor = lab.start_apitap(&["--user", "nobody"]);
    // A client that keeps its connection open after 20 request/response pairs, and a
    // second connection with one more, also left open.
    let script = format!(
        r#"
import http.client, socket, sys, time
c = http.client.HTTPConnection("{ip}", 8080)
for i in range(20):
    c.request("GET", f"/api/users/{{i}}")
    r = c.getresponse(); r.read()
s = socket.create_connection(("{ip}", 8080))
s.sendall(b"GET /index.html HTTP/1.1\r\nHost: x\r\n\r\n")
got = b""
while b"</html>" not in got:
    got += s.recv(65536)
print("done", flush=True)
time.sleep(30)
"#,
        ip = lab.srv_ip
    );
    let mut client = Command::new("ip")
        .args(["netns", "exec", &lab.cli, "python3", "-c", &script])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(client.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line.trim(), "done");
    // The last response has been read by the client: stop now, connections still open.
    let (events, stats) = sensor.stop();
    let _ = client.kill();
    let _ = client.wait();
    let answered = responses(&events);
    assert_eq!(answered.len(), 21, "{events:#?}");
    for e in &answered {
        assert_eq!(field(e, "apitap.complete"), true, "{e}");
    }
    assert_eq!(
        field(&stats, "flows.open_at_end").as_u64(),
        Some(2),
        "{stats}"
    );
}

/// SIGHUP re-reads the config: new redaction settings apply to later events without a
/// restart; a change that needs a restart is named in the log and not applied.
#[test]
fn sighup_reloads_redaction_and_names_what_needs_a_restart() {
    if !can_run() {
        return;
    }
    let mut lab = Lab::new("live-sighup");
    lab.start_nginx();
    let config = lab.dir.join("sensor.toml");
    std::fs::write(&config, "[output]\nredact_headers = [\"user-agent\"]\n").unwrap();
    let sensor = lab.start_apitap(&["--user", "nobody", "--config", config.to_str().unwrap()]);
    let get = |path: &str| {
        assert!(lab
            .cli_cmd(&[
                "curl",
                "-s",
                "-o",
                "/dev/null",
                "-A",
                "probe/1.0",
                &lab.url(path)
            ])
            .status
            .success())
    };
    get("/before");
    // The reload applies to what the workers take after it: wait until /before is out
    // (its packets may sit in the kernel's ring for a block timeout).
    let deadline = Instant::now() + Duration::from_secs(10);
    while !parse_lines(&std::fs::read(&sensor.out).unwrap_or_default())
        .iter()
        .any(|e| field(e, "url.path") == "/before")
    {
        assert!(Instant::now() < deadline, "/before never written");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::fs::write(
        &config,
        "[output]\nredact_headers = []\n[flow]\nmax_flows = 1000\n",
    )
    .unwrap();
    sh(&["kill", "-HUP", &sensor.pid().to_string()]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !sensor.log_text().contains("SIGHUP: config reloaded") {
        assert!(
            Instant::now() < deadline,
            "no reload:\n{}",
            sensor.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = sensor.log_text();
    assert!(log.contains("applied=[\"output\", \"analytics\"]"), "{log}");
    assert!(log.contains("needs_restart=[\"flow\"]"), "{log}");
    // Workers pick up the new encoder before their next batch.
    let ua = |e: &Value| field(e, "http.request.headers.user-agent").clone();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        get("/after");
        let events = parse_lines(&std::fs::read(&sensor.out).unwrap());
        if events
            .iter()
            .any(|e| field(e, "url.path") == "/after" && ua(e) == "probe/1.0")
        {
            break;
        }
        assert!(Instant::now() < deadline, "redaction never changed");
        std::thread::sleep(Duration::from_millis(200));
    }
    let (events, _) = sensor.stop();
    let before: Vec<&Value> = events
        .iter()
        .filter(|e| field(e, "url.path") == "/before")
        .collect();
    assert_eq!(before.len(), 1);
    assert_eq!(ua(before[0]), "[REDACTED]");
}

/// Every counter of `/metrics` (Prometheus text): `name{labels}` to value, counters only.
fn counters(text: &str) -> BTreeMap<String, f64> {
    let counter_families: BTreeSet<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.strip_suffix(" counter"))
        .collect();
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .filter(|(name, _)| counter_families.contains(name.split('{').next().unwrap_or("")))
        .filter_map(|(name, v)| Some((name.to_string(), v.parse().ok()?)))
        .collect()
}

/// A SIGHUP swaps in a new analytics engine and encoder: no counter of `/metrics` (which
/// renders the run summary) may go back, including the analytics' own, whose engine starts
/// over.
#[test]
fn sighup_never_turns_a_counter_back() {
    if !can_run() {
        return;
    }
    let mut lab = Lab::new("live-counters");
    lab.start_nginx();
    let config = lab.dir.join("sensor.toml");
    std::fs::write(&config, "[output]\nsensor_name = \"a\"\n").unwrap();
    let sensor = lab.start_apitap(&[
        "--user",
        "nobody",
        "--config",
        config.to_str().unwrap(),
        "--metrics-addr",
        "127.0.0.1:19188",
    ]);
    // Answered (baseline, inventory) and 404 (not stored, counted) transactions, and a
    // secret in a URL (an alert).
    for path in [
        "/api/users",
        "/no/such/page",
        "/api/users?api_key=abc",
        "/missing",
    ] {
        lab.request(path);
    }
    let scrape = || counters(&lab.sensor_http("127.0.0.1:19188", "/metrics").1);
    let deadline = Instant::now() + Duration::from_secs(10);
    let before = loop {
        let c = scrape();
        if c.get("apitap_analytics_transactions_total") == Some(&4.0) {
            break c;
        }
        assert!(Instant::now() < deadline, "analytics never saw 4: {c:?}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        before.get("apitap_analytics_endpoints_404_skipped_total") >= Some(&1.0),
        "{before:?}"
    );
    assert!(
        before.get("apitap_analytics_alerts_total") >= Some(&1.0),
        "{before:?}"
    );
    std::fs::write(
        &config,
        "[output]\nsensor_name = \"b\"\n[analytics]\nsuppression_window_s = 60\n",
    )
    .unwrap();
    sh(&["kill", "-HUP", &sensor.pid().to_string()]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !sensor.log_text().contains("SIGHUP: config reloaded") {
        assert!(
            Instant::now() < deadline,
            "no reload:\n{}",
            sensor.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The sink takes the new engine and publishes within a second.
    std::thread::sleep(Duration::from_millis(1500));
    let after = scrape();
    let backwards: Vec<String> = before
        .iter()
        .filter(|(name, v)| after.get(*name).is_none_or(|a| a < *v))
        .map(|(name, v)| format!("{name}: {v} -> {:?}", after.get(name)))
        .collect();
    assert!(backwards.is_empty(), "counters went back: {backwards:#?}");
    sensor.stop();
}

/// The daemon's observability: `/metrics` (Prometheus text) and `/health` on its metrics
/// address, JSON log lines with `--log-format json`, the periodic stats line, and
/// `apitap interfaces` listing the lab's interfaces.
#[test]
fn metrics_health_json_logs_and_interface_listing() {
    if !can_run() {
        return;
    }
    let mut lab = Lab::new("live-metrics");
    lab.start_nginx();
    let config = lab.dir.join("sensor.toml");
    std::fs::write(&config, "[daemon]\nstats_interval_s = 1\n").unwrap();
    let sensor = lab.start_apitap(&[
        "--user",
        "nobody",
        "--config",
        config.to_str().unwrap(),
        "--metrics-addr",
        "127.0.0.1:19187",
        "--log-format",
        "json",
    ]);
    for _ in 0..5 {
        lab.request("/api/users");
    }
    let get = |path: &str| lab.sensor_http("127.0.0.1:19187", path);
    // Counters are published about once a second: wait until the requests show.
    let metric = |text: &str, name: &str| -> Option<f64> {
        text.lines()
            .find(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    let metrics = loop {
        let (code, body) = get("/metrics");
        assert_eq!(code, "200");
        if metric(&body, "apitap_transactions_total") == Some(5.0) {
            break body;
        }
        assert!(
            Instant::now() < deadline,
            "metrics never showed 5 transactions:\n{body}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        metric(
            &metrics,
            &format!(
                "apitap_capture_packets_total{{interface=\"{}\"}}",
                lab.iface
            )
        )
        .is_some_and(|n| n > 20.0),
        "{metrics}"
    );
    assert_eq!(
        metric(
            &metrics,
            &format!(
                "apitap_capture_kernel_dropped_total{{interface=\"{}\"}}",
                lab.iface
            )
        ),
        Some(0.0)
    );
    assert_eq!(metric(&metrics, "apitap_flows_created_total"), Some(5.0));
    assert!(metrics.contains("# TYPE apitap_flows_active gauge"));
    let (code, health) = get("/health");
    assert_eq!(code, "200");
    let health: Value = serde_json::from_str(&health).unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["transactions"], 5);
    assert_eq!(get("/nope").0, "404");

    // The stats line comes every second.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !sensor.log_text().contains("stats: ") {
        assert!(
            Instant::now() < deadline,
            "no stats line:\n{}",
            sensor.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = sensor.log_text();
    let (events, _) = sensor.stop();
    assert_eq!(events.len(), 5);
    // Every log line is a JSON object with a level and a message.
    let lines: Vec<&str> = log.lines().take_while(|l| l.starts_with('{')).collect();
    assert!(lines.len() >= 3, "{log}");
    for l in lines {
        let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}"));
        assert!(
            v["level"].is_string() && v["fields"]["message"].is_string(),
            "{l}"
        );
    }

    let out = lab.cli_cmd(&[env!("CARGO_BIN_EXE_apitap"), "interfaces"]);
    assert!(out.status.success());
    let listing = String::from_utf8(out.stdout).unwrap();
    let names: Vec<&str> = listing
        .lines()
        .map(|l| l.split('\t').next().unwrap_or(""))
        .collect();
    assert!(names.contains(&lab.iface.as_str()), "{listing}");
    assert!(names.contains(&"lo"), "{listing}");
    let veth = listing
        .lines()
        .find(|l| l.starts_with(&format!("{}\t", lab.iface)))
        .unwrap();
    assert!(veth.contains("up") && veth.contains("10.213."), "{veth}");
}

/// Live decryption: an HTTPS server (Python's ssl) in one namespace, a client in the other
/// writing the key log as it talks, `apitap run --keylog` following that file after it gave
/// up root (the file is root's, mode 0600: read through the descriptor opened at start-up).
/// The keys reach the file after the handshake; the records wait for them and every
/// request is decrypted.
#[test]
fn live_decryption_follows_a_key_log_written_during_the_capture() {
    if !can_run() {
        return;
    }
    let lab = Lab::new("live-tls");
    let cert = lab.dir.join("cert.pem");
    let key = lab.dir.join("key.pem");
    let made = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .args([
            "-subj",
            "/CN=api.test",
            "-addext",
            "subjectAltName=DNS:api.test",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(made.success());
    let server = format!(
        r#"
import http.server, ssl
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        body = b'{{"ok":true}}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain("{cert}", "{key}")
s = http.server.HTTPServer(("{ip}", 8443), H)
s.socket = ctx.wrap_socket(s.socket, server_side=True)
s.serve_forever()
"#,
        cert = cert.display(),
        key = key.display(),
        ip = lab.srv_ip
    );
    let mut srv = Command::new("ip")
        .args(["netns", "exec", &lab.srv, "python3", "-c", &server])
        .spawn()
        .unwrap();
    let keylog = lab.dir.join("keys.log");
    std::fs::write(&keylog, "").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&keylog, std::fs::Permissions::from_mode(0o600)).unwrap();
    let sensor = lab.start_apitap(&[
        "--user",
        "nobody",
        "--bpf",
        "tcp port 8443",
        "--keylog",
        keylog.to_str().unwrap(),
    ]);
    // One connection: a request, a pause longer than the follower's poll, two more.
    let client = format!(
        r#"
import http.client, ssl, time
for _ in range(50):
    try:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.keylog_filename = "{keylog}"
        c = http.client.HTTPSConnection("{ip}", 8443, context=ctx)
        c.connect()
        break
    except OSError:
        time.sleep(0.1)
for i, pause in enumerate([1.5, 0, 0]):
    c.request("GET", f"/v1/items/{{i}}", headers={{"Host": "api.test"}})
    r = c.getresponse(); r.read()
    time.sleep(pause)
c.close()
print("done", flush=True)
"#,
        keylog = keylog.display(),
        ip = lab.srv_ip
    );
    let out = lab.cli_cmd(&["python3", "-c", &client]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "done",
        "{out:?}"
    );
    std::thread::sleep(Duration::from_millis(1500));
    let (events, stats) = sensor.stop();
    let _ = srv.kill();
    let _ = srv.wait();
    let http: Vec<&Value> = events
        .iter()
        .filter(|e| field(e, "network.protocol") == "http")
        .collect();
    assert_eq!(http.len(), 3, "{events:#?}");
    for (i, e) in http.iter().enumerate() {
        assert_eq!(field(e, "url.original"), format!("/v1/items/{i}").as_str());
        assert_eq!(field(e, "http.response.status_code"), 200);
        assert_eq!(field(e, "tls.version"), "1.3");
    }
    let conn = events
        .iter()
        .find(|e| field(e, "network.protocol") == "tls")
        .unwrap();
    assert_eq!(field(conn, "apitap.tls.decryption"), "decrypted");
    assert!(
        field(&stats, "tls.keylog.secrets").as_u64().unwrap_or(0) >= 4,
        "{stats}"
    );
}
