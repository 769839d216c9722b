//! The enricher: records in, records with MISP context out.
//!
//! A batch goes through four steps: read each record's source address, answer
//! what the cache knows, ask MISP once for every other distinct address (in
//! groups, paging until a short page, then one metadata request for the
//! attribute counts of all newly seen events), and write the outcome onto each
//! record.
//!
//! Hits and misses are cached with their own TTLs; failures are not, so the
//! next batch asks again, unless the [`Breaker`] says MISP is down. While
//! lookups fail, an answer that expired less than `max_stale_secs` ago is
//! served instead of the failure tag.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use lru::LruCache;

use crate::breaker::{Breaker, BreakerState, Failure};
use crate::cache::TtlCache;
use crate::mapping::{Enrichment, best_attributes, enrichment};
use crate::misp::request::{attribute_search, event_metadata};
use crate::misp::response::{parse_attributes, parse_event_counts};
use crate::misp::{Attribute, AttributePage, HttpRequest, PAGE_LIMIT, ResponseError};
use crate::record::{self, Object};
use crate::settings::Settings;
use crate::splice::{self, Located};
use crate::transport::{Clock, MonotonicClock, Transport, TransportError};

/// Addresses per attribute search. Each address is a short string, so the
/// body stays small, and a failed request affects at most this many sources.
pub const ADDRESSES_PER_REQUEST: usize = 100;
/// Event ids per metadata request: enough that one request covers the new
/// events of any realistic batch.
pub const EVENTS_PER_REQUEST: usize = 500;
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
    /// Records answered from an expired entry because the lookup failed
    /// (counted in `hits` or `misses` too).
    pub stale_answers: u64,
    /// HTTP requests sent to MISP.
    pub misp_requests: u64,
    /// Of those, the ones that failed.
    pub failed_requests: u64,
    /// The breaker now.
    pub breaker: BreakerState,
    /// How often the breaker has opened.
    pub breaker_trips: u64,
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
    /// MISP's rate limit: HTTP 429, with the wait it asked for.
    #[error("MISP's rate limit was reached")]
    RateLimited(Option<Duration>),
    /// MISP answered 2xx, but not with a search result.
    #[error(transparent)]
    BadResponse(#[from] ResponseError),
    /// More pages than any real result needs: a server that ignores `page`.
    #[error("more pages of results than any real search has")]
    TooManyResults,
    /// The breaker is open: MISP was not asked.
    #[error("MISP is considered down; not asked")]
    Unavailable,
}

impl LookupError {
    /// The short reason written as `misp.error`.
    pub fn reason(&self) -> String {
        match self {
            LookupError::Transport(err) => err.reason().to_string(),
            LookupError::Status(status) => format!("http_{status}"),
            LookupError::RateLimited(_) => "http_429".to_string(),
            LookupError::BadResponse(_) => "bad_response".to_string(),
            LookupError::TooManyResults => "too_many_results".to_string(),
            LookupError::Unavailable => "unavailable".to_string(),
        }
    }

    /// How the breaker should count this failure.
    fn as_breaker_failure(&self) -> Failure {
        match self {
            LookupError::Transport(
                TransportError::Timeout
                | TransportError::ConnectionRefused
                | TransportError::Dns
                | TransportError::Tls
                | TransportError::Denied,
            ) => Failure::Unreachable,
            LookupError::RateLimited(wait) => Failure::RateLimited(*wait),
            _ => Failure::Soft,
        }
    }
}

/// The outcome of looking up one address.
type Outcome = Result<Answer, LookupError>;

/// A record's place in a batch.
enum Slot {
    /// Not looked up; returned unchanged.
    Skip,
    /// Looked up; the fields can be appended before the brace at this index.
    Append(IpAddr, usize),
    /// Looked up; parsed, so the fields are merged into the object.
    Parsed(IpAddr, Object),
}

/// One distinct address of a batch and what it gets.
struct Distinct {
    addr: IpAddr,
    outcome: Option<Outcome>,
    /// Answered from the cache when the batch started.
    cached: bool,
    /// Looked up for this batch, and its first record not written yet.
    first_is_fetch: bool,
    /// Answered from an expired entry because the lookup failed.
    stale: bool,
}

impl Distinct {
    fn new(addr: IpAddr) -> Self {
        Distinct { addr, outcome: None, cached: false, first_is_fetch: false, stale: false }
    }
}

/// The per-batch maps' hasher: seeded per process like std's, several times
/// faster on a 16-byte key, which shows in the WASM guest.
type FastHash = foldhash::fast::RandomState;

impl Slot {
    fn addr(&self) -> Option<IpAddr> {
        match self {
            Slot::Skip => None,
            Slot::Append(addr, _) | Slot::Parsed(addr, _) => Some(*addr),
        }
    }
}

/// Whether `text` is well-formed JSON, checked without building values.
fn is_json(text: &str) -> bool {
    serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok()
}

/// One enricher: settings, a transport, a cache, a breaker and counters.
pub struct Enricher<T: Transport> {
    settings: Settings,
    transport: T,
    clock: Box<dyn Clock + Send>,
    answers: TtlCache<IpAddr, Answer>,
    /// What recent hits append, kept apart from `answers`: a sensor's few
    /// hundred regular sources are rendered once, while a full cache of hits
    /// holds no rendered text (which doubled its memory).
    rendered: LruCache<IpAddr, (Arc<Enrichment>, Arc<str>)>,
    counts: TtlCache<String, Option<u64>>,
    breaker: Breaker,
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
            answers: TtlCache::new(capacity, settings.max_stale),
            rendered: LruCache::new(splice::RENDERED_HITS),
            counts: TtlCache::new(capacity, Duration::ZERO),
            breaker: Breaker::new(settings.breaker),
            settings,
            transport,
            clock,
            stats: Stats::default(),
        }
    }

    /// The settings in force.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Counters since creation, with the breaker's state now.
    pub fn stats(&self) -> Stats {
        Stats {
            breaker: self.breaker.state(self.clock.now()),
            breaker_trips: self.breaker.trips(),
            ..self.stats
        }
    }

    /// The transport, e.g. for a test to inspect what was sent.
    pub fn transport(&self) -> &T {
        &self.transport
    }

    /// Enriches one record.
    pub fn enrich(&mut self, text: &str) -> String {
        self.enrich_batch(&[text]).pop().unwrap_or_else(|| text.to_string())
    }

    /// Enriches records in order; every distinct address that the cache does
    /// not know is looked up once.
    pub fn enrich_batch<S: AsRef<str>>(&mut self, records: &[S]) -> Vec<String> {
        let changes = self.enrich_changes(records);
        records
            .iter()
            .zip(changes)
            .map(|(text, change)| change.unwrap_or_else(|| text.as_ref().to_string()))
            .collect()
    }

    /// [`Enricher::enrich_batch`] without copying what it leaves alone: a
    /// record that stays as it was (a miss, or not looked up; most records)
    /// comes back as `None`. The component answers this way, so that most
    /// records never cross its boundary twice.
    pub fn enrich_changes<S: AsRef<str>>(&mut self, records: &[S]) -> Vec<Option<String>> {
        let now = self.clock.now();
        self.stats.records_seen += records.len() as u64;
        // Each distinct address of the batch is held once and records point
        // at it by position, so the batch's bookkeeping hashes a record's
        // address once; repeats are the rule (94-98% of honeypot events).
        let mut positions: HashMap<IpAddr, usize, FastHash> = HashMap::default();
        let mut distinct: Vec<Distinct> = Vec::new();
        let slots: Vec<(Slot, Option<usize>)> = records
            .iter()
            .map(|text| {
                let slot = self.slot(text.as_ref());
                let at = slot.addr().map(|addr| {
                    *positions.entry(addr).or_insert_with(|| {
                        distinct.push(Distinct::new(addr));
                        distinct.len() - 1
                    })
                });
                (slot, at)
            })
            .collect();

        let mut wanted: Vec<IpAddr> = Vec::new();
        for entry in &mut distinct {
            match self.answers.get(&entry.addr, now) {
                Some(answer) => {
                    entry.outcome = Some(Ok(answer));
                    entry.cached = true;
                }
                None => {
                    wanted.push(entry.addr);
                    entry.first_is_fetch = true;
                }
            }
        }
        for (addr, outcome) in self.resolve(&wanted) {
            let Some(entry) = positions.get(&addr).and_then(|at| distinct.get_mut(*at)) else {
                continue;
            };
            entry.outcome = Some(match outcome {
                Err(err) => match self.answers.get_stale(&addr, self.clock.now()) {
                    Some(answer) => {
                        entry.stale = true;
                        Ok(answer)
                    }
                    None => Err(err),
                },
                fresh => fresh,
            });
        }

        records
            .iter()
            .zip(slots)
            .map(|(text, (slot, at))| {
                let Some(entry) = at.and_then(|at| distinct.get_mut(at)) else {
                    self.stats.skipped += 1;
                    return None;
                };
                let Some(outcome) = &entry.outcome else {
                    self.stats.skipped += 1;
                    return None;
                };
                // The first record of a fetched address paid for the lookup;
                // the batch's later records of it count as cache hits.
                let fresh_lookup = std::mem::take(&mut entry.first_is_fetch);
                if entry.stale {
                    self.stats.stale_answers += 1;
                } else if outcome.is_ok() && (entry.cached || !fresh_lookup) {
                    self.stats.cache_hits += 1;
                }
                self.write(text.as_ref(), slot, outcome)
            })
            .collect()
    }

    /// Where a record stands: the scanner decides when it can, the full
    /// parser otherwise.
    fn slot(&self, text: &str) -> Slot {
        let settings = &self.settings.records;
        match splice::locate(text, settings) {
            Located::Skip => Slot::Skip,
            Located::Append { addr, close } => Slot::Append(addr, close),
            Located::Unknown => match record::candidate(text, settings) {
                Some((object, addr)) => Slot::Parsed(addr, object),
                None => Slot::Skip,
            },
        }
    }

    /// The record with its outcome written; `None` when it stays as it was.
    fn write(&mut self, text: &str, slot: Slot, outcome: &Outcome) -> Option<String> {
        let written = match (outcome, slot) {
            (Ok(Answer::Miss), _) => {
                self.stats.misses += 1;
                return None;
            }
            // The scanner does not validate what it skips; a record that is
            // not JSON comes back unchanged, as the full parser would have it.
            (_, Slot::Append(..)) if !is_json(text) => None,
            (Ok(Answer::Hit(hit)), Slot::Append(addr, close)) => {
                let suffix = self.suffix_for(addr, hit);
                let mut out = String::new();
                splice::append(text, close, &suffix, &mut out);
                Some(out)
            }
            (Err(err), Slot::Append(_, close)) => {
                let settings = &self.settings.records;
                let fields = record::failure_fields(&err.reason());
                let suffix = splice::suffix(fields, &settings.failure_tag, settings.output);
                let mut out = String::new();
                splice::append(text, close, &suffix, &mut out);
                Some(out)
            }
            (Ok(Answer::Hit(hit)), Slot::Parsed(_, mut object)) => {
                record::write_hit(&mut object, hit, &self.settings.records);
                Some(serde_json::Value::Object(object).to_string())
            }
            (Err(err), Slot::Parsed(_, mut object)) => {
                record::write_failure(&mut object, &err.reason(), &self.settings.records);
                Some(serde_json::Value::Object(object).to_string())
            }
            (_, Slot::Skip) => None,
        };
        match (written, outcome) {
            (None, _) => {
                // Counted as skipped, like any record that is not JSON.
                self.stats.skipped += 1;
                None
            }
            (Some(out), Ok(_)) => {
                self.stats.hits += 1;
                Some(out)
            }
            (Some(out), Err(_)) => {
                self.stats.failures += 1;
                Some(out)
            }
        }
    }

    /// What a hit appends for `addr`: rendered once and reused while the
    /// address stays among the recent ones and its answer is the same.
    fn suffix_for(&mut self, addr: IpAddr, hit: &Arc<Enrichment>) -> Arc<str> {
        if let Some((rendered_for, suffix)) = self.rendered.get(&addr)
            && Arc::ptr_eq(rendered_for, hit)
        {
            return suffix.clone();
        }
        let settings = &self.settings.records;
        let fields = record::hit_fields(hit, settings);
        let suffix: Arc<str> = splice::suffix(fields, &settings.hit_tag, settings.output).into();
        self.rendered.put(addr, (hit.clone(), suffix.clone()));
        suffix
    }

    /// Asks MISP about `wanted` and caches every answer. A failed search fails
    /// its group of addresses.
    fn resolve(&mut self, wanted: &[IpAddr]) -> HashMap<IpAddr, Outcome> {
        let mut outcomes = HashMap::new();
        let mut searched: Vec<IpAddr> = Vec::new();
        let mut found: HashMap<IpAddr, Attribute> = HashMap::new();
        for group in wanted.chunks(ADDRESSES_PER_REQUEST) {
            match self.search(group) {
                Ok(best) => {
                    searched.extend_from_slice(group);
                    found.extend(best);
                }
                Err(err) => outcomes.extend(group.iter().map(|addr| (*addr, Err(err.clone())))),
            }
        }

        // Without the counts a hit is still a hit: it is written without
        // `attribute_count` and not cached, so a later record asks again and
        // gets the whole context. Failing it instead would hide what the
        // search found, and against a MISP that fails every other request a
        // new event's hits would never get through.
        let ids = found.values().map(|a| a.event.id.as_str());
        let counts = self.attribute_counts(ids).ok();
        let now = self.clock.now();
        for addr in searched {
            let (answer, ttl) = match found.get(&addr) {
                Some(attribute) => {
                    let count = counts.as_ref().and_then(|c| c.get(&attribute.event.id));
                    let hit = enrichment(attribute, count.copied().flatten());
                    let ttl = if counts.is_some() { self.settings.hit_ttl } else { Duration::ZERO };
                    (Answer::Hit(Arc::new(hit)), ttl)
                }
                None => (Answer::Miss, self.settings.miss_ttl),
            };
            self.answers.insert(addr, answer.clone(), now, ttl);
            outcomes.insert(addr, Ok(answer));
        }
        outcomes
    }

    /// Searches MISP for `group`, page by page, and returns the preferred
    /// attribute of every address found.
    fn search(&mut self, group: &[IpAddr]) -> Result<HashMap<IpAddr, Attribute>, LookupError> {
        let mut attributes = Vec::new();
        for page in 1..=MAX_PAGES {
            let request = attribute_search(&self.settings, group, page);
            let AttributePage { attributes: listed, entries } =
                self.exchange(&request, parse_attributes)?;
            attributes.extend(listed);
            // A short page is the last. A page longer than the limit means
            // the server ignored `limit` and so sent everything at once.
            if entries != PAGE_LIMIT {
                return Ok(best_attributes(&attributes, |addr| group.contains(addr))
                    .into_iter()
                    .map(|(addr, attribute)| (addr, attribute.clone()))
                    .collect());
            }
        }
        Err(LookupError::TooManyResults)
    }

    /// The attribute count of each event, from the cache or one metadata
    /// request for all unknown events.
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
            let listed =
                self.exchange(&event_metadata(&self.settings, group), parse_event_counts)?;
            let listed: HashMap<String, Option<u64>> = listed.into_iter().collect();
            for id in group {
                // An event the metadata search does not return keeps no count.
                let count = listed.get(id).copied().flatten();
                self.counts.insert(id.clone(), count, now, self.settings.hit_ttl);
                counts.insert(id.clone(), count);
            }
        }
        Ok(counts)
    }

    /// Sends a request unless the breaker is open, parses a 2xx answer, and
    /// tells the breaker how it went.
    fn exchange<R>(
        &mut self,
        request: &HttpRequest,
        parse: fn(&[u8]) -> Result<R, ResponseError>,
    ) -> Result<R, LookupError> {
        if !self.breaker.allows(self.clock.now()) {
            return Err(LookupError::Unavailable);
        }
        self.stats.misp_requests += 1;
        let result = self.transport.send(request).map_err(LookupError::from).and_then(|response| {
            match response.status {
                200..=299 => Ok(parse(&response.body)?),
                429 => Err(LookupError::RateLimited(retry_after(&response))),
                status => Err(LookupError::Status(status)),
            }
        });
        match &result {
            Ok(_) => self.breaker.succeeded(),
            Err(err) => {
                self.stats.failed_requests += 1;
                self.breaker.failed(self.clock.now(), err.as_breaker_failure());
            }
        }
        result
    }
}

/// The wait a 429 asks for: MISP's `X-Rate-Limit-Reset` (seconds left in the
/// window), else a standard `Retry-After` in seconds.
fn retry_after(response: &crate::transport::HttpResponse) -> Option<Duration> {
    ["x-rate-limit-reset", "retry-after"]
        .iter()
        .find_map(|name| response.header(name)?.trim().parse().ok())
        .map(Duration::from_secs)
}
