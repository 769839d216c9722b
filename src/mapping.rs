//! From MISP attributes to the context written on a record.
//!
//! An address is often listed by several events (a feed, an analyst's
//! incident, a partner's share). The record gets one of them: the most severe
//! (lowest `threat_level_id`), then the one whose matching attribute changed
//! last, then the highest event id, so the choice never depends on the order
//! MISP returned the rows in.

use std::cmp::Reverse;
use std::collections::HashMap;
use std::net::IpAddr;

use crate::address::parse_source;
use crate::misp::Attribute;

/// What a hit writes onto a record (`misp.*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enrichment {
    pub event_id: String,
    pub event_info: String,
    pub threat_level_id: u8,
    pub org: Option<String>,
    /// The matching attribute's last change (unix seconds).
    pub ioc_updated: Option<i64>,
    pub attribute_count: Option<u64>,
}

impl Enrichment {
    /// MISP's names for the four threat levels; MISP exports only the id.
    pub fn threat_level_name(&self) -> &'static str {
        match self.threat_level_id {
            1 => "High",
            2 => "Medium",
            3 => "Low",
            _ => "Undefined",
        }
    }
}

/// Which of `wanted` an attribute value names. Composite values (`ip|port`,
/// `domain|ip`) match on either half, as MISP's own search does.
pub(crate) fn matched_addresses(value: &str) -> impl Iterator<Item = IpAddr> + '_ {
    value.split('|').filter_map(parse_source)
}

/// The order of preference: most severe, then most recently updated
/// attribute, then highest event id.
pub(crate) fn preference(attribute: &Attribute) -> (u8, Reverse<i64>, Reverse<u64>) {
    let event_id = attribute.event.id.parse().unwrap_or(0);
    (
        attribute.event.threat_level_id,
        Reverse(attribute.timestamp.unwrap_or(i64::MIN)),
        Reverse(event_id),
    )
}

/// The preferred attribute for each address that any attribute lists and
/// `wanted` accepts. Addresses absent from the result are misses.
pub fn best_attributes(
    attributes: &[Attribute],
    wanted: impl Fn(&IpAddr) -> bool,
) -> HashMap<IpAddr, &Attribute> {
    let mut best: HashMap<IpAddr, &Attribute> = HashMap::new();
    for attribute in attributes {
        for addr in matched_addresses(&attribute.value) {
            if !wanted(&addr) {
                continue;
            }
            let better = match best.get(&addr) {
                Some(current) => preference(attribute) < preference(current),
                None => true,
            };
            if better {
                best.insert(addr, attribute);
            }
        }
    }
    best
}

/// The enrichment for an attribute, with the event's attribute count.
pub fn enrichment(attribute: &Attribute, attribute_count: Option<u64>) -> Enrichment {
    Enrichment {
        event_id: attribute.event.id.clone(),
        event_info: attribute.event.info.clone(),
        threat_level_id: attribute.event.threat_level_id,
        org: attribute.event.org.clone(),
        ioc_updated: attribute.timestamp,
        attribute_count,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::misp::EventContext;

    fn attr(value: &str, event: &str, level: u8, timestamp: i64) -> Attribute {
        Attribute {
            value: value.into(),
            timestamp: Some(timestamp),
            event: EventContext {
                id: event.into(),
                info: format!("event {event}"),
                threat_level_id: level,
                org: None,
            },
        }
    }

    fn best_event(attributes: &[Attribute], addr: &str) -> Option<String> {
        let addr: IpAddr = addr.parse().unwrap();
        best_attributes(attributes, |a| *a == addr).get(&addr).map(|a| a.event.id.clone())
    }

    #[test]
    fn most_severe_event_wins() {
        let attributes = [attr("45.133.1.7", "10", 3, 900), attr("45.133.1.7", "4", 1, 100)];
        assert_eq!(best_event(&attributes, "45.133.1.7").unwrap(), "4");
    }

    #[test]
    fn equal_severity_prefers_the_latest_update_then_the_highest_id() {
        let attributes = [
            attr("45.133.1.7", "10", 2, 100),
            attr("45.133.1.7", "11", 2, 500),
            attr("45.133.1.7", "9", 2, 500),
        ];
        assert_eq!(best_event(&attributes, "45.133.1.7").unwrap(), "11");
        let reversed: Vec<Attribute> = attributes.iter().rev().cloned().collect();
        assert_eq!(best_event(&reversed, "45.133.1.7").unwrap(), "11");
    }

    #[test]
    fn composite_values_match_either_half() {
        let attributes =
            [attr("45.133.1.7|2222", "1", 3, 1), attr("evil.example|8.8.4.4", "2", 3, 1)];
        assert_eq!(best_event(&attributes, "45.133.1.7").unwrap(), "1");
        assert_eq!(best_event(&attributes, "8.8.4.4").unwrap(), "2");
    }

    #[test]
    fn attributes_of_other_addresses_do_not_match() {
        let attributes = [attr("45.133.1.70", "1", 1, 1), attr("45.133.1.7/32", "2", 1, 1)];
        assert_eq!(best_event(&attributes, "45.133.1.7"), None);
    }

    #[test]
    fn ipv6_values_match_in_any_notation() {
        let attributes = [attr("2A01:4F8:0:0::1", "3", 2, 1)];
        assert_eq!(best_event(&attributes, "2a01:4f8::1").unwrap(), "3");
    }

    #[test]
    fn threat_level_names() {
        let names: Vec<&str> = (0..=5)
            .map(|level| enrichment(&attr("1.1.1.1", "1", level, 1), None).threat_level_name())
            .collect();
        assert_eq!(names, ["Undefined", "High", "Medium", "Low", "Undefined", "Undefined"]);
    }
}
