//! Shared helpers for the integration tests: one compiled component per test
//! binary, the fixtures, and checks on what the fake MISP received.

#![allow(dead_code, reason = "each test binary uses a different subset")]

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use misp_enrich_host::fake::{Dataset, FakeMisp, RecordedRequest};
use misp_enrich_host::outbound::{Authority, Outbound, TimeoutCaps, Upstream};
use misp_enrich_host::runtime::{Enricher, Runtime};
use misp_enrich_host::secret::Secret;
use serde_json::{Value, json};

/// The URL the component is configured with when the fake answers in process.
pub const FAKE_URL: &str = "https://misp.test.invalid";

/// The `misp-enrich` binary of this build.
pub const BIN: &str = env!("CARGO_BIN_EXE_misp-enrich");

/// A `misp-enrich fake-misp` child process on 127.0.0.1, killed when dropped.
pub struct FakeProcess {
    child: Child,
    pub url: String,
}

impl FakeProcess {
    /// Serves `dataset` on a free loopback port; returns once it listens.
    pub fn serving(dataset: &Path) -> Self {
        Self::serving_with(dataset, &[])
    }

    /// The same with more `fake-misp` flags (`--tls-cert`, ...).
    pub fn serving_with(dataset: &Path, extra: &[&str]) -> Self {
        let mut child = Command::new(BIN)
            .args(["fake-misp", "--listen", "127.0.0.1:0", "--dataset"])
            .arg(dataset)
            .args(extra)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let url = line.trim().strip_prefix("listening on ").expect("listening line").to_owned();
        FakeProcess { child, url }
    }
}

impl Drop for FakeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The binary with `args`, none of the caller's key or log settings.
pub fn misp_enrich_command(args: &[&str]) -> Command {
    let mut command = Command::new(BIN);
    command.args(args).env_remove("MISP_API_KEY").env_remove("RUST_LOG");
    command
}

/// The component, compiled once per test binary: compiling costs about a
/// second, instantiating well under a millisecond.
pub fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        let started = Instant::now();
        let runtime = Runtime::new(misp_enrich_host::embedded::COMPONENT)
            .unwrap_or_else(|err| panic!("{err}"));
        eprintln!("component compiled in {:?}", started.elapsed());
        runtime
    })
}

/// A file under `fixtures/`.
pub fn fixture_path(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures").join(relative)
}

/// The text of a file under `fixtures/`.
pub fn fixture(relative: &str) -> String {
    let path = fixture_path(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display()))
}

/// The demo dataset.
pub fn dataset() -> Dataset {
    Dataset::from_json(&fixture("misp/demo.json")).unwrap()
}

/// One line a reviewer can check a hit's `misp` object by.
pub fn hit_summary(misp: &Value) -> String {
    format!(
        "event {} {} ({}), org {}, updated {}, {} attributes",
        misp["event_id"].as_str().unwrap(),
        misp["threat_level"].as_str().unwrap(),
        misp["threat_level_id"],
        misp["org"].as_str().unwrap_or("-"),
        misp["ioc_updated"],
        misp["attribute_count"],
    )
}

/// A loopback fake over TLS with a certificate from the test CA in
/// `fixtures/tls/`.
pub async fn tls_fake() -> (FakeMisp, misp_enrich_host::fake::server::FakeServer) {
    let tls = misp_enrich_host::fake::server::tls_config(
        &fixture_path("tls/server.pem"),
        &fixture_path("tls/server.key"),
    )
    .unwrap();
    let fake = FakeMisp::new(dataset());
    let server = misp_enrich_host::fake::server::FakeServer::start_tls(
        fake.clone(),
        "127.0.0.1:0".parse().unwrap(),
        tls,
    )
    .await
    .unwrap();
    (fake, server)
}

/// The component configuration for `url`, with `extra` keys merged in.
pub fn config(url: &str, key: &str, extra: Value) -> Secret {
    let mut doc = json!({"misp_url": url, "api_key": key});
    if let (Value::Object(doc), Value::Object(extra)) = (&mut doc, extra) {
        doc.extend(extra);
    }
    Secret::new(doc.to_string())
}

/// The host caps for a configuration (the defaults unless `extra` sets them).
pub fn caps(extra: &Value) -> TimeoutCaps {
    let ms = |key: &str, default: u64| {
        Duration::from_millis(extra.get(key).and_then(Value::as_u64).unwrap_or(default))
    };
    TimeoutCaps::new(ms("connect_timeout_ms", 3000), ms("response_timeout_ms", 5000))
}

/// An enricher talking to `fake` in process.
pub async fn fake_enricher(fake: &FakeMisp, extra: Value) -> Enricher {
    let key = fake.dataset().api_key.clone();
    let outbound = Outbound::new(
        Authority::from_url(FAKE_URL).unwrap(),
        caps(&extra),
        Upstream::Fake(fake.clone()),
    );
    runtime().enricher(&config(FAKE_URL, &key, extra), outbound).await.unwrap()
}

/// An enricher configured for `url` whose requests go over TCP, trusting
/// the Mozilla roots plus `ca_file`.
pub async fn network_enricher_trusting(
    url: &str,
    ca_file: Option<&std::path::Path>,
    extra: Value,
) -> Enricher {
    let tls = misp_enrich_host::outbound::tls::client_config(ca_file).unwrap();
    let outbound = Outbound::new(
        Authority::from_url(url).unwrap(),
        caps(&extra),
        Upstream::Network(misp_enrich_host::outbound::client::NetworkClient::new(tls)),
    );
    let key = dataset().api_key;
    runtime().enricher(&config(url, &key, extra), outbound).await.unwrap()
}

/// Runs every line through `enrich-batch` in batches of `batch`.
pub async fn replay(enricher: &mut Enricher, text: &str, batch: usize) -> Vec<String> {
    let lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let mut out = Vec::with_capacity(lines.len());
    for chunk in lines.chunks(batch) {
        out.extend(enricher.enrich_batch(chunk).await.unwrap());
    }
    out
}

/// Every output line is its input line, or that record with only `misp`
/// (or `misp.*`) and `tags` added or extended: nothing lost, nothing moved.
pub fn assert_same_records_in_order(input: &str, output: &[String]) {
    let input: Vec<&str> = input.lines().collect();
    assert_eq!(input.len(), output.len(), "one output line per input line");
    for (i, (before, after)) in input.iter().zip(output).enumerate() {
        if before == after {
            continue;
        }
        let before: Value = serde_json::from_str(before)
            .unwrap_or_else(|_| panic!("line {}: a non-JSON line was changed", i + 1));
        let mut after: Value = serde_json::from_str(after).unwrap();
        let (Value::Object(b), Value::Object(a)) = (&before, &mut after) else {
            panic!("line {}: a non-object record was changed", i + 1);
        };
        let original_keys: Vec<&String> = b.keys().collect();
        let kept_keys: Vec<&String> = a.keys().filter(|k| b.contains_key(*k)).collect();
        assert_eq!(original_keys, kept_keys, "line {}: keys lost or reordered", i + 1);
        for (key, value) in b {
            if key != "misp" && key != "tags" {
                assert_eq!(&a[key], value, "line {}: {key} changed", i + 1);
            }
        }
        let added: Vec<&String> = a.keys().filter(|k| !b.contains_key(*k)).collect();
        assert!(
            added.iter().all(|k| *k == "misp" || *k == "tags" || k.starts_with("misp.")),
            "line {}: unexpected keys {added:?}",
            i + 1
        );
    }
}

/// Checks every request MISP saw: a POST to a restSearch endpoint with the
/// raw key, both JSON headers, a JSON body, no `last` or `category`, and
/// only canonical address strings as values.
pub fn assert_well_formed(requests: &[RecordedRequest], key: &str) {
    for request in requests {
        assert_eq!(request.method, "POST", "{request:?}");
        assert!(
            request.path == "/attributes/restSearch" || request.path == "/events/restSearch",
            "{request:?}"
        );
        assert_eq!(request.header("authorization"), Some(key), "raw key, no Bearer");
        assert_eq!(request.header("accept"), Some("application/json"), "{request:?}");
        assert_eq!(request.header("content-type"), Some("application/json"), "{request:?}");
        let body = request.json().unwrap_or_else(|| panic!("body is not JSON: {request:?}"));
        for banned in ["last", "category", "publish_timestamp", "published", "to_ids"] {
            assert!(body.get(banned).is_none(), "{banned} sent: {request:?}");
        }
        if request.path == "/attributes/restSearch" {
            for value in searched_values(request) {
                let parsed: IpAddr = value.parse().unwrap_or_else(|_| panic!("{value:?}"));
                assert_eq!(parsed.to_string(), value, "not canonical");
                assert!(!parsed.to_canonical().is_loopback(), "{value}");
            }
        }
    }
}

/// The `value` list of an attribute search.
pub fn searched_values(request: &RecordedRequest) -> Vec<String> {
    let body = request.json().unwrap();
    let values = body["value"].as_array().unwrap_or_else(|| panic!("value is a list: {body}"));
    values.iter().map(|v| v.as_str().expect("value strings").to_owned()).collect()
}

/// How many times each address was searched (page 1 only, since further
/// pages of the same search repeat the list).
pub fn searches_per_address(requests: &[RecordedRequest]) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for request in requests.iter().filter(|r| r.path == "/attributes/restSearch") {
        if request.json().unwrap()["page"].as_u64().unwrap_or(1) != 1 {
            continue;
        }
        for value in searched_values(request) {
            *counts.entry(value).or_insert(0) += 1;
        }
    }
    counts
}

/// The `misp` object of an enriched line (nested style), if any.
pub fn misp_of(line: &str) -> Option<Value> {
    let record: Value = serde_json::from_str(line).ok()?;
    record.get("misp").cloned()
}

/// The `tags` of an enriched line.
pub fn tags_of(line: &str) -> Vec<String> {
    let record: Value = serde_json::from_str(line).unwrap_or(Value::Null);
    match record.get("tags") {
        Some(Value::Array(tags)) => tags.iter().filter_map(Value::as_str).map(Into::into).collect(),
        _ => Vec::new(),
    }
}

/// The core's settings for syncing from the in-process fake at [`FAKE_URL`].
pub fn sync_settings(fake: &FakeMisp) -> misp_enrich::Settings {
    let document = config(FAKE_URL, &fake.dataset().api_key, json!({}));
    misp_enrich::Settings::from_json(document.expose()).unwrap()
}

/// A snapshot of `fake`, taken in process the way `misp-enrich sync` takes
/// one, with a fixed time so that it can be compared.
pub fn fake_snapshot(fake: &FakeMisp) -> String {
    let mut transport = misp_enrich_host::sync::FakeTransport::new(fake.clone());
    let taken =
        misp_enrich::sync::take_snapshot(&sync_settings(fake), &mut transport, 1_764_547_200);
    taken.unwrap().0
}
