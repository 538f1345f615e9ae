//! The callback URL parser: the part of the WHATWG URL Standard (as the `url` crate
//! implements it) that an absolute `http`/`https` URL with no base takes, and nothing
//! else, so that a Lambda does not link a general URL library and IDNA tables for it.
//!
//! What it does as the standard does: leading and trailing spaces and controls are
//! trimmed and tabs and newlines removed; the scheme and host are lower-cased; slashes
//! after the scheme may be `/` or `\`, any number; a percent-encoded host is decoded
//! before it is judged; a host that ends in a number is an IPv4 address in any form the
//! standard accepts (`2130706433`, `0177.0.0.1`, `0x7f.1`, `127.1`), so that
//! it is judged as the address it means; `[…]` is an IPv6 address; a default port is
//! dropped; `.` and `..` segments (also `%2e`) are resolved; what must be percent-encoded
//! in a path or query is. The URL is kept as the standard serialises it.
//!
//! What it refuses that the standard accepts: a host that is not ASCII (an
//! internationalised domain must be given in its `xn--` form, which is kept as given).
//!
//! And [`forbidden_address`]: the addresses a callback may never reach, whether written
//! in the URL or resolved from its name.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::webhook::{CallbackHost, CallbackUrl};

/// A callback URL taken apart.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Parsed {
    /// The URL as the WHATWG standard serialises it.
    pub(super) url: String,
    pub(super) host: CallbackHost,
    /// The port given, or the scheme's.
    pub(super) port: u16,
    pub(super) https: bool,
}

/// Parses `raw`; an error is the reason, worded to follow the field's name.
pub(super) fn parse(raw: &str) -> Result<Parsed, String> {
    let not_a_url = |why: &str| format!("is not a URL: {why}");
    let trimmed = raw.trim_matches(|c: char| c <= ' ');
    let input: String = trimmed
        .chars()
        .filter(|c| !matches!(c, '\t' | '\n' | '\r'))
        .collect();

    let Some((scheme, rest)) = split_scheme(&input) else {
        return Err(not_a_url("relative URL without a base"));
    };
    let https = match scheme.to_ascii_lowercase().as_str() {
        "https" => true,
        "http" => false,
        _ => return Err("must be an http or https URL".to_owned()),
    };
    let default_port = if https { 443 } else { 80 };

    let rest = rest.trim_start_matches(['/', '\\']);
    let authority_end = rest.find(['/', '\\', '?', '#']).unwrap_or(rest.len());
    let (authority, rest) = rest.split_at(authority_end);
    let (userinfo, host_port) = match authority.rfind('@') {
        Some(at) => (Some(&authority[..at]), &authority[at + 1..]),
        None => (None, authority),
    };
    let (host, port) = split_port(host_port);
    if host.is_empty() {
        return Err(not_a_url("empty host"));
    }
    let host = parse_host(host).map_err(not_a_url)?;
    let port = match port {
        None | Some("") => None,
        Some(digits) => {
            let port = parse_port(digits).ok_or_else(|| not_a_url("invalid port number"))?;
            (port != default_port).then_some(port)
        }
    };

    let (before_fragment, fragment) = match rest.split_once('#') {
        Some((before, _)) => (before, true),
        None => (rest, false),
    };
    let (path, query) = match before_fragment.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (before_fragment, None),
    };

    // Empty credentials (`https://@host/`, `https://:@host/`) are no credentials.
    if userinfo.is_some_and(|u| !u.is_empty() && u != ":") {
        return Err("may not carry a user name or password".to_owned());
    }
    if fragment {
        return Err("may not carry a #fragment".to_owned());
    }

    let mut url = String::with_capacity(raw.len() + 8);
    url.push_str(if https { "https://" } else { "http://" });
    match &host {
        CallbackHost::Name(name) => url.push_str(name),
        CallbackHost::Address(IpAddr::V4(v4)) => url.push_str(&v4.to_string()),
        CallbackHost::Address(IpAddr::V6(v6)) => {
            url.push('[');
            push_ipv6(&mut url, v6);
            url.push(']');
        }
    }
    if let Some(port) = port {
        url.push(':');
        url.push_str(&port.to_string());
    }
    push_path(&mut url, path);
    if let Some(query) = query {
        url.push('?');
        push_encoded(&mut url, query, |b| {
            matches!(b, b' ' | b'"' | b'#' | b'<' | b'>' | b'\'')
        });
    }
    Ok(Parsed {
        url,
        host,
        port: port.unwrap_or(default_port),
        https,
    })
}

impl CallbackUrl {
    /// `host[:port]` as the URL gives it (an IPv6 address in brackets): the `Host`
    /// header of a request to it.
    pub fn authority(&self) -> &str {
        let after_scheme = self.as_str().split_once("://").map_or("", |(_, rest)| rest);
        after_scheme
            .find('/')
            .map_or(after_scheme, |slash| &after_scheme[..slash])
    }

    /// The path and query (`/hook?x=1`): a request's target.
    pub fn request_target(&self) -> &str {
        let after_scheme = self.as_str().split_once("://").map_or("", |(_, rest)| rest);
        after_scheme
            .find('/')
            .map_or("/", |slash| &after_scheme[slash..])
    }
}

/// Why a webhook may not be sent to `ip`, if it may not: every range IANA sets aside
/// for a special purpose (loopback, private, link-local, CGNAT, multicast, documentation,
/// benchmarking, protocol assignments, reserved), the cloud metadata addresses, and in
/// IPv6 everything outside the global unicast space `2000::/3`. An IPv6 address that
/// carries an IPv4 address (mapped, compatible, translated, well-known NAT64, 6to4) is
/// judged as the IPv4 address it carries, so `2002:7f00:1::` is loopback. The README's
/// webhook section has the table of ranges and why.
pub fn forbidden_address(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => match carried_v4(v6) {
            Some(v4) => forbidden_v4(v4),
            None => forbidden_v6(v6),
        },
    }
}

/// Refused IPv4 ranges. The first range that holds an address decides, so a narrower
/// range comes before the one around it.
const FORBIDDEN_V4: &[Range<u32>] = &[
    v4([169, 254, 169, 254], 32, "the cloud metadata address"),
    v4([255, 255, 255, 255], 32, "the broadcast address"),
    v4([0, 0, 0, 0], 8, "an unspecified or 'this network' address"),
    v4([10, 0, 0, 0], 8, "a private address"),
    v4([100, 64, 0, 0], 10, "a carrier-grade NAT address"),
    v4([127, 0, 0, 0], 8, "a loopback address"),
    v4([169, 254, 0, 0], 16, "a link-local address"),
    v4([172, 16, 0, 0], 12, "a private address"),
    v4([192, 0, 0, 0], 24, "an IETF protocol address"),
    v4([192, 0, 2, 0], 24, "a documentation address"),
    v4([192, 31, 196, 0], 24, "an AS112 DNS sink address"),
    v4([192, 52, 193, 0], 24, "an AMT relay address"),
    v4([192, 88, 99, 0], 24, "a 6to4 relay anycast address"),
    v4([192, 168, 0, 0], 16, "a private address"),
    v4([192, 175, 48, 0], 24, "an AS112 DNS sink address"),
    v4([198, 18, 0, 0], 15, "a benchmarking address"),
    v4([198, 51, 100, 0], 24, "a documentation address"),
    v4([203, 0, 113, 0], 24, "a documentation address"),
    v4([224, 0, 0, 0], 4, "a multicast address"),
    v4([240, 0, 0, 0], 4, "a reserved address"),
];

/// Refused IPv6 ranges, after the forms that carry an IPv4 address are taken out (see
/// [`carried_v4`]). The first range that holds an address decides.
const FORBIDDEN_V6: &[Range<u128>] = &[
    v6(
        [0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254],
        128,
        "the cloud metadata address",
    ),
    v6([0, 0, 0, 0, 0, 0, 0, 0], 128, "the unspecified address"),
    v6([0, 0, 0, 0, 0, 0, 0, 1], 128, "a loopback address"),
    v6(
        [0x64, 0xff9b, 1, 0, 0, 0, 0, 0],
        48,
        "a local-use NAT64 address",
    ),
    v6([0x100, 0, 0, 0, 0, 0, 0, 0], 64, "a discard-only address"),
    v6([0x2001, 0, 0, 0, 0, 0, 0, 0], 32, "a Teredo tunnel address"),
    v6([0x2001, 2, 0, 0, 0, 0, 0, 0], 48, "a benchmarking address"),
    v6([0x2001, 0x10, 0, 0, 0, 0, 0, 0], 28, "an ORCHID address"),
    v6([0x2001, 0x20, 0, 0, 0, 0, 0, 0], 28, "an ORCHIDv2 address"),
    v6(
        [0x2001, 0, 0, 0, 0, 0, 0, 0],
        23,
        "an IETF protocol address",
    ),
    v6(
        [0x2001, 0xdb8, 0, 0, 0, 0, 0, 0],
        32,
        "a documentation address",
    ),
    v6(
        [0x2620, 0x4f, 0x8000, 0, 0, 0, 0, 0],
        48,
        "an AS112 DNS sink address",
    ),
    v6([0x3fff, 0, 0, 0, 0, 0, 0, 0], 20, "a documentation address"),
    v6(
        [0x5f00, 0, 0, 0, 0, 0, 0, 0],
        16,
        "a segment routing (SRv6) address",
    ),
    v6(
        [0xfc00, 0, 0, 0, 0, 0, 0, 0],
        7,
        "a unique local (private) address",
    ),
    v6([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10, "a link-local address"),
    v6([0xfec0, 0, 0, 0, 0, 0, 0, 0], 10, "a site-local address"),
    v6([0xff00, 0, 0, 0, 0, 0, 0, 0], 8, "a multicast address"),
];

/// `first/prefix`, and why an address in it is refused.
struct Range<T> {
    first: T,
    prefix: u32,
    why: &'static str,
}

const fn v4(octets: [u8; 4], prefix: u32, why: &'static str) -> Range<u32> {
    Range {
        first: u32::from_be_bytes(octets),
        prefix,
        why,
    }
}

const fn v6(s: [u16; 8], prefix: u32, why: &'static str) -> Range<u128> {
    Range {
        first: Ipv6Addr::new(s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]).to_bits(),
        prefix,
        why,
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let bits = ip.to_bits();
    FORBIDDEN_V4
        .iter()
        .find(|range| bits & mask(range.prefix, 32) as u32 == range.first)
        .map(|range| range.why)
}

fn forbidden_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let bits = ip.to_bits();
    if let Some(range) = FORBIDDEN_V6
        .iter()
        .find(|range| bits & mask(range.prefix, 128) == range.first)
    {
        return Some(range.why);
    }
    // Only 2000::/3 is handed out for the internet; the rest is reserved or unassigned.
    (bits >> 125 != 0b001).then_some("a reserved address (outside global unicast 2000::/3)")
}

/// The top `prefix` of `width` bits set.
fn mask(prefix: u32, width: u32) -> u128 {
    match prefix {
        0 => 0,
        _ => (u128::MAX << (128 - prefix)) >> (128 - width),
    }
}

/// The IPv4 address an IPv6 address stands for, where it stands for one:
/// `::ffff:a.b.c.d` (mapped), `::ffff:0:a.b.c.d` (translated, SIIT), `::a.b.c.d`
/// (compatible), `64:ff9b::a.b.c.d` (well-known NAT64), `2002:AABB:CCDD::/48` (6to4:
/// a host reaching it tunnels to that IPv4 address).
fn carried_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let v4 = |hi: u16, lo: u16| Ipv4Addr::from_bits(u32::from(hi) << 16 | u32::from(lo));
    match s {
        [0, 0, 0, 0, 0, 0xffff, hi, lo] | [0, 0, 0, 0, 0xffff, 0, hi, lo] => Some(v4(hi, lo)),
        // `::` and `::1` are IPv6's own unspecified and loopback addresses.
        [0, 0, 0, 0, 0, 0, 0, 0 | 1] => None,
        [0, 0, 0, 0, 0, 0, hi, lo] => Some(v4(hi, lo)),
        [0x64, 0xff9b, 0, 0, 0, 0, hi, lo] => Some(v4(hi, lo)),
        [0x2002, hi, lo, ..] => Some(v4(hi, lo)),
        _ => None,
    }
}

/// `scheme` and what follows its `:`, when `input` starts with a scheme.
fn split_scheme(input: &str) -> Option<(&str, &str)> {
    let (scheme, rest) = input.split_once(':')?;
    let mut chars = scheme.chars();
    let first = chars.next()?;
    (first.is_ascii_alphabetic()
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
    .then_some((scheme, rest))
}

/// The host and, after the first `:` outside brackets, the port.
fn split_port(host_port: &str) -> (&str, Option<&str>) {
    let mut in_brackets = false;
    for (i, c) in host_port.char_indices() {
        match c {
            '[' => in_brackets = true,
            ']' => in_brackets = false,
            ':' if !in_brackets => return (&host_port[..i], Some(&host_port[i + 1..])),
            _ => {}
        }
    }
    (host_port, None)
}

fn parse_port(digits: &str) -> Option<u16> {
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let digits = digits.trim_start_matches('0');
    if digits.is_empty() {
        return Some(0);
    }
    if digits.len() > 5 {
        return None;
    }
    digits.parse().ok()
}

/// The standard's host parser for a special scheme, ASCII domains only.
fn parse_host(host: &str) -> Result<CallbackHost, &'static str> {
    if let Some(inner) = host.strip_prefix('[') {
        let inner = inner.strip_suffix(']').ok_or("invalid IPv6 address")?;
        let v6: Ipv6Addr = inner.parse().map_err(|_| "invalid IPv6 address")?;
        return Ok(CallbackHost::Address(IpAddr::V6(v6)));
    }
    let decoded = percent_decode(host);
    if !decoded.is_ascii() {
        return Err("the host must be ASCII (an international domain in its xn-- form)");
    }
    // Only ASCII here, so the bytes are a string; IDNA maps ASCII to lower case.
    let domain: String = decoded
        .iter()
        .map(|&b| char::from(b.to_ascii_lowercase()))
        .collect();
    if domain.is_empty() {
        return Err("empty host");
    }
    if domain.bytes().any(forbidden_in_domain) {
        return Err("invalid domain character");
    }
    if ends_in_a_number(&domain) {
        let v4 = parse_ipv4(&domain).ok_or("invalid IPv4 address")?;
        return Ok(CallbackHost::Address(IpAddr::V4(v4)));
    }
    Ok(CallbackHost::Name(domain))
}

/// The standard's forbidden domain code points (ASCII ones; the rest never gets here).
fn forbidden_in_domain(b: u8) -> bool {
    b <= 0x20
        || b == 0x7f
        || matches!(
            b,
            b'#' | b'/'
                | b':'
                | b'<'
                | b'>'
                | b'?'
                | b'@'
                | b'['
                | b'\\'
                | b']'
                | b'^'
                | b'|'
                | b'%'
        )
}

fn percent_decode(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| char::from(b).to_digit(16);
        if bytes[i] == b'%'
            && let (Some(hi), Some(lo)) = (
                bytes.get(i + 1).and_then(|&b| hex(b)),
                bytes.get(i + 2).and_then(|&b| hex(b)),
            )
        {
            out.push((hi * 16 + lo) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    out
}

/// Whether the last label (after one trailing dot) is a number: then the host is
/// an IPv4 address or nothing.
fn ends_in_a_number(domain: &str) -> bool {
    let mut labels: Vec<&str> = domain.split('.').collect();
    if labels.last() == Some(&"") {
        if labels.len() == 1 {
            return false;
        }
        labels.pop();
    }
    let last = labels.last().copied().unwrap_or("");
    (!last.is_empty() && last.bytes().all(|b| b.is_ascii_digit())) || ipv4_number(last).is_some()
}

/// One part of an IPv4 address: decimal, octal after a `0`, hex after `0x`.
fn ipv4_number(part: &str) -> Option<u64> {
    if part.is_empty() {
        return None;
    }
    let (digits, radix) = if let Some(hex) = part.strip_prefix("0x").or(part.strip_prefix("0X")) {
        (hex, 16)
    } else if part.len() > 1 && part.starts_with('0') {
        (&part[1..], 8)
    } else {
        (part, 10)
    };
    if digits.is_empty() {
        return Some(0);
    }
    if !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    // Anything over 32 bits fails below, however large.
    let digits = digits.trim_start_matches('0');
    if digits.len() > 12 {
        return Some(u64::MAX);
    }
    u64::from_str_radix(if digits.is_empty() { "0" } else { digits }, radix).ok()
}

fn parse_ipv4(domain: &str) -> Option<Ipv4Addr> {
    let mut parts: Vec<&str> = domain.split('.').collect();
    if parts.last() == Some(&"") && parts.len() > 1 {
        parts.pop();
    }
    if parts.len() > 4 {
        return None;
    }
    let numbers = parts
        .iter()
        .map(|part| ipv4_number(part))
        .collect::<Option<Vec<u64>>>()?;
    let (last, init) = numbers.split_last()?;
    if init.iter().any(|&n| n > 255) || *last >= 256u64.pow(5 - numbers.len() as u32) {
        return None;
    }
    let mut address = *last;
    for (i, &n) in init.iter().enumerate() {
        address += n << (8 * (3 - i));
    }
    u32::try_from(address).ok().map(Ipv4Addr::from)
}

/// An IPv6 address as the standard serialises it: lower-case hex, the first longest
/// run of two or more zero pieces as `::`, never a dotted IPv4 tail.
fn push_ipv6(out: &mut String, v6: &Ipv6Addr) {
    let pieces = v6.segments();
    let (mut compress, mut longest) = (None, 1);
    let mut i = 0;
    while i < 8 {
        let run = pieces[i..].iter().take_while(|&&p| p == 0).count();
        if run > longest {
            (compress, longest) = (Some(i), run);
        }
        i += run.max(1);
    }
    let mut i = 0;
    while i < 8 {
        if compress == Some(i) {
            out.push_str(if i == 0 { "::" } else { ":" });
            i += longest;
            continue;
        }
        out.push_str(&format!("{:x}", pieces[i]));
        if i != 7 {
            out.push(':');
        }
        i += 1;
    }
}

/// The path, its `.` and `..` segments resolved and each segment percent-encoded;
/// `/` when there is none.
fn push_path(out: &mut String, path: &str) {
    let path = path.strip_prefix(['/', '\\']).unwrap_or(path);
    let mut segments: Vec<&str> = Vec::new();
    let mut parts = path.split(['/', '\\']).peekable();
    while let Some(segment) = parts.next() {
        let last = parts.peek().is_none();
        let lower = segment.to_ascii_lowercase();
        let dots = match lower.as_str() {
            "." | "%2e" => 1,
            ".." | ".%2e" | "%2e." | "%2e%2e" => 2,
            _ => 0,
        };
        if dots == 2 {
            segments.pop();
        }
        if dots == 0 {
            segments.push(segment);
        } else if last {
            segments.push("");
        }
    }
    for segment in segments {
        out.push('/');
        push_encoded(out, segment, |b| {
            matches!(
                b,
                b' ' | b'"' | b'#' | b'<' | b'>' | b'?' | b'`' | b'{' | b'}'
            )
        });
    }
}

/// `text` with controls, DEL, non-ASCII and what `also` names percent-encoded.
fn push_encoded(out: &mut String, text: &str, also: impl Fn(u8) -> bool) {
    for c in text.chars() {
        if c.is_ascii() && !(c.is_ascii_control() || also(c as u8)) {
            out.push(c);
            continue;
        }
        let mut utf8 = [0; 4];
        for b in c.encode_utf8(&mut utf8).bytes() {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn judged(address: &str) -> Option<&'static str> {
        forbidden_address(address.parse().expect(address))
    }

    /// Every refused range, its first and last address where a neighbour could slip
    /// through, with the reason it is refused for.
    const REFUSED: &[(&str, &str)] = &[
        // IPv4, per IANA's special-purpose registry.
        ("0.0.0.0", "an unspecified or 'this network' address"),
        ("0.255.255.255", "an unspecified or 'this network' address"),
        ("10.0.0.0", "a private address"),
        ("10.255.255.255", "a private address"),
        ("100.64.0.0", "a carrier-grade NAT address"),
        ("100.127.255.255", "a carrier-grade NAT address"),
        ("100.100.100.200", "a carrier-grade NAT address"),
        ("127.0.0.1", "a loopback address"),
        ("127.255.255.254", "a loopback address"),
        ("169.254.169.254", "the cloud metadata address"),
        ("169.254.0.1", "a link-local address"),
        ("169.254.170.2", "a link-local address"),
        ("172.16.0.0", "a private address"),
        ("172.31.255.255", "a private address"),
        ("192.0.0.0", "an IETF protocol address"),
        ("192.0.0.170", "an IETF protocol address"),
        ("192.0.0.255", "an IETF protocol address"),
        ("192.0.2.1", "a documentation address"),
        ("192.31.196.1", "an AS112 DNS sink address"),
        ("192.52.193.1", "an AMT relay address"),
        ("192.88.99.0", "a 6to4 relay anycast address"),
        ("192.88.99.255", "a 6to4 relay anycast address"),
        ("192.168.0.0", "a private address"),
        ("192.168.255.255", "a private address"),
        ("192.175.48.1", "an AS112 DNS sink address"),
        ("198.18.0.0", "a benchmarking address"),
        ("198.19.255.255", "a benchmarking address"),
        ("198.51.100.7", "a documentation address"),
        ("203.0.113.7", "a documentation address"),
        ("224.0.0.1", "a multicast address"),
        ("239.255.255.255", "a multicast address"),
        ("240.0.0.0", "a reserved address"),
        ("255.255.255.254", "a reserved address"),
        ("255.255.255.255", "the broadcast address"),
        // IPv6, per IANA's special-purpose registry.
        ("::", "the unspecified address"),
        ("::1", "a loopback address"),
        ("fd00:ec2::254", "the cloud metadata address"),
        ("64:ff9b:1::", "a local-use NAT64 address"),
        (
            "64:ff9b:1:ffff:ffff:ffff:ffff:ffff",
            "a local-use NAT64 address",
        ),
        ("100::", "a discard-only address"),
        ("100::ffff:ffff:ffff:ffff", "a discard-only address"),
        ("2001::1", "a Teredo tunnel address"),
        (
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
            "a Teredo tunnel address",
        ),
        ("2001:1::1", "an IETF protocol address"),
        ("2001:2::1", "a benchmarking address"),
        ("2001:3::1", "an IETF protocol address"),
        ("2001:4:112::1", "an IETF protocol address"),
        ("2001:10::1", "an ORCHID address"),
        ("2001:1f:ffff::1", "an ORCHID address"),
        ("2001:20::1", "an ORCHIDv2 address"),
        ("2001:2f:ffff::1", "an ORCHIDv2 address"),
        ("2001:30::1", "an IETF protocol address"),
        ("2001:1ff:ffff::1", "an IETF protocol address"),
        ("2001:db8::1", "a documentation address"),
        ("2001:db8:ffff::1", "a documentation address"),
        ("2620:4f:8000::1", "an AS112 DNS sink address"),
        ("3fff::1", "a documentation address"),
        ("3fff:fff:ffff::1", "a documentation address"),
        ("5f00::1", "a segment routing (SRv6) address"),
        ("fc00::1", "a unique local (private) address"),
        ("fdff:ffff::1", "a unique local (private) address"),
        ("fe80::1", "a link-local address"),
        ("febf:ffff::1", "a link-local address"),
        ("fec0::1", "a site-local address"),
        ("feff:ffff::1", "a site-local address"),
        ("ff02::1", "a multicast address"),
        ("ff0e::1", "a multicast address"),
        // Outside global unicast 2000::/3: reserved or unassigned space.
        (
            "::1:0:0:0",
            "a reserved address (outside global unicast 2000::/3)",
        ),
        (
            "1::1",
            "a reserved address (outside global unicast 2000::/3)",
        ),
        (
            "4000::1",
            "a reserved address (outside global unicast 2000::/3)",
        ),
        (
            "1fff:ffff::1",
            "a reserved address (outside global unicast 2000::/3)",
        ),
        (
            "e000::1",
            "a reserved address (outside global unicast 2000::/3)",
        ),
        // IPv4 carried in IPv6: judged as the IPv4 address it carries.
        ("::ffff:127.0.0.1", "a loopback address"),
        ("::ffff:169.254.169.254", "the cloud metadata address"),
        ("::ffff:0:10.0.0.1", "a private address"),
        ("::ffff:0:127.0.0.1", "a loopback address"),
        ("::10.0.0.1", "a private address"),
        ("::127.0.0.2", "a loopback address"),
        ("::0.0.0.2", "an unspecified or 'this network' address"),
        ("64:ff9b::a9fe:a9fe", "the cloud metadata address"),
        ("64:ff9b::192.168.1.1", "a private address"),
        ("2002:7f00:1::", "a loopback address"),
        ("2002:a9fe:a9fe:1:2:3:4:5", "the cloud metadata address"),
        ("2002:c0a8:101::1", "a private address"),
        ("2002:6440::", "a carrier-grade NAT address"),
    ];

    #[test]
    fn every_special_purpose_range_is_refused_naming_why() {
        for (address, why) in REFUSED {
            assert_eq!(judged(address), Some(*why), "{address}");
        }
    }

    #[test]
    fn public_addresses_next_to_the_refused_ranges_are_accepted() {
        for address in [
            "1.0.0.1",
            "8.8.8.8",
            "9.255.255.255",
            "11.0.0.0",
            "100.63.255.255",
            "100.128.0.0",
            "126.255.255.255",
            "128.0.0.0",
            "169.253.255.255",
            "169.255.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "192.0.1.0",
            "192.0.3.0",
            "192.88.98.255",
            "192.88.100.0",
            "192.167.255.255",
            "192.169.0.0",
            "198.17.255.255",
            "198.20.0.0",
            "223.255.255.255",
            "93.184.216.34",
            "2606:4700::1111",
            "2a00:1450:4001::200e",
            "2000::1",
            "2001:200::1",
            "2001:db7:ffff::1",
            "2001:db9::1",
            "2620:4f:8001::1",
            "3ffe:ffff::1",
            "3fff:1000::1",
            // IPv4 carried in IPv6, public inside.
            "::ffff:93.184.216.34",
            "::ffff:0:93.184.216.34",
            "::8.8.8.8",
            "64:ff9b::8.8.8.8",
            "2002:5db8:d822::1",
        ] {
            assert_eq!(judged(address), None, "{address}");
        }
    }

    /// Inputs whose parse the `url` crate (which this replaced) is the judge of.
    const CASES: &[&str] = &[
        "https://hooks.example.com/dialer?x=1",
        "https://Hooks.EXAMPLE.com/Dialer?X=1",
        "HTTPS://hooks.example.com",
        "https://hooks.example.com",
        "https://hooks.example.com?x",
        "https://hooks.example.com/?",
        "https://hooks.example.com:443/a",
        "https://hooks.example.com:0443/a",
        "https://hooks.example.com:80/a",
        "http://hooks.example.com:80/a",
        "http://hooks.example.com:8080/a",
        "https://hooks.example.com:/a",
        "https://hooks.example.com:65535/",
        "https://hooks.example.com:65536/",
        "https://hooks.example.com:99999999999/",
        "https://hooks.example.com:12a/",
        "https://hooks.example.com:-1/",
        "  https://hooks.example.com/a  ",
        "\u{1}https://hooks.example.com/a\u{1f}",
        "https://hooks.exa\tmple.com/a\nb\rc",
        "https:hooks.example.com/a",
        "https:/hooks.example.com/a",
        "https:\\\\hooks.example.com\\a\\b",
        "https:////hooks.example.com//a//b",
        "https://hooks.example.com/a/./b/../c",
        "https://hooks.example.com/a/b/..",
        "https://hooks.example.com/a/b/.",
        "https://hooks.example.com/a/%2e%2E/b/%2e",
        "https://hooks.example.com/../../a",
        "https://hooks.example.com/a/.../b",
        "https://hooks.example.com/a b/\"c\"/<d>/`e`/{f}/^g|h/%zz/%41",
        "https://hooks.example.com/é/ü?é=ü&'x'=\"y\" <z>",
        "https://hooks.example.com/a?b/../c",
        "https://hooks.example.com/\u{7f}?\u{7f}",
        "https://hooks.example.com/#frag",
        "https://hooks.example.com/a#",
        "https://hooks.example.com#",
        "https://user:pw@hooks.example.com/",
        "https://user@hooks.example.com/",
        "https://:pw@hooks.example.com/",
        "https://@hooks.example.com/",
        "https://:@hooks.example.com/",
        "https://a@b@hooks.example.com/",
        "https://@/",
        "https:///a",
        "https://",
        "https://:443/",
        "https://hooks..example.com./",
        "https://hooks.example.com./",
        "https://.",
        "https://-a-.b_c.example/",
        "https://a%2Eb.example/",
        "https://%68ooks.example.com/",
        "https://hooks%2fexample.com/",
        "https://hooks%.example.com/",
        "https://hooks%25.example.com/",
        "https://hoo ks.example.com/",
        "https://hooks<.example.com/",
        "https://hooks^.example.com/",
        "https://hooks|.example.com/",
        "https://a[b]/",
        "https://2130706433/hook",
        "https://0177.0.0.1/hook",
        "https://0x7f.0.0.1/hook",
        "https://0X7F.1/hook",
        "https://127.1/hook",
        "https://127.0.1/hook",
        "https://127.0.0.1./hook",
        "https://127.0.0.1../hook",
        "https://0/",
        "https://0x/",
        "https://0x.0x.0x.0x/",
        "https://00000000000000000000000000000000177.1/",
        "https://0x0000000000000000000000000000007f.1/",
        "https://4294967295/",
        "https://4294967296/",
        "https://1.2.3.4.5/",
        "https://1.2.3.256/",
        "https://1.2.65536/",
        "https://1.2.65535/",
        "https://256.1/",
        "https://1.16777216/",
        "https://1.16777215/",
        "https://09.1/",
        "https://08/",
        "https://0x1g/",
        "https://1.0x1g/",
        "https://example.0x1f/",
        "https://example.123/",
        "https://123.example/",
        "https://example.1a/",
        "https://%31%32%37.0.0.1/",
        "https://127.0.0.1%2e/",
        "https://169.254.169.254/latest/meta-data/",
        "https://0xa9fea9fe/",
        "https://0251.0376.0251.0376/",
        "https://[::1]/hook",
        "https://[::1]:8443/hook",
        "https://[::1]:443/hook",
        "https://[0:0:0:0:0:0:0:1]/",
        "https://[::ffff:127.0.0.1]/hook",
        "https://[::ffff:7f00:1]/hook",
        "https://[fd00:ec2::254]/",
        "https://[FD00:EC2:0:0:0:0:0:254]/",
        "https://[1:0:0:2:0:0:0:3]/",
        "https://[1:0:0:2:0:0:3:4]/",
        "https://[0:0:1:0:0:0:0:0]/",
        "https://[1::]/",
        "https://[::]/",
        "https://[64:ff9b::a9fe:a9fe]/",
        "https://[::10.0.0.1]/",
        "https://[1:2:3:4:5:6:7:8]/",
        "https://[1:2:3:4:5:6:7:8:9]/",
        "https://[::1/",
        "https://[::1]x/",
        "https://[::1%25eth0]/",
        "https://[::ffff:01.2.3.4]/",
        "https://[::ffff:1.2.3]/",
        "https://[g::1]/",
        "https://[]/",
        "https://[::1]]/",
        "http://93.184.216.34/hook",
        "ftp://hooks.example.com/",
        "mailto:someone@example.com",
        "/relative",
        "not a url",
        "",
        "https",
        "1https://x/",
        "h+t-t.p://x/",
        "https://hooks.example.com/a%2Fb?c%3Dd",
        "https://hooks.example.com/a?",
        "https://hooks.example.com/?a=1&a=2",
        "https://hooks.example.com/a?b?c",
    ];

    fn theirs(raw: &str) -> Result<(String, CallbackHost, u16), ()> {
        let parsed = url::Url::parse(raw).map_err(|_| ())?;
        if !matches!(parsed.scheme(), "http" | "https")
            || !parsed.username().is_empty()
            || parsed.password().is_some()
            || parsed.fragment().is_some()
        {
            return Err(());
        }
        let host = match parsed.host().ok_or(())? {
            url::Host::Domain(name) => CallbackHost::Name(name.to_owned()),
            url::Host::Ipv4(v4) => CallbackHost::Address(IpAddr::V4(v4)),
            url::Host::Ipv6(v6) => CallbackHost::Address(IpAddr::V6(v6)),
        };
        let port = parsed.port_or_known_default().ok_or(())?;
        Ok((parsed.to_string(), host, port))
    }

    fn ours(raw: &str) -> Result<(String, CallbackHost, u16), ()> {
        parse(raw).map(|p| (p.url, p.host, p.port)).map_err(|_| ())
    }

    #[test]
    fn parses_as_the_url_crate_did() {
        for raw in CASES {
            assert_eq!(ours(raw), theirs(raw), "{raw:?}");
        }
    }

    #[test]
    fn the_serialised_url_parses_to_itself() {
        for raw in CASES {
            if let Ok(parsed) = parse(raw) {
                assert_eq!(parse(&parsed.url), Ok(parsed), "{raw:?}");
            }
        }
    }

    #[test]
    fn international_hosts_are_refused_not_converted() {
        for raw in [
            "https://bücher.example/",
            "https://b%C3%BCcher.example/",
            "https://１２７.０.０.１/",
            "https://127。0。0。1/",
            "https://ex\u{ad}ample.com/",
        ] {
            assert!(parse(raw).is_err(), "{raw}");
        }
        let punycode = parse("https://XN--bcher-kva.example/").expect("xn-- form");
        assert_eq!(punycode.url, "https://xn--bcher-kva.example/");
    }

    #[test]
    fn the_request_target_and_authority_come_from_the_serialised_url() {
        let url =
            CallbackUrl::parse("https://Hooks.example.com:8443/a/../b?x=1", false).expect("url");
        assert_eq!(url.authority(), "hooks.example.com:8443");
        assert_eq!(url.request_target(), "/b?x=1");
        let url = CallbackUrl::parse("https://[::1]:443", false).expect("url");
        assert_eq!(url.authority(), "[::1]");
        assert_eq!(url.request_target(), "/");
        let url = CallbackUrl::parse("https://h.example?q", false).expect("url");
        assert_eq!(url.request_target(), "/?q");
    }

    #[test]
    fn messages_follow_the_field_name() {
        assert_eq!(
            parse("not a url").map(|p| p.url),
            Err("is not a URL: relative URL without a base".to_owned())
        );
        assert_eq!(
            parse("ftp://x/").map(|p| p.url),
            Err("must be an http or https URL".to_owned())
        );
        assert_eq!(
            parse("https://u:p@x/").map(|p| p.url),
            Err("may not carry a user name or password".to_owned())
        );
        assert_eq!(
            parse("https://x/#f").map(|p| p.url),
            Err("may not carry a #fragment".to_owned())
        );
        assert_eq!(
            parse("https:///").map(|p| p.url),
            Err("is not a URL: empty host".to_owned())
        );
    }
}
