//! Credentials of a branch (`--credentials rotate|keep`): whether the
//! roles of a branch keep their source's passwords, the rotation itself on
//! the branch's private first start, and the role URLs of a rotated branch
//! (`bpg url NAME --role ROLE`).
//!
//! The policy of a new branch is, in order: the one asked for
//! (`--credentials`); for a reset, the branch's own (its settings); else
//! its source's: the source's setting `credentials` (`bpg config`), and
//! without one, the default of the source's root: `rotate` for a replica
//! (`follow`) or an attached cluster (`attach`), `keep` for a database.
//! A branch records the policy it was made with in its settings, so its
//! own branches and its resets use it too; a branch of a rotated branch is
//! always rotated (`keep` there is refused).
//!
//! Rotation ([`rotate`]) gives every role with a stored password (whether
//! or not it may log in: a superuser of the branch can read the hash, and
//! could let the role log in) but betterpg's own superuser (whose password
//! the isolation step already replaced) a new random password, set as a
//! SCRAM verifier computed here: the clear text never reaches the server,
//! its log or `pg_stat_statements`. `pg_authid` is then rewritten
//! (`VACUUM FULL`) so no dead row keeps an old hash, and the private
//! phase's scrub removes the WAL that held them. The passwords are stored
//! in `HOME/secrets/NAME.roles` (JSON, 0600), removed with the branch.

use crate::audit::AuditMaskFile;
use crate::catalog::{Credentials, Entry, Kind, Settings};
use crate::context::Context;
use crate::error::{Error, Result};
use crate::home::RoleSecrets;
use crate::pg::isolate::{quote_ident, quote_literal};
use crate::pg::ConnInfo;
use crate::util::random_token;

/// Length of a generated role password (alphanumeric, from the operating
/// system's generator: about 190 bits).
pub const ROLE_PASSWORD_LEN: usize = 32;

/// What a branch or reset records in the audit log besides its outcome,
/// filled in as soon as it is known (a failure after that point still
/// carries it).
#[derive(Debug, Clone, Default)]
pub(crate) struct Audited {
    /// The credentials policy chosen.
    pub credentials: Option<Credentials>,
    /// The masking files applied, with their hashes.
    pub masking: Vec<AuditMaskFile>,
}

/// The policy the branches of `src` get when nothing else is asked: its
/// setting, else (walking up the branches without one, through
/// `lookup`) the root's kind's default.
pub(crate) fn source_policy(lookup: &dyn Fn(&str) -> Option<Entry>, src: &Entry) -> Credentials {
    let mut e = src.clone();
    // Bounded: a catalog is a tree, but a damaged one must not loop.
    for _ in 0..64 {
        if let Some(c) = e.settings.credentials {
            return c;
        }
        match (e.kind, e.parent.as_deref()) {
            (Kind::Replica | Kind::Attached, _) => return Credentials::Rotate,
            (Kind::Branch, Some(p)) => match lookup(p) {
                Some(parent) => e = parent,
                None => return Credentials::Keep,
            },
            _ => return Credentials::Keep,
        }
    }
    Credentials::Keep
}

/// The policy of a branch of `src`: `requested` (the options), else the
/// branch's `own` settings (a reset), else [`source_policy`]. `keep` of a
/// branch whose credentials were rotated is refused: its branches rotate
/// too.
pub(crate) fn policy_for(
    lookup: &dyn Fn(&str) -> Option<Entry>,
    src: &Entry,
    own: Option<&Settings>,
    requested: Option<Credentials>,
) -> Result<Credentials> {
    let policy = requested
        .or_else(|| own.and_then(|o| o.credentials))
        .unwrap_or_else(|| source_policy(lookup, src));
    if policy == Credentials::Keep
        && src.kind == Kind::Branch
        && src.settings.credentials == Some(Credentials::Rotate)
    {
        return Err(Error::Config(format!(
            "--credentials keep: the roles of {:?} got new passwords when it was made (credentials rotate), and its branches rotate them too: drop --credentials keep (or `bpg config` the branch's own credentials); nothing was made",
            src.name
        )));
    }
    Ok(policy)
}

/// What `bpg status` shows as `credentials`: for a branch, the policy it
/// was made with (`keep` for one made before policies existed: it kept
/// them); for a source, what its branches get by default: its setting,
/// else `rotate` for a replica or attached cluster, `None` (JSON null)
/// for a database without one (its branches keep).
pub(crate) fn status_policy(e: &Entry) -> Option<Credentials> {
    match (e.kind, e.settings.credentials) {
        (_, Some(c)) => Some(c),
        (Kind::Branch, None) => Some(Credentials::Keep),
        (Kind::Replica | Kind::Attached, None) => Some(Credentials::Rotate),
        (Kind::Database, None) => None,
    }
}

/// On the branch's private start (`admin`, betterpg's superuser on the
/// private socket): a new random password for every role with a stored
/// password but `admin`'s own, in one transaction, each set as a SCRAM
/// verifier computed here (the statement never holds a clear text); then
/// `pg_authid` rewritten so no old hash is left in its pages. Returns the
/// new passwords.
pub(crate) async fn rotate(admin: &ConnInfo) -> Result<RoleSecrets> {
    let pg = |doing: &'static str| {
        move |e: tokio_postgres::Error| Error::postgres_with(&e, format!("{doing}: {e}"))
    };
    let mut c = admin.connect().await?;
    let roles: Vec<String> = c
        .query(
            "SELECT rolname::text FROM pg_catalog.pg_authid \
             WHERE rolpassword IS NOT NULL AND rolname <> $1 ORDER BY 1",
            &[&admin.user],
        )
        .await
        .map_err(pg("listing the roles with a password"))?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut secrets = RoleSecrets::default();
    let tx = c
        .transaction()
        .await
        .map_err(pg("rotating the roles' passwords"))?;
    for role in roles {
        let password = random_token(ROLE_PASSWORD_LEN);
        let verifier = postgres_protocol::password::scram_sha_256(password.as_bytes());
        tx.batch_execute(&format!(
            "ALTER ROLE {} PASSWORD {}",
            quote_ident(&role),
            quote_literal(&verifier)
        ))
        .await
        .map_err(|e| {
            Error::postgres_with(&e, format!("giving role {role:?} a new password: {e}"))
        })?;
        secrets.roles.insert(role, password);
    }
    tx.commit()
        .await
        .map_err(pg("rotating the roles' passwords"))?;
    // The old hashes are in dead rows of pg_authid until it is rewritten.
    c.batch_execute("VACUUM FULL pg_catalog.pg_authid")
        .await
        .map_err(pg("rewriting pg_authid after the rotation"))?;
    Ok(secrets)
}

/// The URL of `role` on `name`, with the password its rotation gave it.
/// `keep` (no stored passwords) is refused: the role has its source's
/// password, which betterpg does not know. Handing out the URL is audited
/// (operation `url` with the role; the URL itself never).
pub(crate) async fn role_url(ctx: &Context, name: &str, role: &str) -> Result<String> {
    let r = role_url_unaudited(ctx, name, role);
    let mut ev = crate::audit::AuditEvent::now("url");
    ev.branch = Some(name.to_string());
    ev.role = Some(role.to_string());
    super::audit::record(ctx, ev.outcome(&r));
    r
}

fn role_url_unaudited(ctx: &Context, name: &str, role: &str) -> Result<String> {
    let e = ctx.entry(name)?;
    if e.kind != Kind::Branch {
        return Err(Error::Unsupported(format!(
            "{name:?} is a {}: betterpg knows role passwords only of branches whose credentials it rotated (`bpg url {name}` prints betterpg's own URL)",
            e.kind.as_str()
        )));
    }
    let Some(secrets) = ctx.home.read_roles(name)? else {
        return Err(Error::Unsupported(format!(
            "{name:?} keeps its source's role passwords (credentials keep), which betterpg does not know: log in as {role:?} with its source's password, or `bpg reset {name} --credentials rotate` to give its roles passwords betterpg stores"
        )));
    };
    let Some(password) = secrets.roles.get(role) else {
        let known: Vec<&str> = secrets.roles.keys().map(String::as_str).collect();
        return Err(Error::NotFound {
            what: "role with a rotated password",
            name: role.to_string(),
            hint: format!(
                " on {name:?}: the roles that got a password are {} (a role without a password on the source has none on the branch either)",
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            ),
        });
    };
    let conn = ctx.conn_for(&e)?;
    Ok(ConnInfo {
        user: role.to_string(),
        password: password.clone(),
        ..conn
    }
    .url())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(kind: Kind) -> Entry {
        Entry::sample("x", kind, 1)
    }

    #[test]
    fn status_policy_by_kind() {
        let mut e = entry(Kind::Database);
        assert_eq!(status_policy(&e), None);
        e.kind = Kind::Replica;
        assert_eq!(status_policy(&e), Some(Credentials::Rotate));
        e.kind = Kind::Attached;
        assert_eq!(status_policy(&e), Some(Credentials::Rotate));
        e.kind = Kind::Branch;
        assert_eq!(status_policy(&e), Some(Credentials::Keep));
        e.settings.credentials = Some(Credentials::Rotate);
        assert_eq!(status_policy(&e), Some(Credentials::Rotate));
        e.kind = Kind::Replica;
        e.settings.credentials = Some(Credentials::Keep);
        assert_eq!(status_policy(&e), Some(Credentials::Keep));
    }
}
