//! Taking a snapshot of MISP for the Fluent Bit module (`misp-enrich sync`).
//!
//! The same searches as the component, over every address attribute instead
//! of a list of values: page through `attributes/restSearch` until a short
//! page, keep per address what a record would get, then fetch the attribute
//! counts of the events kept, in groups. Any failed request fails the whole
//! snapshot, so a partial one is never written over a good one.

use crate::enricher::LookupError;
use crate::misp::request::{attribute_dump, event_metadata};
use crate::misp::response::{parse_attributes, parse_event_counts};
use crate::settings::Settings;
use crate::snapshot::SnapshotBuilder;
use crate::transport::Transport;

/// Attributes per page. Larger than the enricher's pages: a snapshot reads
/// everything, and each request has a fixed cost on the MISP side.
pub const SYNC_PAGE_LIMIT: usize = 5000;
/// Event ids per metadata request.
const EVENTS_PER_REQUEST: usize = 500;
/// 20,000 pages of 5,000 is a hundred million attributes: beyond any instance
/// this is meant for, and a guard against a server that ignores `page`.
const MAX_PAGES: usize = 20_000;

/// What a sync did, for the summary.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SyncStats {
    pub pages: usize,
    pub attributes: usize,
    pub addresses: usize,
    pub events: usize,
    pub requests: usize,
}

/// Reads every address attribute MISP has and returns the snapshot text.
/// `taken_at` is the current unix time, recorded in the snapshot.
pub fn take_snapshot<T: Transport>(
    settings: &Settings,
    transport: &mut T,
    taken_at: i64,
) -> Result<(String, SyncStats), LookupError> {
    let mut stats = SyncStats::default();
    let mut builder = SnapshotBuilder::default();
    let mut complete = false;
    for page in 1..=MAX_PAGES {
        let body = post(transport, &attribute_dump(settings, page, SYNC_PAGE_LIMIT), &mut stats)?;
        let page = parse_attributes(&body)?;
        stats.pages += 1;
        stats.attributes += page.entries;
        builder.add(&page.attributes);
        if page.entries != SYNC_PAGE_LIMIT {
            complete = true;
            break;
        }
    }
    if !complete {
        return Err(LookupError::TooManyResults);
    }

    let ids: Vec<String> = builder.event_ids().iter().map(u64::to_string).collect();
    for group in ids.chunks(EVENTS_PER_REQUEST) {
        let body = post(transport, &event_metadata(settings, group), &mut stats)?;
        for (id, count) in parse_event_counts(&body)? {
            if let Ok(id) = id.parse() {
                builder.set_attribute_count(id, count);
            }
        }
    }
    stats.addresses = builder.len();
    stats.events = ids.len();
    Ok((builder.write(taken_at, &settings.misp_url), stats))
}

fn post<T: Transport>(
    transport: &mut T,
    request: &crate::misp::HttpRequest,
    stats: &mut SyncStats,
) -> Result<Vec<u8>, LookupError> {
    stats.requests += 1;
    let response = transport.send(request)?;
    match response.status {
        200..=299 => Ok(response.body),
        429 => Err(LookupError::RateLimited(None)),
        status => Err(LookupError::Status(status)),
    }
}
