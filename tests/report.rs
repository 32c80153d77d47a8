//! `apitap report` in a real browser: headless Chromium loads the file (no network, no
//! external asset), runs its sorting script, and the rendered DOM holds the expected
//! alerts, inventory rows with their spec coverage, and charts; a screenshot is taken.
//! Bad input is a clear error (exit 2) that leaves no file behind.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn apitap(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_apitap"))
        .args(args)
        .output()
        .unwrap()
}

fn fixture(name: &str) -> String {
    root()
        .join("fixtures/analytics")
        .join(name)
        .display()
        .to_string()
}

/// Chromium, headless, with a private profile; `args` after the common ones.
fn chromium(profile: &Path, args: &[&str]) -> Output {
    let out = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .output()
        .expect("chromium (scripts/setup.sh installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The `data-value` numbers of one inventory column, in DOM order.
fn column(dom: &str, index: usize) -> Vec<u64> {
    let body = dom.split("id=\"inventory-table\"").nth(1).unwrap();
    let body = body.split("</table>").next().unwrap();
    body.split("<tr data-endpoint=")
        .skip(1)
        .map(|row| {
            let cell = row.split("data-value=\"").nth(index + 1).unwrap();
            cell.split('"').next().unwrap().parse().unwrap()
        })
        .collect()
}

#[test]
fn the_report_renders_in_a_browser() {
    let dir = scratch("report");
    let html = dir.join("report.html");
    let mut args: Vec<String> = vec![
        "report".into(),
        "-c".into(),
        fixture("sensor.toml"),
        "--spec".into(),
        fixture("openapi.yaml"),
        "-o".into(),
        html.display().to_string(),
    ];
    for name in [
        "bola",
        "auth-burst",
        "banner",
        "shadow",
        "deprecated",
        "latency-spike",
    ] {
        args.push(fixture(&format!("{name}.pcap")));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = apitap(&args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = std::fs::read_to_string(&html).unwrap();
    // Self-contained: nothing is fetched.
    for external in ["src=", "href=", "<link", "@import", "url("] {
        assert!(!text.contains(external), "{external} in the report");
    }

    let profile = dir.join("profile");
    let url = format!("file://{}#sort=requests-desc", html.display());
    let dom = String::from_utf8(chromium(&profile, &["--dump-dom", &url]).stdout).unwrap();
    // The script ran and sorted the inventory by requests, busiest first.
    assert!(
        dom.contains("data-sorted=\"requests-desc\""),
        "sorting script did not run"
    );
    let requests = column(&dom, 0);
    assert!(requests.len() >= 10, "{requests:?}");
    assert!(requests.windows(2).all(|w| w[0] >= w[1]), "{requests:?}");
    // Sorted the other way round by client count.
    let url = format!("file://{}#sort=clients", html.display());
    let dom_asc = String::from_utf8(chromium(&profile, &["--dump-dom", &url]).stdout).unwrap();
    let clients = column(&dom_asc, 3);
    assert!(clients.windows(2).all(|w| w[0] <= w[1]), "{clients:?}");

    // Alerts of every fixture, with their evidence events.
    for rule in [
        "APITAP-BOLA-001",
        "APITAP-AUTH-002",
        "APITAP-BANNER-001",
        "APITAP-SHADOW-001",
        "APITAP-ZOMBIE-001",
        "APITAP-LATENCY-001",
    ] {
        assert!(
            dom.contains(&format!("data-rule=\"{rule}\"")),
            "{rule} missing"
        );
    }
    let bola = dom.split("data-rule=\"APITAP-BOLA-001\"").nth(1).unwrap();
    let bola = bola.split("</details>").next().unwrap();
    assert_eq!(bola.matches("<tr><td><code>F").count(), 20, "evidence rows");
    assert!(bola.contains("/api/users/"), "evidence requests");
    // Inventory rows with their coverage: observed, shadow, zombie, and documented
    // operations never seen.
    let row = |endpoint: &str| -> String {
        let start = dom
            .find(&format!("<tr data-endpoint=\"{endpoint}\""))
            .unwrap_or_else(|| panic!("no row {endpoint}"));
        dom[start..].split("</tr>").next().unwrap().to_string()
    };
    assert!(row("GET /api/users/{id}").contains("cov observed"));
    assert!(row("GET /internal/debug").contains("cov shadow"));
    assert!(row("GET /api/legacy/report").contains("cov zombie"));
    assert!(
        dom.contains("cov documented"),
        "documented operations not seen"
    );
    // A chart per busy endpoint: requests, errors, latency.
    let charts = dom.matches("<figure class=\"chart\"").count();
    assert!(charts >= 5, "{charts} charts");
    assert!(dom.contains("<svg class=\"latency\""));
    assert!(dom.contains("<rect"));

    // A screenshot, as a reader would see it.
    let png = dir.join("report.png");
    let shot = format!("--screenshot={}", png.display());
    chromium(
        &profile,
        &[&shot, "--window-size=1200,1600", "--hide-scrollbars", &url],
    );
    let bytes = std::fs::read(&png).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    assert!(bytes.len() > 20_000, "{} bytes", bytes.len());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_input_is_an_error_and_leaves_no_file() {
    let dir = scratch("report-bad");
    let html = dir.join("report.html");
    let missing = dir.join("missing.pcap");
    let o = apitap(&[
        "report",
        "-o",
        html.to_str().unwrap(),
        missing.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("missing.pcap"));
    assert!(!html.exists());
    // A directory that does not exist as the target.
    let nowhere: PathBuf = dir.join("no/such/dir/report.html");
    let o = apitap(&[
        "report",
        "-o",
        nowhere.to_str().unwrap(),
        &fixture("bola.pcap"),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("cannot write"));
    // Not a capture.
    let o = apitap(&[
        "report",
        "-o",
        html.to_str().unwrap(),
        &fixture("openapi.yaml"),
    ]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(!html.exists(), "a failed report left a file");
    // The target is one of the inputs: refused, the input untouched.
    let input = dir.join("in.pcap");
    std::fs::copy(fixture("bola.pcap"), &input).unwrap();
    let before = std::fs::read(&input).unwrap();
    let o = apitap(&[
        "report",
        "-o",
        input.to_str().unwrap(),
        input.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(std::fs::read(&input).unwrap(), before);
    // Captures and HAR files together are refused (two engines would halve the traffic).
    let har = dir.join("x.har");
    std::fs::write(&har, r#"{"log":{"entries":[]}}"#).unwrap();
    let o = apitap(&[
        "report",
        "-o",
        html.to_str().unwrap(),
        input.to_str().unwrap(),
        har.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not both"));
    assert!(!html.exists());
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(".apitap-report-")
        })
        .collect();
    assert!(leftovers.is_empty(), "staged files left behind");
    let _ = std::fs::remove_dir_all(&dir);
}
