//! A MISP stand-in for the fuzz targets: answers every request with fixed
//! bodies and checks what is sent.

use misp_enrich::misp::HttpRequest;
use misp_enrich::{HttpResponse, Settings, Transport, TransportError};

pub struct FixedMisp {
    pub attributes: Vec<u8>,
    pub events: Vec<u8>,
}

impl Transport for FixedMisp {
    fn send(&mut self, request: &HttpRequest) -> Result<HttpResponse, TransportError> {
        let body: serde_json::Value =
            serde_json::from_slice(&request.body).expect("requests are JSON");
        for value in body["value"].as_array().into_iter().flatten() {
            let text = value.as_str().expect("values are strings");
            let addr: std::net::IpAddr = text.parse().expect("values are addresses");
            assert_eq!(addr.to_string(), text, "values are canonical");
        }
        let answer = if request.url.ends_with("/events/restSearch") {
            &self.events
        } else {
            &self.attributes
        };
        Ok(HttpResponse::new(200, answer.clone()))
    }
}

pub fn settings() -> Settings {
    Settings::from_json(r#"{"misp_url":"https://misp.example.org","api_key":"k"}"#).unwrap()
}
