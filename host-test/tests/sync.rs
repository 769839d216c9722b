//! `misp-enrich sync`: snapshots taken through the core's sync logic from the
//! in-process fake MISP and, through the binary, from the standalone fake on
//! 127.0.0.1; a failing MISP never touches the snapshot already in place.

mod common;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use common::*;
use misp_enrich::mapping::Enrichment;
use misp_enrich::snapshot::Snapshot;
use misp_enrich_host::fake::{Dataset, FakeMisp};
use misp_enrich_host::sync::FakeTransport;
use serde_json::{Value, json};

fn lookup(snapshot: &Snapshot, addr: &str) -> Option<Enrichment> {
    snapshot.lookup(addr.parse::<IpAddr>().unwrap())
}

fn hit(event: &str, info: &str, level: u8, org: &str, updated: i64, count: u64) -> Enrichment {
    Enrichment {
        event_id: event.into(),
        event_info: info.into(),
        threat_level_id: level,
        org: Some(org.into()),
        ioc_updated: Some(updated),
        attribute_count: Some(count),
    }
}

const FEED: &str = "OSINT - SSH brute-force sources (daily feed)";
const MIRAI: &str = "Mirai-variant scanners and C2 (honeypot correlation)";
const STAGING: &str = "Targeted intrusion set - staging servers";
const DRAFT: &str = "Draft: Telnet scanners seen this week (unpublished)";

/// What `fixtures/misp/demo.json` says each address should give; checked by
/// hand against the dataset (see `fixtures/README.md`).
fn assert_demo_lookups(snapshot: &Snapshot) {
    assert_eq!(
        lookup(snapshot, "218.92.0.112"),
        Some(hit("1342", FEED, 3, "CIRCL", 1651234567, 4))
    );
    // Listed by 1342 (Low), 2201 (Medium) and 3105 (High): High wins.
    assert_eq!(
        lookup(snapshot, "45.133.1.7"),
        Some(hit("3105", STAGING, 1, "CERT-Polska", 1689750000, 4))
    );
    // Composite attributes match on their address half.
    assert_eq!(
        lookup(snapshot, "185.220.101.34"),
        Some(hit("2201", MIRAI, 2, "abuse.ch", 1612345678, 5))
    );
    assert_eq!(
        lookup(snapshot, "141.98.11.60"),
        Some(hit("2201", MIRAI, 2, "abuse.ch", 1612345600, 5))
    );
    // Stored uncompressed in MISP, found by its canonical form.
    assert_eq!(
        lookup(snapshot, "2a01:4f8:c17:9b1::2"),
        Some(hit("3105", STAGING, 1, "CERT-Polska", 1689760000, 4))
    );
    // Unpublished events count: publication says nothing about the address.
    assert_eq!(
        lookup(snapshot, "80.94.95.81"),
        Some(hit("4001", DRAFT, 4, "Honeynet Ops", 1796000000, 2))
    );
    // Warninglisted, but warninglists are not enforced by default.
    assert_eq!(lookup(snapshot, "8.8.8.8").unwrap().event_id, "1342");
    // Only deleted attributes list these; 167.94.138.44 is in a text attribute.
    for miss in ["193.32.162.15", "5.188.206.14", "167.94.138.44", "194.26.29.120"] {
        assert_eq!(lookup(snapshot, miss), None, "{miss}");
    }
    assert_eq!(snapshot.len(), 10);
}

#[test]
fn sync_from_the_in_process_fake_keeps_what_each_address_would_get() {
    let fake = FakeMisp::new(dataset());
    let mut transport = FakeTransport::new(fake.clone());
    let (text, stats) =
        misp_enrich::sync::take_snapshot(&sync_settings(&fake), &mut transport, 1_764_547_200)
            .unwrap();

    let snapshot = Snapshot::parse(&text).unwrap();
    assert_eq!(snapshot.taken_at, 1_764_547_200);
    assert_eq!(snapshot.source, FAKE_URL);
    assert_demo_lookups(&snapshot);
    assert_eq!((stats.addresses, stats.events, stats.pages, stats.requests), (10, 4, 1, 2));

    // The same hygiene as the component's searches: raw key, JSON both
    // ways, no `last`, no `category`, nothing that hides live addresses.
    let requests = fake.requests();
    let paths: Vec<&str> = requests.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(paths, ["/attributes/restSearch", "/events/restSearch"]);
    for request in &requests {
        assert_eq!(request.method, "POST");
        assert_eq!(request.header("authorization"), Some(fake.dataset().api_key.as_str()));
        assert_eq!(request.header("accept"), Some("application/json"));
        assert_eq!(request.header("content-type"), Some("application/json"));
        let body = request.json().unwrap();
        for banned in ["last", "category", "published", "to_ids", "value"] {
            assert!(body.get(banned).is_none(), "{banned} sent: {request:?}");
        }
    }
    assert_eq!(requests[0].json().unwrap()["deleted"], 0);
    assert_eq!(requests[1].json().unwrap()["eventid"], json!(["1342", "2201", "3105", "4001"]));
}

#[test]
fn sync_through_the_binary_writes_the_snapshot_and_a_summary() {
    let fake = FakeProcess::serving(&fixture_path("misp/demo.json"));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("misp.snapshot");
    let output = misp_enrich_command(&["sync", "--misp-url", &fake.url, "-o"])
        .arg(&path)
        .env("MISP_API_KEY", dataset().api_key)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");

    let snapshot = Snapshot::parse(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_demo_lookups(&snapshot);
    assert_eq!(snapshot.source, fake.url);
    let summary = stderr.trim_end();
    let expected = format!(
        "misp-enrich: 10 addresses from 4 events written to {} (1 page, 2 requests, ",
        path.display()
    );
    assert!(summary.starts_with(&expected), "{summary}");
    assert!(summary.ends_with(" s)"), "{summary}");
    assert_eq!(stderr.lines().count(), 1, "one summary line:\n{stderr}");
    assert!(!stderr.contains(&dataset().api_key));
    let leftovers = std::fs::read_dir(dir.path()).unwrap().count();
    assert_eq!(leftovers, 1, "no temporary file is left behind");
}

#[test]
fn sync_over_https_trusts_the_private_ca_given_with_ca_file() {
    let cert = fixture_path("tls/server.pem");
    let key = fixture_path("tls/server.key");
    let fake = FakeProcess::serving_with(
        &fixture_path("misp/demo.json"),
        &["--tls-cert", cert.to_str().unwrap(), "--tls-key", key.to_str().unwrap()],
    );
    assert!(fake.url.starts_with("https://127.0.0.1:"), "{}", fake.url);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("misp.snapshot");
    let sync = |ca_file: Option<&str>| {
        let mut command = misp_enrich_command(&["sync", "--misp-url", &fake.url, "-o"]);
        command.arg(&path).env("MISP_API_KEY", dataset().api_key);
        if let Some(ca) = ca_file {
            command.args(["--ca-file", ca]);
        }
        command.output().unwrap()
    };

    let untrusted = sync(None);
    assert_eq!(untrusted.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&untrusted.stderr),
        format!(
            "misp-enrich: sync from {} failed: TLS failed; {} left as it was\n",
            fake.url,
            path.display()
        )
    );
    assert!(!path.exists());

    let ca = fixture_path("tls/ca.pem");
    let trusted = sync(Some(ca.to_str().unwrap()));
    assert!(trusted.status.success(), "{}", String::from_utf8_lossy(&trusted.stderr));
    let snapshot = Snapshot::parse(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_demo_lookups(&snapshot);
}

#[test]
fn verbose_sync_logs_each_request_but_never_the_key() {
    let fake = FakeProcess::serving(&fixture_path("misp/demo.json"));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("misp.snapshot");
    let output = misp_enrich_command(&["-vv", "sync", "--misp-url", &fake.url, "-o"])
        .arg(&path)
        .env("MISP_API_KEY", dataset().api_key)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let answered: Vec<&str> =
        stderr.lines().filter(|line| line.contains("sync request answered")).collect();
    assert_eq!(answered.len(), 2, "{stderr}");
    assert!(answered[0].contains("path=\"/attributes/restSearch\" status=200"), "{stderr}");
    assert!(!stderr.contains(&dataset().api_key), "the key leaked:\n{stderr}");
}

#[test]
fn sync_reads_the_key_file_and_the_shared_config() {
    let fake = FakeProcess::serving(&fixture_path("misp/demo.json"));
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key");
    std::fs::write(&key, format!("{}\n", dataset().api_key)).unwrap();
    let config = dir.path().join("config.json");
    let shared = json!({"misp_url": fake.url, "enforce_warninglist": true, "hit_tag": "known"});
    std::fs::write(&config, shared.to_string()).unwrap();
    let path = dir.path().join("misp.snapshot");
    let output = misp_enrich_command(&["sync", "--config"])
        .arg(&config)
        .arg("--api-key-file")
        .arg(&key)
        .arg("-o")
        .arg(&path)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let snapshot = Snapshot::parse(&std::fs::read_to_string(&path).unwrap()).unwrap();
    // enforce_warninglist applies to a sync: the resolver is gone.
    assert_eq!(lookup(&snapshot, "8.8.8.8"), None);
    assert_eq!(snapshot.len(), 9);
}

#[test]
fn refused_key_leaves_the_old_snapshot_byte_for_byte() {
    let fake = FakeProcess::serving(&fixture_path("misp/demo.json"));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("misp.snapshot");
    let old = fake_snapshot(&FakeMisp::new(dataset()));
    std::fs::write(&path, &old).unwrap();
    let wrong_key = "A".repeat(40);

    let output = misp_enrich_command(&["sync", "--misp-url", &fake.url, "-o"])
        .arg(&path)
        .env("MISP_API_KEY", &wrong_key)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&output.stderr),
        format!(
            "misp-enrich: sync from {} failed: MISP answered HTTP 403 (is the API key right, \
             and enabled?); {} left as it was\n",
            fake.url,
            path.display()
        )
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), old);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "no temporary file");
}

#[test]
fn unreachable_misp_fails_without_creating_a_snapshot() {
    // Bind and drop: the port is free and nothing listens on it.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("misp.snapshot");
    let url = format!("http://127.0.0.1:{port}");
    let output = misp_enrich_command(&["sync", "--misp-url", &url, "-o"])
        .arg(&path)
        .env("MISP_API_KEY", dataset().api_key)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&output.stderr),
        format!(
            "misp-enrich: sync from {url} failed: connection refused; {} left as it was\n",
            path.display()
        )
    );
    assert!(!path.exists());
}

#[test]
fn sync_without_a_key_is_a_configuration_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("misp.snapshot");
    let output = misp_enrich_command(&["sync", "--misp-url", "https://misp.example.org", "-o"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&output.stderr),
        "misp-enrich: no API key: set MISP_API_KEY or pass --api-key-file\n"
    );
}

#[test]
fn sync_refuses_a_module_config_with_the_core_message() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("misp-enrich.json");
    std::fs::write(&config, r#"{"misp_url":"https://misp.example.org","snapshot":"s"}"#).unwrap();
    let output = misp_enrich_command(&["sync", "--config"])
        .arg(&config)
        .args(["-o", "unused.snapshot"])
        .env("MISP_API_KEY", dataset().api_key)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&output.stderr),
        "misp-enrich: snapshot: only the Fluent Bit module reads a snapshot\n"
    );
}

/// A dataset of `events` events with `per_event` address attributes each,
/// every address distinct and globally routable: attribute `n` is
/// 45.0.0.0 + n, or 2a01:4f8:: + n for every tenth.
fn large_dataset(events: u64, per_event: u64) -> Dataset {
    let mut list = Vec::new();
    for e in 0..events {
        let attributes: Vec<Value> = (0..per_event)
            .map(|a| {
                let n = e * per_event + a;
                let value = if n % 10 == 9 {
                    Ipv6Addr::from(0x2a01_04f8_u128 << 96 | u128::from(n)).to_string()
                } else {
                    Ipv4Addr::from(0x2d00_0000 + n as u32).to_string()
                };
                json!({
                    "id": 1_000_000 + n, "uuid": format!("attr-{n}"), "type": "ip-src",
                    "category": "Network activity", "value": value,
                    "timestamp": 1_700_000_000 + n,
                })
            })
            .collect();
        list.push(json!({
            "id": 10_000 + e, "uuid": format!("event-{e}"), "info": format!("bulk feed {e}"),
            "date": "2025-01-01", "threat_level_id": 1 + e % 4, "published": true,
            "timestamp": 1_700_000_000, "publish_timestamp": 1_700_000_000,
            "orgc": {"id": 7, "name": "Bulk Feeds", "uuid": "org-7"}, "attributes": attributes,
        }));
    }
    let document = json!({"api_key": dataset().api_key, "events": list});
    Dataset::from_json(&document.to_string()).unwrap()
}

#[test]
fn a_hundred_thousand_addresses_sync_in_pages() {
    let fake = FakeMisp::new(large_dataset(40, 2_500));
    let mut transport = FakeTransport::new(fake.clone());
    let (text, stats) =
        misp_enrich::sync::take_snapshot(&sync_settings(&fake), &mut transport, 1_764_547_200)
            .unwrap();
    let snapshot = Snapshot::parse(&text).unwrap();

    assert_eq!(snapshot.len(), 100_000);
    // 100,000 attributes in pages of 5,000: 20 full pages and an empty one
    // that ends the paging, then one metadata request for the 40 events.
    assert_eq!((stats.pages, stats.requests, stats.events), (21, 22, 40));
    let first = lookup(&snapshot, "45.0.0.0").unwrap();
    assert_eq!(first, hit("10000", "bulk feed 0", 1, "Bulk Feeds", 1_700_000_000, 2_500));
    // 99,999 = 0x1869f, the last address and an IPv6 one.
    let last_v6 = lookup(&snapshot, "2a01:4f8::1:869f").unwrap();
    assert_eq!(last_v6.event_id, "10039");
    assert_eq!(last_v6.threat_level_id, 4);
    assert_eq!(last_v6.ioc_updated, Some(1_700_099_999));
    assert_eq!(lookup(&snapshot, "45.1.134.160"), None, "past the last generated address");
}

#[test]
fn a_misp_slower_than_the_response_timeout_fails_the_sync() {
    let fake = FakeMisp::new(dataset());
    fake.set_latency(Duration::from_millis(300));
    let mut transport =
        FakeTransport::with_response_timeout(fake.clone(), Duration::from_millis(50));
    let err =
        misp_enrich::sync::take_snapshot(&sync_settings(&fake), &mut transport, 0).unwrap_err();
    assert_eq!(err.to_string(), "timed out");
    assert_eq!(err.reason(), "timeout");
    assert_eq!(fake.requests().len(), 1, "the first page failed, so nothing else was asked");
}
