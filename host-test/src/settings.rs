//! From flags and files to the component's configuration and the host's
//! limits.
//!
//! The component owns the meaning of its configuration (it validates every
//! key and rejects unknown ones, naming the known ones), so the host only
//! assembles the JSON document: a `--config` file first, then the flags on
//! top, then the API key. The host reads back just what it enforces itself:
//! the origin of `misp_url` and the two timeouts, which double as caps for
//! the HTTP hook.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Map, Value};

use crate::outbound::{Authority, AuthorityError, TimeoutCaps};
use crate::secret::Secret;

/// The component's default connect timeout; the host cap follows the setting.
pub const DEFAULT_CONNECT_TIMEOUT_MS: u64 = 3000;
/// The component's default response timeout, also the first-byte and
/// between-bytes cap of the host.
pub const DEFAULT_RESPONSE_TIMEOUT_MS: u64 = 5000;

/// The fields the component reads a source address from by default; the
/// summary counts distinct sources with the core's own reading of them.
pub use misp_enrich::settings::DEFAULT_SOURCE_FIELDS;

/// Why the configuration could not be assembled.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("{path}: {reason}")]
    File { path: PathBuf, reason: String },
    #[error(
        "{0}: api_key does not belong in a configuration file; \
         set MISP_API_KEY or pass --api-key-file"
    )]
    KeyInFile(PathBuf),
    #[error("no API key: set MISP_API_KEY or pass --api-key-file")]
    NoKey,
    #[error("misp_url is required: pass --misp-url or set it in --config")]
    NoUrl,
    #[error(transparent)]
    Url(#[from] AuthorityError),
}

/// The configuration document being assembled, without the key.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    doc: Map<String, Value>,
    api_key: Option<Secret>,
}

impl Settings {
    /// Starts from a JSON configuration file.
    pub fn from_file(path: &Path) -> Result<Self, SettingsError> {
        let fail = |reason: String| SettingsError::File { path: path.to_owned(), reason };
        let text = std::fs::read_to_string(path).map_err(|err| fail(err.to_string()))?;
        let doc = match serde_json::from_str(&text) {
            Ok(Value::Object(doc)) => doc,
            Ok(_) => return Err(fail("must be a JSON object of settings".into())),
            Err(err) => return Err(fail(format!("not valid JSON: {err}"))),
        };
        if doc.contains_key("api_key") {
            // A configuration file is often world-readable or committed; the
            // key belongs in the environment or a file of its own.
            return Err(SettingsError::KeyInFile(path.to_owned()));
        }
        Ok(Settings { doc, api_key: None })
    }

    /// Sets one key, replacing what a file said.
    pub fn set(&mut self, key: &str, value: impl Into<Value>) {
        self.doc.insert(key.to_owned(), value.into());
    }

    /// Sets the API key.
    pub fn set_api_key(&mut self, key: Secret) {
        self.api_key = Some(key);
    }

    /// The document the component's `create` reads, key included.
    pub fn document(&self) -> Result<Secret, SettingsError> {
        let key = self.api_key.as_ref().ok_or(SettingsError::NoKey)?;
        let mut doc = self.doc.clone();
        doc.insert("api_key".into(), key.expose().into());
        Ok(Secret::new(Value::Object(doc).to_string()))
    }

    /// The configured MISP URL.
    pub fn misp_url(&self) -> Result<&str, SettingsError> {
        self.doc.get("misp_url").and_then(Value::as_str).ok_or(SettingsError::NoUrl)
    }

    /// The origin the component may reach.
    pub fn authority(&self) -> Result<Authority, SettingsError> {
        Ok(Authority::from_url(self.misp_url()?)?)
    }

    /// The HTTP caps: the component's own timeouts (or their defaults). A
    /// value of the wrong type falls back to the default here; the component
    /// then refuses the document with a precise message anyway.
    pub fn timeout_caps(&self) -> TimeoutCaps {
        let ms = |key: &str, default: u64| {
            Duration::from_millis(self.doc.get(key).and_then(Value::as_u64).unwrap_or(default))
        };
        TimeoutCaps::new(
            ms("connect_timeout_ms", DEFAULT_CONNECT_TIMEOUT_MS),
            ms("response_timeout_ms", DEFAULT_RESPONSE_TIMEOUT_MS),
        )
    }

    /// The fields a source address is read from.
    pub fn source_fields(&self) -> Vec<String> {
        match self.doc.get("source_fields").and_then(Value::as_array) {
            Some(list) => list.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
            None => DEFAULT_SOURCE_FIELDS.iter().map(|f| (*f).to_owned()).collect(),
        }
    }
}

/// Reads an API key file: the first line, surrounding whitespace removed.
pub fn read_api_key_file(path: &Path) -> Result<Secret, SettingsError> {
    let fail = |reason: String| SettingsError::File { path: path.to_owned(), reason };
    let text = std::fs::read_to_string(path).map_err(|err| fail(err.to_string()))?;
    let key = text.lines().next().unwrap_or("").trim();
    if key.is_empty() {
        return Err(fail("the API key file is empty".into()));
    }
    Ok(Secret::new(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_carries_the_key_but_debug_does_not() {
        let mut settings = Settings::default();
        settings.set("misp_url", "https://misp.example.org");
        settings.set_api_key(Secret::new("K".repeat(40)));
        let doc = settings.document().unwrap();
        assert!(doc.expose().contains(&"K".repeat(40)));
        assert_eq!(format!("{doc:?}"), "***");
        assert!(!format!("{settings:?}").contains("KKKK"));
    }

    #[test]
    fn default_caps_follow_the_component_defaults() {
        let caps = Settings::default().timeout_caps();
        assert_eq!(caps, TimeoutCaps::new(Duration::from_secs(3), Duration::from_secs(5)));
    }

    #[test]
    fn caps_follow_the_configured_timeouts() {
        let mut settings = Settings::default();
        settings.set("connect_timeout_ms", 250);
        settings.set("response_timeout_ms", 800);
        let caps = settings.timeout_caps();
        assert_eq!(caps, TimeoutCaps::new(Duration::from_millis(250), Duration::from_millis(800)));
    }

    #[test]
    fn key_in_config_file_is_refused_with_a_hint() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.json");
        std::fs::write(&path, r#"{"misp_url":"https://m","api_key":"x"}"#).unwrap();
        let err = Settings::from_file(&path).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "{}: api_key does not belong in a configuration file; \
                 set MISP_API_KEY or pass --api-key-file",
                path.display()
            )
        );
    }

    #[test]
    fn missing_url_says_how_to_set_it() {
        let err = Settings::default().authority().unwrap_err();
        assert_eq!(err.to_string(), "misp_url is required: pass --misp-url or set it in --config");
    }
}
