//! Arbitrary MISP answers: parsing never panics, and a record enriched from
//! them is valid JSON whose event id (if any) is decimal.

#![no_main]

use libfuzzer_sys::fuzz_target;
use misp_enrich::Enricher;
use misp_enrich::misp::response::{parse_attributes, parse_event_counts};

mod shared;

fuzz_target!(|data: &[u8]| {
    let _ = parse_attributes(data);
    let _ = parse_event_counts(data);

    // The first half answers searches, the second metadata requests.
    let (attributes, events) = data.split_at(data.len() / 2);
    let transport = shared::FixedMisp { attributes: attributes.to_vec(), events: events.to_vec() };
    let mut enricher = Enricher::new(shared::settings(), transport);
    let output = enricher.enrich(r#"{"src_ip":"45.133.1.7"}"#);
    let record: serde_json::Value = serde_json::from_str(&output).expect("valid JSON");
    if let Some(id) = record.pointer("/misp/event_id") {
        let id = id.as_str().expect("event id is a string");
        assert!(!id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()));
    }
});
