//! The Fluent Bit module (the root crate built for `wasm32-wasip1`) driven
//! through Fluent Bit's filter ABI by [`misp_enrich_host::fluent_bit`], with
//! snapshots taken from the fake MISP by the same code as `misp-enrich sync`.
//!
//! These tests run on plain threads: WASI preview 1 completes its file
//! system calls on a Tokio runtime of its own, which must not be nested in
//! another. The component side of the comparison test gets a runtime of its
//! own for that reason.

mod common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use common::*;
use misp_enrich_host::fake::FakeMisp;
use misp_enrich_host::fluent_bit::{FilterSection, FluentBitModule, is_json_object};
use misp_enrich_host::sync::write_atomically;
use serde_json::{Value, json};

/// The tag Fluent Bit's input gives these records.
const TAG: &str = "honeypot.cowrie";

/// The module, compiled once per test binary.
fn module() -> &'static FluentBitModule {
    static MODULE: OnceLock<FluentBitModule> = OnceLock::new();
    MODULE.get_or_init(|| {
        FluentBitModule::from_bytes(misp_enrich_host::embedded::FLUENT_BIT_MODULE)
            .unwrap_or_else(|err| panic!("{err:#}"))
    })
}

/// The demo dataset's snapshot, taken once.
fn demo_snapshot() -> &'static str {
    static SNAPSHOT: OnceLock<String> = OnceLock::new();
    SNAPSHOT.get_or_init(|| fake_snapshot(&FakeMisp::new(dataset())))
}

/// An `accessible_paths` directory holding the module's configuration and,
/// if given, a snapshot.
struct Accessible {
    dir: tempfile::TempDir,
}

impl Accessible {
    fn new(config: Value, snapshot: Option<&str>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("misp-enrich.json"), config.to_string()).unwrap();
        if let Some(text) = snapshot {
            std::fs::write(dir.path().join("misp.snapshot"), text).unwrap();
        }
        Accessible { dir }
    }

    /// The demo snapshot, checked for changes every second.
    fn demo() -> Self {
        Self::new(
            json!({"snapshot": "misp.snapshot", "snapshot_check_secs": 1}),
            Some(demo_snapshot()),
        )
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn snapshot_path(&self) -> PathBuf {
        self.dir.path().join("misp.snapshot")
    }

    fn section(&self) -> FilterSection {
        module().section(&[self.path()]).unwrap_or_else(|err| panic!("{err:#}"))
    }
}

/// The lines of `text` Fluent Bit could hand a filter: its records are maps,
/// so a line that is not a JSON object never reaches one.
fn fluent_bit_records(text: &str) -> Vec<&str> {
    text.lines()
        .filter(|line| matches!(serde_json::from_str::<Value>(line), Ok(Value::Object(_))))
        .collect()
}

/// Runs every record through `section`; a dropped record or a harness
/// error fails the test, since the module must answer every object.
fn run(section: &mut FilterSection, records: &[&str]) -> Vec<String> {
    records
        .iter()
        .enumerate()
        .map(|(i, record)| match section.call(TAG, record) {
            Ok(Some(out)) => out,
            Ok(None) => panic!("record {} was dropped", i + 1),
            Err(err) => panic!("record {}: {err}", i + 1),
        })
        .collect()
}

/// Replays one Cowrie fixture through a fresh section over the demo
/// snapshot and checks order and integrity.
fn replay_fixture(name: &str) -> Vec<String> {
    let text = fixture(name);
    let records = fluent_bit_records(&text);
    let output = run(&mut Accessible::demo().section(), &records);
    assert_same_records_in_order(&records.join("\n"), &output);
    output
}

#[test]
fn cowrie_1x_spaced_log_is_enriched_by_the_module() {
    let output = replay_fixture("cowrie/cowrie-1.x-spaced.ndjson");
    insta::assert_snapshot!(output.join("\n"));
}

#[test]
fn cowrie_2x_log_with_quirks_is_enriched_by_the_module() {
    let output = replay_fixture("cowrie/cowrie-2.x-quirks.ndjson");
    insta::assert_snapshot!(output.join("\n"));
}

#[test]
fn cowrie_3x_log_with_telnet_and_ipv6_is_enriched_by_the_module() {
    let output = replay_fixture("cowrie/cowrie-3.x-current.ndjson");
    insta::assert_snapshot!(output.join("\n"));
}

#[test]
fn renamed_fields_and_broken_records_are_handled_by_the_module() {
    let text = fixture("cowrie/renamed-and-broken.ndjson");
    // Blank, plain text, truncated, array and number lines are not records
    // Fluent Bit could pass; the other 18 are.
    assert_eq!(fluent_bit_records(&text).len(), 18);
    let output = replay_fixture("cowrie/renamed-and-broken.ndjson");
    insta::assert_snapshot!(output.join("\n"));
}

/// Each distinct source of the replay set with its outcome, for review
/// against `fixtures/misp/demo.json`.
fn outcomes(records: &[&str], output: &[String]) -> Vec<String> {
    let mut table = std::collections::BTreeMap::new();
    for (before, after) in records.iter().zip(output) {
        let source = serde_json::from_str::<Value>(before).unwrap()["src_ip"].clone();
        let outcome = match misp_of(after) {
            Some(misp) => hit_summary(&misp),
            None => continue,
        };
        let entry = table.entry(source.as_str().unwrap().to_owned()).or_insert((0, outcome));
        entry.0 += 1;
    }
    table
        .into_iter()
        .map(|(source, (n, outcome))| format!("{source}: {n} records, {outcome}"))
        .collect()
}

#[test]
fn replay_set_comes_out_complete_and_in_order() {
    let text = fixture("cowrie/replay.ndjson");
    let records = fluent_bit_records(&text);
    assert_eq!(records.len(), 3000);
    let output = replay_fixture("cowrie/replay.ndjson");
    let hits = output.iter().filter(|line| tags_of(line) == ["misp_hit"]).count();
    assert_eq!(hits, 1111, "the same hits as the component's replay");
    insta::assert_snapshot!(outcomes(&records, &output).join("\n"));
}

#[test]
fn linear_memory_stops_growing_once_warm() {
    let text = fixture("cowrie/replay.ndjson");
    let records = fluent_bit_records(&text);
    let mut section = Accessible::demo().section();
    run(&mut section, &records);
    let warm = section.memory_size();
    run(&mut section, &records);
    run(&mut section, &records);
    assert_eq!(section.memory_size(), warm, "memory grew: the module or the copies leak");
}

/// The component's answers for `records`, from the in-process fake over the
/// same dataset, on a runtime of their own.
fn component_output(records: &[&str]) -> Vec<String> {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let fake = FakeMisp::new(dataset());
        let mut enricher = fake_enricher(&fake, json!({})).await;
        let mut out = Vec::new();
        for chunk in records.chunks(100) {
            let chunk: Vec<String> = chunk.iter().map(|r| (*r).to_owned()).collect();
            out.extend(enricher.enrich_batch(&chunk).await.unwrap());
        }
        out
    })
}

#[test]
fn module_and_component_write_the_same_records() {
    for name in [
        "cowrie/cowrie-1.x-spaced.ndjson",
        "cowrie/cowrie-2.x-quirks.ndjson",
        "cowrie/cowrie-3.x-current.ndjson",
        "cowrie/renamed-and-broken.ndjson",
        "cowrie/replay.ndjson",
    ] {
        let text = fixture(name);
        let records = fluent_bit_records(&text);
        let expected = component_output(&records);
        let got = run(&mut Accessible::demo().section(), &records);
        assert_eq!(got.len(), expected.len());
        for (i, (module, component)) in got.iter().zip(&expected).enumerate() {
            let module: Value = serde_json::from_str(module).unwrap();
            let component: Value = serde_json::from_str(component).unwrap();
            assert_eq!(module, component, "{name}, record {}", i + 1);
        }
    }
}

#[test]
fn a_replaced_snapshot_is_used_after_the_check_interval() {
    let accessible = Accessible::demo();
    let mut section = accessible.section();
    let record = r#"{"src_ip":"218.92.0.112"}"#;
    let before = section.call(TAG, record).unwrap().unwrap();
    assert_eq!(misp_of(&before).unwrap()["event_info"], FEED_INFO);

    let mut data = dataset();
    data.events[0].info = "OSINT - SSH brute-force sources (weekly feed)".into();
    data.events[0].attributes.retain(|a| a.value != "61.177.172.140");
    let replacement = fake_snapshot(&FakeMisp::new(data));
    write_atomically(&accessible.snapshot_path(), replacement.as_bytes()).unwrap();
    std::thread::sleep(Duration::from_millis(1200));

    let after = section.call(TAG, record).unwrap().unwrap();
    let misp = misp_of(&after).unwrap();
    assert_eq!(misp["event_info"], "OSINT - SSH brute-force sources (weekly feed)");
    assert_eq!(misp["attribute_count"], 3);
    let dropped = r#"{"src_ip":"61.177.172.140"}"#;
    assert_eq!(section.call(TAG, dropped).unwrap().unwrap(), dropped, "now a miss");
}

const FEED_INFO: &str = "OSINT - SSH brute-force sources (daily feed)";

#[test]
fn a_corrupt_replacement_keeps_the_old_snapshot() {
    let accessible = Accessible::demo();
    let mut section = accessible.section();
    let record = r#"{"src_ip":"218.92.0.112"}"#;
    let before = section.call(TAG, record).unwrap().unwrap();

    // A snapshot cut short: its closing `end` line is missing.
    let truncated = demo_snapshot().trim_end().trim_end_matches("end");
    write_atomically(&accessible.snapshot_path(), truncated.as_bytes()).unwrap();
    std::thread::sleep(Duration::from_millis(1200));

    assert_eq!(section.call(TAG, record).unwrap().unwrap(), before);
    assert_eq!(misp_of(&before).unwrap()["event_info"], FEED_INFO);
    let reported = section.stderr();
    assert!(reported.contains("keeping the snapshot in use"), "{reported}");
    assert_eq!(reported.matches("misp-enrich:").count(), 1, "reported once: {reported}");
    section.call(TAG, record).unwrap();
    assert_eq!(section.stderr().matches("misp-enrich:").count(), 1);
}

#[test]
fn without_a_snapshot_lookups_fail_as_no_snapshot_and_other_records_pass() {
    let accessible = Accessible::new(json!({"snapshot": "misp.snapshot"}), None);
    let mut section = accessible.section();
    let out = section.call(TAG, r#"{"src_ip":"218.92.0.112","n":1}"#).unwrap().unwrap();
    assert_eq!(
        out,
        concat!(
            r#"{"src_ip":"218.92.0.112","n":1,"misp":{"error":"no_snapshot"},"#,
            r#""tags":["_misp_lookup_failure"]}"#
        )
    );
    for unchanged in [r#"{"src_ip":"10.0.0.5"}"#, r#"{"eventid":"cowrie.log.closed"}"#, "{}"] {
        assert_eq!(section.call(TAG, unchanged).unwrap().unwrap(), unchanged);
    }
}

#[test]
fn without_a_configuration_lookups_fail_as_no_config() {
    let dir = tempfile::tempdir().unwrap();
    let mut section = module().section(&[dir.path()]).unwrap();
    let out = section.call(TAG, r#"{"src_ip":"218.92.0.112"}"#).unwrap().unwrap();
    assert_eq!(
        out,
        r#"{"src_ip":"218.92.0.112","misp":{"error":"no_config"},"tags":["_misp_lookup_failure"]}"#
    );
    assert_eq!(
        section.stderr(),
        format!(
            "misp-enrich: no misp-enrich.json in accessible_paths [{:?}]; lookups are tagged as \
             failed\n",
            dir.path()
        )
    );
    let private = r#"{"src_ip":"192.168.1.20"}"#;
    assert_eq!(section.call(TAG, private).unwrap().unwrap(), private);
}

#[test]
fn a_bad_configuration_is_reported_on_stderr_and_fails_lookups() {
    let accessible = Accessible::new(json!({"snapshot": "misp.snapshot", "api_key": "x"}), None);
    let mut section = accessible.section();
    let out = section.call(TAG, r#"{"src_ip":"218.92.0.112"}"#).unwrap().unwrap();
    assert_eq!(misp_of(&out).unwrap(), json!({"error": "no_config"}));
    assert_eq!(
        section.stderr(),
        format!(
            "misp-enrich: {}: api_key: does not apply to the Fluent Bit module, which reads a \
             snapshot and never contacts MISP (misp-enrich sync takes it); lookups are tagged as \
             failed\n",
            accessible.path().join("misp-enrich.json").display()
        )
    );
}

#[test]
fn a_null_record_is_dropped_without_a_trap() {
    let mut section = Accessible::demo().section();
    assert_eq!(section.call_with_null_record(TAG, 120_000).unwrap(), None);
    let record = r#"{"src_ip":"45.133.1.7"}"#;
    let out = section.call(TAG, record).unwrap().unwrap();
    assert_eq!(misp_of(&out).unwrap()["event_id"], "3105", "the instance still works");
}

#[test]
fn a_one_megabyte_record_is_enriched() {
    let mut section = Accessible::demo().section();
    let payload = "A".repeat(1024 * 1024);
    let record = json!({"src_ip": "45.133.1.7", "data": payload}).to_string();
    let out: Value = serde_json::from_str(&section.call(TAG, &record).unwrap().unwrap()).unwrap();
    assert_eq!(out["misp"]["event_id"], "3105");
    assert_eq!(out["misp"]["threat_level"], "High");
    assert_eq!(out["data"].as_str().unwrap().len(), payload.len());
    assert_eq!(out["tags"], json!(["misp_hit"]));
}

#[test]
fn a_record_nested_two_hundred_deep_comes_back_as_valid_json() {
    let mut section = Accessible::demo().section();
    let arrays = format!("{}{}", "[".repeat(200), "]".repeat(200));
    let objects = format!("{}1{}", r#"{"a":"#.repeat(200), "}".repeat(200));
    for nested in [arrays, objects] {
        for record in [
            format!(r#"{{"src_ip":"45.133.1.7","deep":{nested}}}"#),
            format!(r#"{{"deep":{nested},"src_ip":"45.133.1.7","tags":["cowrie"]}}"#),
        ] {
            let out = section.call(TAG, &record).unwrap_or_else(|err| panic!("{err}"));
            let out = out.expect("not dropped");
            assert!(is_json_object(&out));
            if out != record {
                // Enriched: the text must still be the record plus our fields.
                assert!(out.contains(r#""event_id":"3105""#), "{out}");
                assert!(out.contains(&nested));
            }
        }
    }
}

#[test]
fn two_filter_sections_keep_their_own_configuration() {
    let nested = Accessible::demo();
    let dotted = Accessible::new(
        json!({"snapshot": "misp.snapshot", "output": "dotted", "hit_tag": "known_bad"}),
        Some(demo_snapshot()),
    );
    let (mut a, mut b) = (nested.section(), dotted.section());
    let record = r#"{"src_ip":"218.92.0.112"}"#;
    let from_a: Value = serde_json::from_str(&a.call(TAG, record).unwrap().unwrap()).unwrap();
    let from_b: Value = serde_json::from_str(&b.call(TAG, record).unwrap().unwrap()).unwrap();
    assert_eq!(from_a["misp"]["event_id"], "1342");
    assert_eq!(from_a["tags"], json!(["misp_hit"]));
    assert_eq!(from_b["misp.event_id"], "1342");
    assert_eq!(from_b["misp.event_url"], format!("{FAKE_URL}/events/view/1342"));
    assert_eq!(from_b["tags"], json!(["known_bad"]));
}

#[test]
fn fluent_bit_module_subcommand_writes_the_embedded_module() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("misp_enrich.wasm");
    let output = misp_enrich_command(&["fluent-bit-module", "-o"]).arg(&path).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let written = std::fs::read(&path).unwrap();
    assert_eq!(written, misp_enrich_host::embedded::FLUENT_BIT_MODULE);
    assert_eq!(
        String::from_utf8_lossy(&output.stderr),
        format!(
            "misp-enrich: Fluent Bit module written to {} ({} bytes); function_name is \
             misp_enrich_filter\n",
            path.display(),
            written.len()
        )
    );

    // What was written is a working filter.
    let module = FluentBitModule::load(&path).unwrap();
    let accessible = Accessible::demo();
    let mut section = module.section(&[accessible.path()]).unwrap();
    let out = section.call(TAG, r#"{"src_ip":"45.133.1.7"}"#).unwrap().unwrap();
    assert_eq!(misp_of(&out).unwrap()["event_id"], "3105");
}
