//! The configuration as an operator writes it: JSON, every key optional except
//! `misp_url` and `api_key`.
//!
//! This layer only reads the document and says which key is wrong when a value
//! has the wrong type; [`crate::settings`] checks meaning (URLs, ranges,
//! networks) and fills in defaults. Each key is read on its own so that an
//! error names the setting instead of a line and column.

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::secret::ApiKey;

/// Every key the configuration accepts, in the order the README documents them.
pub const KNOWN_KEYS: &[&str] = &[
    "misp_url",
    "api_key",
    "event_url_base",
    "source_fields",
    "cache_capacity",
    "hit_ttl_secs",
    "miss_ttl_secs",
    "connect_timeout_ms",
    "response_timeout_ms",
    "output",
    "hit_tag",
    "failure_tag",
    "attribute_types",
    "enforce_warninglist",
    "skip_networks",
    "max_stale_secs",
    "breaker_failures",
    "breaker_cooldown_secs",
    "breaker_max_cooldown_secs",
    "snapshot",
    "snapshot_check_secs",
];

/// The configuration as written; `None` means "use the default".
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Config {
    pub misp_url: Option<String>,
    pub api_key: Option<ApiKey>,
    pub event_url_base: Option<String>,
    pub source_fields: Option<Vec<String>>,
    pub cache_capacity: Option<u64>,
    pub hit_ttl_secs: Option<u64>,
    pub miss_ttl_secs: Option<u64>,
    pub connect_timeout_ms: Option<u64>,
    pub response_timeout_ms: Option<u64>,
    pub output: Option<String>,
    pub hit_tag: Option<String>,
    pub failure_tag: Option<String>,
    pub attribute_types: Option<Vec<String>>,
    pub enforce_warninglist: Option<bool>,
    pub skip_networks: Option<Vec<String>>,
    pub max_stale_secs: Option<u64>,
    pub breaker_failures: Option<u32>,
    pub breaker_cooldown_secs: Option<u64>,
    pub breaker_max_cooldown_secs: Option<u64>,
    pub snapshot: Option<String>,
    pub snapshot_check_secs: Option<u64>,
}

/// Why a configuration was refused. The text names the setting and never
/// contains the API key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The document is not JSON at all.
    #[error("configuration is not valid JSON: {0}")]
    Syntax(String),
    /// The document is JSON but not an object.
    #[error("configuration must be a JSON object of settings")]
    NotAnObject,
    /// A key that no setting has; usually a typo.
    #[error("unknown setting {key:?}; known settings: {}", KNOWN_KEYS.join(", "))]
    UnknownKey { key: String },
    /// A required setting is absent.
    #[error("{0} is required")]
    Missing(&'static str),
    /// A setting has a value of the wrong type or meaning.
    #[error("{key}: {reason}")]
    Invalid { key: &'static str, reason: String },
}

impl Config {
    /// Reads a JSON configuration document.
    pub fn from_json(text: &str) -> Result<Self, ConfigError> {
        let map = match serde_json::from_str(text) {
            Ok(Value::Object(map)) => map,
            Ok(_) => return Err(ConfigError::NotAnObject),
            Err(err) => return Err(ConfigError::Syntax(err.to_string())),
        };
        if let Some(key) = map.keys().find(|k| !KNOWN_KEYS.contains(&k.as_str())) {
            return Err(ConfigError::UnknownKey { key: key.clone() });
        }
        let mut fields = Fields(map);
        Ok(Config {
            misp_url: fields.take("misp_url")?,
            api_key: fields.take_secret("api_key")?,
            event_url_base: fields.take("event_url_base")?,
            source_fields: fields.take("source_fields")?,
            cache_capacity: fields.take("cache_capacity")?,
            hit_ttl_secs: fields.take("hit_ttl_secs")?,
            miss_ttl_secs: fields.take("miss_ttl_secs")?,
            connect_timeout_ms: fields.take("connect_timeout_ms")?,
            response_timeout_ms: fields.take("response_timeout_ms")?,
            output: fields.take("output")?,
            hit_tag: fields.take("hit_tag")?,
            failure_tag: fields.take("failure_tag")?,
            attribute_types: fields.take("attribute_types")?,
            enforce_warninglist: fields.take("enforce_warninglist")?,
            skip_networks: fields.take("skip_networks")?,
            max_stale_secs: fields.take("max_stale_secs")?,
            breaker_failures: fields.take("breaker_failures")?,
            breaker_cooldown_secs: fields.take("breaker_cooldown_secs")?,
            breaker_max_cooldown_secs: fields.take("breaker_max_cooldown_secs")?,
            snapshot: fields.take("snapshot")?,
            snapshot_check_secs: fields.take("snapshot_check_secs")?,
        })
    }
}

/// The settings object being taken apart key by key.
struct Fields(Map<String, Value>);

impl Fields {
    /// Removes `key` and converts it; `null` counts as absent.
    fn take<T: DeserializeOwned>(&mut self, key: &'static str) -> Result<Option<T>, ConfigError> {
        match self.0.remove(key) {
            None | Some(Value::Null) => Ok(None),
            Some(value) => serde_json::from_value(value)
                .map(Some)
                .map_err(|err| ConfigError::Invalid { key, reason: err.to_string() }),
        }
    }

    /// Like [`Fields::take`], but the error never quotes the value, which
    /// could be the key itself under the wrong type.
    fn take_secret(&mut self, key: &'static str) -> Result<Option<ApiKey>, ConfigError> {
        match self.0.remove(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(text)) => Ok(Some(ApiKey::new(text))),
            Some(_) => Err(ConfigError::Invalid { key, reason: "must be a string".into() }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_key_is_named_with_the_known_ones() {
        let err = Config::from_json(r#"{"misp_url":"https://m","cache_size":5}"#).unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown setting \"cache_size\"; known settings: misp_url, api_key, event_url_base, \
             source_fields, cache_capacity, hit_ttl_secs, miss_ttl_secs, connect_timeout_ms, \
             response_timeout_ms, output, hit_tag, failure_tag, attribute_types, \
             enforce_warninglist, skip_networks, max_stale_secs, breaker_failures, \
             breaker_cooldown_secs, breaker_max_cooldown_secs, snapshot, snapshot_check_secs"
        );
    }

    #[test]
    fn wrong_type_names_the_setting() {
        let err = Config::from_json(r#"{"cache_capacity":"lots"}"#).unwrap_err();
        assert_eq!(err.to_string(), "cache_capacity: invalid type: string \"lots\", expected u64");
    }

    #[test]
    fn api_key_of_wrong_type_is_not_quoted() {
        let err = Config::from_json(r#"{"api_key":123456789}"#).unwrap_err();
        assert_eq!(err.to_string(), "api_key: must be a string");
    }

    #[test]
    fn non_object_and_broken_documents_are_refused() {
        assert_eq!(Config::from_json("[]").unwrap_err(), ConfigError::NotAnObject);
        let err = Config::from_json("{\"misp_url\":").unwrap_err();
        assert!(matches!(err, ConfigError::Syntax(_)), "{err:?}");
    }

    #[test]
    fn null_means_default() {
        let config = Config::from_json(r#"{"hit_tag":null,"misp_url":"https://m"}"#).unwrap();
        assert_eq!(config.hit_tag, None);
        assert_eq!(config.misp_url.as_deref(), Some("https://m"));
    }
}
