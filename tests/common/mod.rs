//! A scripted MISP for the native tests: answers each path from a queue of
//! canned responses (or a fixed fallback), records every request, and a
//! clock the tests move by hand.

#![allow(dead_code, reason = "each test binary uses a different part")]

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use misp_enrich::misp::HttpRequest;
use misp_enrich::{Clock, Enricher, HttpResponse, Settings, Transport, TransportError};
use serde_json::Value;

/// A request as MISP would see it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Value,
}

impl Seen {
    pub fn path(&self) -> &str {
        self.url.strip_prefix("https://misp.example.org").unwrap_or(&self.url)
    }

    /// The addresses a search asked for.
    pub fn values(&self) -> Vec<String> {
        self.body["value"]
            .as_array()
            .map(|v| v.iter().map(|s| s.as_str().unwrap().to_string()).collect())
            .unwrap_or_default()
    }
}

pub type Reply = Result<HttpResponse, TransportError>;

/// Canned answers per path; a path with an empty queue gets its fallback.
#[derive(Default, Clone)]
pub struct ScriptedMisp {
    queues: Arc<Mutex<HashMap<String, VecDeque<Reply>>>>,
    fallback: Arc<Mutex<HashMap<String, Reply>>>,
    pub seen: Arc<Mutex<Vec<Seen>>>,
}

impl ScriptedMisp {
    pub fn always(self, path: &str, reply: Reply) -> Self {
        self.fallback.lock().unwrap().insert(path.into(), reply);
        self
    }

    pub fn then(self, path: &str, reply: Reply) -> Self {
        self.queues.lock().unwrap().entry(path.into()).or_default().push_back(reply);
        self
    }

    pub fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    pub fn requests_to(&self, path: &str) -> Vec<Seen> {
        self.requests().into_iter().filter(|s| s.path() == path).collect()
    }
}

impl Transport for ScriptedMisp {
    fn send(&mut self, request: &HttpRequest) -> Result<HttpResponse, TransportError> {
        let seen = Seen {
            url: request.url.clone(),
            headers: request
                .headers()
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: serde_json::from_slice(&request.body).expect("requests carry JSON"),
        };
        let path = seen.path().to_string();
        self.seen.lock().unwrap().push(seen);
        if let Some(reply) =
            self.queues.lock().unwrap().get_mut(&path).and_then(VecDeque::pop_front)
        {
            return reply;
        }
        self.fallback
            .lock()
            .unwrap()
            .get(&path)
            .cloned()
            .unwrap_or(Ok(HttpResponse::new(404, r#"{"name":"Not Found"}"#)))
    }
}

/// A clock that moves only when told to.
#[derive(Clone, Default)]
pub struct ManualClock(Arc<Mutex<Duration>>);

impl ManualClock {
    pub fn advance(&self, by: Duration) {
        *self.0.lock().unwrap() += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Duration {
        *self.0.lock().unwrap()
    }
}

pub const API_KEY: &str = "a1B2c3D4e5F6a1B2c3D4e5F6a1B2c3D4e5F6a1B2";

pub fn settings(extra: &str) -> Settings {
    let json = format!(
        r#"{{"misp_url":"https://misp.example.org","api_key":"{API_KEY}",
            "event_url_base":"https://misp.soc.example"{extra}}}"#
    );
    Settings::from_json(&json).unwrap()
}

pub fn enricher(misp: &ScriptedMisp, clock: &ManualClock, extra: &str) -> Enricher<ScriptedMisp> {
    Enricher::with_clock(settings(extra), misp.clone(), Box::new(clock.clone()))
}

pub fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/responses").join(name);
    std::fs::read(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display()))
}

pub fn ok(body: impl Into<Vec<u8>>) -> Reply {
    Ok(HttpResponse::new(200, body))
}

pub fn status(status: u16, body: impl Into<Vec<u8>>) -> Reply {
    Ok(HttpResponse::new(status, body))
}

pub fn ok_fixture(name: &str) -> Reply {
    ok(fixture(name))
}
