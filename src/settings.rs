//! Validated settings: the runtime form of [`Config`], with defaults filled in.
//!
//! Every limit is checked here, once, so the enrichment path can trust its
//! settings. Each default is documented where it is set with what it guards
//! against; the README's configuration table repeats them.

use std::num::NonZeroUsize;
use std::time::Duration;

use ipnet::IpNet;

use crate::breaker::BreakerPolicy;
use crate::config::{Config, ConfigError};
use crate::secret::ApiKey;

/// Addresses are read from the first of these fields that holds one: raw
/// Cowrie, ECS (`source.address`, `source.ip`), Cowrie's Logstash recipe,
/// OCSF and hpfeeds, in roughly that order of prevalence.
pub const DEFAULT_SOURCE_FIELDS: &[&str] =
    &["src_ip", "source.address", "source.ip", "honeypot.src_ip", "src_endpoint.ip", "peerIP"];

/// The MISP attribute types that carry an address; the search never names
/// others, because only addresses are ever sent as values.
pub const ADDRESS_TYPES: &[&str] = &["ip-src", "ip-dst", "ip-src|port", "ip-dst|port", "domain|ip"];

/// Appended to `tags` on a hit.
const DEFAULT_HIT_TAG: &str = "misp_hit";
/// Appended to `tags` when a lookup failed; the Logstash convention for
/// failed enrichments.
const DEFAULT_FAILURE_TAG: &str = "_misp_lookup_failure";

/// Bounds the cache's memory: about 10k entries suffice for a busy sensor,
/// which sees tens to hundreds of distinct sources a day.
const DEFAULT_CACHE_CAPACITY: usize = 10_000;
/// An upper bound that still fits comfortably in a component's memory.
const MAX_CACHE_CAPACITY: u64 = 10_000_000;
/// Feeds change hourly at most; an hour-old hit is still the right answer.
const DEFAULT_HIT_TTL_SECS: u64 = 3600;
/// Misses expire sooner, so an address that a feed adds is noticed soon.
const DEFAULT_MISS_TTL_SECS: u64 = 600;
/// No TTL above a week: stale intelligence is worse than a lookup.
const MAX_TTL_SECS: u64 = 7 * 24 * 3600;
/// A MISP that cannot accept a connection in 3 s is down; waiting longer
/// only backs up the pipeline.
const DEFAULT_CONNECT_TIMEOUT_MS: u64 = 3000;
/// A restSearch for a batch of addresses answers in well under a second on a
/// healthy instance; 5 s leaves room for a busy one.
const DEFAULT_RESPONSE_TIMEOUT_MS: u64 = 5000;
/// A timeout above 5 minutes would stall a pipeline for longer than any
/// shipper buffers.
const MAX_TIMEOUT_MS: u64 = 300_000;

/// While MISP fails, answers up to a day past their TTL are served instead of
/// the failure tag: a day-old verdict on a scanner is still informative.
const DEFAULT_MAX_STALE_SECS: u64 = 24 * 3600;
/// Soft failures (5xx, 403, broken answers) in a row before the breaker
/// opens; timeouts and refused connections open it at once.
const DEFAULT_BREAKER_FAILURES: u32 = 3;
/// First cool-down after the breaker opens; doubles per failed probe.
const DEFAULT_BREAKER_COOLDOWN_SECS: u64 = 5;
/// Cap of the cool-down, so a recovered MISP is noticed within minutes.
const DEFAULT_BREAKER_MAX_COOLDOWN_SECS: u64 = 300;
/// No cool-down above an hour: longer would hide a recovered MISP.
const MAX_COOLDOWN_SECS: u64 = 3600;

/// How the enrichment is written onto a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputStyle {
    /// One object: `"misp": {"event_id": ...}`.
    Nested,
    /// Flat keys with dots: `"misp.event_id": ...`, for pipelines that keep
    /// dotted names (`subobjects: false`).
    Dotted,
}

/// A field name split at its dots, so it can match both the flat key and the
/// nested path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldPath {
    pub name: String,
    pub segments: Vec<String>,
}

impl FieldPath {
    /// Splits `name` at its dots.
    pub fn new(name: &str) -> Self {
        FieldPath {
            name: name.to_string(),
            segments: name.split('.').map(str::to_string).collect(),
        }
    }
}

/// How records are read and written: the settings the component and the
/// Fluent Bit module share, so both produce the same records.
#[derive(Debug, Clone)]
pub struct RecordSettings {
    pub source_fields: Vec<FieldPath>,
    pub skip_networks: Vec<IpNet>,
    pub output: OutputStyle,
    pub hit_tag: String,
    pub failure_tag: String,
    /// Base of `misp.event_url`, without a trailing `/`.
    pub event_url_base: String,
}

impl Default for RecordSettings {
    /// The documented defaults, with no `event_url_base`.
    fn default() -> Self {
        RecordSettings {
            source_fields: DEFAULT_SOURCE_FIELDS.iter().map(|name| FieldPath::new(name)).collect(),
            skip_networks: Vec::new(),
            output: OutputStyle::Nested,
            hit_tag: DEFAULT_HIT_TAG.to_string(),
            failure_tag: DEFAULT_FAILURE_TAG.to_string(),
            event_url_base: String::new(),
        }
    }
}

impl RecordSettings {
    /// Validates the record-related keys of `config`; `event_url_base`
    /// defaults to `default_url_base`.
    pub fn from_config(config: &Config, default_url_base: &str) -> Result<Self, ConfigError> {
        let hit_tag = tag("hit_tag", config.hit_tag.clone(), DEFAULT_HIT_TAG)?;
        let failure_tag = tag("failure_tag", config.failure_tag.clone(), DEFAULT_FAILURE_TAG)?;
        if hit_tag == failure_tag {
            return Err(invalid("failure_tag", "must differ from hit_tag"));
        }
        let event_url_base = match &config.event_url_base {
            Some(url) => base_url("event_url_base", url.clone())?,
            None => default_url_base.to_string(),
        };
        Ok(RecordSettings {
            source_fields: source_fields(config.source_fields.clone())?,
            skip_networks: skip_networks(config.skip_networks.clone())?,
            output: output(config.output.clone())?,
            hit_tag,
            failure_tag,
            event_url_base,
        })
    }
}

/// Validated settings of one enricher (the component).
#[derive(Debug, Clone)]
pub struct Settings {
    pub records: RecordSettings,
    /// MISP's base URL without a trailing `/`.
    pub misp_url: String,
    pub api_key: ApiKey,
    pub cache_capacity: NonZeroUsize,
    pub hit_ttl: Duration,
    pub miss_ttl: Duration,
    pub connect_timeout: Duration,
    pub response_timeout: Duration,
    pub attribute_types: Vec<String>,
    pub enforce_warninglist: bool,
    /// How long past its TTL an answer may serve while MISP fails.
    pub max_stale: Duration,
    pub breaker: BreakerPolicy,
}

impl Settings {
    /// Parses and validates a JSON configuration document.
    pub fn from_json(text: &str) -> Result<Self, ConfigError> {
        Settings::try_from(Config::from_json(text)?)
    }
}

impl TryFrom<Config> for Settings {
    type Error = ConfigError;

    fn try_from(config: Config) -> Result<Self, ConfigError> {
        for (key, set) in [
            ("snapshot", config.snapshot.is_some()),
            ("snapshot_check_secs", config.snapshot_check_secs.is_some()),
        ] {
            if set {
                return Err(invalid(key, "only the Fluent Bit module reads a snapshot"));
            }
        }
        let misp_url =
            base_url("misp_url", config.misp_url.clone().ok_or(ConfigError::Missing("misp_url"))?)?;
        let api_key = config.api_key.clone().ok_or(ConfigError::Missing("api_key"))?;
        if api_key.expose().trim().is_empty() {
            return Err(invalid("api_key", "must not be empty"));
        }

        Ok(Settings {
            records: RecordSettings::from_config(&config, &misp_url)?,
            misp_url,
            api_key,
            cache_capacity: cache_capacity(config.cache_capacity)?,
            hit_ttl: ttl("hit_ttl_secs", config.hit_ttl_secs, DEFAULT_HIT_TTL_SECS)?,
            miss_ttl: ttl("miss_ttl_secs", config.miss_ttl_secs, DEFAULT_MISS_TTL_SECS)?,
            connect_timeout: timeout(
                "connect_timeout_ms",
                config.connect_timeout_ms,
                DEFAULT_CONNECT_TIMEOUT_MS,
            )?,
            response_timeout: timeout(
                "response_timeout_ms",
                config.response_timeout_ms,
                DEFAULT_RESPONSE_TIMEOUT_MS,
            )?,
            attribute_types: attribute_types(config.attribute_types.clone())?,
            enforce_warninglist: config.enforce_warninglist.unwrap_or(false),
            max_stale: ttl("max_stale_secs", config.max_stale_secs, DEFAULT_MAX_STALE_SECS)?,
            breaker: breaker(&config)?,
        })
    }
}

/// A refusal of `key`'s value.
pub(crate) fn invalid(key: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { key, reason: reason.into() }
}

/// An `http(s)://host[:port][/path]` URL with the trailing `/` removed, so
/// paths can be appended (MISP may live under a sub-path).
pub(crate) fn base_url(key: &'static str, url: String) -> Result<String, ConfigError> {
    let trimmed = url.trim_end_matches('/');
    let Some((scheme, rest)) = trimmed.split_once("://") else {
        return Err(invalid(
            key,
            format!("{url:?} has no scheme: did you mean \"https://{trimmed}\"?"),
        ));
    };
    if scheme != "https" && scheme != "http" {
        return Err(invalid(key, format!("{url:?} must start with https:// or http://")));
    }
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.is_empty() {
        return Err(invalid(key, format!("{url:?} has no host")));
    }
    if trimmed.contains(['?', '#']) || trimmed.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(invalid(key, format!("{url:?} must be a plain base URL")));
    }
    Ok(trimmed.to_string())
}

fn tag(key: &'static str, value: Option<String>, default: &str) -> Result<String, ConfigError> {
    let tag = value.unwrap_or_else(|| default.to_string());
    if tag.trim().is_empty() {
        return Err(invalid(key, "must not be empty"));
    }
    Ok(tag)
}

fn source_fields(value: Option<Vec<String>>) -> Result<Vec<FieldPath>, ConfigError> {
    let names =
        value.unwrap_or_else(|| DEFAULT_SOURCE_FIELDS.iter().map(|s| s.to_string()).collect());
    if names.is_empty() {
        return Err(invalid("source_fields", "must name at least one field"));
    }
    names
        .into_iter()
        .map(|name| {
            let path = FieldPath::new(&name);
            if path.segments.iter().any(String::is_empty) {
                return Err(invalid("source_fields", format!("{name:?} is not a field name")));
            }
            Ok(path)
        })
        .collect()
}

fn cache_capacity(value: Option<u64>) -> Result<NonZeroUsize, ConfigError> {
    let capacity = value.unwrap_or(DEFAULT_CACHE_CAPACITY as u64);
    if capacity > MAX_CACHE_CAPACITY {
        return Err(invalid("cache_capacity", format!("{capacity} is above {MAX_CACHE_CAPACITY}")));
    }
    usize::try_from(capacity)
        .ok()
        .and_then(NonZeroUsize::new)
        .ok_or_else(|| invalid("cache_capacity", "must be at least 1"))
}

fn ttl(key: &'static str, value: Option<u64>, default: u64) -> Result<Duration, ConfigError> {
    let secs = value.unwrap_or(default);
    if secs > MAX_TTL_SECS {
        return Err(invalid(key, format!("{secs} is above {MAX_TTL_SECS} (one week)")));
    }
    Ok(Duration::from_secs(secs))
}

fn timeout(key: &'static str, value: Option<u64>, default: u64) -> Result<Duration, ConfigError> {
    let ms = value.unwrap_or(default);
    if ms == 0 || ms > MAX_TIMEOUT_MS {
        return Err(invalid(key, format!("{ms} must be between 1 and {MAX_TIMEOUT_MS}")));
    }
    Ok(Duration::from_millis(ms))
}

fn breaker(config: &Config) -> Result<BreakerPolicy, ConfigError> {
    let failures = config.breaker_failures.unwrap_or(DEFAULT_BREAKER_FAILURES);
    if failures == 0 {
        return Err(invalid("breaker_failures", "must be at least 1"));
    }
    let first = cooldown(
        "breaker_cooldown_secs",
        config.breaker_cooldown_secs,
        DEFAULT_BREAKER_COOLDOWN_SECS,
    )?;
    let max_cooldown = cooldown(
        "breaker_max_cooldown_secs",
        config.breaker_max_cooldown_secs,
        DEFAULT_BREAKER_MAX_COOLDOWN_SECS.max(first.as_secs()),
    )?;
    if max_cooldown < first {
        return Err(invalid(
            "breaker_max_cooldown_secs",
            "must not be below breaker_cooldown_secs",
        ));
    }
    Ok(BreakerPolicy { failures, cooldown: first, max_cooldown })
}

fn cooldown(key: &'static str, value: Option<u64>, default: u64) -> Result<Duration, ConfigError> {
    let secs = value.unwrap_or(default);
    if secs == 0 || secs > MAX_COOLDOWN_SECS {
        return Err(invalid(key, format!("{secs} must be between 1 and {MAX_COOLDOWN_SECS}")));
    }
    Ok(Duration::from_secs(secs))
}

fn output(value: Option<String>) -> Result<OutputStyle, ConfigError> {
    match value.as_deref() {
        None | Some("nested") => Ok(OutputStyle::Nested),
        Some("dotted") => Ok(OutputStyle::Dotted),
        Some(other) => {
            Err(invalid("output", format!("{other:?} is neither \"nested\" nor \"dotted\"")))
        }
    }
}

fn attribute_types(value: Option<Vec<String>>) -> Result<Vec<String>, ConfigError> {
    let types = value.unwrap_or_else(|| ADDRESS_TYPES.iter().map(|s| s.to_string()).collect());
    if types.is_empty() {
        return Err(invalid("attribute_types", "must name at least one type"));
    }
    if let Some(bad) = types.iter().find(|t| !ADDRESS_TYPES.contains(&t.as_str())) {
        return Err(invalid(
            "attribute_types",
            format!("{bad:?} does not hold an address; choose from {}", ADDRESS_TYPES.join(", ")),
        ));
    }
    Ok(types)
}

fn skip_networks(value: Option<Vec<String>>) -> Result<Vec<IpNet>, ConfigError> {
    value
        .unwrap_or_default()
        .iter()
        .map(|text| {
            text.parse::<IpNet>()
                .or_else(|_| text.parse::<std::net::IpAddr>().map(IpNet::from))
                .map_err(|_| invalid("skip_networks", format!("{text:?} is not a CIDR network")))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"{"misp_url":"https://misp.example.org/","api_key":"k"}"#;

    fn error_of(json: &str) -> String {
        Settings::from_json(json).unwrap_err().to_string()
    }

    #[test]
    fn defaults_match_the_documentation() {
        let s = Settings::from_json(MINIMAL).unwrap();
        assert_eq!(s.misp_url, "https://misp.example.org");
        assert_eq!(s.records.event_url_base, "https://misp.example.org");
        let fields: Vec<&str> = s.records.source_fields.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(fields, DEFAULT_SOURCE_FIELDS);
        assert_eq!(s.records.source_fields[1].segments, ["source", "address"]);
        assert_eq!(s.cache_capacity.get(), 10_000);
        assert_eq!(s.hit_ttl, Duration::from_secs(3600));
        assert_eq!(s.miss_ttl, Duration::from_secs(600));
        assert_eq!(s.connect_timeout, Duration::from_secs(3));
        assert_eq!(s.response_timeout, Duration::from_secs(5));
        assert_eq!(s.records.output, OutputStyle::Nested);
        assert_eq!(s.records.hit_tag, "misp_hit");
        assert_eq!(s.records.failure_tag, "_misp_lookup_failure");
        assert_eq!(s.attribute_types, ADDRESS_TYPES);
        assert!(!s.enforce_warninglist);
        assert!(s.records.skip_networks.is_empty());
        assert_eq!(s.max_stale, Duration::from_secs(86_400));
        assert_eq!(
            s.breaker,
            BreakerPolicy {
                failures: 3,
                cooldown: Duration::from_secs(5),
                max_cooldown: Duration::from_secs(300)
            }
        );
    }

    #[test]
    fn required_settings_are_named() {
        assert_eq!(error_of(r#"{"api_key":"k"}"#), "misp_url is required");
        assert_eq!(error_of(r#"{"misp_url":"https://m"}"#), "api_key is required");
    }

    #[test]
    fn url_without_scheme_gets_a_hint() {
        assert_eq!(
            error_of(r#"{"misp_url":"misp.local","api_key":"k"}"#),
            "misp_url: \"misp.local\" has no scheme: did you mean \"https://misp.local\"?"
        );
    }

    #[test]
    fn event_url_base_is_validated_and_trimmed() {
        let json = r#"{"misp_url":"https://10.0.0.5","api_key":"k",
            "event_url_base":"https://misp.soc.example/misp/"}"#;
        assert_eq!(
            Settings::from_json(json).unwrap().records.event_url_base,
            "https://misp.soc.example/misp"
        );
        assert_eq!(
            error_of(r#"{"misp_url":"https://m","api_key":"k","event_url_base":"ftp://m"}"#),
            "event_url_base: \"ftp://m\" must start with https:// or http://"
        );
    }

    #[test]
    fn bad_values_name_their_setting() {
        let cases = [
            (r#""cache_capacity":0"#, "cache_capacity: must be at least 1"),
            (r#""response_timeout_ms":0"#, "response_timeout_ms: 0 must be between 1 and 300000"),
            (r#""hit_ttl_secs":99999999"#, "hit_ttl_secs: 99999999 is above 604800 (one week)"),
            (r#""output":"flat""#, "output: \"flat\" is neither \"nested\" nor \"dotted\""),
            (r#""hit_tag":"""#, "hit_tag: must not be empty"),
            (r#""failure_tag":"misp_hit""#, "failure_tag: must differ from hit_tag"),
            (
                r#""source_fields":["source..ip"]"#,
                "source_fields: \"source..ip\" is not a field name",
            ),
            (
                r#""skip_networks":["10.0.0.0/33"]"#,
                "skip_networks: \"10.0.0.0/33\" is not a CIDR network",
            ),
            (
                r#""attribute_types":["domain"]"#,
                "attribute_types: \"domain\" does not hold an address; choose from ip-src, ip-dst, \
                 ip-src|port, ip-dst|port, domain|ip",
            ),
        ];
        for (setting, expected) in cases {
            let json = format!(r#"{{"misp_url":"https://m","api_key":"k",{setting}}}"#);
            assert_eq!(error_of(&json), expected);
        }
    }

    #[test]
    fn skip_networks_accept_cidrs_and_single_addresses() {
        let json = r#"{"misp_url":"https://m","api_key":"k",
            "skip_networks":["45.133.0.0/16","2a01:4f8::1"]}"#;
        let s = Settings::from_json(json).unwrap();
        assert_eq!(s.records.skip_networks.len(), 2);
        assert_eq!(s.records.skip_networks[1].to_string(), "2a01:4f8::1/128");
    }

    #[test]
    fn debug_output_hides_the_api_key() {
        let json =
            r#"{"misp_url":"https://m","api_key":"c0ffeec0ffeec0ffeec0ffeec0ffeec0ffeec0ff"}"#;
        let debug = format!("{:?}", Settings::from_json(json).unwrap());
        assert!(!debug.contains("c0ffee"), "{debug}");
        assert!(debug.contains("api_key: ***"), "{debug}");
    }
}
