//! What the two restSearch endpoints return for a set of filters.
//!
//! Attributes scope applies every condition to the same attribute row and
//! hides soft-deleted rows; events scope tests each attribute condition on
//! its own (so `value` and `type` may match different attributes, and
//! deleted rows count unless `deleted` was given), as MISP's
//! `Event::filterEventIds` does. Rendering follows the shapes MISP 2.5
//! emits, with the number style of the dataset.

use serde_json::{Map, Value, json};

use super::dataset::{Attribute, Dataset, Event, NumberStyle, Org};
use super::filters::{Deleted, Filters, TermFilter};

/// A search result: the body and the counts MISP reports in headers.
pub struct Found {
    pub body: Value,
    /// `X-Result-Count` as MISP computes it for this scope.
    pub result_count: usize,
    /// `X-Skipped-Elements-Count`, only when warninglists were enforced.
    pub skipped: Option<usize>,
}

/// Attributes scope: `{"response": {"Attribute": [...]}}`.
pub fn attributes(data: &Dataset, filters: &Filters) -> Found {
    let render = Render(data.number_style);
    let mut skipped = 0;
    let mut rows: Vec<(&Event, &Attribute)> = Vec::new();
    for event in data.events.iter().filter(|e| event_passes(e, filters)) {
        for attribute in &event.attributes {
            if !attribute_passes(attribute, filters) || !deleted_passes(attribute, filters.deleted)
            {
                continue;
            }
            if filters.enforce_warninglist && warninglisted(data, attribute) {
                skipped += 1;
                continue;
            }
            rows.push((event, attribute));
        }
    }
    rows.sort_by_key(|(_, a)| a.id);

    let page = paginate(&rows, filters);
    let full_limited_page = filters.limit.is_some_and(|limit| page.len() == limit);
    // MISP's own arithmetic: one more than the rows when a limited page is
    // full, and 1 for an empty page. Clients must read the body instead.
    let result_count = match page.len() {
        0 => 1,
        n if full_limited_page => n + 1,
        n => n,
    };
    let list: Vec<Value> = page
        .iter()
        .map(|(event, attribute)| {
            let mut row = render.attribute(attribute, event);
            let nested = if filters.include_context {
                render.context_event(event)
            } else {
                render.plain_event(event)
            };
            row.insert("Event".into(), nested);
            Value::Object(row)
        })
        .collect();
    Found {
        body: json!({"response": {"Attribute": list}}),
        result_count,
        skipped: filters.enforce_warninglist.then_some(skipped),
    }
}

/// Events scope: `{"response": [{"Event": {...}}, ...]}`.
pub fn events(data: &Dataset, filters: &Filters) -> Found {
    let render = Render(data.number_style);
    let mut matching: Vec<&Event> = data
        .events
        .iter()
        .filter(|e| event_passes(e, filters) && event_attributes_pass(e, filters))
        .collect();
    matching.sort_by_key(|e| e.id);
    let total = matching.len();
    let list: Vec<Value> = paginate(&matching, filters)
        .iter()
        .map(|event| json!({"Event": render.event(event, filters)}))
        .collect();
    Found { body: json!({"response": list}), result_count: total, skipped: None }
}

fn paginate<'a, T>(rows: &'a [T], filters: &Filters) -> &'a [T] {
    let Some(limit) = filters.limit else { return rows };
    let page = filters.page.unwrap_or(1);
    let start = (page - 1).saturating_mul(limit).min(rows.len());
    let end = start.saturating_add(limit).min(rows.len());
    &rows[start..end]
}

/// Event-level filters shared by both scopes.
fn event_passes(event: &Event, filters: &Filters) -> bool {
    if let Some(range) = filters.published_within {
        // `last` compares the publication time; never-published events
        // carry 0 and therefore never match.
        let t = event.publish_timestamp;
        if t == 0 || t < range.from || t > range.to {
            return false;
        }
    }
    let published_ok = filters.published.is_none_or(|want| event.published == want);
    let id_ok = filters
        .event_id
        .as_ref()
        .is_none_or(|ids| ids.accepts(&[&event.id.to_string(), &event.uuid]));
    published_ok && id_ok
}

/// Attribute-level filters applied to one row (attributes scope).
fn attribute_passes(attribute: &Attribute, filters: &Filters) -> bool {
    let (first, second) = attribute.halves();
    let values: Vec<&str> = [Some(first), second].into_iter().flatten().collect();
    let on = |filter: &Option<TermFilter>, stored: &[&str]| {
        filter.as_ref().is_none_or(|f| f.accepts(stored))
    };
    on(&filters.value, &values)
        && on(&filters.kind, &[&attribute.kind])
        && on(&filters.category, &[&attribute.category])
        && filters.to_ids.is_none_or(|want| attribute.to_ids == want)
}

fn deleted_passes(attribute: &Attribute, deleted: Deleted) -> bool {
    match deleted {
        Deleted::Live => !attribute.deleted,
        Deleted::Only => attribute.deleted,
        Deleted::Both => true,
    }
}

/// Events scope: each attribute condition is its own subquery.
fn event_attributes_pass(event: &Event, filters: &Filters) -> bool {
    let visible = |a: &&Attribute| !filters.deleted_given || deleted_passes(a, filters.deleted);
    let exists = |filter: &TermFilter, stored: &dyn Fn(&Attribute) -> Vec<String>| {
        event.attributes.iter().filter(visible).any(|a| {
            let stored = stored(a);
            filter.accepts(&stored.iter().map(String::as_str).collect::<Vec<_>>())
        })
    };
    let halves = |a: &Attribute| {
        let (first, second) = a.halves();
        [Some(first), second].into_iter().flatten().map(str::to_owned).collect()
    };
    filters.value.as_ref().is_none_or(|f| exists(f, &halves))
        && filters.kind.as_ref().is_none_or(|f| exists(f, &|a| vec![a.kind.clone()]))
        && filters.category.as_ref().is_none_or(|f| exists(f, &|a| vec![a.category.clone()]))
}

fn warninglisted(data: &Dataset, attribute: &Attribute) -> bool {
    let (first, second) = attribute.halves();
    data.warninglist.iter().any(|listed| listed == first || Some(listed.as_str()) == second)
}

/// Renders dataset records in a MISP version's number style.
struct Render(NumberStyle);

impl Render {
    fn num(&self, n: u64) -> Value {
        match self.0 {
            NumberStyle::String => Value::String(n.to_string()),
            NumberStyle::Integer => Value::from(n),
        }
    }

    fn attribute(&self, a: &Attribute, event: &Event) -> Map<String, Value> {
        let fields = json!({
            "id": self.num(a.id),
            "event_id": self.num(event.id),
            "object_id": self.num(0),
            "object_relation": null,
            "category": a.category,
            "type": a.kind,
            "to_ids": a.to_ids,
            "uuid": a.uuid,
            "timestamp": self.num(a.timestamp),
            "distribution": self.num(5),
            "sharing_group_id": self.num(0),
            "comment": a.comment,
            "deleted": a.deleted,
            "disable_correlation": false,
            "first_seen": a.first_seen,
            "last_seen": a.last_seen,
            "value": a.value,
        });
        into_map(fields)
    }

    /// The nested `Event` without `includeContext`.
    fn plain_event(&self, e: &Event) -> Value {
        json!({
            "id": self.num(e.id),
            "info": e.info,
            "org_id": self.num(e.owner().id),
            "orgc_id": self.num(e.orgc.id),
            "uuid": e.uuid,
            "distribution": self.num(e.distribution.into()),
            "publish_timestamp": self.num(e.publish_timestamp),
        })
    }

    /// The nested `Event` with `includeContext`.
    fn context_event(&self, e: &Event) -> Value {
        json!({
            "id": self.num(e.id),
            "orgc_id": self.num(e.orgc.id),
            "org_id": self.num(e.owner().id),
            "date": e.date,
            "threat_level_id": self.num(e.threat_level_id.into()),
            "info": e.info,
            "published": e.published,
            "uuid": e.uuid,
            "analysis": self.num(e.analysis.into()),
            "timestamp": self.num(e.timestamp),
            "distribution": self.num(e.distribution.into()),
            "publish_timestamp": self.num(e.publish_timestamp),
            "sharing_group_id": self.num(0),
            "extends_uuid": "",
            "Tag": self.tags(e),
            "Orgc": self.org(&e.orgc),
        })
    }

    fn tags(&self, e: &Event) -> Value {
        e.tags
            .iter()
            .map(|t| {
                json!({
                    "id": self.num(t.id),
                    "name": t.name,
                    "colour": t.colour,
                    "numerical_value": null,
                    "local": 0,
                })
            })
            .collect()
    }

    fn org(&self, org: &Org) -> Value {
        json!({"id": self.num(org.id), "name": org.name, "uuid": org.uuid, "local": true})
    }

    /// A whole event for events scope; `metadata` leaves out the contents.
    fn event(&self, e: &Event, filters: &Filters) -> Value {
        let mut fields = into_map(json!({
            "id": self.num(e.id),
            "orgc_id": self.num(e.orgc.id),
            "org_id": self.num(e.owner().id),
            "date": e.date,
            "threat_level_id": self.num(e.threat_level_id.into()),
            "info": e.info,
            "published": e.published,
            "uuid": e.uuid,
            "attribute_count": self.num(e.live_attribute_count() as u64),
            "analysis": self.num(e.analysis.into()),
            "timestamp": self.num(e.timestamp),
            "distribution": self.num(e.distribution.into()),
            "proposal_email_lock": false,
            "locked": false,
            "publish_timestamp": self.num(e.publish_timestamp),
            "sharing_group_id": self.num(0),
            "disable_correlation": false,
            "extends_uuid": "",
            "protected": null,
            "Org": self.org(e.owner()),
            "Orgc": self.org(&e.orgc),
        }));
        if !filters.metadata {
            let attributes: Vec<Value> = e
                .attributes
                .iter()
                .filter(|a| deleted_passes(a, filters.deleted))
                .map(|a| Value::Object(self.attribute(a, e)))
                .collect();
            fields.insert("Attribute".into(), Value::Array(attributes));
            fields.insert("ShadowAttribute".into(), json!([]));
            fields.insert("Object".into(), json!([]));
            fields.insert("EventReport".into(), json!([]));
        }
        fields.insert("RelatedEvent".into(), json!([]));
        fields.insert("Galaxy".into(), json!([]));
        if !e.tags.is_empty() {
            fields.insert("Tag".into(), self.tags(e));
        }
        Value::Object(fields)
    }
}

fn into_map(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}
