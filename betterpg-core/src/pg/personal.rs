//! What looks like personal data: by a column's name, and by sampled
//! values (emails, phone numbers, card numbers that pass the Luhn check,
//! IBANs that pass mod 97, IP addresses). Pure logic, used by `bpg
//! mask-check` to list the columns a masking policy does not cover yet.
//!
//! Heuristics, not proof: a column that is personal in ways these cannot
//! see (free text, a name in a `label` column) is not found, so a policy
//! is still read by a person before it is trusted.

use std::net::IpAddr;

/// A kind of personal data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PersonalKind {
    /// An email address.
    Email,
    /// A phone number.
    Phone,
    /// A person's name.
    Name,
    /// A postal address (street, city, postcode ...).
    Address,
    /// A birth date.
    BirthDate,
    /// An IBAN (bank account).
    Iban,
    /// A payment card number.
    Card,
    /// An IP address.
    Ip,
    /// A national identifier (social security, tax, passport number).
    NationalId,
}

impl PersonalKind {
    /// Short stable name, e.g. `"email"`, `"birth_date"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            PersonalKind::Email => "email",
            PersonalKind::Phone => "phone",
            PersonalKind::Name => "name",
            PersonalKind::Address => "address",
            PersonalKind::BirthDate => "birth_date",
            PersonalKind::Iban => "iban",
            PersonalKind::Card => "card",
            PersonalKind::Ip => "ip",
            PersonalKind::NationalId => "national_id",
        }
    }
}

/// The kinds a column's name suggests (lowercased, split on `_`, `-`
/// and camel case).
pub fn kinds_by_name(column: &str) -> Vec<PersonalKind> {
    use PersonalKind::*;
    let words = words(column);
    let joined: String = words.concat();
    let has = |w: &str| words.iter().any(|x| x == w);
    let mut out = Vec::new();
    if has("email") || has("mail") || joined.contains("email") {
        out.push(Email);
    }
    if has("phone")
        || has("mobile")
        || has("tel")
        || has("telephone")
        || has("fax")
        || has("cell")
        || joined.contains("phone")
    {
        out.push(Phone);
    }
    let name_words = [
        "firstname",
        "lastname",
        "fullname",
        "surname",
        "givenname",
        "familyname",
        "middlename",
        "maidenname",
        "forename",
        "displayname",
        "username",
        "nickname",
        "name",
        "contactname",
        "customername",
    ];
    if name_words.contains(&joined.as_str())
        || has("surname")
        || has("forename")
        || (has("name")
            && words.iter().any(|w| {
                [
                    "first", "last", "full", "given", "family", "middle", "maiden", "display",
                    "user", "nick", "contact", "customer", "person", "patient", "employee",
                    "owner", "holder",
                ]
                .contains(&w.as_str())
            }))
    {
        out.push(Name);
    }
    if has("address")
        || has("addr")
        || has("street")
        || has("city")
        || has("zip")
        || has("zipcode")
        || has("postcode")
        || joined.contains("postalcode")
        || joined.contains("streetaddress")
    {
        // "ip_address", "mac_address", "email_address" are not postal.
        if !(has("ip") || has("mac") || has("email") || has("mail")) {
            out.push(Address);
        }
    }
    if has("birth")
        || has("dob")
        || has("birthday")
        || has("birthdate")
        || joined.contains("dateofbirth")
        || joined.contains("birthdate")
    {
        out.push(BirthDate);
    }
    if has("iban") || joined.contains("bankaccount") || joined.contains("accountnumber") {
        out.push(Iban);
    }
    if has("pan")
        || joined.contains("cardnumber")
        || joined.contains("creditcard")
        || has("ccnumber")
        || (has("cc") && has("number"))
    {
        out.push(Card);
    }
    if has("ip") || has("ipaddr") || joined.contains("ipaddress") {
        out.push(Ip);
    }
    if has("ssn")
        || has("passport")
        || joined.contains("taxid")
        || joined.contains("nationalid")
        || joined.contains("socialsecurity")
    {
        out.push(NationalId);
    }
    out
}

/// The lowercase words of an identifier: `firstName` and `first_name`
/// are `["first", "name"]`.
fn words(ident: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut prev_lower = false;
    for c in ident.chars() {
        if c == '_' || c == '-' || c == ' ' || c == '.' {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            prev_lower = false;
            continue;
        }
        if c.is_uppercase() && prev_lower && !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
        }
        prev_lower = c.is_lowercase() || c.is_ascii_digit();
        cur.extend(c.to_lowercase());
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// The kind one value looks like, if any.
pub fn kind_of_value(value: &str) -> Option<PersonalKind> {
    let v = value.trim();
    if v.is_empty() || v.len() > 320 {
        return None;
    }
    if is_email(v) {
        return Some(PersonalKind::Email);
    }
    if is_iban(v) {
        return Some(PersonalKind::Iban);
    }
    if is_card(v) {
        return Some(PersonalKind::Card);
    }
    if is_ip(v) {
        return Some(PersonalKind::Ip);
    }
    if is_phone(v) {
        return Some(PersonalKind::Phone);
    }
    None
}

/// The kinds that at least half of the non-empty `values` look like (at
/// least two values), with how many matched.
pub fn kinds_by_values<'a>(
    values: impl IntoIterator<Item = &'a str>,
) -> Vec<(PersonalKind, usize, usize)> {
    let mut counts: std::collections::BTreeMap<PersonalKind, usize> = Default::default();
    let mut n = 0;
    for v in values {
        if v.trim().is_empty() {
            continue;
        }
        n += 1;
        if let Some(k) = kind_of_value(v) {
            *counts.entry(k).or_default() += 1;
        }
    }
    counts
        .into_iter()
        .filter(|&(_, c)| c >= 2 && c * 2 >= n)
        .map(|(k, c)| (k, c, n))
        .collect()
}

fn is_email(v: &str) -> bool {
    let Some((local, domain)) = v.rsplit_once('@') else {
        return false;
    };
    if local.is_empty() || local.len() > 64 || v.chars().any(char::is_whitespace) {
        return false;
    }
    if local.contains('@') {
        return false;
    }
    let labels: Vec<&str> = domain.split('.').collect();
    labels.len() >= 2
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.chars().all(|c| c.is_alphanumeric() || c == '-')
                && !l.starts_with('-')
        })
        && labels
            .last()
            .is_some_and(|tld| tld.len() >= 2 && tld.chars().all(char::is_alphabetic))
}

/// A card number: 13 to 19 digits (spaces or dashes between groups
/// allowed) that pass the Luhn check.
pub fn is_card(v: &str) -> bool {
    if !v
        .chars()
        .all(|c| c.is_ascii_digit() || c == ' ' || c == '-')
    {
        return false;
    }
    let digits: Vec<u32> = v.chars().filter_map(|c| c.to_digit(10)).collect();
    (13..=19).contains(&digits.len()) && luhn(&digits)
}

/// The Luhn checksum of `digits` (most significant first) is valid.
pub fn luhn(digits: &[u32]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            if i % 2 == 1 {
                let x = d * 2;
                if x > 9 {
                    x - 9
                } else {
                    x
                }
            } else {
                d
            }
        })
        .sum();
    sum % 10 == 0
}

/// An IBAN: country code, two check digits, 11 to 30 letters or digits
/// (spaces allowed), and the mod 97 check gives 1.
pub fn is_iban(v: &str) -> bool {
    let s: String = v.chars().filter(|c| *c != ' ').collect();
    let b = s.as_bytes();
    if !(15..=34).contains(&b.len())
        || !b[..2].iter().all(u8::is_ascii_uppercase)
        || !b[2..4].iter().all(u8::is_ascii_digit)
        || !b[4..]
            .iter()
            .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase())
    {
        return false;
    }
    let rearranged = s[4..].chars().chain(s[..4].chars());
    let mut rem: u32 = 0;
    for c in rearranged {
        let n = if c.is_ascii_digit() {
            c as u32 - '0' as u32
        } else {
            c as u32 - 'A' as u32 + 10
        };
        rem = if n >= 10 {
            (rem * 100 + n) % 97
        } else {
            (rem * 10 + n) % 97
        };
    }
    rem == 1
}

fn is_ip(v: &str) -> bool {
    // Dotted quads and IPv6 (an inet value may carry a prefix length).
    let addr = v.split_once('/').map(|(a, _)| a).unwrap_or(v);
    addr.parse::<IpAddr>().is_ok() && (addr.contains('.') || addr.matches(':').count() >= 2)
}

/// A phone number: 7 to 15 digits, written like one (a leading `+`, or
/// spaces, dashes, dots or parentheses between groups), and not a date
/// or a time.
pub fn is_phone(v: &str) -> bool {
    if !v
        .chars()
        .all(|c| c.is_ascii_digit() || " +-().".contains(c))
    {
        return false;
    }
    let digits = v.chars().filter(char::is_ascii_digit).count();
    if !(7..=15).contains(&digits) {
        return false;
    }
    if v[1..].contains('+') {
        return false;
    }
    let written_like_one = v.starts_with('+') || v.chars().any(|c| " -().".contains(c));
    // 2026-12-03, 03.12.2026, 12-03-2026 are dates.
    let groups: Vec<&str> = v
        .split(|c: char| !c.is_ascii_digit())
        .filter(|g| !g.is_empty())
        .collect();
    let date_like = groups.len() == 3
        && groups.iter().any(|g| g.len() == 4)
        && groups.iter().filter(|g| g.len() <= 2).count() == 2;
    written_like_one && !date_like
}

#[cfg(test)]
mod tests {
    use super::PersonalKind::*;
    use super::*;

    #[test]
    fn names() {
        assert_eq!(kinds_by_name("email"), vec![Email]);
        assert_eq!(kinds_by_name("contact_email"), vec![Email]);
        assert_eq!(kinds_by_name("first_name"), vec![Name]);
        assert_eq!(kinds_by_name("lastName"), vec![Name]);
        assert_eq!(kinds_by_name("surname"), vec![Name]);
        assert_eq!(kinds_by_name("phone_number"), vec![Phone]);
        assert_eq!(kinds_by_name("street_address"), vec![Address]);
        assert_eq!(kinds_by_name("ip_address"), vec![Ip]);
        assert_eq!(kinds_by_name("date_of_birth"), vec![BirthDate]);
        assert_eq!(kinds_by_name("dob"), vec![BirthDate]);
        assert_eq!(kinds_by_name("iban"), vec![Iban]);
        assert_eq!(kinds_by_name("card_number"), vec![Card]);
        assert_eq!(kinds_by_name("ssn"), vec![NationalId]);
        for none in [
            "id",
            "created_at",
            "table_name",
            "hostname",
            "filename",
            "amount",
        ] {
            assert!(kinds_by_name(none).is_empty(), "{none}");
        }
    }

    #[test]
    fn values() {
        assert_eq!(kind_of_value("ada@example.com"), Some(Email));
        assert_eq!(kind_of_value("not an email@x"), None);
        assert_eq!(kind_of_value("4111 1111 1111 1111"), Some(Card));
        assert_eq!(kind_of_value("4111111111111112"), None, "fails Luhn");
        assert_eq!(kind_of_value("DE89 3704 0044 0532 0130 00"), Some(Iban));
        assert_eq!(kind_of_value("GB82WEST12345698765432"), Some(Iban));
        assert_eq!(
            kind_of_value("GB82WEST12345698765433"),
            None,
            "fails mod 97"
        );
        assert_eq!(kind_of_value("192.168.1.20"), Some(Ip));
        assert_eq!(kind_of_value("2001:db8::1"), Some(Ip));
        assert_eq!(kind_of_value("10.0.0.0/8"), Some(Ip));
        assert_eq!(kind_of_value("+44 20 7946 0958"), Some(Phone));
        assert_eq!(kind_of_value("(555) 010-4477"), Some(Phone));
        assert_eq!(kind_of_value("2026-12-03"), None);
        assert_eq!(kind_of_value("12345678"), None, "a bare number");
        assert_eq!(kind_of_value("1.5"), None);
        assert_eq!(kind_of_value("item-42"), None);
        let v = ["a@b.io", "c@d.org", "", "x"];
        assert_eq!(kinds_by_values(v), vec![(Email, 2, 3)]);
        assert!(kinds_by_values(["a@b.io", "x", "y", "z"]).is_empty());
    }
}
