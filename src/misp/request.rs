//! Building MISP search requests.

use std::net::IpAddr;

use serde_json::{Value, json};

use crate::secret::ApiKey;
use crate::settings::Settings;

/// Attributes per page. Paging continues until a short page, so one busy
/// address never cuts off another's results; 500 attributes with event
/// context make a response of well under a megabyte.
pub const PAGE_LIMIT: usize = 500;

/// A POST to MISP. The API key is kept as an [`ApiKey`] so that printing a
/// request never shows it; [`HttpRequest::headers`] is the one place it is
/// exposed.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpRequest {
    /// Absolute URL.
    pub url: String,
    /// JSON body.
    pub body: Vec<u8>,
    api_key: ApiKey,
}

impl HttpRequest {
    fn post(settings: &Settings, path: &str, body: &Value) -> Self {
        HttpRequest {
            url: format!("{}{path}", settings.misp_url),
            body: body.to_string().into_bytes(),
            api_key: settings.api_key.clone(),
        }
    }

    /// The request method; every MISP search is a POST.
    pub fn method(&self) -> &'static str {
        "POST"
    }

    /// Headers to send. `Authorization` carries the raw key (MISP refuses a
    /// `Bearer` prefix); `Accept` makes MISP answer errors in JSON instead of
    /// HTML; `Content-Type` is what makes MISP apply the filters at all.
    pub fn headers(&self) -> [(&'static str, &str); 3] {
        [
            ("Authorization", self.api_key.expose()),
            ("Accept", "application/json"),
            ("Content-Type", "application/json"),
        ]
    }
}

/// One page of `POST /attributes/restSearch` for `addresses`.
///
/// Values go as a JSON array of canonical address strings: an array is never
/// split on `&&`/`||`, and canonical addresses contain no `!` or `%`.
pub fn attribute_search(settings: &Settings, addresses: &[IpAddr], page: usize) -> HttpRequest {
    let values: Vec<String> = addresses.iter().map(IpAddr::to_string).collect();
    attributes(settings, Some(values), page, PAGE_LIMIT)
}

/// One page of every attribute of the configured types, with event context,
/// for a snapshot: the same filters as [`attribute_search`] minus the values.
pub fn attribute_dump(settings: &Settings, page: usize, limit: usize) -> HttpRequest {
    attributes(settings, None, page, limit)
}

/// The attribute search both build on: the configured types, event context,
/// live attributes only, one page. Never `last` or `category` (see the module
/// documentation).
fn attributes(
    settings: &Settings,
    values: Option<Vec<String>>,
    page: usize,
    limit: usize,
) -> HttpRequest {
    let mut body = json!({"returnFormat": "json"});
    if let Some(values) = values {
        body["value"] = json!(values);
    }
    body["type"] = json!(settings.attribute_types);
    body["includeContext"] = Value::Bool(true);
    body["deleted"] = json!(0);
    body["limit"] = json!(limit);
    body["page"] = json!(page);
    if settings.enforce_warninglist {
        body["enforceWarninglist"] = Value::Bool(true);
    }
    HttpRequest::post(settings, "/attributes/restSearch", &body)
}

/// `POST /events/restSearch` for the metadata (and so `attribute_count`) of
/// `event_ids`, which the attribute context does not include.
pub fn event_metadata(settings: &Settings, event_ids: &[String]) -> HttpRequest {
    let body = json!({
        "returnFormat": "json",
        "eventid": event_ids,
        "metadata": true,
    });
    HttpRequest::post(settings, "/events/restSearch", &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(extra: &str) -> Settings {
        let json = format!(
            r#"{{"misp_url":"https://misp.example.org/misp/","api_key":"SECRETKEY"{extra}}}"#
        );
        Settings::from_json(&json).unwrap()
    }

    #[test]
    fn attribute_search_sends_json_with_the_three_headers() {
        let addresses = ["45.133.1.7".parse().unwrap(), "2a01:4f8::1".parse().unwrap()];
        let request = attribute_search(&settings(""), &addresses, 2);
        assert_eq!(request.method(), "POST");
        assert_eq!(request.url, "https://misp.example.org/misp/attributes/restSearch");
        assert_eq!(
            request.headers(),
            [
                ("Authorization", "SECRETKEY"),
                ("Accept", "application/json"),
                ("Content-Type", "application/json"),
            ]
        );
        let body: Value = serde_json::from_slice(&request.body).unwrap();
        assert_eq!(
            body,
            json!({
                "returnFormat": "json",
                "value": ["45.133.1.7", "2a01:4f8::1"],
                "type": ["ip-src", "ip-dst", "ip-src|port", "ip-dst|port", "domain|ip"],
                "includeContext": true,
                "deleted": 0,
                "limit": 500,
                "page": 2,
            })
        );
    }

    #[test]
    fn search_never_filters_by_publication_or_category() {
        let request = attribute_search(&settings(""), &["45.133.1.7".parse().unwrap()], 1);
        let body: Value = serde_json::from_slice(&request.body).unwrap();
        for key in ["last", "publish_timestamp", "category", "timestamp", "from", "to", "date"] {
            assert!(body.get(key).is_none(), "{key} must not be sent");
        }
    }

    #[test]
    fn warninglist_is_enforced_only_when_configured() {
        let addresses = ["45.133.1.7".parse().unwrap()];
        let body = |s: &Settings| -> Value {
            serde_json::from_slice(&attribute_search(s, &addresses, 1).body).unwrap()
        };
        assert_eq!(body(&settings("")).get("enforceWarninglist"), None);
        let on = settings(r#","enforce_warninglist":true"#);
        assert_eq!(body(&on)["enforceWarninglist"], json!(true));
    }

    #[test]
    fn attribute_dump_asks_for_every_address_attribute() {
        let request = attribute_dump(&settings(""), 3, 5000);
        let body: Value = serde_json::from_slice(&request.body).unwrap();
        assert_eq!(
            body,
            json!({
                "returnFormat": "json",
                "type": ["ip-src", "ip-dst", "ip-src|port", "ip-dst|port", "domain|ip"],
                "includeContext": true,
                "deleted": 0,
                "limit": 5000,
                "page": 3,
            })
        );
    }

    #[test]
    fn event_metadata_asks_for_metadata_only() {
        let request = event_metadata(&settings(""), &["12".into(), "7".into()]);
        assert_eq!(request.url, "https://misp.example.org/misp/events/restSearch");
        let body: Value = serde_json::from_slice(&request.body).unwrap();
        assert_eq!(body, json!({"returnFormat": "json", "eventid": ["12", "7"], "metadata": true}));
    }

    #[test]
    fn printing_a_request_hides_the_key() {
        let request = event_metadata(&settings(""), &["1".into()]);
        let debug = format!("{request:?}");
        assert!(!debug.contains("SECRETKEY"), "{debug}");
    }
}
