//! Personal data in free text: finds it and masks it.
//!
//! Every detector scans bytes by hand (no regex engine: the Worker's wasm stays small and a
//! span costs microseconds) and proposes matches; the strongest non-overlapping matches are
//! replaced by `[REDACTED:<kind>]`, except the user name in a home-directory path, which
//! becomes `[REDACTED:user]` so the rest of the path stays readable.
//!
//! The detectors lean towards precision where a false positive would destroy telemetry
//! people need: a version number (`1.2.3.4` after a letter, or with five parts) is no IPv4
//! address, an order id that fails the Luhn check or names no card network is no card
//! number, a date or a time is no phone number. Loopback and unspecified addresses
//! (`127.0.0.1`, `::1`, `0.0.0.0`) say nothing about a person and are kept.

use std::net::Ipv6Addr;

/// What a masked piece of text was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Jwt,
    ApiKey,
    BearerToken,
    SecretParameter,
    CardNumber,
    Email,
    Ipv6,
    Ipv4,
    Phone,
    HomeUser,
}

impl Kind {
    pub const ALL: [Kind; 10] = [
        Kind::Jwt,
        Kind::ApiKey,
        Kind::BearerToken,
        Kind::SecretParameter,
        Kind::CardNumber,
        Kind::Email,
        Kind::Ipv6,
        Kind::Ipv4,
        Kind::Phone,
        Kind::HomeUser,
    ];

    /// The name used in the replacement marker and in the span's redaction attributes.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Jwt => "jwt",
            Kind::ApiKey => "api_key",
            Kind::BearerToken => "bearer_token",
            Kind::SecretParameter => "secret_parameter",
            Kind::CardNumber => "card_number",
            Kind::Email => "email",
            Kind::Ipv6 => "ipv6",
            Kind::Ipv4 => "ipv4",
            Kind::Phone => "phone",
            Kind::HomeUser => "user",
        }
    }

    fn marker(self) -> String {
        format!("[REDACTED:{}]", self.name())
    }
}

/// How many pieces of each kind were masked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    counts: [u32; Kind::ALL.len()],
}

impl Tally {
    pub fn add(&mut self, kind: Kind) {
        self.counts[kind as usize] += 1;
    }

    pub fn count(&self, kind: Kind) -> u32 {
        self.counts[kind as usize]
    }

    pub fn total(&self) -> u32 {
        self.counts.iter().sum()
    }

    pub fn merge(&mut self, other: &Tally) {
        for (mine, theirs) in self.counts.iter_mut().zip(other.counts) {
            *mine += theirs;
        }
    }

    /// The kinds found at least once, in a stable order.
    pub fn kinds(&self) -> impl Iterator<Item = Kind> + '_ {
        Kind::ALL.into_iter().filter(|kind| self.count(*kind) > 0)
    }
}

/// Which bytes a string holds, to skip detectors that cannot match.
#[derive(Default)]
struct Triggers {
    digit: bool,
    at: bool,
    colon: bool,
    query: bool,
    slash: bool,
    space: bool,
    dot: bool,
}

/// A piece of the input to replace.
#[derive(Debug, Clone, Copy)]
struct Found {
    start: usize,
    end: usize,
    kind: Kind,
}

/// Masks every piece of personal data in `text`. Returns `None` when nothing was found
/// (the common case, which then costs no allocation).
pub fn scrub(text: &str, tally: &mut Tally) -> Option<String> {
    let bytes = text.as_bytes();
    // One pass says which detectors can match at all; most strings need none or few.
    let mut has = Triggers::default();
    for b in bytes {
        match b {
            b'0'..=b'9' => has.digit = true,
            b'@' => has.at = true,
            b':' => has.colon = true,
            b'?' | b'&' => has.query = true,
            b'/' | b'\\' => has.slash = true,
            b' ' => has.space = true,
            b'.' => has.dot = true,
            _ => {}
        }
    }
    let mut found = Vec::new();
    if has.dot {
        find_jwts(bytes, &mut found);
    }
    find_api_keys(bytes, &mut found);
    if has.space {
        find_auth_schemes(bytes, &mut found);
    }
    if has.query {
        find_secret_parameters(bytes, &mut found);
    }
    if has.digit {
        find_cards(bytes, &mut found);
        find_ipv4(bytes, &mut found);
        find_phones(bytes, &mut found);
    }
    if has.at {
        find_emails(bytes, &mut found);
    }
    if has.colon {
        find_ipv6(text, &mut found);
    }
    if has.slash {
        find_home_users(bytes, &mut found);
    }
    if found.is_empty() {
        return None;
    }
    // Stronger kinds win overlaps (a JWT holds digit runs that look like other things).
    found.sort_by_key(|f| (f.kind, f.start));
    let mut kept: Vec<Found> = Vec::with_capacity(found.len());
    for candidate in found {
        if kept.iter().all(|k| candidate.end <= k.start || candidate.start >= k.end) {
            kept.push(candidate);
        }
    }
    kept.sort_by_key(|f| f.start);
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for piece in kept {
        out.push_str(&text[at..piece.start]);
        out.push_str(&piece.kind.marker());
        tally.add(piece.kind);
        at = piece.end;
    }
    out.push_str(&text[at..]);
    Some(out)
}

fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

fn is_base64url(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

/// The length of the run of bytes from `start` that satisfy `pred`.
fn run(bytes: &[u8], start: usize, pred: impl Fn(u8) -> bool) -> usize {
    bytes[start.min(bytes.len())..].iter().take_while(|b| pred(**b)).count()
}

/// Every index where `needle` starts, compared ASCII-case-insensitively when asked.
fn occurrences<'a>(bytes: &'a [u8], needle: &'a [u8], ignore_case: bool) -> impl Iterator<Item = usize> + 'a {
    let last = bytes.len().checked_sub(needle.len());
    let first = needle[0].to_ascii_lowercase();
    (0..last.map_or(0, |l| l + 1)).filter(move |&i| {
        let b = bytes[i];
        if b != needle[0] && !(ignore_case && b.to_ascii_lowercase() == first) {
            return false;
        }
        let window = &bytes[i..i + needle.len()];
        if ignore_case {
            window.eq_ignore_ascii_case(needle)
        } else {
            window == needle
        }
    })
}

fn starts_token(bytes: &[u8], i: usize) -> bool {
    i == 0 || !is_token_char(bytes[i - 1])
}

/// JSON Web Tokens: three base64url segments, the first two JSON objects (`eyJ`).
fn find_jwts(bytes: &[u8], found: &mut Vec<Found>) {
    for start in occurrences(bytes, b"eyJ", false) {
        if !starts_token(bytes, start) {
            continue;
        }
        let header = run(bytes, start, is_base64url);
        let dot = start + header;
        if header < 10 || bytes.get(dot) != Some(&b'.') || !bytes[dot + 1..].starts_with(b"eyJ") {
            continue;
        }
        let payload = run(bytes, dot + 1, is_base64url);
        let dot2 = dot + 1 + payload;
        if payload < 10 || bytes.get(dot2) != Some(&b'.') {
            continue;
        }
        // An unsigned token ends with its second dot.
        let signature = run(bytes, dot2 + 1, is_base64url);
        found.push(Found { start, end: dot2 + 1 + signature, kind: Kind::Jwt });
    }
}

/// Provider key shapes: a known prefix, then enough key characters that a word is excluded.
fn find_api_keys(bytes: &[u8], found: &mut Vec<Found>) {
    // (prefix, characters allowed after it, minimum length after it)
    /// A prefix, the characters allowed after it, and how many of them a key has at least.
    type Shape = (&'static [u8], fn(u8) -> bool, usize);
    const SHAPES: &[Shape] = &[
        (b"sk-", is_token_char, 20),
        (b"ghp_", is_alnum, 30),
        (b"gho_", is_alnum, 30),
        (b"ghu_", is_alnum, 30),
        (b"ghs_", is_alnum, 30),
        (b"ghr_", is_alnum, 30),
        (b"github_pat_", is_word, 20),
        (b"xoxa-", is_token_char, 10),
        (b"xoxb-", is_token_char, 10),
        (b"xoxp-", is_token_char, 10),
        (b"xoxr-", is_token_char, 10),
        (b"xoxs-", is_token_char, 10),
        (b"xoxe-", is_token_char, 10),
    ];
    for start in 0..bytes.len() {
        // Every prefix starts with one of these; most positions are rejected here.
        if !matches!(bytes[start], b's' | b'g' | b'x') || !starts_token(bytes, start) {
            continue;
        }
        for (prefix, allowed, min) in SHAPES {
            if !bytes[start..].starts_with(prefix) {
                continue;
            }
            let rest = run(bytes, start + prefix.len(), allowed);
            if rest >= *min {
                found.push(Found { start, end: start + prefix.len() + rest, kind: Kind::ApiKey });
            }
        }
    }
    // AWS access key ids: AKIA/ASIA and exactly sixteen upper-case letters or digits.
    for prefix in [&b"AKIA"[..], &b"ASIA"[..]] {
        for start in occurrences(bytes, prefix, false) {
            if !starts_token(bytes, start) {
                continue;
            }
            let rest = run(bytes, start + 4, |b| b.is_ascii_uppercase() || b.is_ascii_digit());
            let end = start + 4 + rest;
            if rest == 16 && bytes.get(end).is_none_or(|b| !is_token_char(*b)) {
                found.push(Found { start, end, kind: Kind::ApiKey });
            }
        }
    }
}

fn is_alnum(b: u8) -> bool {
    b.is_ascii_alphanumeric()
}

/// `Bearer <token>` and `Basic <credentials>`, as in an Authorization header: the scheme
/// stays, the credential goes.
fn find_auth_schemes(bytes: &[u8], found: &mut Vec<Found>) {
    for scheme in [&b"bearer"[..], &b"basic"[..]] {
        for start in occurrences(bytes, scheme, true) {
            if start > 0 && is_word(bytes[start - 1]) {
                continue;
            }
            let spaces = run(bytes, start + scheme.len(), |b| b == b' ');
            if spaces == 0 {
                continue;
            }
            let token_start = start + scheme.len() + spaces;
            let token = run(bytes, token_start, |b| {
                b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/')
            });
            let padding = run(bytes, token_start + token, |b| b == b'=');
            // Short words after "basic" ("basic auth") are prose, not credentials.
            if token >= 8 {
                found.push(Found { start: token_start, end: token_start + token + padding, kind: Kind::BearerToken });
            }
        }
    }
}

/// Values of URL query or form parameters whose name says they are secret
/// (`?access_token=…`, `&password=…`).
fn find_secret_parameters(bytes: &[u8], found: &mut Vec<Found>) {
    const NAMES: &[&[u8]] = &[
        b"access_token",
        b"refresh_token",
        b"id_token",
        b"token",
        b"api_key",
        b"apikey",
        b"key",
        b"password",
        b"passwd",
        b"secret",
        b"client_secret",
        b"code",
        b"sig",
        b"signature",
    ];
    for (i, b) in bytes.iter().enumerate() {
        if !matches!(b, b'?' | b'&') {
            continue;
        }
        let name_len = run(bytes, i + 1, |b| is_word(b) || b == b'-');
        let name = &bytes[i + 1..i + 1 + name_len];
        if bytes.get(i + 1 + name_len) != Some(&b'=') || !NAMES.iter().any(|n| n.eq_ignore_ascii_case(name)) {
            continue;
        }
        let value_start = i + 2 + name_len;
        let value = run(bytes, value_start, |b| {
            !b.is_ascii_whitespace() && !matches!(b, b'&' | b'#' | b'"' | b'\'' | b'<' | b'>')
        });
        if value > 0 {
            found.push(Found { start: value_start, end: value_start + value, kind: Kind::SecretParameter });
        }
    }
}

/// Payment card numbers: 13 to 19 digits, optionally grouped by spaces or dashes, that
/// pass the Luhn check and start with a card network's prefix.
fn find_cards(bytes: &[u8], found: &mut Vec<Found>) {
    let mut i = 0;
    while i < bytes.len() {
        if !bytes[i].is_ascii_digit() || (i > 0 && (is_word(bytes[i - 1]) || matches!(bytes[i - 1], b'.' | b'+'))) {
            i += 1;
            continue;
        }
        let start = i;
        // Twenty digits are enough to tell a card (at most 19) from a longer number.
        let mut digits = [0u8; 20];
        let mut count = 0;
        let mut end = i;
        let mut j = i;
        while j < bytes.len() {
            let b = bytes[j];
            if b.is_ascii_digit() {
                if count < digits.len() {
                    digits[count] = b - b'0';
                }
                count += 1;
                j += 1;
                end = j;
            } else if matches!(b, b' ' | b'-') && bytes.get(j + 1).is_some_and(u8::is_ascii_digit) {
                j += 1;
            } else {
                break;
            }
        }
        let followed_by_word = bytes.get(end).is_some_and(|b| is_word(*b));
        let digits = &digits[..count.min(20)];
        if (13..=19).contains(&count) && !followed_by_word && names_a_card_network(digits) && luhn_valid(digits) {
            found.push(Found { start, end, kind: Kind::CardNumber });
        }
        i = end.max(i + 1);
    }
}

fn leading_number(digits: &[u8], count: usize) -> u32 {
    digits.iter().take(count).fold(0, |n, d| n * 10 + u32::from(*d))
}

/// Visa, Mastercard, American Express, Discover, JCB, Diners Club, UnionPay, Maestro.
fn names_a_card_network(digits: &[u8]) -> bool {
    let two = leading_number(digits, 2);
    let three = leading_number(digits, 3);
    let four = leading_number(digits, 4);
    digits[0] == 4
        || (51..=55).contains(&two)
        || (2221..=2720).contains(&four)
        || two == 34
        || two == 37
        || four == 6011
        || two == 65
        || (644..=649).contains(&three)
        || (3528..=3589).contains(&four)
        || two == 36
        || two == 38
        || (300..=305).contains(&three)
        || two == 62
        || matches!(four, 5018 | 5020 | 5038 | 5893 | 6304 | 6759 | 6761 | 6762 | 6763)
}

pub(crate) fn luhn_valid(digits: &[u8]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(position, d)| {
            let d = u32::from(*d);
            if position % 2 == 1 {
                let doubled = d * 2;
                if doubled > 9 {
                    doubled - 9
                } else {
                    doubled
                }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// E-mail addresses: a local part, '@', and a domain with a dot and an alphabetic TLD.
fn find_emails(bytes: &[u8], found: &mut Vec<Found>) {
    let is_local = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'%' | b'+' | b'-');
    let is_domain = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-');
    for (at, b) in bytes.iter().enumerate() {
        if *b != b'@' {
            continue;
        }
        let mut start = at;
        while start > 0 && is_local(bytes[start - 1]) {
            start -= 1;
        }
        while start < at && bytes[start] == b'.' {
            start += 1;
        }
        if start == at {
            continue;
        }
        let mut end = at + 1 + run(bytes, at + 1, is_domain);
        while end > at + 1 && matches!(bytes[end - 1], b'.' | b'-') {
            end -= 1;
        }
        let domain = &bytes[at + 1..end];
        let Some(last_dot) = domain.iter().rposition(|b| *b == b'.') else {
            continue;
        };
        let tld = &domain[last_dot + 1..];
        let labels_ok = domain.split(|b| *b == b'.').all(|label| !label.is_empty());
        if tld.len() >= 2 && tld.iter().all(u8::is_ascii_alphabetic) && labels_ok {
            found.push(Found { start, end, kind: Kind::Email });
        }
    }
}

/// IPv6 addresses, checked by the standard library's parser.
fn find_ipv6(text: &str, found: &mut Vec<Found>) {
    let bytes = text.as_bytes();
    let is_candidate = |b: u8| b.is_ascii_hexdigit() || b == b':' || b == b'.';
    let mut i = 0;
    while i < bytes.len() {
        if !is_candidate(bytes[i]) || (i > 0 && (is_word(bytes[i - 1]) || bytes[i - 1] == b'.')) {
            i += 1;
            continue;
        }
        let len = run(bytes, i, is_candidate);
        let mut end = i + len;
        // A trailing dot or colon is punctuation ("at fe80::1.").
        while end > i && matches!(bytes[end - 1], b'.') {
            end -= 1;
        }
        let candidate = &text[i..end];
        let colons = candidate.bytes().filter(|b| *b == b':').count();
        let hex_digits = candidate.bytes().filter(u8::is_ascii_hexdigit).count();
        let followed_by_word = bytes.get(i + len).is_some_and(|b| is_word(*b));
        if colons >= 2 && hex_digits >= 4 && !followed_by_word {
            if let Ok(address) = candidate.parse::<Ipv6Addr>() {
                if !address.is_loopback() && !address.is_unspecified() {
                    found.push(Found { start: i, end, kind: Kind::Ipv6 });
                }
            }
        }
        i += len.max(1);
    }
}

/// Dotted-quad IPv4 addresses, strictly: four parts, each 0–255 without leading zeros,
/// not part of a longer dotted number or a word (`v1.2.3.4`).
fn find_ipv4(bytes: &[u8], found: &mut Vec<Found>) {
    let mut i = 0;
    while i < bytes.len() {
        if !bytes[i].is_ascii_digit() || (i > 0 && (is_word(bytes[i - 1]) || matches!(bytes[i - 1], b'.' | b'-'))) {
            i += 1;
            continue;
        }
        let mut octets = [0u16; 4];
        let mut at = i;
        let mut ok = true;
        for (n, octet) in octets.iter_mut().enumerate() {
            let len = run(bytes, at, |b| b.is_ascii_digit());
            if len == 0 || len > 3 || (len > 1 && bytes[at] == b'0') {
                ok = false;
                break;
            }
            *octet = bytes[at..at + len].iter().fold(0, |v, d| v * 10 + u16::from(d - b'0'));
            at += len;
            if *octet > 255 {
                ok = false;
                break;
            }
            if n < 3 {
                if bytes.get(at) != Some(&b'.') {
                    ok = false;
                    break;
                }
                at += 1;
            }
        }
        let continues = match bytes.get(at) {
            Some(b) if is_word(*b) => true,
            Some(b'.') => bytes.get(at + 1).is_some_and(u8::is_ascii_digit),
            _ => false,
        };
        if ok && !continues {
            let loopback_or_unspecified = octets[0] == 127 || octets == [0, 0, 0, 0];
            if !loopback_or_unspecified {
                found.push(Found { start: i, end: at, kind: Kind::Ipv4 });
            }
            i = at;
        } else {
            i += run(bytes, i, |b| b.is_ascii_digit() || b == b'.').max(1);
        }
    }
}

/// Phone numbers: international (`+` and 8–15 digits, grouped by spaces, dashes, dots or
/// parentheses) and North American (`(555) 123-4567`, `555-123-4567`, `555.123.4567`).
fn find_phones(bytes: &[u8], found: &mut Vec<Found>) {
    let boundary_before = |i: usize| i == 0 || !(is_word(bytes[i - 1]) || matches!(bytes[i - 1], b'.' | b'+' | b'-'));
    let boundary_after = |end: usize| {
        bytes.get(end).is_none_or(|b| {
            !(is_word(*b) || (*b == b'.' || *b == b'-') && bytes.get(end + 1).is_some_and(u8::is_ascii_digit))
        })
    };
    for (i, b) in bytes.iter().enumerate() {
        if *b == b'+' && boundary_before(i) && bytes.get(i + 1).is_some_and(u8::is_ascii_digit) {
            let mut digits = 0;
            let mut end = i + 1;
            let mut j = i + 1;
            while j < bytes.len() {
                let c = bytes[j];
                if c.is_ascii_digit() {
                    digits += 1;
                    j += 1;
                    end = j;
                } else if c == b')'
                    || (matches!(c, b' ' | b'-' | b'.' | b'(')
                        && bytes.get(j + 1).is_some_and(|n| n.is_ascii_digit() || *n == b'('))
                {
                    // A separator counts only between digits; a closing parenthesis always.
                    j += 1;
                } else {
                    break;
                }
            }
            if (8..=15).contains(&digits) && boundary_after(end) {
                found.push(Found { start: i, end, kind: Kind::Phone });
            }
        }
        // North American shapes.
        if (b.is_ascii_digit() || *b == b'(') && boundary_before(i) {
            if let Some(end) = north_american(bytes, i) {
                if boundary_after(end) {
                    found.push(Found { start: i, end, kind: Kind::Phone });
                }
            }
        }
    }
}

/// `(ddd) ddd-dddd`, `ddd-ddd-dddd`, `ddd.ddd.dddd`, `ddd ddd dddd`: the end, if one starts at `i`.
fn north_american(bytes: &[u8], i: usize) -> Option<usize> {
    let digits_at = |at: usize, n: usize| {
        (bytes.len() >= at + n && bytes[at..at + n].iter().all(u8::is_ascii_digit)).then_some(at + n)
    };
    let (after_area, separator) = if bytes[i] == b'(' {
        let close = digits_at(i + 1, 3)?;
        if bytes.get(close) != Some(&b')') {
            return None;
        }
        let next = close + 1;
        let next = if bytes.get(next) == Some(&b' ') { next + 1 } else { next };
        (next, None)
    } else {
        let area = digits_at(i, 3)?;
        let separator = *bytes.get(area)?;
        if !matches!(separator, b'-' | b'.' | b' ') {
            return None;
        }
        (area + 1, Some(separator))
    };
    let exchange = digits_at(after_area, 3)?;
    let second = *bytes.get(exchange)?;
    let second_ok = match separator {
        Some(first) => second == first,
        None => second == b'-' || second == b'.',
    };
    if !second_ok {
        return None;
    }
    let end = digits_at(exchange + 1, 4)?;
    (!bytes.get(end).is_some_and(u8::is_ascii_digit)).then_some(end)
}

/// The user name in a home-directory path: `/home/alice/`, `/Users/alice`, `C:\Users\alice`
/// (also with the backslashes doubled, as in JSON or a Rust debug string).
fn find_home_users(bytes: &[u8], found: &mut Vec<Found>) {
    const NOT_PEOPLE: &[&[u8]] = &[b"shared", b"public", b"default", b"all users", b"default user"];
    for prefix in [&b"/home/"[..], b"/Users/", b"\\Users\\", b"\\\\Users\\\\"] {
        let ignore_case = prefix.contains(&b'\\');
        for start in occurrences(bytes, prefix, ignore_case) {
            let user_start = start + prefix.len();
            let name_char = |b: u8| {
                !matches!(b, b'/' | b'\\' | b'"' | b'\'' | b':' | b'<' | b'>' | b'|' | b'?' | b'*')
                    && !b.is_ascii_control()
            };
            let mut user = run(bytes, user_start, |b| name_char(b) && b != b' ');
            if ignore_case {
                // Windows user names may hold spaces ("Carol Ann"); trust them only when
                // the path goes on after the name.
                let with_spaces = run(bytes, user_start, name_char);
                if bytes.get(user_start + with_spaces) == Some(&b'\\') {
                    user = with_spaces;
                }
            }
            let name = &bytes[user_start..user_start + user];
            if user > 0 && !NOT_PEOPLE.iter().any(|n| n.eq_ignore_ascii_case(name)) {
                found.push(Found { start: user_start, end: user_start + user, kind: Kind::HomeUser });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn masked(text: &str) -> (String, Tally) {
        let mut tally = Tally::default();
        let out = scrub(text, &mut tally).unwrap_or_else(|| text.to_string());
        (out, tally)
    }

    /// Asserts `text` is masked as `expected` and the tally counts `kind` once per marker.
    fn assert_masks(text: &str, expected: &str, kind: Kind) {
        let (out, tally) = masked(text);
        assert_eq!(out, expected, "scrubbing {text:?}");
        let markers = expected.matches(&format!("[REDACTED:{}]", kind.name())).count() as u32;
        assert_eq!(tally.count(kind), markers, "tally of {kind:?} for {text:?}");
        assert_eq!(tally.total(), markers, "nothing else masked in {text:?}");
    }

    fn assert_untouched(text: &str) {
        let mut tally = Tally::default();
        assert_eq!(scrub(text, &mut tally), None, "{text:?} must be left alone");
        assert_eq!(tally.total(), 0);
    }

    #[test]
    fn emails() {
        assert_masks("mail alice.smith+pryx@example.co.uk now", "mail [REDACTED:email] now", Kind::Email);
        assert_masks("<bob@mail.example.org>.", "<[REDACTED:email]>.", Kind::Email);
        assert_masks("a@b.io,c_d@e-f.com", "[REDACTED:email],[REDACTED:email]", Kind::Email);
        assert_untouched("root@localhost");
        assert_untouched("npm install @scope/package@1.2.3");
        assert_untouched("price @ 20.00 each");
        assert_untouched("user@host.c0m");
    }

    #[test]
    fn phones() {
        assert_masks("call +44 20 7946 0958 today", "call [REDACTED:phone] today", Kind::Phone);
        assert_masks("tel:+1-202-555-0143", "tel:[REDACTED:phone]", Kind::Phone);
        assert_masks("+4915112345678", "[REDACTED:phone]", Kind::Phone);
        assert_masks("(202) 555-0143 or 202.555.0143", "[REDACTED:phone] or [REDACTED:phone]", Kind::Phone);
        assert_masks("home: 415-555-2671", "home: [REDACTED:phone]", Kind::Phone);
        assert_untouched("released 2026-12-03 at 10:30:00");
        assert_untouched("took +12 ms, then +3.5%");
        assert_untouched("version 1.2.3, build 20261203");
        assert_untouched("id 415-555-26710");
    }

    #[test]
    fn ipv4() {
        assert_masks("from 203.0.113.42:443", "from [REDACTED:ipv4]:443", Kind::Ipv4);
        assert_masks("peer=10.1.2.3.", "peer=[REDACTED:ipv4].", Kind::Ipv4);
        assert_masks("[192.168.0.1]", "[[REDACTED:ipv4]]", Kind::Ipv4);
        assert_untouched("listening on 127.0.0.1:8080 and 0.0.0.0");
        assert_untouched("pryx 1.2.3");
        assert_untouched("v1.2.3.4 and openssl-3.0.13.1");
        assert_untouched("oid 1.3.6.1.4.1.311");
        assert_untouched("300.1.1.1 and 1.2.3.04");
        assert_untouched("release 10.0.2.1a");
    }

    #[test]
    fn ipv6() {
        assert_masks("client 2001:db8:85a3::8a2e:370:7334 said", "client [REDACTED:ipv6] said", Kind::Ipv6);
        assert_masks("[fe80::1ff:fe23:4567:890a]:443", "[[REDACTED:ipv6]]:443", Kind::Ipv6);
        assert_masks("::ffff:203.0.113.9", "[REDACTED:ipv6]", Kind::Ipv6);
        assert_untouched("loopback ::1 and ::");
        assert_untouched("at 10:30:45, std::io::Error, a::b");
        assert_untouched("sha abc123:def456");
        assert_untouched("mac 00:1a:2b:3c:4d:5e");
    }

    #[test]
    fn bearer_and_basic_credentials() {
        assert_masks(
            "Authorization: Bearer abc.def-123_XYZ~=",
            "Authorization: Bearer [REDACTED:bearer_token]",
            Kind::BearerToken,
        );
        assert_masks("basic dXNlcjpwYXNzd29yZA==", "basic [REDACTED:bearer_token]", Kind::BearerToken);
        assert_untouched("uses basic auth with a bearer");
        assert_untouched("the bearerToken field");
    }

    #[test]
    fn api_key_shapes() {
        for key in [
            "sk-proj-AbCdEfGhIjKlMnOpQrStUvWx",
            "sk-ant-api03-abcdefghijklmnopqrstuv",
            "ghp_0123456789abcdefghijABCDEFGHIJ012345",
            "github_pat_11ABCDEFG0123456789_abcdefghij",
            "xoxb-1234567890-abcdefghij",
            "AKIAIOSFODNN7EXAMPLE",
        ] {
            assert_masks(&format!("key={key};"), "key=[REDACTED:api_key];", Kind::ApiKey);
        }
        assert_untouched("sk-learn and task-sk-short");
        assert_untouched("ghp_short and xoxb-1");
        assert_untouched("AKIAIOSFODNN7EXAMPLE2 and akiaiosfodnn7example");
    }

    #[test]
    fn jwts() {
        let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U";
        assert_masks(&format!("token {jwt} end"), "token [REDACTED:jwt] end", Kind::Jwt);
        // A bearer header holding a JWT is one redaction, the stronger kind.
        assert_masks(&format!("Bearer {jwt}"), "Bearer [REDACTED:jwt]", Kind::Jwt);
        assert_masks("eyJhbGciOiJub25lIn0.eyJzdWIiOiJhbGljZSJ9.", "[REDACTED:jwt]", Kind::Jwt);
        assert_untouched("eyJhbGciOiJIUzI1NiJ9 alone");
    }

    #[test]
    fn card_numbers() {
        assert_masks("card 4111 1111 1111 1111 ok", "card [REDACTED:card_number] ok", Kind::CardNumber);
        assert_masks("5500-0000-0000-0004", "[REDACTED:card_number]", Kind::CardNumber);
        assert_masks("amex 378282246310005", "amex [REDACTED:card_number]", Kind::CardNumber);
        // Luhn fails.
        assert_untouched("order 4111111111111112");
        // Luhn passes but no card network starts with 1.
        assert_untouched("order 1234567812345670");
        // A nanosecond timestamp.
        assert_untouched("at 1764756000123456789");
        assert_untouched("id 41111111111111110000");
    }

    #[test]
    fn secret_parameters() {
        assert_masks(
            "GET /cb?code=abc123&state=xyz",
            "GET /cb?code=[REDACTED:secret_parameter]&state=xyz",
            Kind::SecretParameter,
        );
        assert_masks(
            "https://x.test/a?page=2&access_token=t0k#top",
            "https://x.test/a?page=2&access_token=[REDACTED:secret_parameter]#top",
            Kind::SecretParameter,
        );
        assert_untouched("https://x.test/a?page=2&sort=name");
    }

    #[test]
    fn home_directory_users() {
        assert_masks("open /home/alice/notes.md", "open /home/[REDACTED:user]/notes.md", Kind::HomeUser);
        assert_masks("/Users/bob", "/Users/[REDACTED:user]", Kind::HomeUser);
        assert_masks(r"C:\Users\Carol Ann\x", r"C:\Users\[REDACTED:user]\x", Kind::HomeUser);
        assert_masks(r#""C:\\Users\\dave\\a""#, r#""C:\\Users\\[REDACTED:user]\\a""#, Kind::HomeUser);
        assert_untouched(r"C:\Users\Public\Desktop and /home/");
    }

    #[test]
    fn several_kinds_in_one_string() {
        let (out, tally) = masked("alice@example.com from 198.51.100.7 with +33 1 23 45 67 89");
        assert_eq!(out, "[REDACTED:email] from [REDACTED:ipv4] with [REDACTED:phone]");
        assert_eq!(tally.total(), 3);
        assert_eq!(tally.kinds().collect::<Vec<_>>(), vec![Kind::Email, Kind::Ipv4, Kind::Phone]);
    }

    #[test]
    fn plain_text_costs_nothing() {
        assert_untouched("GenerateContent");
        assert_untouched("chat gpt-4o");
        assert_untouched("");
        assert_untouched("ünïcödé text, 中文");
    }
}
