//! MISP failing in every way the enricher must survive, end to end: the
//! component runs in the wasmtime host and talks over loopback TCP to the
//! fake MISP with a fault switched on.
//!
//! Each test checks the promise of the README's "When MISP fails": every
//! record comes out, in order; a failed lookup carries the failure tag and
//! the reason in `misp.error`; lookups that did not fail are untouched. The
//! outage tests also show the circuit breaker and stale answers at work.
//!
//! Timing assertions are loose on purpose (the machine is shared): they
//! only separate "one timeout" from "many timeouts".

mod common;

use std::time::{Duration, Instant};

use common::*;
use http::StatusCode;
use misp_enrich_host::fake::server::FakeServer;
use misp_enrich_host::fake::{FakeMisp, Fault};
use misp_enrich_host::runtime::{Breaker, Enricher};
use serde_json::{Value, json};

/// A source the demo dataset lists (event 1342).
const KNOWN: &str = "218.92.0.112";
/// Another source of event 1342, for a hit whose event count is cached.
const KNOWN_SAME_EVENT: &str = "61.177.172.140";
/// A record that is never looked up, so no fault can touch it.
const PRIVATE: &str = r#"{"eventid":"cowrie.session.connect","src_ip":"10.0.0.5"}"#;
/// The response cap used where a test waits for a timeout.
const SHORT_TIMEOUT: Duration = Duration::from_millis(300);

/// A Cowrie connect event from `source`.
fn connect(source: &str) -> String {
    format!(r#"{{"eventid":"cowrie.session.connect","src_ip":"{source}","session":"a1b2c3"}}"#)
}

/// The `n`th of many distinct public sources, none of them in the dataset.
fn unknown_source(n: usize) -> String {
    format!("91.{}.{}.{}", 200 + n / 65_536, n / 256 % 256, n % 256)
}

fn assert_failure(line: &str, reason: &str) {
    let misp = misp_of(line).unwrap_or_else(|| panic!("no misp object: {line}"));
    assert_eq!(misp, json!({"error": reason}), "{line}");
    assert_eq!(tags_of(line), ["_misp_lookup_failure"], "{line}");
}

fn assert_hit(line: &str, event_id: &str) {
    let misp = misp_of(line).unwrap_or_else(|| panic!("no misp object: {line}"));
    assert_eq!(misp["event_id"], event_id, "{line}");
    assert!(misp.get("error").is_none(), "{line}");
}

/// The fake served over loopback TCP.
async fn serve(fake: &FakeMisp) -> FakeServer {
    FakeServer::start(fake.clone(), "127.0.0.1:0".parse().unwrap()).await.unwrap()
}

/// A healthy fake over TCP and an enricher using it with `extra` settings.
async fn healthy(extra: Value) -> (FakeMisp, FakeServer, Enricher) {
    let fake = FakeMisp::new(dataset());
    let server = serve(&fake).await;
    let enricher = network_enricher_trusting(&server.url(), None, extra).await;
    (fake, server, enricher)
}

/// What a fault did to a mixed batch, for the checks each test adds.
struct Faulted {
    fake: FakeMisp,
    enricher: Enricher,
    /// Requests the fake saw before the fault was switched on.
    before: usize,
    /// Held so that the server keeps serving until the test drops it.
    _server: FakeServer,
}

/// Enriches a known source while MISP is healthy, switches `fault` on, and
/// enriches a batch mixing that cached source, a new one and a private one.
/// Checks what holds for every fault: all records out in order, the cached
/// hit and the private record untouched, the new source failed with
/// `reason`.
async fn batch_under(fault: Fault, extra: Value, reason: &str) -> Faulted {
    let (fake, server, mut enricher) = healthy(extra).await;
    let primed = enricher.enrich(&connect(KNOWN)).await.unwrap();
    assert_hit(&primed, "1342");
    let before = fake.requests().len();

    fake.set_fault(Some(fault));
    let new = connect(&unknown_source(1));
    let input = [connect(KNOWN), new.clone(), PRIVATE.to_owned(), connect(KNOWN), new];
    let lines = enricher.enrich_batch(&input).await.unwrap();

    assert_same_records_in_order(&(input.join("\n") + "\n"), &lines);
    assert_eq!(lines[0], primed, "a cached answer is untouched by the fault");
    assert_eq!(lines[3], primed);
    assert_eq!(lines[2], PRIVATE, "a record that is never looked up is untouched");
    assert_failure(&lines[1], reason);
    assert_failure(&lines[4], reason);
    assert_eq!(fake.requests().len(), before + 1, "one request for the one new source");
    Faulted { fake, enricher, before, _server: server }
}

/// Enriches one record from another new source.
async fn enrich_next(enricher: &mut Enricher, n: usize) -> String {
    enricher.enrich(&connect(&unknown_source(n))).await.unwrap()
}

#[tokio::test]
async fn closed_port_fails_with_connection_refused_and_opens_the_breaker() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let mut enricher = network_enricher_trusting(&url, None, json!({})).await;

    let input = [connect(KNOWN), PRIVATE.to_owned(), connect(&unknown_source(1))];
    let lines = enricher.enrich_batch(&input).await.unwrap();
    assert_failure(&lines[0], "connection_refused");
    assert_eq!(lines[1], PRIVATE);
    assert_failure(&lines[2], "connection_refused");

    assert_failure(&enrich_next(&mut enricher, 2).await, "unavailable");
    let stats = enricher.stats().await.unwrap();
    assert_eq!((stats.misp_requests, stats.breaker, stats.breaker_trips), (1, Breaker::Open, 1));
}

#[tokio::test]
async fn unresolvable_host_fails_with_dns_error() {
    // `.invalid` never resolves (RFC 2606); the host's client asks the
    // system resolver, which fails at once without touching the network.
    let mut enricher = network_enricher_trusting("http://misp.invalid:8443", None, json!({})).await;
    assert_failure(&enricher.enrich(&connect(KNOWN)).await.unwrap(), "dns_error");
    assert_failure(&enrich_next(&mut enricher, 1).await, "unavailable");
    assert_eq!(enricher.stats().await.unwrap().misp_requests, 1);
}

#[tokio::test]
async fn certificate_from_an_untrusted_ca_fails_with_tls_error() {
    let (fake, server) = tls_fake().await;
    // Only the Mozilla roots are trusted, not the test CA that signed it.
    let mut enricher = network_enricher_trusting(&server.url(), None, json!({})).await;

    assert_failure(&enricher.enrich(&connect(KNOWN)).await.unwrap(), "tls_error");
    assert_failure(&enrich_next(&mut enricher, 1).await, "unavailable");
    assert!(fake.requests().is_empty(), "nothing is sent over an untrusted connection");
}

#[tokio::test]
async fn silent_server_is_cut_at_the_response_cap() {
    let started = Instant::now();
    let ms = SHORT_TIMEOUT.as_millis() as u64;
    let faulted = batch_under(Fault::Silent, json!({"response_timeout_ms": ms}), "timeout").await;
    let took = started.elapsed();
    assert!(took >= SHORT_TIMEOUT, "gave up before the cap: {took:?}");
    assert!(took < 4 * SHORT_TIMEOUT + Duration::from_secs(1), "waited past the cap: {took:?}");

    let mut enricher = faulted.enricher;
    assert_failure(&enrich_next(&mut enricher, 2).await, "unavailable");
    assert_eq!(faulted.fake.requests().len(), faulted.before + 1);
}

#[tokio::test]
async fn outage_costs_one_timeout_for_thousands_of_distinct_sources() {
    let fake = FakeMisp::new(dataset());
    fake.set_fault(Some(Fault::Silent));
    let server = serve(&fake).await;
    let ms = SHORT_TIMEOUT.as_millis() as u64;
    let mut enricher =
        network_enricher_trusting(&server.url(), None, json!({"response_timeout_ms": ms})).await;
    let input: String = (0..3000).map(|n| connect(&unknown_source(n)) + "\n").collect();

    let started = Instant::now();
    let lines = replay(&mut enricher, &input, 500).await;
    let outage = started.elapsed();
    // The same records again, with the breaker still open: what the work
    // itself costs, without any waiting.
    let started = Instant::now();
    let again = replay(&mut enricher, &input, 500).await;
    let processing = started.elapsed();

    assert_same_records_in_order(&input, &lines);
    assert_eq!(fake.requests().len(), 1, "one request for the whole outage");
    // The first search carries the first 100 distinct sources; once it
    // times out, the breaker fails every later search without asking.
    for (n, line) in lines.iter().enumerate() {
        assert_failure(line, if n < 100 { "timeout" } else { "unavailable" });
    }
    for line in &again {
        assert_failure(line, "unavailable");
    }
    eprintln!("outage replay {outage:?}, work alone {processing:?}");
    assert!(outage >= SHORT_TIMEOUT, "{outage:?}");
    assert!(
        outage < 2 * SHORT_TIMEOUT + processing,
        "{outage:?} is more than one timeout ({SHORT_TIMEOUT:?}) plus {processing:?} of work"
    );
    let stats = enricher.stats().await.unwrap();
    assert_eq!((stats.failures, stats.misp_requests, stats.failed_requests), (6000, 1, 1));
    assert_eq!((stats.breaker, stats.breaker_trips), (Breaker::Open, 1));
}

#[tokio::test]
async fn breaker_probes_after_the_cooldown_and_doubles_it_while_misp_stays_down() {
    let ms = SHORT_TIMEOUT.as_millis() as u64;
    let extra = json!({"response_timeout_ms": ms, "breaker_cooldown_secs": 1});
    let (fake, _server, mut enricher) = healthy(extra).await;
    fake.set_fault(Some(Fault::Silent));
    let second = Duration::from_secs(1);
    let margin = Duration::from_millis(150);

    assert_failure(&enrich_next(&mut enricher, 1).await, "timeout");
    let opened = Instant::now();
    assert_failure(&enrich_next(&mut enricher, 2).await, "unavailable");
    assert_eq!(fake.requests().len(), 1);

    // After the 1 s cool-down one probe goes out; it fails, so the next
    // cool-down is 2 s.
    tokio::time::sleep_until((opened + second + margin).into()).await;
    assert_failure(&enrich_next(&mut enricher, 3).await, "timeout");
    let reopened = Instant::now();
    assert_eq!(fake.requests().len(), 2);

    fake.set_fault(None);
    tokio::time::sleep_until((reopened + second + margin).into()).await;
    assert_failure(&enrich_next(&mut enricher, 4).await, "unavailable");
    assert_eq!(fake.requests().len(), 2, "still cooling down after 1 s of 2 s");

    tokio::time::sleep_until((reopened + 2 * second + margin).into()).await;
    assert_hit(&enricher.enrich(&connect(KNOWN)).await.unwrap(), "1342");
    let stats = enricher.stats().await.unwrap();
    assert_eq!((stats.breaker, stats.breaker_trips), (Breaker::Closed, 2));
}

#[tokio::test]
async fn slow_answer_within_the_cap_is_enriched_normally() {
    let input = fixture("cowrie/cowrie-2.x-quirks.ndjson");
    let in_process = FakeMisp::new(dataset());
    let mut local = fake_enricher(&in_process, json!({})).await;
    let expected = replay(&mut local, &input, 5).await;

    let (fake, server, mut enricher) = healthy(json!({"response_timeout_ms": 2000})).await;
    fake.set_latency(Duration::from_millis(150));
    let lines = replay(&mut enricher, &input, 5).await;

    let expected: Vec<String> =
        expected.iter().map(|l| l.replace(FAKE_URL, &server.url())).collect();
    assert_eq!(lines, expected);
    assert_eq!(enricher.stats().await.unwrap().failures, 0);
}

#[tokio::test]
async fn server_errors_fail_lookups_and_open_the_breaker_after_three_in_a_row() {
    for status in [500, 502, 503] {
        let status = StatusCode::from_u16(status).unwrap();
        let reason = format!("http_{}", status.as_u16());
        let faulted = batch_under(Fault::Status(status), json!({}), &reason).await;
        let mut enricher = faulted.enricher;

        // Two more soft failures make three in a row; the fourth lookup is
        // not sent.
        assert_failure(&enrich_next(&mut enricher, 2).await, &reason);
        assert_failure(&enrich_next(&mut enricher, 3).await, &reason);
        assert_failure(&enrich_next(&mut enricher, 4).await, "unavailable");
        assert_eq!(faulted.fake.requests().len(), faulted.before + 3, "{status}");
        let stats = enricher.stats().await.unwrap();
        assert_eq!((stats.breaker, stats.breaker_trips), (Breaker::Open, 1), "{status}");
    }
}

#[tokio::test]
async fn forbidden_fails_with_http_403() {
    let faulted = batch_under(Fault::Status(StatusCode::FORBIDDEN), json!({}), "http_403").await;
    let mut enricher = faulted.enricher;
    assert_failure(&enrich_next(&mut enricher, 2).await, "http_403");
    let stats = enricher.stats().await.unwrap();
    assert_eq!(stats.breaker, Breaker::Closed, "two soft failures do not open it yet");
}

#[tokio::test]
async fn rate_limit_stops_requests_until_the_reset() {
    let reset = Duration::from_secs(2);
    let fault = Fault::RateLimited { reset_secs: reset.as_secs() };
    let faulted = batch_under(fault, json!({}), "http_429").await;
    let limited_at = Instant::now();
    let (fake, mut enricher) = (faulted.fake, faulted.enricher);

    // Within the window nothing is sent, for any source.
    for n in 2..5 {
        assert_failure(&enrich_next(&mut enricher, n).await, "unavailable");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(fake.requests().len(), faulted.before + 1);
    assert_eq!(enricher.stats().await.unwrap().breaker, Breaker::Open);

    fake.set_fault(None);
    tokio::time::sleep_until((limited_at + reset + Duration::from_millis(100)).into()).await;
    let line = enricher.enrich(&connect(KNOWN_SAME_EVENT)).await.unwrap();
    assert_hit(&line, "1342");
    assert_eq!(fake.requests().len(), faulted.before + 2, "the first request after the reset");
    assert_eq!(enricher.stats().await.unwrap().breaker, Breaker::Closed);
}

#[tokio::test]
async fn garbage_body_with_200_fails_with_bad_response() {
    batch_under(Fault::Garbage, json!({}), "bad_response").await;
}

#[tokio::test]
async fn html_error_page_with_200_fails_with_bad_response() {
    batch_under(Fault::HtmlPage, json!({}), "bad_response").await;
}

#[tokio::test]
async fn truncated_body_fails_the_lookup() {
    // Limitation: the host ends the body with hyper's "incomplete message"
    // error, but waki turns a failed body read into an error without a
    // wasi:http code, so the component can only call it a transport error.
    batch_under(Fault::Truncated, json!({}), "transport_error").await;
}

#[tokio::test]
async fn oversized_body_fails_with_response_too_large() {
    // One mebibyte past the component's 32 MiB cap.
    let fault = Fault::Oversized { bytes: 33 * 1024 * 1024 };
    batch_under(fault, json!({}), "response_too_large").await;
}

#[tokio::test]
async fn flaky_server_keeps_enriching_the_lookups_it_answers() {
    let (fake, _server, mut enricher) = healthy(json!({})).await;
    let primed = enricher.enrich(&connect(KNOWN)).await.unwrap();
    let before = fake.requests().len();
    fake.set_flaky(Fault::Status(StatusCode::INTERNAL_SERVER_ERROR));

    // One new source per batch, so each batch costs exactly one request;
    // the second is a hit whose event count is already cached.
    for n in 0..20 {
        let source = if n == 1 { KNOWN_SAME_EVENT.to_owned() } else { unknown_source(n) };
        let input = [connect(&source), connect(KNOWN)];
        let lines = enricher.enrich_batch(&input).await.unwrap();
        assert_eq!(lines[1], primed, "batch {n}: the cached hit is untouched");
        match n {
            _ if n % 2 == 0 => assert_failure(&lines[0], "http_500"),
            1 => assert_hit(&lines[0], "1342"),
            _ => assert_eq!(lines[0], input[0], "batch {n}: a miss leaves the record as is"),
        }
    }
    assert_eq!(fake.requests().len(), before + 20, "no lookup was skipped");
    let stats = enricher.stats().await.unwrap();
    assert_eq!((stats.breaker, stats.breaker_trips), (Breaker::Closed, 0));
    assert_eq!(stats.failures, 10);
}

/// Settings that make answers expire after a second, so a test can wait
/// past the TTL.
fn short_ttls(max_stale_secs: u64) -> Value {
    json!({
        "hit_ttl_secs": 1,
        "miss_ttl_secs": 1,
        "max_stale_secs": max_stale_secs,
        "response_timeout_ms": SHORT_TIMEOUT.as_millis() as u64,
    })
}

const PAST_TTL: Duration = Duration::from_millis(1100);

#[tokio::test]
async fn expired_answers_are_served_stale_while_misp_fails() {
    let (fake, _server, mut enricher) = healthy(short_ttls(3600)).await;
    let miss = connect(&unknown_source(1));
    let fresh = enricher.enrich_batch(&[connect(KNOWN), miss.clone()]).await.unwrap();
    assert_hit(&fresh[0], "1342");
    assert_eq!(fresh[1], miss);

    fake.set_fault(Some(Fault::Silent));
    tokio::time::sleep(PAST_TTL).await;
    let new = connect(&unknown_source(2));
    let input = [connect(KNOWN), miss.clone(), new.clone()];
    let lines = enricher.enrich_batch(&input).await.unwrap();
    assert_eq!(lines[0], fresh[0], "the expired hit is served as it was");
    assert_eq!(lines[1], miss, "the expired miss still leaves the record as is");
    assert_failure(&lines[2], "timeout");

    // The timeout opened the breaker; stale answers still stand in.
    let requests = fake.requests().len();
    let lines = enricher.enrich_batch(&input).await.unwrap();
    assert_eq!(lines[0], fresh[0]);
    assert_eq!(lines[1], miss);
    assert_failure(&lines[2], "unavailable");
    assert_eq!(fake.requests().len(), requests);
    assert_eq!(enricher.stats().await.unwrap().stale_answers, 4);
}

#[tokio::test]
async fn answers_past_max_stale_are_not_served() {
    let (fake, _server, mut enricher) = healthy(short_ttls(0)).await;
    assert_hit(&enricher.enrich(&connect(KNOWN)).await.unwrap(), "1342");

    fake.set_fault(Some(Fault::Status(StatusCode::SERVICE_UNAVAILABLE)));
    tokio::time::sleep(PAST_TTL).await;
    assert_failure(&enricher.enrich(&connect(KNOWN)).await.unwrap(), "http_503");
    assert_eq!(enricher.stats().await.unwrap().stale_answers, 0);
}

#[tokio::test]
async fn in_process_fake_serves_the_same_http_faults() {
    let fake = FakeMisp::new(dataset());
    let mut enricher = fake_enricher(&fake, json!({})).await;
    let cases = [
        (Fault::Garbage, "bad_response"),
        (Fault::HtmlPage, "bad_response"),
        (Fault::Status(StatusCode::BAD_GATEWAY), "http_502"),
    ];
    for (n, (fault, reason)) in cases.into_iter().enumerate() {
        fake.set_fault(Some(fault));
        assert_failure(&enrich_next(&mut enricher, n).await, reason);
    }
}
