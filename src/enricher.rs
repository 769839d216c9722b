//! The enricher: records in, records with MISP context out.
//!
//! A batch goes through four steps: read each record's source address, answer
//! what the cache knows, ask MISP once for every other distinct address (in
//! groups, paging until a short page, then one metadata request for the
//! attribute counts of newly seen events), and write the outcome onto each
//! record. Hits and misses are cached with their own TTLs; failures are not,
//! so the next batch asks again.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;

use crate::address::is_lookup_candidate;
use crate::cache::TtlCache;
use crate::mapping::{Enrichment, best_attributes, enrichment};
use crate::misp::request::{attribute_search, event_metadata};
use crate::misp::response::{parse_attributes, parse_event_counts};
use crate::misp::{HttpRequest, PAGE_LIMIT};
use crate::record::{self, Object};
use crate::settings::Settings;
use crate::transport::{Clock, MonotonicClock, Transport, TransportError};

/// Addresses per attribute search. Each address is a short string, so the
/// body stays small, and a failed request affects at most this many sources.
pub const ADDRESSES_PER_REQUEST: usize = 100;
/// Event ids per metadata request, for the same reasons.
pub const EVENTS_PER_REQUEST: usize = 100;
/// Pages per search before giving up: 200 pages of 500 attributes is far
/// beyond what 100 addresses can match on a sane instance, and guards against
/// a server that ignores `page` and repeats a full page forever.
const MAX_PAGES: usize = 200;

/// Counters since the enricher was created. Each record counts once in
/// `records_seen` and in exactly one of `hits`, `misses`, `failures`,
/// `skipped`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub records_seen: u64,
    pub hits: u64,
    pub misses: u64,
    pub failures: u64,
    /// Not looked up: not an object, no usable or no global address.
    pub skipped: u64,
    /// Looked-up records answered without a MISP request of their own.
    pub cache_hits: u64,
    pub misp_requests: u64,
}

/// What MISP said about an address.
#[derive(Debug, Clone)]
enum Answer {
    Hit(Arc<Enrichment>),
    Miss,
}

/// Why an address could not be looked up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    /// No answer at all.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// MISP answered with a non-2xx status.
    #[error("MISP answered HTTP {0}")]
    Status(u16),
    /// MISP answered 2xx, but not with a search result.
    #[error("MISP's answer was not a search result")]
    BadResponse,
    /// More pages than any real result needs.
    #[error("more than {MAX_PAGES} pages of results")]
    TooManyResults,
}

impl LookupError {
    /// The short reason written as `misp.error`.
    pub fn reason(&self) -> String {
        match self {
            LookupError::Transport(err) => err.reason().to_string(),
            LookupError::Status(status) => format!("http_{status}"),
            LookupError::BadResponse => "bad_response".to_string(),
            LookupError::TooManyResults => "too_many_results".to_string(),
        }
    }
}

/// One enricher: settings, a transport, a cache and counters.
pub struct Enricher<T: Transport> {
    settings: Settings,
    transport: T,
    clock: Box<dyn Clock + Send>,
    answers: TtlCache<IpAddr, Answer>,
    counts: TtlCache<String, Option<u64>>,
    stats: Stats,
}

impl<T: Transport> Enricher<T> {
    /// An enricher on the platform's monotonic clock.
    pub fn new(settings: Settings, transport: T) -> Self {
        Self::with_clock(settings, transport, Box::new(MonotonicClock::default()))
    }

    /// An enricher on the given clock (tests move time by hand).
    pub fn with_clock(settings: Settings, transport: T, clock: Box<dyn Clock + Send>) -> Self {
        let capacity = settings.cache_capacity;
        Enricher {
            settings,
            transport,
            clock,
            answers: TtlCache::new(capacity),
            counts: TtlCache::new(capacity),
            stats: Stats::default(),
        }
    }

    /// The settings in force.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Counters since creation.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// The transport, e.g. for a test to inspect what was sent.
    pub fn transport(&self) -> &T {
        &self.transport
    }

    /// Enriches one record.
    pub fn enrich(&mut self, text: &str) -> String {
        self.enrich_batch(&[text])
            .pop()
            .unwrap_or_else(|| text.to_string())
    }

    /// Enriches records in order; every distinct address that the cache does
    /// not know is looked up once.
    pub fn enrich_batch<S: AsRef<str>>(&mut self, records: &[S]) -> Vec<String> {
        let now = self.clock.now();
        self.stats.records_seen += records.len() as u64;
        let slots: Vec<Option<(Object, IpAddr)>> = records
            .iter()
            .map(|text| self.candidate(text.as_ref()))
            .collect();

        let mut outcomes: HashMap<IpAddr, Result<Answer, LookupError>> = HashMap::new();
        let mut cached: HashSet<IpAddr> = HashSet::new();
        let mut wanted: Vec<IpAddr> = Vec::new();
        for (_, addr) in slots.iter().flatten() {
            if outcomes.contains_key(addr) || wanted.contains(addr) {
                continue;
            }
            match self.answers.get(addr, now) {
                Some(answer) => {
                    cached.insert(*addr);
                    outcomes.insert(*addr, Ok(answer));
                }
                None => wanted.push(*addr),
            }
        }

        for group in wanted.chunks(ADDRESSES_PER_REQUEST) {
            self.look_up(group, &mut outcomes);
        }

        let mut first_of_fetched: HashSet<IpAddr> = wanted.into_iter().collect();
        records
            .iter()
            .zip(slots)
            .map(|(text, slot)| match slot {
                None => {
                    self.stats.skipped += 1;
                    text.as_ref().to_string()
                }
                Some((object, addr)) => {
                    let outcome = &outcomes[&addr];
                    let fresh = first_of_fetched.remove(&addr);
                    if outcome.is_ok() && (cached.contains(&addr) || !fresh) {
                        self.stats.cache_hits += 1;
                    }
                    self.write(text.as_ref(), object, outcome)
                }
            })
            .collect()
    }

    /// The parsed record and its address, when the record is to be looked up.
    fn candidate(&self, text: &str) -> Option<(Object, IpAddr)> {
        let object = record::parse(text)?;
        let addr = record::find_source(&object, &self.settings.source_fields)?;
        is_lookup_candidate(addr, &self.settings.skip_networks).then_some((object, addr))
    }

    fn write(
        &mut self,
        text: &str,
        mut object: Object,
        outcome: &Result<Answer, LookupError>,
    ) -> String {
        match outcome {
            Ok(Answer::Hit(hit)) => {
                self.stats.hits += 1;
                record::write_hit(&mut object, hit, &self.settings);
            }
            Ok(Answer::Miss) => {
                self.stats.misses += 1;
                return text.to_string();
            }
            Err(err) => {
                self.stats.failures += 1;
                record::write_failure(&mut object, &err.reason(), &self.settings);
            }
        }
        serde_json::Value::Object(object).to_string()
    }

    /// Looks up one group of addresses and records the outcome of each; a
    /// failure applies to the whole group and is not cached.
    fn look_up(
        &mut self,
        group: &[IpAddr],
        outcomes: &mut HashMap<IpAddr, Result<Answer, LookupError>>,
    ) {
        let now = self.clock.now();
        match self.search(group) {
            Ok(mut hits) => {
                for addr in group {
                    let (answer, ttl) = match hits.remove(addr) {
                        Some(hit) => (Answer::Hit(Arc::new(hit)), self.settings.hit_ttl),
                        None => (Answer::Miss, self.settings.miss_ttl),
                    };
                    self.answers.insert(*addr, answer.clone(), now, ttl);
                    outcomes.insert(*addr, Ok(answer));
                }
            }
            Err(err) => {
                for addr in group {
                    outcomes.insert(*addr, Err(err.clone()));
                }
            }
        }
    }

    /// Searches MISP for `group`, page by page, and builds the enrichment of
    /// every address found.
    fn search(&mut self, group: &[IpAddr]) -> Result<HashMap<IpAddr, Enrichment>, LookupError> {
        let mut attributes = Vec::new();
        for page in 1..=MAX_PAGES {
            let body = self.post(&attribute_search(&self.settings, group, page))?;
            let parsed = parse_attributes(&body).map_err(|_| LookupError::BadResponse)?;
            attributes.extend(parsed.attributes);
            if parsed.entries < PAGE_LIMIT {
                let best = best_attributes(&attributes, group);
                let counts = self.attribute_counts(best.values().map(|a| a.event.id.as_str()))?;
                return Ok(best
                    .into_iter()
                    .map(|(addr, attribute)| {
                        let count = counts.get(&attribute.event.id).copied().flatten();
                        (addr, enrichment(attribute, count))
                    })
                    .collect());
            }
        }
        Err(LookupError::TooManyResults)
    }

    /// The attribute count of each event, from the cache or one metadata
    /// request per group of unknown events.
    fn attribute_counts<'a>(
        &mut self,
        event_ids: impl Iterator<Item = &'a str>,
    ) -> Result<HashMap<String, Option<u64>>, LookupError> {
        let now = self.clock.now();
        let mut counts = HashMap::new();
        let mut unknown = Vec::new();
        for id in event_ids {
            if counts.contains_key(id) || unknown.iter().any(|u| u == id) {
                continue;
            }
            match self.counts.get(&id.to_string(), now) {
                Some(count) => {
                    counts.insert(id.to_string(), count);
                }
                None => unknown.push(id.to_string()),
            }
        }

        for group in unknown.chunks(EVENTS_PER_REQUEST) {
            let body = self.post(&event_metadata(&self.settings, group))?;
            let found: HashMap<String, Option<u64>> = parse_event_counts(&body)
                .map_err(|_| LookupError::BadResponse)?
                .into_iter()
                .collect();
            for id in group {
                // An event the metadata search does not return keeps no count.
                let count = found.get(id).copied().flatten();
                self.counts
                    .insert(id.clone(), count, now, self.settings.hit_ttl);
                counts.insert(id.clone(), count);
            }
        }
        Ok(counts)
    }

    /// Sends a request; anything but a 2xx answer is an error.
    fn post(&mut self, request: &HttpRequest) -> Result<Vec<u8>, LookupError> {
        self.stats.misp_requests += 1;
        let response = self.transport.send(request)?;
        if !(200..300).contains(&response.status) {
            return Err(LookupError::Status(response.status));
        }
        Ok(response.body)
    }
}
