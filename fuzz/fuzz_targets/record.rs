//! Arbitrary records through the enricher: no panic, one record out per
//! record in, unchanged unless enriched, only canonical addresses sent.

#![no_main]

use libfuzzer_sys::fuzz_target;
use misp_enrich::Enricher;

mod shared;

const HIT: &[u8] = br#"{"response":{"Attribute":[{"value":"45.133.1.7","timestamp":"1",
    "Event":{"id":"1","info":"x","threat_level_id":"1"}}]}}"#;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let transport =
        shared::FixedMisp { attributes: HIT.to_vec(), events: br#"{"response":[]}"#.to_vec() };
    let mut enricher = Enricher::new(shared::settings(), transport);
    let records: Vec<&str> = text.split('\n').collect();
    let output = enricher.enrich_batch(&records);
    assert_eq!(output.len(), records.len());
    for (input, output) in records.iter().zip(&output) {
        if misp_enrich::record::parse(input).is_none() {
            assert_eq!(input, output);
        } else if input != output {
            let enriched: serde_json::Value = serde_json::from_str(output).expect("valid JSON");
            assert!(enriched.is_object());
        }
    }
});
