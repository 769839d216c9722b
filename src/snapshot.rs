//! MISP snapshots: every address MISP lists, with the event a record would
//! get, in a file the Fluent Bit module can load without a network.
//!
//! `misp-enrich sync` builds one with [`SnapshotBuilder`] from the same
//! attribute searches the component makes (no `last`, no `category`, deleted
//! attributes ignored, the same preference between events) and writes it with
//! [`SnapshotBuilder::write`]. The module loads it with [`Snapshot::parse`]
//! into a compact index: sorted arrays of fixed-size entries searched by
//! bisection, 12 bytes per IPv4 and 24 per IPv6 address plus one shared copy of
//! each event's text, so a million addresses fit in well under 48 MiB.
//!
//! The format, version 1, is UTF-8 text, one item per line, fields separated
//! by tabs; `\\`, tab, newline and carriage return inside text are written as
//! `\\`, `\t`, `\n`, `\r`:
//!
//! ```text
//! misp-enrich snapshot 1
//! taken_at<TAB>1733230000                      unix seconds
//! source<TAB>https://misp.example.org          the MISP it came from
//! events<TAB>2
//! 1342<TAB>3<TAB>4512<TAB>CIRCL<TAB>OSINT feed   id, threat level, attribute count (may be empty),
//! 1407<TAB>2<TAB><TAB><TAB>Mirai C2              creator org (may be empty), info
//! addresses<TAB>2
//! 45.133.1.7<TAB>1342<TAB>1651234567           canonical address, event id, attribute timestamp
//! 2a01:4f8::1<TAB>1407<TAB>                    (may be empty)
//! end
//! ```
//!
//! The counts and the closing `end` make a truncated file an error, so a
//! half-written snapshot is never mistaken for a small one.

use std::cmp::Reverse;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::BufRead;
use std::net::IpAddr;

use crate::address::is_lookup_candidate;
use crate::mapping::{Enrichment, matched_addresses};
use crate::misp::Attribute;

/// The first line of every snapshot; the number is the format version.
pub const MAGIC: &str = "misp-enrich snapshot 1";

/// Why a snapshot could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("snapshot line {line}: {reason}")]
pub struct SnapshotError {
    pub line: usize,
    pub reason: String,
}

/// An event as a snapshot keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Event {
    id: u64,
    threat_level_id: u8,
    attribute_count: Option<u64>,
    org: Option<Box<str>>,
    info: Box<str>,
}

/// `updated` of 0 means "no timestamp"; MISP never dates an attribute 1970.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct V4Entry {
    addr: u32,
    event: u32,
    updated: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct V6Entry {
    addr: [u8; 16],
    event: u32,
    updated: u32,
}

/// A loaded snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// When it was taken (unix seconds).
    pub taken_at: i64,
    /// The MISP base URL it was taken from.
    pub source: String,
    events: Vec<Event>,
    v4: Vec<V4Entry>,
    v6: Vec<V6Entry>,
}

impl Snapshot {
    /// Addresses held.
    pub fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    /// True when no address is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// What a record with source `addr` gets, if MISP lists it.
    pub fn lookup(&self, addr: IpAddr) -> Option<Enrichment> {
        let (event, updated) = match addr {
            IpAddr::V4(v4) => {
                let key = u32::from(v4);
                let i = self.v4.binary_search_by_key(&key, |e| e.addr).ok()?;
                let entry = self.v4.get(i)?;
                (entry.event, entry.updated)
            }
            IpAddr::V6(v6) => {
                let key = v6.octets();
                let i = self.v6.binary_search_by_key(&key, |e| e.addr).ok()?;
                let entry = self.v6.get(i)?;
                (entry.event, entry.updated)
            }
        };
        let event = self.events.get(event as usize)?;
        Some(Enrichment {
            event_id: event.id.to_string(),
            event_info: event.info.to_string(),
            threat_level_id: event.threat_level_id,
            org: event.org.as_deref().map(str::to_string),
            ioc_updated: (updated != 0).then_some(i64::from(updated)),
            attribute_count: event.attribute_count,
        })
    }

    /// Reads a snapshot from its text. Any defect is an error naming the line.
    pub fn parse(text: &str) -> Result<Snapshot, SnapshotError> {
        Snapshot::read(text.as_bytes())
    }

    /// Reads a snapshot line by line from `reader`. Only the index is kept:
    /// the file's text never is whole in memory, which in the Fluent Bit
    /// module (whose linear memory never shrinks) would add the file's size
    /// to its memory for good.
    pub fn read(reader: impl BufRead) -> Result<Snapshot, SnapshotError> {
        let mut lines = Lines { reader, line: String::new(), number: 0 };
        if lines.next_line()? != MAGIC {
            return Err(lines.error(format!("not a snapshot; the first line must be {MAGIC:?}")));
        }
        let taken_at = lines.header("taken_at")?;
        let taken_at = taken_at.parse().map_err(|_| lines.error("taken_at is not a number"))?;
        let source = unescape(lines.header("source")?).map_err(|e| lines.error(e))?;

        let event_count = lines.count("events")?;
        let mut events = Vec::with_capacity(event_count.min(1 << 20));
        let mut event_index: HashMap<u64, u32> = HashMap::with_capacity(event_count.min(1 << 20));
        for _ in 0..event_count {
            let event = parse_event(lines.next_line()?).map_err(|e| lines.error(e))?;
            let index = u32::try_from(events.len()).map_err(|_| lines.error("too many events"))?;
            if event_index.insert(event.id, index).is_some() {
                return Err(lines.error(format!("event {} listed twice", event.id)));
            }
            events.push(event);
        }

        let address_count = lines.count("addresses")?;
        let (mut v4, mut v6) = (Vec::new(), Vec::new());
        for _ in 0..address_count {
            let line = lines.next_line()?;
            let (addr, event_id, updated) = parse_address(line).map_err(|e| lines.error(e))?;
            let event = *event_index
                .get(&event_id)
                .ok_or_else(|| lines.error(format!("event {event_id} is not listed")))?;
            match addr {
                IpAddr::V4(a) => v4.push(V4Entry { addr: u32::from(a), event, updated }),
                IpAddr::V6(a) => v6.push(V6Entry { addr: a.octets(), event, updated }),
            }
        }
        if lines.next_line()? != "end" {
            return Err(lines.error("expected \"end\""));
        }

        v4.sort_unstable_by_key(|e| e.addr);
        v6.sort_unstable_by_key(|e| e.addr);
        let duplicate = v4.windows(2).any(|w| w[0].addr == w[1].addr)
            || v6.windows(2).any(|w| w[0].addr == w[1].addr);
        if duplicate {
            return Err(SnapshotError { line: 0, reason: "an address is listed twice".into() });
        }
        v4.shrink_to_fit();
        v6.shrink_to_fit();
        Ok(Snapshot { taken_at, source, events, v4, v6 })
    }
}

/// Numbered lines of a snapshot, read one at a time.
struct Lines<R> {
    reader: R,
    line: String,
    number: usize,
}

impl<R: BufRead> Lines<R> {
    fn next_line(&mut self) -> Result<&str, SnapshotError> {
        self.number += 1;
        self.line.clear();
        match self.reader.read_line(&mut self.line) {
            Ok(0) => return Err(self.error("the file ends early")),
            Ok(_) => {}
            Err(err) if err.kind() == std::io::ErrorKind::InvalidData => {
                return Err(self.error("not UTF-8 text"));
            }
            Err(err) => return Err(self.error(format!("cannot read: {err}"))),
        }
        let line = self.line.strip_suffix('\n').unwrap_or(&self.line);
        Ok(line.strip_suffix('\r').unwrap_or(line))
    }

    fn header(&mut self, name: &str) -> Result<&str, SnapshotError> {
        let number = self.number + 1;
        let line = self.next_line()?;
        match line.split_once('\t') {
            Some((key, value)) if key == name => Ok(value),
            _ => {
                Err(SnapshotError { line: number, reason: format!("expected \"{name}<TAB>…\"") })
            }
        }
    }

    fn count(&mut self, name: &str) -> Result<usize, SnapshotError> {
        let value = self.header(name)?;
        value.parse().map_err(|_| self.error(format!("{name} count is not a number")))
    }

    fn error(&self, reason: impl Into<String>) -> SnapshotError {
        SnapshotError { line: self.number, reason: reason.into() }
    }
}

fn parse_event(line: &str) -> Result<Event, String> {
    let mut fields = line.split('\t');
    let mut next = |name: &str| fields.next().ok_or_else(|| format!("event line lacks {name}"));
    let id = next("an id")?.parse().map_err(|_| "event id is not a number".to_string())?;
    let threat_level_id = match next("a threat level")?.parse() {
        Ok(level @ 1..=4) => level,
        _ => return Err("threat level must be 1 to 4".into()),
    };
    let attribute_count = match next("an attribute count")? {
        "" => None,
        count => Some(count.parse().map_err(|_| "attribute count is not a number")?),
    };
    let org = match unescape(next("an org")?)? {
        org if org.is_empty() => None,
        org => Some(org.into_boxed_str()),
    };
    let info = unescape(next("an info")?)?.into_boxed_str();
    if fields.next().is_some() {
        return Err("event line has extra fields".into());
    }
    Ok(Event { id, threat_level_id, attribute_count, org, info })
}

fn parse_address(line: &str) -> Result<(IpAddr, u64, u32), String> {
    let mut fields = line.split('\t');
    let (Some(addr), Some(event), Some(updated), None) =
        (fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return Err("an address line has three fields".into());
    };
    let addr: IpAddr = addr.parse().map_err(|_| format!("{addr:?} is not an address"))?;
    let event = event.parse().map_err(|_| "event id is not a number".to_string())?;
    let updated = match updated {
        "" => 0,
        t => t.parse().map_err(|_| "timestamp is not a number".to_string())?,
    };
    Ok((addr, event, updated))
}

fn escape(text: &str, out: &mut String) {
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
}

fn unescape(text: &str) -> Result<String, String> {
    if !text.contains('\\') {
        return Ok(text.to_string());
    }
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        out.push(match chars.next() {
            Some('\\') => '\\',
            Some('t') => '\t',
            Some('n') => '\n',
            Some('r') => '\r',
            _ => return Err("bad escape in text".into()),
        });
    }
    Ok(out)
}

/// Collects MISP attributes page by page and keeps, per address, what a
/// record would get: the same preference as the component (most severe, then
/// latest attribute, then highest event id). Only globally routable addresses
/// are kept, since no other is ever looked up.
#[derive(Debug, Default)]
pub struct SnapshotBuilder {
    events: HashMap<u64, Event>,
    best: HashMap<IpAddr, (u8, Reverse<i64>, Reverse<u64>)>,
}

impl SnapshotBuilder {
    /// Adds one page of attributes.
    pub fn add(&mut self, attributes: &[Attribute]) {
        for attribute in attributes {
            let Ok(event_id) = attribute.event.id.parse::<u64>() else { continue };
            let key = crate::mapping::preference(attribute);
            for addr in matched_addresses(&attribute.value) {
                if !is_lookup_candidate(addr, &[]) {
                    continue;
                }
                let slot = self.best.entry(addr).or_insert(key);
                if key < *slot {
                    *slot = key;
                }
            }
            self.events.entry(event_id).or_insert_with(|| Event {
                id: event_id,
                threat_level_id: attribute.event.threat_level_id,
                attribute_count: None,
                org: attribute.event.org.clone().map(String::into_boxed_str),
                info: attribute.event.info.clone().into_boxed_str(),
            });
        }
    }

    /// Addresses collected so far.
    pub fn len(&self) -> usize {
        self.best.len()
    }

    /// True when no address was collected.
    pub fn is_empty(&self) -> bool {
        self.best.is_empty()
    }

    /// Ids of the events some address refers to, ascending; their attribute
    /// counts are to be fetched with one metadata request.
    pub fn event_ids(&self) -> Vec<u64> {
        let mut ids: Vec<u64> = self.best.values().map(|(_, _, Reverse(id))| *id).collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// Records an event's attribute count.
    pub fn set_attribute_count(&mut self, event_id: u64, count: Option<u64>) {
        if let Some(event) = self.events.get_mut(&event_id) {
            event.attribute_count = count;
        }
    }

    /// The snapshot text, deterministic for the same input: events by id,
    /// addresses IPv4 first, each in ascending order.
    pub fn write(&self, taken_at: i64, source: &str) -> String {
        let ids = self.event_ids();
        let mut addresses: Vec<(&IpAddr, u64, i64)> = self
            .best
            .iter()
            .map(|(addr, (_, Reverse(updated), Reverse(id)))| (addr, *id, *updated))
            .collect();
        addresses.sort_unstable_by_key(|(addr, _, _)| **addr);

        let mut out = String::with_capacity(64 * (ids.len() + addresses.len()) + 128);
        let _ = writeln!(out, "{MAGIC}\ntaken_at\t{taken_at}");
        out.push_str("source\t");
        escape(source, &mut out);
        let _ = writeln!(out, "\nevents\t{}", ids.len());
        for event in ids.iter().filter_map(|id| self.events.get(id)) {
            let count = event.attribute_count.map(|c| c.to_string()).unwrap_or_default();
            let _ = write!(out, "{}\t{}\t{count}\t", event.id, event.threat_level_id);
            escape(event.org.as_deref().unwrap_or(""), &mut out);
            out.push('\t');
            escape(&event.info, &mut out);
            out.push('\n');
        }
        let _ = writeln!(out, "addresses\t{}", addresses.len());
        for (addr, id, updated) in addresses {
            let updated = u32::try_from(updated).ok().filter(|t| *t > 0);
            let updated = updated.map(|t| t.to_string()).unwrap_or_default();
            let _ = writeln!(out, "{addr}\t{id}\t{updated}");
        }
        out.push_str("end\n");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::misp::EventContext;

    fn attribute(value: &str, event: u64, level: u8, timestamp: i64) -> Attribute {
        Attribute {
            value: value.into(),
            timestamp: Some(timestamp),
            event: EventContext {
                id: event.to_string(),
                info: format!("event\t{event}\nwith \\ escapes"),
                threat_level_id: level,
                org: event.is_multiple_of(2).then(|| "CIRCL".to_string()),
            },
        }
    }

    fn built() -> SnapshotBuilder {
        let mut builder = SnapshotBuilder::default();
        builder.add(&[
            attribute("45.133.1.7", 12, 3, 1_651_234_567),
            attribute("45.133.1.7|2222", 15, 1, 1_700_000_000),
            attribute("dl.example|91.92.240.11", 12, 3, 1_600_000_000),
            attribute("2A01:4F8::1", 13, 2, 1_689_012_345),
            attribute("10.0.0.1", 12, 1, 1),
            attribute("2001:db8::1", 12, 1, 1),
        ]);
        builder.add(&[attribute("45.133.1.7", 16, 1, 1_700_000_000)]);
        builder.set_attribute_count(12, Some(4512));
        builder.set_attribute_count(16, Some(3));
        builder
    }

    #[test]
    fn entries_stay_compact() {
        assert_eq!(std::mem::size_of::<V4Entry>(), 12);
        assert_eq!(std::mem::size_of::<V6Entry>(), 24);
    }

    #[test]
    fn written_snapshot_reads_back_with_the_component_rules() {
        let builder = built();
        assert_eq!(builder.len(), 3, "private and documentation addresses are left out");
        assert_eq!(builder.event_ids(), [12, 13, 16]);
        let text = builder.write(1_733_230_000, "https://misp.example.org");
        let snapshot = Snapshot::parse(&text).unwrap();
        assert_eq!(snapshot.len(), 3);
        assert_eq!(
            (snapshot.taken_at, snapshot.source.as_str()),
            (1_733_230_000, "https://misp.example.org")
        );

        let hit = snapshot.lookup("45.133.1.7".parse().unwrap()).unwrap();
        assert_eq!(hit.event_id, "16", "High beats Low; equal level and time: highest id");
        assert_eq!((hit.threat_level_id, hit.attribute_count), (1, Some(3)));
        assert_eq!(hit.ioc_updated, Some(1_700_000_000));
        assert_eq!(hit.org.as_deref(), Some("CIRCL"));

        let composite = snapshot.lookup("91.92.240.11".parse().unwrap()).unwrap();
        assert_eq!(composite.event_id, "12");
        assert_eq!(composite.event_info, "event\t12\nwith \\ escapes");
        assert_eq!(composite.attribute_count, Some(4512));

        let v6 = snapshot.lookup("2a01:4f8::1".parse().unwrap()).unwrap();
        assert_eq!((v6.event_id.as_str(), v6.org, v6.attribute_count), ("13", None, None));
        assert_eq!(snapshot.lookup("45.133.1.8".parse().unwrap()), None);
    }

    #[test]
    fn the_format_is_the_documented_one() {
        let text = built().write(1_733_230_000, "https://misp.example.org");
        let expected = [
            "misp-enrich snapshot 1",
            "taken_at\t1733230000",
            "source\thttps://misp.example.org",
            "events\t3",
            "12\t3\t4512\tCIRCL\tevent\\t12\\nwith \\\\ escapes",
            "13\t2\t\t\tevent\\t13\\nwith \\\\ escapes",
            "16\t1\t3\tCIRCL\tevent\\t16\\nwith \\\\ escapes",
            "addresses\t3",
            "45.133.1.7\t16\t1700000000",
            "91.92.240.11\t12\t1600000000",
            "2a01:4f8::1\t13\t1689012345",
            "end",
            "",
        ];
        assert_eq!(text, expected.join("\n"));
    }

    #[test]
    fn defects_are_reported_with_their_line() {
        let good = built().write(1, "https://m");
        let cases = [
            (good.replace("snapshot 1", "snapshot 2"), 1, "not a snapshot"),
            (good.replace("taken_at\t1", "taken_at\tyesterday"), 2, "taken_at is not a number"),
            (good.replace("\t4512\t", "\tmany\t"), 5, "attribute count is not a number"),
            (good.replace("12\t3\t4512", "12\t7\t4512"), 5, "threat level must be 1 to 4"),
            (good.replace("45.133.1.7\t16", "45.133.1.700\t16"), 9, "\"45.133.1.700\" is not"),
            (good.replace("45.133.1.7\t16", "45.133.1.7\t99"), 9, "event 99 is not listed"),
            (good.replace("\nend\n", "\nfin\n"), 12, "expected \"end\""),
            (good.replace("\nend\n", "\n"), 12, "the file ends early"),
            (good.lines().take(6).collect::<Vec<_>>().join("\n"), 7, "the file ends early"),
            (String::new(), 1, "the file ends early"),
        ];
        for (text, line, reason) in cases {
            let err = Snapshot::parse(&text).unwrap_err();
            assert_eq!(err.line, line, "{err}");
            assert!(err.reason.contains(reason), "{err}");
        }
    }

    #[test]
    fn a_file_that_is_not_utf8_names_its_line() {
        let mut bytes = built().write(1, "https://m").into_bytes();
        let at = bytes.windows(5).position(|w| w == b"CIRCL").unwrap();
        bytes[at] = 0xff;
        let err = Snapshot::read(&bytes[..]).unwrap_err();
        assert_eq!((err.line, err.reason.as_str()), (5, "not UTF-8 text"));
    }
}
