//! Arbitrary records through the enricher: no panic, one record out per
//! record in, anything that is not a JSON object unchanged, enriched records
//! still JSON, only canonical addresses sent.

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
        // Well-formed JSON by the grammar; numbers beyond f64 (`1e999`) are
        // well formed too, although serde_json cannot hold them as values.
        let well_formed = serde_json::from_str::<serde::de::IgnoredAny>(input).is_ok();
        if !well_formed || !input.trim_start().starts_with('{') {
            assert_eq!(input, output);
        } else if input != output {
            assert!(serde_json::from_str::<serde::de::IgnoredAny>(output).is_ok(), "{output}");
        }
    }
});
