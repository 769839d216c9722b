//! Which source addresses may be sent to MISP.
//!
//! Record text is attacker-controlled, and MISP interprets `!`, `%`, `&&` and
//! `||` inside search values with no way to escape them. So nothing from a
//! record is ever forwarded as text: it is parsed into an [`IpAddr`] and only
//! that address's canonical form (std's `Display`, IPv6 compressed) is sent.
//!
//! Only globally routable addresses are looked up. The special-purpose blocks
//! below are the IANA IPv4 and IPv6 Special-Purpose Address Registries' entries
//! marked "not globally reachable"; std's `is_global` is still unstable, so the
//! registry is written out here as data, matched with `ipnet`.

use std::net::IpAddr;
use std::sync::OnceLock;

use ipnet::IpNet;

/// Blocks that never leave the local network or the documentation.
const NOT_GLOBAL: &[&str] = &[
    "0.0.0.0/8",       // "this network"
    "10.0.0.0/8",      // private
    "100.64.0.0/10",   // shared address space (CGNAT)
    "127.0.0.0/8",     // loopback
    "169.254.0.0/16",  // link-local
    "172.16.0.0/12",   // private
    "192.0.0.0/24",    // IETF protocol assignments (two exceptions below)
    "192.0.2.0/24",    // documentation (TEST-NET-1)
    "192.88.99.0/24",  // deprecated 6to4 relay anycast
    "192.168.0.0/16",  // private
    "198.18.0.0/15",   // benchmarking
    "198.51.100.0/24", // documentation (TEST-NET-2)
    "203.0.113.0/24",  // documentation (TEST-NET-3)
    "224.0.0.0/4",     // multicast: never the source of a connection
    "240.0.0.0/4",     // reserved, including the limited broadcast address
    "::/96",           // unspecified, and the deprecated IPv4-compatible block
    "::1/128",         // loopback
    "::ffff:0:0/96",   // IPv4-mapped; unmapped before this check, listed for safety
    "64:ff9b:1::/48",  // local-use IPv4/IPv6 translation
    "100::/64",        // discard-only
    "2001::/23",       // IETF protocol assignments (exceptions below)
    "2001:db8::/32",   // documentation
    "2002::/16",       // 6to4
    "3fff::/20",       // documentation
    "5f00::/16",       // segment routing SIDs
    "fc00::/7",        // unique local
    "fe80::/10",       // link-local
    "fec0::/10",       // deprecated site-local
    "ff00::/8",        // multicast
];

/// Blocks inside [`NOT_GLOBAL`] that the registries mark globally reachable.
const GLOBAL_EXCEPTIONS: &[&str] = &[
    "192.0.0.9/32",    // Port Control Protocol anycast
    "192.0.0.10/32",   // Traversal Using Relays around NAT anycast
    "2001:1::1/128",   // Port Control Protocol anycast
    "2001:1::2/128",   // Traversal Using Relays around NAT anycast
    "2001:3::/32",     // AMT
    "2001:4:112::/48", // AS112-v6
    "2001:20::/28",    // ORCHIDv2
    "2001:30::/28",    // drone remote ID
];

/// A table of networks as sorted, disjoint integer ranges, so that a lookup
/// is a binary search. Every looked-up record asks it, and in the Fluent Bit
/// module's interpreter a walk over the whole table cost more than the rest
/// of the record's handling.
struct Ranges {
    v4: Vec<(u32, u32)>,
    v6: Vec<(u128, u128)>,
}

impl Ranges {
    fn parse(table: &[&str]) -> Self {
        let nets: Vec<IpNet> = table.iter().filter_map(|net| net.parse().ok()).collect();
        let mut ranges = Ranges { v4: Vec::new(), v6: Vec::new() };
        // `aggregate` merges overlapping and adjacent networks and sorts them.
        for net in IpNet::aggregate(&nets) {
            match net {
                IpNet::V4(net) => ranges.v4.push((net.network().into(), net.broadcast().into())),
                IpNet::V6(net) => ranges.v6.push((net.network().into(), net.broadcast().into())),
            }
        }
        ranges
    }

    fn contains(&self, addr: IpAddr) -> bool {
        match addr {
            IpAddr::V4(addr) => within(&self.v4, u32::from(addr)),
            IpAddr::V6(addr) => within(&self.v6, u128::from(addr)),
        }
    }
}

fn within<T: Ord + Copy>(ranges: &[(T, T)], value: T) -> bool {
    let after = ranges.partition_point(|(first, _)| *first <= value);
    after.checked_sub(1).and_then(|i| ranges.get(i)).is_some_and(|(_, last)| value <= *last)
}

fn not_global() -> &'static Ranges {
    static TABLE: OnceLock<Ranges> = OnceLock::new();
    TABLE.get_or_init(|| Ranges::parse(NOT_GLOBAL))
}

fn global_exceptions() -> &'static Ranges {
    static TABLE: OnceLock<Ranges> = OnceLock::new();
    TABLE.get_or_init(|| Ranges::parse(GLOBAL_EXCEPTIONS))
}

/// Parses a record's address text. Only a complete, exact address counts:
/// no surrounding spaces, no port, no zone index. An IPv4-mapped IPv6 address
/// (`::ffff:a.b.c.d`, which Cowrie's Telnet side logs) becomes the IPv4 address.
pub fn parse_source(text: &str) -> Option<IpAddr> {
    let addr: IpAddr = text.parse().ok()?;
    Some(addr.to_canonical())
}

/// True when `addr` is globally routable and not in an operator's skip list.
pub fn is_lookup_candidate(addr: IpAddr, skip_networks: &[IpNet]) -> bool {
    if skip_networks.iter().any(|net| net.contains(&addr)) {
        return false;
    }
    global_exceptions().contains(addr) || !not_global().contains(addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidate(text: &str) -> bool {
        is_lookup_candidate(text.parse().unwrap(), &[])
    }

    #[test]
    fn tables_parse_completely() {
        for table in [NOT_GLOBAL, GLOBAL_EXCEPTIONS] {
            for net in table {
                assert!(net.parse::<IpNet>().is_ok(), "{net}");
            }
        }
    }

    #[test]
    fn ranges_answer_like_the_networks_they_were_made_from() {
        // Both edges of every network and the addresses just outside them.
        let nets: Vec<IpNet> = NOT_GLOBAL.iter().map(|n| n.parse().unwrap()).collect();
        let ranges = Ranges::parse(NOT_GLOBAL);
        let listed = |addr: IpAddr| nets.iter().any(|net| net.contains(&addr));
        for net in &nets {
            let probes: Vec<IpAddr> = match net {
                IpNet::V4(n) => {
                    let (first, last) = (u32::from(n.network()), u32::from(n.broadcast()));
                    [first.wrapping_sub(1), first, last, last.wrapping_add(1)]
                        .map(|a| IpAddr::from(std::net::Ipv4Addr::from(a)))
                        .to_vec()
                }
                IpNet::V6(n) => {
                    let (first, last) = (u128::from(n.network()), u128::from(n.broadcast()));
                    [first.wrapping_sub(1), first, last, last.wrapping_add(1)]
                        .map(|a| IpAddr::from(std::net::Ipv6Addr::from(a)))
                        .to_vec()
                }
            };
            for addr in probes {
                assert_eq!(ranges.contains(addr), listed(addr), "{addr} ({net})");
            }
        }
    }

    #[test]
    fn mapped_v6_source_is_looked_up_as_v4() {
        assert_eq!(parse_source("::ffff:45.133.1.7"), Some("45.133.1.7".parse().unwrap()));
    }

    #[test]
    fn ipv6_is_canonicalised() {
        let addr = parse_source("2A01:04F8:0000:0000:0000:0000:0000:0001").unwrap();
        assert_eq!(addr.to_string(), "2a01:4f8::1");
    }

    #[test]
    fn anything_but_an_exact_address_is_refused() {
        for text in [
            "",
            " 45.133.1.7",
            "45.133.1.7 ",
            "!45.133.1.7",
            "45.133.1.%",
            "45.133.1.7&&8.8.8.8",
            "45.133.1.7||8.8.8.8",
            "45.133.1.7:22",
            "fe80::1%eth0",
            "google.com",
            "045.133.1.7",
            "x.x.x.x",
        ] {
            assert_eq!(parse_source(text), None, "{text:?}");
        }
    }

    #[test]
    fn public_addresses_are_looked_up() {
        for text in ["45.133.1.7", "8.8.8.8", "2a01:4f8::1", "192.0.0.9", "2001:4860::8888"] {
            assert!(candidate(text), "{text}");
        }
    }

    #[test]
    fn special_purpose_addresses_are_not_looked_up() {
        for text in [
            "0.0.0.0",
            "10.1.2.3",
            "100.64.0.1",
            "127.0.0.1",
            "169.254.1.1",
            "172.16.0.1",
            "192.0.0.8",
            "192.0.2.1",
            "192.168.1.1",
            "198.18.0.1",
            "198.51.100.1",
            "203.0.113.5",
            "224.0.0.1",
            "240.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "2001:db8::1",
            "2001::1",
            "2002::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "ff02::1",
        ] {
            assert!(!candidate(text), "{text}");
        }
    }

    #[test]
    fn skip_networks_exclude_public_ranges() {
        let skip: Vec<IpNet> = vec!["45.133.0.0/16".parse().unwrap()];
        assert!(!is_lookup_candidate("45.133.1.7".parse().unwrap(), &skip));
        assert!(is_lookup_candidate("45.134.1.7".parse().unwrap(), &skip));
    }
}
