//! Validation of database and branch names.
//!
//! Names end up in ZFS dataset names, file paths, container names and
//! command arguments, so they are restricted to a small safe alphabet before
//! they reach any of those.

use crate::error::{Error, Result};

/// Longest accepted name. Keeps dataset names, socket paths and container
/// names well inside their limits.
pub const MAX_NAME_LEN: usize = 63;

/// Check a database or branch name: 1-63 characters of ASCII letters, digits,
/// `-` and `_`, starting with a letter or digit.
pub fn validate_name(name: &str) -> Result<()> {
    let fail = |reason: &str| {
        Err(Error::InvalidName {
            name: name.to_string(),
            reason: format!(
                "{reason}; use 1-{MAX_NAME_LEN} ASCII letters, digits, '-' or '_', starting with a letter or digit"
            ),
        })
    };
    if name.is_empty() {
        return fail("the name is empty");
    }
    if name.len() > MAX_NAME_LEN {
        return fail(&format!("the name is {} bytes long", name.len()));
    }
    let first = name.as_bytes()[0];
    if !first.is_ascii_alphanumeric() {
        return fail("the name must start with a letter or digit");
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
    {
        return fail(&format!("character {bad:?} is not allowed"));
    }
    Ok(())
}

/// Check a ZFS dataset name given on the command line.
pub fn validate_dataset_name(ds: &str) -> Result<()> {
    let ok = !ds.is_empty()
        && ds.len() <= 200
        && !ds.starts_with('/')
        && !ds.ends_with('/')
        && ds.split('/').all(|part| {
            validate_name(part).is_ok()
                || part.contains('.')
                    && !part.contains("..")
                    && part
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
                    && !part.starts_with(['-', '.'])
        });
    if ok {
        Ok(())
    } else {
        Err(Error::Config(format!(
            "invalid dataset {ds:?}: use POOL/PATH with letters, digits, '-', '_' and '.' (e.g. tank/betterpg)"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dataset_names() {
        for ok in ["tank/betterpg", "tank", "t/a.b/c_d-e"] {
            validate_dataset_name(ok).unwrap();
        }
        for bad in [
            "", "/tank", "tank/", "t/../x", "t/a b", "t/-x", "t@s", "t/$(x)",
        ] {
            assert!(validate_dataset_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn accepts_plain_names() {
        for n in ["prod", "dev-alice", "a", "x_1", "9lives", &"a".repeat(63)] {
            validate_name(n).unwrap_or_else(|e| panic!("{n}: {e}"));
        }
    }

    #[test]
    fn rejects_dangerous_names() {
        let long = "a".repeat(64);
        for n in [
            "", "-rf", "_x", "a/b", "a@b", "a b", "..", "a..b", "a;rm", "$(x)", "a`b`", "é", "a\n",
            "a'b", "a\"b", ".hidden", "a%b", &long,
        ] {
            let e = validate_name(n).expect_err(n);
            assert_eq!(e.code(), 1, "{n}");
            assert!(e.to_string().contains("ASCII letters"), "{e}");
        }
    }
}
