//! The `misp-enrich` binary end to end: `demo`, and `run` against the
//! standalone fake MISP (`misp-enrich fake-misp`) on 127.0.0.1.

mod common;

use std::io::Write;
use std::process::{Command, Output, Stdio};

use common::{FakeProcess, dataset, fixture, fixture_path, misp_enrich_command, misp_of};

/// The standalone fake serving the demo dataset.
fn demo_fake() -> FakeProcess {
    demo_fake_with(&[])
}

fn demo_fake_with(extra: &[&str]) -> FakeProcess {
    FakeProcess::serving_with(&fixture_path("misp/demo.json"), extra)
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn demo_prints_every_record_and_a_summary() {
    let output = misp_enrich_command(&["demo"]).output().unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let stdout = String::from_utf8(output.stdout.clone()).unwrap();
    assert_eq!(stdout.lines().count(), 3000);
    let hits = stdout.lines().filter(|l| misp_of(l).is_some()).count();
    assert_eq!(hits, 1111);
    let summary = stderr(&output);
    assert!(summary.contains("records:          3000\n"), "{summary}");
    assert!(summary.contains("hits:             1111\n"), "{summary}");
    assert!(summary.contains("distinct sources: 85\n"), "{summary}");
    assert!(summary.contains("cache hit ratio:  97.2%\n"), "{summary}");
    assert_eq!(summary.lines().count(), 9, "quiet by default: the summary only\n{summary}");
}

#[test]
fn run_enriches_a_file_through_the_loopback_fake() {
    let fake = demo_fake();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("enriched.ndjson");
    let input = fixture_path("cowrie/cowrie-2.x-quirks.ndjson");
    let output = misp_enrich_command(&["run", "--misp-url", &fake.url, "-o"])
        .arg(&out)
        .arg(&input)
        .env("MISP_API_KEY", dataset().api_key)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));

    let written = std::fs::read_to_string(&out).unwrap();
    let lines: Vec<&str> = written.lines().collect();
    assert_eq!(lines.len(), 14);
    assert_eq!(lines.iter().filter(|l| misp_of(l).is_some()).count(), 12);
    let first = misp_of(lines[0]).unwrap();
    assert_eq!(first["event_url"], format!("{}/events/view/2201", fake.url));
    let summary = stderr(&output);
    assert!(summary.contains("records:          14\n"), "{summary}");
    assert!(summary.contains("distinct sources: 3\n"), "{summary}");
}

#[test]
fn run_reads_stdin_and_keeps_non_object_lines() {
    let fake = demo_fake();
    let key_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(key_file.path(), format!("{}\n", dataset().api_key)).unwrap();
    let mut child = misp_enrich_command(&["run", "-", "--misp-url", &fake.url, "--api-key-file"])
        .arg(key_file.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let input = fixture("cowrie/renamed-and-broken.ndjson");
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let stdout = String::from_utf8(output.stdout.clone()).unwrap();
    let got: Vec<&str> = stdout.lines().collect();
    let want: Vec<&str> = input.lines().collect();
    assert_eq!(got.len(), want.len());
    for index in [4, 8, 17, 18, 19, 20, 21] {
        assert_eq!(got[index], want[index], "line {} must pass through", index + 1);
    }
}

#[test]
fn missing_api_key_is_a_configuration_error() {
    let output =
        misp_enrich_command(&["run", "--misp-url", "https://misp.example.org"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(
        stderr(&output),
        "misp-enrich: no API key: set MISP_API_KEY or pass --api-key-file\n"
    );
}

#[test]
fn misp_url_without_scheme_gets_a_hint() {
    let output = misp_enrich_command(&["run", "--misp-url", "misp.local"])
        .env("MISP_API_KEY", "k")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(
        stderr(&output),
        "misp-enrich: misp_url \"misp.local\" has no scheme: did you mean \"https://misp.local\"?\n"
    );
}

#[test]
fn unknown_setting_in_config_file_is_refused_by_the_component() {
    let config = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(config.path(), r#"{"misp_url":"https://misp.example.org","cache_size":5}"#)
        .unwrap();
    let output = misp_enrich_command(&["run", "--config"])
        .arg(config.path())
        .env("MISP_API_KEY", dataset().api_key)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let message = stderr(&output);
    assert!(
        message.starts_with(
            "misp-enrich: invalid configuration: unknown setting \"cache_size\"; known settings:"
        ),
        "{message}"
    );
}

#[test]
fn unreadable_input_fails_with_its_path() {
    let output = misp_enrich_command(&[
        "run",
        "/nonexistent/cowrie.json",
        "--misp-url",
        "https://m.example",
    ])
    .env("MISP_API_KEY", dataset().api_key)
    .output()
    .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        stderr(&output),
        "misp-enrich: /nonexistent/cowrie.json: cannot read: \
         No such file or directory (os error 2)\n"
    );
}

#[test]
fn api_key_never_reaches_stderr_even_when_verbose() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let key = dataset().api_key;
    let output = misp_enrich_command(&["run", "-vv", "--misp-url", &url])
        .arg(fixture_path("cowrie/cowrie-1.x-spaced.ndjson"))
        .env("MISP_API_KEY", &key)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let stdout = String::from_utf8(output.stdout.clone()).unwrap();
    assert!(stdout.contains(r#""misp":{"error":"connection_refused"}"#), "{stdout}");
    assert!(!stderr(&output).contains(&key));
    assert!(!stdout.contains(&key));
}

#[test]
fn run_trusts_a_private_ca_given_by_ca_file() {
    let cert = fixture_path("tls/server.pem");
    let key = fixture_path("tls/server.key");
    let fake =
        demo_fake_with(&["--tls-cert", cert.to_str().unwrap(), "--tls-key", key.to_str().unwrap()]);
    assert!(fake.url.starts_with("https://127.0.0.1:"), "{}", fake.url);
    let output = misp_enrich_command(&["run", "--misp-url", &fake.url, "--ca-file"])
        .arg(fixture_path("tls/ca.pem"))
        .arg(fixture_path("cowrie/cowrie-1.x-spaced.ndjson"))
        .env("MISP_API_KEY", dataset().api_key)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let stdout = String::from_utf8(output.stdout.clone()).unwrap();
    assert_eq!(stdout.lines().filter(|l| misp_of(l).is_some()).count(), 7);
}

/// Waits until `path` holds at least `lines` lines.
fn wait_for_lines(path: &std::path::Path, lines: usize) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.lines().count() >= lines {
            return text;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "only {} lines: {text}",
            text.lines().count()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[test]
fn follow_survives_rotation_and_stops_with_a_summary_on_interrupt() {
    let fake = demo_fake();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("cowrie.json");
    let out = dir.path().join("enriched.ndjson");
    let records: Vec<String> =
        fixture("cowrie/cowrie-2.x-quirks.ndjson").lines().map(Into::into).collect();
    std::fs::write(&log, format!("{}\n{}\n", records[0], records[1])).unwrap();

    let child = misp_enrich_command(&["run", "--follow", "--misp-url", &fake.url, "-o"])
        .arg(&out)
        .arg(&log)
        .env("MISP_API_KEY", dataset().api_key)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_lines(&out, 2);

    let mut file = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
    writeln!(file, "{}", records[2]).unwrap();
    wait_for_lines(&out, 3);

    // Rotation as Cowrie does it: rename, then a new file at the same path.
    std::fs::rename(&log, dir.path().join("cowrie.json.2020-06-12")).unwrap();
    std::fs::write(&log, format!("{}\n{}\n", records[8], records[9])).unwrap();
    let text = wait_for_lines(&out, 5);
    let sessions: Vec<String> = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["session"].to_string())
        .collect();
    assert_eq!(sessions[3], "\"c1e2f3a4b5c6\"", "the rotated-in file is read");

    let status = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stderr(&output).contains("records:          5\n"), "{}", stderr(&output));
}

#[test]
fn lines_that_are_not_utf8_pass_through_unchanged() {
    let fake = demo_fake();
    let mut input = b"{\"src_ip\":\"218.92.0.112\"}\n".to_vec();
    input.extend_from_slice(b"{\"src_ip\":\"218.92.0.112\",\"user\":\"\xff\xfe\"}\n");
    input.extend_from_slice(b"last line without newline");
    let mut child = misp_enrich_command(&["run", "--misp-url", &fake.url])
        .env("MISP_API_KEY", dataset().api_key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&input).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let lines: Vec<&[u8]> = output.stdout.split(|&b| b == b'\n').collect();
    assert_eq!(lines.len(), 4, "three lines, each ended by a newline");
    assert!(std::str::from_utf8(lines[0]).unwrap().contains("\"misp_hit\""));
    assert_eq!(lines[1], b"{\"src_ip\":\"218.92.0.112\",\"user\":\"\xff\xfe\"}");
    assert_eq!(lines[2], b"last line without newline");
    assert_eq!(lines[3], b"");
}

#[test]
fn flags_override_the_config_file() {
    let fake = demo_fake();
    let config = tempfile::NamedTempFile::new().unwrap();
    let settings = serde_json::json!({
        "misp_url": "https://not-used.invalid",
        "hit_tag": "from_file",
        "output": "dotted",
    });
    std::fs::write(config.path(), settings.to_string()).unwrap();
    let mut child =
        misp_enrich_command(&["run", "--misp-url", &fake.url, "--hit-tag", "from_flag"])
            .arg("--config")
            .arg(config.path())
            .env("MISP_API_KEY", dataset().api_key)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
    child.stdin.take().unwrap().write_all(b"{\"src_ip\":\"61.177.172.140\"}\n").unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let record: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(record["misp.event_id"], "1342", "dotted style from the file");
    assert_eq!(record["tags"], serde_json::json!(["from_flag"]), "the flag wins");
}
