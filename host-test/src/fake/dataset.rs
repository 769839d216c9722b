//! The data a fake MISP serves, read from a JSON file.
//!
//! A dataset is a list of events with their attributes, much like a MISP
//! export but with plain types (numbers as numbers, flags as booleans); the
//! fake renders them in the shape and number style of the MISP version it
//! imitates. `fixtures/README.md` documents the format with an example.

use std::path::Path;

use serde::Deserialize;

/// How ids, counts, enums and timestamps are rendered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NumberStyle {
    /// JSON strings (`"id":"3632"`): MISP 2.4, and 2.5 with stringified fetches.
    #[default]
    String,
    /// JSON integers: MISP 2.5 on PHP 8.1+ without the stringify flag.
    Integer,
}

/// Everything one fake instance knows.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dataset {
    /// The one API key the instance accepts (40 alphanumerics, like MISP's).
    pub api_key: String,
    /// Rendering of numeric fields; strings unless set.
    #[serde(default)]
    pub number_style: NumberStyle,
    /// Values on an enabled warninglist; `enforceWarninglist` hides their
    /// attributes.
    #[serde(default)]
    pub warninglist: Vec<String>,
    /// The events, each with its attributes.
    pub events: Vec<Event>,
}

/// An organisation, as creator (`Orgc`) or owner (`Org`) of an event.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Org {
    pub id: u64,
    pub name: String,
    pub uuid: String,
}

/// An event tag.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tag {
    pub id: u64,
    pub name: String,
    #[serde(default = "default_colour")]
    pub colour: String,
}

fn default_colour() -> String {
    "#ffffff".into()
}

/// One event.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Event {
    pub id: u64,
    pub uuid: String,
    pub info: String,
    /// Analyst-set date, `YYYY-MM-DD`.
    pub date: String,
    /// 1 High, 2 Medium, 3 Low, 4 Undefined.
    pub threat_level_id: u8,
    #[serde(default)]
    pub analysis: u8,
    #[serde(default)]
    pub distribution: u8,
    pub published: bool,
    /// Last edit of the event or its content.
    pub timestamp: u64,
    /// Last publication; 0 when never published.
    pub publish_timestamp: u64,
    /// The creator organisation, which enrichment reports.
    pub orgc: Org,
    /// The owning organisation on this instance; the creator when absent.
    #[serde(default)]
    pub org: Option<Org>,
    #[serde(default)]
    pub tags: Vec<Tag>,
    pub attributes: Vec<Attribute>,
}

impl Event {
    /// The owning organisation.
    pub fn owner(&self) -> &Org {
        self.org.as_ref().unwrap_or(&self.orgc)
    }

    /// Attributes that are not soft-deleted, as MISP counts them.
    pub fn live_attribute_count(&self) -> usize {
        self.attributes.iter().filter(|a| !a.deleted).count()
    }
}

/// One attribute of an event.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Attribute {
    pub id: u64,
    pub uuid: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub category: String,
    /// The value as MISP shows it; composite types join two halves with `|`.
    pub value: String,
    #[serde(default)]
    pub to_ids: bool,
    /// Last change of the attribute.
    pub timestamp: u64,
    #[serde(default)]
    pub deleted: bool,
    #[serde(default)]
    pub comment: String,
    #[serde(default)]
    pub first_seen: Option<String>,
    #[serde(default)]
    pub last_seen: Option<String>,
}

impl Attribute {
    /// The halves MISP stores as `value1` and `value2`: composite types
    /// (`ip-src|port`, `domain|ip`, ...) split at the first `|`.
    pub fn halves(&self) -> (&str, Option<&str>) {
        if self.kind.contains('|')
            && let Some((first, second)) = self.value.split_once('|')
        {
            return (first, Some(second));
        }
        (&self.value, None)
    }
}

/// Why a dataset file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error("{path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path}: {source}")]
    Parse { path: String, source: serde_json::Error },
}

impl Dataset {
    /// Reads a dataset file.
    pub fn from_file(path: &Path) -> Result<Self, DatasetError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|source| DatasetError::Read { path: shown.clone(), source })?;
        Self::from_json(&text).map_err(|source| DatasetError::Parse { path: shown, source })
    }

    /// Parses a dataset document.
    pub fn from_json(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }
}
