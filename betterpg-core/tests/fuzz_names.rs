//! Property tests (proptest) of the two places where user input becomes part
//! of something else: names (ZFS datasets and snapshots, file paths,
//! container names, command arguments) and connection URLs.
//!
//! Pure logic: no pool, no server. Case counts are proptest's, raised by
//! `PROPTEST_CASES` (CI may run more).

use std::path::{Component, Path};
use std::str::FromStr;

use betterpg_core::manager::validate_dataset_name;
use betterpg_core::name::MAX_NAME_LEN;
use betterpg_core::pg::ConnInfo;
use betterpg_core::validate_name;
use proptest::prelude::*;

/// The documented alphabet, written independently of the implementation:
/// 1-63 ASCII letters, digits, '-' or '_', starting with a letter or digit.
fn documented(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_NAME_LEN
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'-' || *c == b'_')
}

/// Characters that mean something to a shell, ZFS (`/` `@` `#` `%`), a path
/// or a URL.
const SPECIAL: &str = " \t\n\r\0/\\@#%.:;&|<>()$`'\"*?[]{}!~^=+,";

/// Everything a name is used for must hold for every accepted name.
fn assert_safe_everywhere(name: &str) {
    // No special character at all.
    assert!(!name.chars().any(|c| SPECIAL.contains(c)), "{name:?}");
    // Not an option to any command (`zfs`, `pg_ctl`, `docker`).
    assert!(!name.starts_with('-'), "{name:?}");
    // A ZFS dataset component: the dataset betterpg makes is valid, and a
    // snapshot name made from it has exactly one '@'.
    let ds = format!("pool/betterpg/{name}");
    validate_dataset_name(&ds).unwrap_or_else(|e| panic!("{ds}: {e}"));
    let snap = format!("{ds}@bpg-{name}-1700000000");
    assert_eq!(snap.matches('@').count(), 1);
    assert!(snap.len() < 256, "ZFS names are below 256 bytes");
    // A path component: one normal component, staying in its directory.
    let logs = Path::new("/var/lib/betterpg/logs");
    for file in [name.to_string(), format!("{name}.log")] {
        let p = logs.join(&file);
        assert_eq!(p.parent(), Some(logs), "{file:?} leaves its directory");
        let comps: Vec<_> = Path::new(&file).components().collect();
        assert!(
            matches!(comps.as_slice(), [Component::Normal(_)]),
            "{file:?} is not one plain path component"
        );
    }
    // A container name (the docker runtime's `betterpg-<hash>-NAME`):
    // Docker's [a-zA-Z0-9][a-zA-Z0-9_.-]+, at most 255.
    let c = format!("betterpg-{:012x}-{name}", u64::MAX >> 16);
    let cb = c.as_bytes();
    assert!(
        cb.len() >= 2
            && cb.len() <= 255
            && cb[0].is_ascii_alphanumeric()
            && cb[1..]
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(b)),
        "container name {c:?}"
    );
    // A PostgreSQL configuration value or SQL literal needs no quoting.
    assert!(!name.contains('\'') && !name.contains('\\'));
}

/// Arbitrary text, biased towards the characters that matter.
fn near_names() -> impl Strategy<Value = String> {
    prop_oneof![
        // Anything at all, including non-ASCII and control characters.
        ".{0,80}",
        // The alphabet plus the dangerous neighbours, around the length limit.
        "[A-Za-z0-9_./@ $;`'\"|&<>()*?#%:~-]{0,70}",
        // Accepted names with one character spliced in.
        (
            "[A-Za-z0-9][A-Za-z0-9_-]{0,62}",
            any::<char>(),
            any::<prop::sample::Index>()
        )
            .prop_map(|(s, c, i)| {
                let mut v: Vec<char> = s.chars().collect();
                let at = i.index(v.len() + 1);
                v.insert(at, c);
                v.into_iter().collect()
            }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 2048,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Never panics; accepts exactly the documented alphabet; a refusal is
    /// an `invalid_name` error that says what is allowed.
    #[test]
    fn validate_name_matches_the_documented_alphabet(name in near_names()) {
        let got = validate_name(&name);
        prop_assert_eq!(got.is_ok(), documented(&name), "{:?}: {:?}", name, got);
        match got {
            Ok(()) => assert_safe_everywhere(&name),
            Err(e) => {
                prop_assert_eq!(e.kind_name(), "invalid_name");
                prop_assert!(e.to_string().contains("ASCII letters, digits"), "{}", e);
            }
        }
    }

    /// Every name of the documented alphabet is accepted and safe.
    #[test]
    fn every_documented_name_is_accepted_and_safe(name in "[A-Za-z0-9][A-Za-z0-9_-]{0,62}") {
        prop_assert!(validate_name(&name).is_ok(), "{:?}", name);
        assert_safe_everywhere(&name);
    }

    /// Arbitrary bytes (lossily decoded) never panic the validator.
    #[test]
    fn validate_name_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let s = String::from_utf8_lossy(&bytes);
        let _ = validate_name(&s);
    }

    /// `ConnInfo::url` round-trips through a URL parser and through the
    /// PostgreSQL client's own parser for any user, password and database.
    #[test]
    fn conn_url_round_trips(
        user in ".{1,40}",
        password in ".{0,60}",
        dbname in prop_oneof![".{1,40}", Just(".".to_string()), Just("..".to_string())],
        port in 1u16..,
        host in prop_oneof![Just("127.0.0.1"), Just("10.1.2.3"), Just("localhost"), Just("db.example")],
    ) {
        let c = ConnInfo {
            host: host.to_string(),
            port,
            user: user.clone(),
            password: password.clone(),
            dbname: dbname.clone(),
        };
        let text = c.url();
        let u = url::Url::parse(&text).map_err(|e| TestCaseError::fail(format!("{text}: {e}")))?;
        prop_assert_eq!(u.scheme(), "postgresql");
        prop_assert_eq!(u.host_str(), Some(host));
        prop_assert_eq!(u.port(), Some(port));
        let dec = |s: &str| percent_decode(s);
        prop_assert_eq!(dec(u.username()), user.clone(), "{}", text);
        prop_assert_eq!(dec(u.password().unwrap_or("")), password.clone(), "{}", text);
        // A WHATWG parser (the `url` crate) removes a "." or ".." path
        // segment, even percent-encoded: such database names cannot survive
        // it whatever the encoding (libpq and tokio-postgres keep them; see
        // below). betterpg's database is always "postgres".
        if dbname != "." && dbname != ".." {
            prop_assert_eq!(dec(u.path().trim_start_matches('/')), dbname.clone(), "{}", text);
        }
        prop_assert!(u.query().is_none() && u.fragment().is_none(), "{}", text);

        let cfg = tokio_postgres::Config::from_str(&text)
            .map_err(|e| TestCaseError::fail(format!("{text}: {e}")))?;
        prop_assert_eq!(cfg.get_user(), Some(user.as_str()));
        prop_assert_eq!(cfg.get_password().unwrap_or(b""), password.as_bytes());
        prop_assert_eq!(cfg.get_dbname(), Some(dbname.as_str()));
        prop_assert_eq!(cfg.get_ports(), &[port]);
    }
}

/// Decode %XX escapes (the test's own, independent of the product's encoder).
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap();
            out.push(u8::from_str_radix(hex, 16).expect("valid escape"));
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).expect("decoded UTF-8")
}

#[test]
fn the_issue_list_of_bad_names_is_refused() {
    let long = "a".repeat(MAX_NAME_LEN + 1);
    for bad in [
        "",
        &long,
        "a/b",
        "a@b",
        "a b",
        "..",
        ".",
        "a..b",
        "-x",
        "--force",
        "a;rm -rf /",
        "$(id)",
        "`id`",
        "a|b",
        "a&b",
        "a>b",
        "é",
        "名前",
        "a\0b",
        "a\nb",
        "x'y",
        "a%b",
        "a#b",
    ] {
        let e = validate_name(bad).expect_err(bad);
        assert_eq!(e.kind_name(), "invalid_name", "{bad:?}");
    }
    validate_name(&"a".repeat(MAX_NAME_LEN)).unwrap();
}
