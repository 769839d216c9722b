//! The Fluent Bit filter's work, free of the ABI: one record in, one out.
//!
//! Lookups come from a [`Snapshot`] that is reloaded when its file changes
//! (checked at most every `snapshot_check_secs`); an unreadable new file keeps
//! the old snapshot, and without any snapshot every record that would be
//! looked up gets the failure tag with `misp.error` = `no_snapshot`.
//!
//! Records take a fast path when they allow it: the scanner finds the source
//! address and the fields are appended before the closing brace, leaving the
//! record's own text untouched. Records that already carry `tags` or `misp`
//! fields, escaped keys, or anything the scanner declines take the slow path
//! through the same code as the component. Both write the same fields in the
//! same order.

use std::net::IpAddr;
use std::path::Path;
use std::time::{Instant, SystemTime};

use lru::LruCache;
use serde_json::Value;

use super::settings::ModuleSettings;
use crate::mapping::Enrichment;
use crate::record::{self, hit_fields};
use crate::snapshot::Snapshot;
use crate::splice::{self, Located};

/// `misp.error` when no snapshot could be loaded.
pub const NO_SNAPSHOT: &str = "no_snapshot";
/// `misp.error` when the module found no usable configuration.
pub const NO_CONFIG: &str = "no_config";

/// Counters of the filter's work.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FilterStats {
    pub records: u64,
    pub hits: u64,
    pub misses: u64,
    pub failures: u64,
    pub skipped: u64,
    /// Records handled without a full parse.
    pub fast_path: u64,
    pub snapshot_loads: u64,
    pub snapshot_errors: u64,
}

/// What a record gets.
enum Outcome {
    Hit(Enrichment),
    Miss,
    Failure(&'static str),
}

/// Identifies a version of the snapshot file without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    modified: Option<SystemTime>,
    len: u64,
}

/// The filter's state: settings, the current snapshot and counters.
pub struct Filter {
    settings: ModuleSettings,
    snapshot: Option<Snapshot>,
    stamp: Option<FileStamp>,
    next_check: Option<Instant>,
    last_error: Option<String>,
    /// Whether `last_error` has been handed out for reporting.
    error_reported: bool,
    /// `misp.error` while there is no snapshot.
    unavailable: &'static str,
    /// What recent hits append, by address; cleared when the snapshot changes.
    rendered: LruCache<IpAddr, String>,
    stats: FilterStats,
}

impl Filter {
    /// A filter that loads its snapshot now.
    pub fn new(settings: ModuleSettings) -> Self {
        let mut filter = Filter {
            settings,
            snapshot: None,
            stamp: None,
            next_check: None,
            last_error: None,
            error_reported: false,
            unavailable: NO_SNAPSHOT,
            rendered: LruCache::new(splice::RENDERED_HITS),
            stats: FilterStats::default(),
        };
        filter.check_snapshot();
        filter
    }

    /// A filter without configuration: default record settings, no
    /// snapshot, every lookup failed with `no_config`. Records still flow and
    /// never pass for misses.
    pub fn unconfigured() -> Self {
        let mut filter = Filter::new(ModuleSettings::fallback());
        filter.unavailable = NO_CONFIG;
        filter
    }

    /// Counters since start.
    pub fn stats(&self) -> FilterStats {
        self.stats
    }

    /// The snapshot in use, if any.
    pub fn snapshot(&self) -> Option<&Snapshot> {
        self.snapshot.as_ref()
    }

    /// Why the last snapshot load failed, if it did.
    pub fn last_error(&self) -> Option<&str> {
        self.last_error.as_deref()
    }

    /// A snapshot load failure not reported yet, once: the module prints it
    /// so an operator sees a broken refresh, without a line per record.
    pub fn unreported_error(&mut self) -> Option<&str> {
        if self.error_reported {
            return None;
        }
        self.error_reported = true;
        self.last_error.as_deref()
    }

    /// Enriches `record` into `out` (cleared first).
    pub fn process(&mut self, record: &str, out: &mut String) {
        out.clear();
        if self.next_check.is_none_or(|at| Instant::now() >= at) {
            self.check_snapshot();
        }
        self.stats.records += 1;
        if !self.fast(record, out) {
            out.clear();
            self.slow(record, out);
        }
    }

    /// Reloads the snapshot if its file changed; keeps the old one when the
    /// new one cannot be read.
    pub fn check_snapshot(&mut self) {
        self.next_check = Some(Instant::now() + self.settings.check_every);
        let stamp = std::fs::metadata(&self.settings.snapshot)
            .ok()
            .map(|m| FileStamp { modified: m.modified().ok(), len: m.len() });
        if stamp.is_none() || stamp == self.stamp {
            return;
        }
        self.stamp = stamp;
        match load(&self.settings.snapshot) {
            Ok(snapshot) => {
                if self.settings.url_base_from_snapshot {
                    self.settings.records.event_url_base = snapshot.source.clone();
                }
                self.snapshot = Some(snapshot);
                self.rendered.clear();
                self.last_error = None;
                self.stats.snapshot_loads += 1;
            }
            Err(err) => {
                self.last_error = Some(err);
                self.error_reported = false;
                self.stats.snapshot_errors += 1;
            }
        }
    }

    fn outcome(&self, addr: IpAddr) -> Outcome {
        match &self.snapshot {
            None => Outcome::Failure(self.unavailable),
            Some(snapshot) => snapshot.lookup(addr).map_or(Outcome::Miss, Outcome::Hit),
        }
    }

    fn count(&mut self, outcome: &Outcome) {
        match outcome {
            Outcome::Hit(_) => self.stats.hits += 1,
            Outcome::Miss => self.stats.misses += 1,
            Outcome::Failure(_) => self.stats.failures += 1,
        }
    }

    /// The fast path; false when the record needs the slow one.
    fn fast(&mut self, record: &str, out: &mut String) -> bool {
        let (addr, close) = match splice::locate(record, &self.settings.records) {
            Located::Unknown => return false,
            Located::Skip => {
                self.stats.fast_path += 1;
                self.stats.skipped += 1;
                out.push_str(record);
                return true;
            }
            Located::Append { addr, close } => (addr, close),
        };
        self.stats.fast_path += 1;
        if let Some(suffix) = self.rendered.get(&addr) {
            self.stats.hits += 1;
            splice::append(record, close, suffix, out);
            return true;
        }
        let outcome = self.outcome(addr);
        self.count(&outcome);
        let records = &self.settings.records;
        let suffix = match &outcome {
            Outcome::Miss => {
                out.push_str(record);
                return true;
            }
            Outcome::Hit(hit) => {
                let suffix =
                    splice::suffix(hit_fields(hit, records), &records.hit_tag, records.output);
                // Repeat sources are the rule (94-98% of events), so a hit's
                // fields are rendered once and copied after that.
                self.rendered.put(addr, suffix.clone());
                suffix
            }
            Outcome::Failure(reason) => {
                splice::suffix(record::failure_fields(reason), &records.failure_tag, records.output)
            }
        };
        splice::append(record, close, &suffix, out);
        true
    }

    /// The slow path alone (the component's own record handling), for tests
    /// that hold the fast path to it.
    #[doc(hidden)]
    pub fn process_full_parse(&mut self, record: &str, out: &mut String) {
        out.clear();
        self.slow(record, out);
    }

    /// The slow path: the component's own record handling.
    fn slow(&mut self, record: &str, out: &mut String) {
        let records = &self.settings.records;
        let Some((mut object, addr)) = record::candidate(record, records) else {
            self.stats.skipped += 1;
            out.push_str(record);
            return;
        };
        let outcome = self.outcome(addr);
        self.count(&outcome);
        let records = &self.settings.records;
        match &outcome {
            Outcome::Miss => {
                out.push_str(record);
                return;
            }
            Outcome::Hit(hit) => record::write_hit(&mut object, hit, records),
            Outcome::Failure(reason) => record::write_failure(&mut object, reason, records),
        }
        out.push_str(&Value::Object(object).to_string());
    }
}

fn load(path: &Path) -> Result<Snapshot, String> {
    let file = std::fs::File::open(path).map_err(|err| format!("{}: {err}", path.display()))?;
    Snapshot::read(std::io::BufReader::with_capacity(64 * 1024, file))
        .map_err(|err| format!("{}: {err}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::misp::{Attribute, EventContext};
    use crate::snapshot::SnapshotBuilder;
    use std::path::PathBuf;

    fn snapshot_text() -> String {
        let event = |id: u64, level: u8| EventContext {
            id: id.to_string(),
            info: format!("event {id}"),
            threat_level_id: level,
            org: Some("CIRCL".into()),
        };
        let mut builder = SnapshotBuilder::default();
        builder.add(&[
            Attribute {
                value: "45.133.1.7".into(),
                timestamp: Some(1_651_234_567),
                event: event(12, 3),
            },
            Attribute { value: "2a01:4f8::1".into(), timestamp: None, event: event(13, 1) },
        ]);
        builder.set_attribute_count(12, Some(4512));
        builder.write(1_733_230_000, "https://misp.example.org")
    }

    struct Dir(PathBuf);

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn dir(name: &str) -> Dir {
        let path =
            std::env::temp_dir().join(format!("misp-enrich-filter-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        Dir(path)
    }

    fn filter(dir: &Dir, extra: &str) -> Filter {
        let json = format!(r#"{{"snapshot":"misp.snapshot"{extra}}}"#);
        Filter::new(ModuleSettings::from_json(&json, &dir.0).unwrap())
    }

    fn run(filter: &mut Filter, record: &str) -> String {
        let mut out = String::new();
        filter.process(record, &mut out);
        out
    }

    #[test]
    fn hits_are_appended_without_touching_the_record() {
        let d = dir("append");
        std::fs::write(d.0.join("misp.snapshot"), snapshot_text()).unwrap();
        let mut f = filter(&d, "");
        let record = r#"{"eventid":"cowrie.login.failed","src_ip":"45.133.1.7","msg":"caf\u00e9"}"#;
        assert_eq!(
            run(&mut f, record),
            concat!(
                r#"{"eventid":"cowrie.login.failed","src_ip":"45.133.1.7","msg":"caf\u00e9","#,
                r#""misp":{"event_id":"12","event_info":"event 12","threat_level_id":3,"#,
                r#""threat_level":"Low","org":"CIRCL","ioc_updated":1651234567,"#,
                r#""attribute_count":4512,"event_url":"https://misp.example.org/events/view/12"},"#,
                r#""tags":["misp_hit"]}"#
            )
        );
        assert_eq!(f.stats().fast_path, 1);
    }

    #[test]
    fn fast_and_slow_paths_agree() {
        let d = dir("agree");
        std::fs::write(d.0.join("misp.snapshot"), snapshot_text()).unwrap();
        let records = [
            r#"{"src_ip":"45.133.1.7"}"#,
            r#"{ "src_ip" : "::ffff:45.133.1.7" , "n" : [1, {"a": "}"}] }"#,
            r#"{"source":{"address":"2a01:04f8::1"},"x":null}"#,
            r#"{"source.address":"45.133.1.7"}"#,
            r#"{"src_ip":"45.133.1.7","tags":"cowrie"}"#,
            r#"{"src_ip":"45.133.1.7","misp":{"note":1}}"#,
            r#"{"src_ip":"4\u0035.133.1.7"}"#,
            r#"{"src_ip":"10.0.0.1"}"#,
            r#"{"src_ip":"193.32.162.50"}"#,
            r#"{"src_ip":7,"peerIP":"45.133.1.7"}"#,
            r#"{"src_ip":"x","src_ip":"45.133.1.7"}"#,
            r#"{}"#,
            r#"[1]"#,
            "not json",
        ];
        for output in ["", r#","output":"dotted""#] {
            let mut f = filter(&d, output);
            for record in records {
                let mut fast = String::new();
                f.process(record, &mut fast);
                let mut slow = String::new();
                f.slow(record, &mut slow);
                match (serde_json::from_str::<Value>(&fast), serde_json::from_str::<Value>(&slow)) {
                    (Ok(a), Ok(b)) => assert_eq!(a, b, "{record}"),
                    _ => assert_eq!(fast, slow, "{record}"),
                }
            }
            assert!(f.stats().fast_path >= 8, "{:?}", f.stats());
        }
    }

    #[test]
    fn misses_and_non_candidates_come_back_byte_for_byte() {
        let d = dir("miss");
        std::fs::write(d.0.join("misp.snapshot"), snapshot_text()).unwrap();
        let mut f = filter(&d, "");
        for record in [r#"{"src_ip": "193.32.162.50" }"#, r#"{"src_ip":"10.1.1.1"}"#, "[]", ""] {
            assert_eq!(run(&mut f, record), record);
        }
    }

    #[test]
    fn without_a_snapshot_lookups_fail_and_records_flow() {
        let d = dir("missing");
        let mut f = filter(&d, "");
        let out: Value = serde_json::from_str(&run(&mut f, r#"{"src_ip":"45.133.1.7"}"#)).unwrap();
        assert_eq!(out["misp"], serde_json::json!({"error": "no_snapshot"}));
        assert_eq!(out["tags"], serde_json::json!(["_misp_lookup_failure"]));
        assert_eq!(run(&mut f, r#"{"src_ip":"10.0.0.1"}"#), r#"{"src_ip":"10.0.0.1"}"#);
    }

    #[test]
    fn without_configuration_lookups_fail_as_no_config() {
        let mut f = Filter::unconfigured();
        let out: Value = serde_json::from_str(&run(&mut f, r#"{"src_ip":"45.133.1.7"}"#)).unwrap();
        assert_eq!(out["misp"], serde_json::json!({"error": "no_config"}));
    }

    #[test]
    fn a_corrupt_replacement_keeps_the_old_snapshot() {
        let d = dir("corrupt");
        let path = d.0.join("misp.snapshot");
        std::fs::write(&path, snapshot_text()).unwrap();
        let mut f = filter(&d, "");
        std::fs::write(&path, "misp-enrich snapshot 1\ntaken_at\tnever\n").unwrap();
        f.check_snapshot();
        assert!(f.last_error().unwrap().contains("line 2: taken_at is not a number"));
        assert!(f.unreported_error().is_some());
        assert!(f.unreported_error().is_none(), "reported once");
        assert_eq!(f.snapshot().unwrap().len(), 2);
        assert!(run(&mut f, r#"{"src_ip":"45.133.1.7"}"#).contains("misp_hit"));
    }

    #[test]
    fn a_changed_snapshot_is_loaded() {
        let d = dir("reload");
        let path = d.0.join("misp.snapshot");
        let mut f = filter(&d, "");
        assert!(f.snapshot().is_none());
        std::fs::write(&path, snapshot_text()).unwrap();
        f.check_snapshot();
        assert_eq!(f.stats().snapshot_loads, 1);
        assert!(run(&mut f, r#"{"src_ip":"45.133.1.7"}"#).contains("misp_hit"));
    }
}
