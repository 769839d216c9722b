//! Arbitrary records through the Fluent Bit filter: never a panic, and for
//! well-formed JSON (all Fluent Bit ever sends) the fast path (scan and
//! append) must produce the same record as the full parse.

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use misp_enrich::fluent_bit::filter::Filter;
use misp_enrich::fluent_bit::settings::ModuleSettings;

const SNAPSHOT: &str = "misp-enrich snapshot 1\ntaken_at\t1\nsource\thttps://misp.example.org\n\
    events\t1\n12\t1\t5\tCIRCL\tfeed\naddresses\t2\n45.133.1.7\t12\t1700000000\n\
    2a01:4f8::1\t12\t\nend\n";

fn snapshot_dir() -> &'static std::path::Path {
    static DIR: OnceLock<std::path::PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("misp-enrich-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("misp.snapshot"), SNAPSHOT).unwrap();
        dir
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    // Fluent Bit writes records from msgpack, so their numbers always fit
    // f64/i64/u64; agreement is required for such records.
    let well_formed = serde_json::from_str::<serde_json::Value>(text).is_ok();
    for output in ["", r#","output":"dotted""#] {
        let json = format!(r#"{{"snapshot":"misp.snapshot"{output}}}"#);
        let settings = ModuleSettings::from_json(&json, snapshot_dir()).unwrap();
        let mut filter = Filter::new(settings);
        let (mut fast, mut full) = (String::new(), String::new());
        filter.process(text, &mut fast);
        filter.process_full_parse(text, &mut full);
        if fast == full || !well_formed {
            continue;
        }
        let fast: serde_json::Value = serde_json::from_str(&fast).expect("fast path wrote JSON");
        let full: serde_json::Value = serde_json::from_str(&full).expect("full parse wrote JSON");
        assert_eq!(fast, full);
    }
});
