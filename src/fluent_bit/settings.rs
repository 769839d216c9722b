//! The Fluent Bit module's configuration: the component's record keys plus
//! the snapshot it reads.
//!
//! Fluent Bit passes a WASM filter no arguments and no environment, so the
//! module reads a JSON file from one of its `accessible_paths`. Keys that only
//! make sense for a module that talks to MISP are refused by name, so an
//! operator who copies the component's configuration learns what is ignored.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::{Config, ConfigError};
use crate::settings::{RecordSettings, invalid};

/// The file the module looks for in each preopened directory.
pub const CONFIG_FILE_NAME: &str = "misp-enrich.json";

/// How often the snapshot file is checked for changes by default: often
/// enough that a refresh shows within seconds, rarely enough that the stat
/// costs nothing per record.
const DEFAULT_CHECK_SECS: u64 = 5;
/// Checks at most once a second and at least once an hour.
const CHECK_RANGE: std::ops::RangeInclusive<u64> = 1..=3600;

/// Validated settings of the Fluent Bit module.
#[derive(Debug, Clone)]
pub struct ModuleSettings {
    pub records: RecordSettings,
    /// True when `event_url_base` was not configured, so the snapshot's
    /// source URL is used.
    pub url_base_from_snapshot: bool,
    pub snapshot: PathBuf,
    pub check_every: Duration,
}

impl ModuleSettings {
    /// Defaults for a module that found no configuration: the component's
    /// record settings and no snapshot.
    pub fn fallback() -> Self {
        ModuleSettings {
            records: RecordSettings::default(),
            url_base_from_snapshot: true,
            snapshot: PathBuf::new(),
            check_every: Duration::from_secs(DEFAULT_CHECK_SECS),
        }
    }

    /// Parses the module's configuration; a relative `snapshot` path is
    /// taken relative to `config_dir`, the directory the file was found in.
    pub fn from_json(text: &str, config_dir: &Path) -> Result<Self, ConfigError> {
        let config = Config::from_json(text)?;
        let not_here = [
            ("misp_url", config.misp_url.is_some()),
            ("api_key", config.api_key.is_some()),
            ("cache_capacity", config.cache_capacity.is_some()),
            ("hit_ttl_secs", config.hit_ttl_secs.is_some()),
            ("miss_ttl_secs", config.miss_ttl_secs.is_some()),
            ("connect_timeout_ms", config.connect_timeout_ms.is_some()),
            ("response_timeout_ms", config.response_timeout_ms.is_some()),
            ("attribute_types", config.attribute_types.is_some()),
            ("enforce_warninglist", config.enforce_warninglist.is_some()),
            ("max_stale_secs", config.max_stale_secs.is_some()),
            ("breaker_failures", config.breaker_failures.is_some()),
            ("breaker_cooldown_secs", config.breaker_cooldown_secs.is_some()),
            ("breaker_max_cooldown_secs", config.breaker_max_cooldown_secs.is_some()),
        ];
        if let Some((key, _)) = not_here.iter().find(|(_, set)| *set) {
            return Err(invalid(
                key,
                "does not apply to the Fluent Bit module, which reads a snapshot and never \
                 contacts MISP (misp-enrich sync takes it)",
            ));
        }

        let snapshot = config.snapshot.clone().ok_or(ConfigError::Missing("snapshot"))?;
        if snapshot.trim().is_empty() {
            return Err(invalid("snapshot", "must not be empty"));
        }
        let check_secs = config.snapshot_check_secs.unwrap_or(DEFAULT_CHECK_SECS);
        if !CHECK_RANGE.contains(&check_secs) {
            return Err(invalid(
                "snapshot_check_secs",
                format!("{check_secs} must be between 1 and {}", CHECK_RANGE.end()),
            ));
        }
        Ok(ModuleSettings {
            records: RecordSettings::from_config(&config, "")?,
            url_base_from_snapshot: config.event_url_base.is_none(),
            snapshot: config_dir.join(snapshot),
            check_every: Duration::from_secs(check_secs),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_is_required_and_relative_to_the_config() {
        let s = ModuleSettings::from_json(r#"{"snapshot":"misp.snapshot"}"#, Path::new("/etc/me"))
            .unwrap();
        assert_eq!(s.snapshot, Path::new("/etc/me/misp.snapshot"));
        assert_eq!(s.check_every, Duration::from_secs(5));
        assert!(s.url_base_from_snapshot);
        assert_eq!(s.records.hit_tag, "misp_hit");
        let err = ModuleSettings::from_json("{}", Path::new("/")).unwrap_err();
        assert_eq!(err.to_string(), "snapshot is required");
    }

    #[test]
    fn keys_for_talking_to_misp_are_refused() {
        let err = ModuleSettings::from_json(r#"{"snapshot":"s","api_key":"k"}"#, Path::new("/"))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "api_key: does not apply to the Fluent Bit module, which reads a snapshot and never \
             contacts MISP (misp-enrich sync takes it)"
        );
    }

    #[test]
    fn record_keys_are_shared_with_the_component() {
        let json = r#"{"snapshot":"/s","output":"dotted","event_url_base":"https://m/",
            "skip_networks":["45.133.0.0/16"],"hit_tag":"known_bad"}"#;
        let s = ModuleSettings::from_json(json, Path::new("/x")).unwrap();
        assert_eq!(s.snapshot, Path::new("/s"));
        assert_eq!(s.records.event_url_base, "https://m");
        assert!(!s.url_base_from_snapshot);
        assert_eq!(s.records.hit_tag, "known_bad");
        assert_eq!(s.records.skip_networks.len(), 1);
    }
}
