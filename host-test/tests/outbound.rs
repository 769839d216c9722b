//! The host's side of the component's HTTP: the origin allow-list, the
//! timeout caps, the network client against a loopback fake, and how
//! failures reach the records.

mod common;

use std::time::{Duration, Instant};

use common::*;
use http::StatusCode;
use misp_enrich_host::fake::FakeMisp;
use misp_enrich_host::fake::server::FakeServer;
use misp_enrich_host::outbound::client::NetworkClient;
use misp_enrich_host::outbound::{Authority, Outbound, Upstream, tls};
use misp_enrich_host::runtime::{Enricher, HostError};
use serde_json::{Value, json};

const HIT: &str = r#"{"eventid":"cowrie.session.connect","src_ip":"218.92.0.112"}"#;

/// An enricher configured for `url` whose requests go over TCP.
async fn network_enricher(url: &str, key: &str, extra: Value) -> Enricher {
    let tls = tls::client_config(None).unwrap();
    let outbound = Outbound::new(
        Authority::from_url(url).unwrap(),
        caps(&extra),
        Upstream::Network(NetworkClient::new(tls)),
    );
    runtime().enricher(&config(url, key, extra), outbound).await.unwrap()
}

fn assert_failure(line: &str, reason: &str) {
    let misp = misp_of(line).unwrap_or_else(|| panic!("no misp object: {line}"));
    assert_eq!(misp, json!({"error": reason}), "{line}");
    assert_eq!(tags_of(line), ["_misp_lookup_failure"]);
}

#[tokio::test]
async fn loopback_fake_over_tcp_gives_the_same_output_as_in_process() {
    let input = fixture("cowrie/cowrie-2.x-quirks.ndjson");
    let in_process = FakeMisp::new(dataset());
    let mut local = fake_enricher(&in_process, json!({})).await;
    let expected = replay(&mut local, &input, 5).await;

    let served = FakeMisp::new(dataset());
    let server = FakeServer::start(served.clone(), "127.0.0.1:0".parse().unwrap()).await.unwrap();
    let mut remote = network_enricher(&server.url(), &dataset().api_key, json!({})).await;
    let got = replay(&mut remote, &input, 5).await;

    assert_eq!(
        got,
        expected.iter().map(|l| l.replace(FAKE_URL, &server.url())).collect::<Vec<_>>()
    );
    assert_well_formed(&served.requests(), &dataset().api_key);
    assert_eq!(served.requests().len(), in_process.requests().len());
}

#[tokio::test]
async fn stalled_server_is_cut_off_at_the_response_cap() {
    let fake = FakeMisp::new(dataset());
    fake.set_latency(Duration::from_secs(3));
    let server = FakeServer::start(fake.clone(), "127.0.0.1:0".parse().unwrap()).await.unwrap();
    let mut enricher =
        network_enricher(&server.url(), &dataset().api_key, json!({"response_timeout_ms": 300}))
            .await;

    let started = Instant::now();
    let line = enricher.enrich(HIT).await.unwrap();
    let took = started.elapsed();
    assert_failure(&line, "timeout");
    assert!(took >= Duration::from_millis(290), "gave up early: {took:?}");
    assert!(took < Duration::from_millis(2000), "waited past the cap: {took:?}");
}

#[tokio::test]
async fn in_process_fake_honours_the_response_cap_too() {
    let fake = FakeMisp::new(dataset());
    fake.set_latency(Duration::from_secs(3));
    let mut enricher = fake_enricher(&fake, json!({"response_timeout_ms": 200})).await;
    let started = Instant::now();
    assert_failure(&enricher.enrich(HIT).await.unwrap(), "timeout");
    assert!(started.elapsed() < Duration::from_millis(2000));
}

#[tokio::test]
async fn closed_port_is_a_connection_failure() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let mut enricher = network_enricher(&url, &dataset().api_key, json!({})).await;
    assert_failure(&enricher.enrich(HIT).await.unwrap(), "connection_refused");
}

#[tokio::test]
async fn requests_to_another_origin_are_denied_before_any_traffic() {
    let fake = FakeMisp::new(dataset());
    // The component is told one URL, the host allows another.
    let outbound = Outbound::new(
        Authority::from_url("https://misp.allowed.invalid").unwrap(),
        caps(&json!({})),
        Upstream::Fake(fake.clone()),
    );
    let config = config(FAKE_URL, &dataset().api_key, json!({}));
    let mut enricher = runtime().enricher(&config, outbound).await.unwrap();
    assert_failure(&enricher.enrich(HIT).await.unwrap(), "denied");
    assert!(fake.requests().is_empty());
}

#[tokio::test]
async fn wrong_key_marks_records_with_http_403() {
    let fake = FakeMisp::new(dataset());
    let outbound = Outbound::new(
        Authority::from_url(FAKE_URL).unwrap(),
        caps(&json!({})),
        Upstream::Fake(fake.clone()),
    );
    let config = config(FAKE_URL, &"Z".repeat(40), json!({}));
    let mut enricher = runtime().enricher(&config, outbound).await.unwrap();
    let lines = enricher.enrich_batch(&[HIT.to_owned(), HIT.to_owned()]).await.unwrap();
    for line in &lines {
        assert_failure(line, "http_403");
    }
    let stats = enricher.stats().await.unwrap();
    assert_eq!((stats.failures, stats.hits, stats.misses), (2, 0, 0));
}

#[tokio::test]
async fn failures_are_not_cached_and_recover() {
    let fake = FakeMisp::new(dataset());
    let mut enricher = fake_enricher(&fake, json!({})).await;
    fake.force_status(Some(StatusCode::INTERNAL_SERVER_ERROR));
    assert_failure(&enricher.enrich(HIT).await.unwrap(), "http_500");
    fake.force_status(None);
    let line = enricher.enrich(HIT).await.unwrap();
    assert_eq!(misp_of(&line).unwrap()["event_id"], "1342");
}

#[tokio::test]
async fn rejected_configuration_names_the_setting_and_hides_the_key() {
    let fake = FakeMisp::new(dataset());
    let outbound = Outbound::new(
        Authority::from_url(FAKE_URL).unwrap(),
        caps(&json!({})),
        Upstream::Fake(fake),
    );
    let key = dataset().api_key;
    let config = config(FAKE_URL, &key, json!({"cache_size": 5}));
    let err = match runtime().enricher(&config, outbound).await {
        Err(err) => err,
        Ok(_) => panic!("an unknown key was accepted"),
    };
    let HostError::Rejected(message) = &err else { panic!("{err:?}") };
    assert!(message.starts_with("unknown setting \"cache_size\"; known settings: misp_url"));
    assert!(!err.to_string().contains(&key));
}

async fn tls_enricher(url: &str, ca_file: Option<&std::path::Path>) -> Enricher {
    let outbound = Outbound::new(
        Authority::from_url(url).unwrap(),
        caps(&json!({})),
        Upstream::Network(NetworkClient::new(tls::client_config(ca_file).unwrap())),
    );
    runtime().enricher(&config(url, &dataset().api_key, json!({})), outbound).await.unwrap()
}

#[tokio::test]
async fn private_ca_is_trusted_with_a_ca_file() {
    let (fake, server) = tls_fake().await;
    assert!(server.url().starts_with("https://127.0.0.1:"));
    let mut enricher = tls_enricher(&server.url(), Some(&fixture_path("tls/ca.pem"))).await;
    let line = enricher.enrich(HIT).await.unwrap();
    assert_eq!(misp_of(&line).unwrap()["event_id"], "1342");
    assert_well_formed(&fake.requests(), &dataset().api_key);
}

#[tokio::test]
async fn private_ca_without_a_ca_file_is_a_tls_failure() {
    let (fake, server) = tls_fake().await;
    let mut enricher = tls_enricher(&server.url(), None).await;
    assert_failure(&enricher.enrich(HIT).await.unwrap(), "tls_error");
    assert!(fake.requests().is_empty(), "nothing sent over an untrusted connection");
}

#[tokio::test]
async fn body_that_stalls_midway_is_cut_off_at_the_response_cap() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    // A server that sends the head and one byte of a 1000-byte body, then
    // goes quiet: only the between-bytes limit can end this request.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut request = vec![0u8; 4096];
                let _ = stream.read(&mut request).await;
                let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                            content-length: 1000\r\n\r\n{";
                let _ = stream.write_all(head.as_bytes()).await;
                tokio::time::sleep(Duration::from_secs(5)).await;
            });
        }
    });

    let mut enricher =
        network_enricher(&url, &dataset().api_key, json!({"response_timeout_ms": 300})).await;
    let started = Instant::now();
    let line = enricher.enrich(HIT).await.unwrap();
    assert!(started.elapsed() < Duration::from_millis(2500), "{:?}", started.elapsed());
    // The host ends the body with ConnectionReadTimeout, but waki 0.5.1
    // turns a failed body read into a plain error without its code, so the
    // component can only call it a transport error.
    let reason = misp_of(&line).unwrap()["error"].as_str().unwrap().to_owned();
    assert!(reason == "timeout" || reason == "transport_error", "{line}");
    assert_eq!(tags_of(&line), ["_misp_lookup_failure"]);
}
