//! Declarative masking rules (`--mask-rules FILE.toml`): parsed here and
//! compiled to SQL that runs in the masking transaction after the masking
//! SQL files (DESIGN.md section 8; docs/masking.md describes the format).
//!
//! A rules file names columns as `schema.table.column` and whole tables as
//! `schema.table`, either as dotted keys or as TOML tables:
//!
//! ```toml
//! [public.users]
//! email = "email"          # a fake address, unique per original
//! full_name = "name"       # a fake name
//! phone = "phone"          # the digits replaced, the format kept
//! id = "hash"              # keyed hash: joins on it still join
//! notes = "null"
//! country = { value = "XX" }
//!
//! [public.orders]
//! user_id = "hash"
//!
//! ["public.audit_log"]
//! strategy = "truncate"
//! ```
//!
//! Names are the catalog's (case-sensitive, unquoted); a name holding a
//! dot cannot be named. The keyed strategies (`hash`, `email`, `name`,
//! `phone`) use HMAC-SHA256 with a key that is a secret of the source: the
//! compiled SQL reads it from a transaction-local setting that betterpg
//! sets from a bound parameter, so the key is never part of a statement's
//! text (nor of a log, `pg_stat_statements`, or the SQL `bpg mask-sql`
//! prints).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use tokio_postgres::Client;

use super::isolate::quote_ident;
use crate::error::{Error, Result};

/// Largest rules file read.
pub const MAX_RULES_FILE: u64 = 4 << 20;

/// The setting (transaction-local) the compiled SQL reads the key from.
pub const KEY_SETTING: &str = "betterpg.mask_key";

/// One masking strategy.
#[derive(Debug, Clone, PartialEq)]
pub enum Strategy {
    /// Set the column to NULL.
    Null,
    /// Set the column to a fixed value (a SQL literal, escaped).
    Fixed(Literal),
    /// A keyed hash of the value: text as 64 hex digits, `bigint`,
    /// `integer` and `smallint` as non-negative numbers of their width,
    /// `uuid` as a uuid. The same value gives the same hash in every
    /// table and every branch of the same source, so joins still join.
    Hash,
    /// A fake address `user.<20 hex digits of the keyed hash>@example.com`:
    /// email-shaped, unique per original.
    Email,
    /// A fake name of two capitalised words made from the keyed hash.
    Name,
    /// Every digit replaced by one from the keyed hash; everything else
    /// (`+`, spaces, dashes, parentheses) kept.
    Phone,
    /// Empty the whole table (a `schema.table` rule).
    Truncate,
}

impl Strategy {
    /// The name used in rules files.
    pub fn name(&self) -> &'static str {
        match self {
            Strategy::Null => "null",
            Strategy::Fixed(_) => "value",
            Strategy::Hash => "hash",
            Strategy::Email => "email",
            Strategy::Name => "name",
            Strategy::Phone => "phone",
            Strategy::Truncate => "truncate",
        }
    }

    /// Whether the strategy needs the source's key.
    pub fn keyed(&self) -> bool {
        matches!(
            self,
            Strategy::Hash | Strategy::Email | Strategy::Name | Strategy::Phone
        )
    }
}

/// The strategies a rules file may name (`value` is written as
/// `{ value = ... }`).
pub const STRATEGIES: &[&str] = &[
    "null", "value", "hash", "email", "name", "phone", "truncate",
];

/// A fixed value.
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    /// A string (any type's input form: `'2020-01-01'` works for a date).
    Text(String),
    /// An integer.
    Int(i64),
    /// A floating-point number.
    Float(f64),
    /// A boolean.
    Bool(bool),
}

impl Literal {
    /// The value as a SQL literal: strings quoted and escaped (`E'...'`
    /// when it holds a backslash, so `standard_conforming_strings` does
    /// not matter).
    pub fn to_sql(&self) -> String {
        match self {
            Literal::Text(s) => quote_literal(s),
            Literal::Int(i) => i.to_string(),
            Literal::Float(f) => format!("'{f:?}'"),
            Literal::Bool(b) => b.to_string(),
        }
    }
}

/// `s` as a SQL string literal.
pub fn quote_literal(s: &str) -> String {
    let body = s.replace('\'', "''");
    if s.contains('\\') {
        format!("E'{}'", body.replace('\\', "\\\\"))
    } else {
        format!("'{body}'")
    }
}

/// One rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// The key as written (`public.users.email`).
    pub key: String,
    /// Schema.
    pub schema: String,
    /// Table.
    pub table: String,
    /// Column; `None` for a whole table (`truncate`).
    pub column: Option<String>,
    /// What is done.
    pub strategy: Strategy,
}

/// A parsed rules file.
#[derive(Debug, Clone, PartialEq)]
pub struct Rules {
    /// Where it was read from (absolute).
    pub path: PathBuf,
    /// Its rules, in key order (tables, then columns by name).
    pub rules: Vec<Rule>,
}

impl Rules {
    /// Whether any rule needs the source's key.
    pub fn needs_key(&self) -> bool {
        self.rules.iter().any(|r| r.strategy.keyed())
    }

    /// Whether the rules cover `schema.table.column`: a rule on it, or
    /// a `truncate` of its table.
    pub fn covers(&self, schema: &str, table: &str, column: &str) -> bool {
        self.rules.iter().any(|r| {
            r.schema == schema
                && r.table == table
                && r.column.as_deref().is_none_or(|c| c == column)
        })
    }
}

fn rules_error(file: &Path, key: Option<&str>, message: String) -> Error {
    Error::Mask {
        file: Some(file.to_path_buf()),
        line: None,
        statement: key.map(str::to_string),
        sqlstate: None,
        message,
    }
}

/// Read and parse the rules file at `path` (made absolute). A missing,
/// unreadable or invalid file is a [`Error::Mask`] naming it (and the key
/// at fault).
pub fn load(path: &Path) -> Result<Rules> {
    let abs = std::path::absolute(path)
        .map_err(|e| Error::io(format!("resolving the rules path {}", path.display()), e))?;
    let meta = std::fs::metadata(&abs).map_err(|e| {
        rules_error(
            &abs,
            None,
            format!("cannot read the masking rules file: {e}"),
        )
    })?;
    if !meta.is_file() {
        return Err(rules_error(
            &abs,
            None,
            "the masking rules path is not a file".into(),
        ));
    }
    if meta.len() > MAX_RULES_FILE {
        return Err(rules_error(
            &abs,
            None,
            format!(
                "the rules file has {} bytes; at most {MAX_RULES_FILE} are read",
                meta.len()
            ),
        ));
    }
    let text = std::fs::read_to_string(&abs).map_err(|e| {
        rules_error(
            &abs,
            None,
            format!("cannot read the masking rules file: {e}"),
        )
    })?;
    parse(&abs, &text)
}

/// Parse the text of a rules file read from `path`.
pub fn parse(path: &Path, text: &str) -> Result<Rules> {
    let doc: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        rules_error(
            path,
            None,
            format!("not a TOML rules file: {}", e.message().trim()),
        )
    })?;
    let mut found: BTreeMap<(String, String, Option<String>), Rule> = BTreeMap::new();
    walk(path, &mut found, &mut Vec::new(), &toml::Value::Table(doc))?;
    if found.is_empty() {
        return Err(rules_error(
            path,
            None,
            "the rules file has no rules: name columns as schema.table.column (or whole tables as schema.table with truncate)".into(),
        ));
    }
    // Tables first (truncate), then columns; BTreeMap orders None first
    // within a table, which is enough for a stable output.
    let mut rules: Vec<Rule> = found.into_values().collect();
    rules.sort_by_key(|r| r.column.is_some());
    Ok(Rules {
        path: path.to_path_buf(),
        rules,
    })
}

type Found = BTreeMap<(String, String, Option<String>), Rule>;

fn walk(file: &Path, out: &mut Found, at: &mut Vec<String>, v: &toml::Value) -> Result<()> {
    let key = at.join(".");
    match at.len() {
        2 | 3 => {
            // A rule, unless (for a table) it is a table of column rules.
            let is_rule = match v {
                toml::Value::Table(t) => {
                    at.len() == 3 || t.contains_key("strategy") || t.contains_key("value")
                }
                _ => true,
            };
            if is_rule {
                let strategy = strategy_of(file, &key, v)?;
                let column = at.get(2).cloned();
                if column.is_none() && strategy != Strategy::Truncate {
                    return Err(rules_error(
                        file,
                        Some(&key),
                        format!(
                            "{key}: a whole table takes only \"truncate\"; name a column as schema.table.column for {:?}",
                            strategy.name()
                        ),
                    ));
                }
                if column.is_some() && strategy == Strategy::Truncate {
                    return Err(rules_error(
                        file,
                        Some(&key),
                        format!("{key}: \"truncate\" empties a whole table: write it for schema.table, not for a column"),
                    ));
                }
                for (i, part) in at.iter().enumerate() {
                    if part.is_empty() {
                        return Err(rules_error(
                            file,
                            Some(&key),
                            format!("{key}: part {} of the name is empty", i + 1),
                        ));
                    }
                }
                let id = (at[0].clone(), at[1].clone(), column.clone());
                if out.contains_key(&id) {
                    return Err(rules_error(
                        file,
                        Some(&key),
                        format!("{key}: named twice in the rules file; keep one rule"),
                    ));
                }
                out.insert(
                    id,
                    Rule {
                        key: key.clone(),
                        schema: at[0].clone(),
                        table: at[1].clone(),
                        column,
                        strategy,
                    },
                );
                return Ok(());
            }
        }
        n if n > 3 => {
            return Err(rules_error(
                file,
                Some(&key),
                format!("{key}: a rule names schema.table.column (or schema.table); this key has {n} parts"),
            ));
        }
        _ => {}
    }
    match v {
        toml::Value::Table(t) => {
            for (k, child) in t {
                let parts: Vec<String> = k.split('.').map(str::to_string).collect();
                let n = parts.len();
                at.extend(parts);
                let r = walk(file, out, at, child);
                at.truncate(at.len() - n);
                r?;
            }
            Ok(())
        }
        _ => Err(rules_error(
            file,
            Some(&key),
            format!(
                "{key}: a rule names schema.table.column (or schema.table with truncate), e.g. [public.users] email = \"email\""
            ),
        )),
    }
}

fn strategy_of(file: &Path, key: &str, v: &toml::Value) -> Result<Strategy> {
    let named = |s: &str| -> Result<Strategy> {
        Ok(match s {
            "null" => Strategy::Null,
            "hash" => Strategy::Hash,
            "email" => Strategy::Email,
            "name" => Strategy::Name,
            "phone" => Strategy::Phone,
            "truncate" => Strategy::Truncate,
            "value" => {
                return Err(rules_error(
                    file,
                    Some(key),
                    format!("{key}: a fixed value is written {{ value = ... }}"),
                ))
            }
            other => {
                return Err(rules_error(
                    file,
                    Some(key),
                    format!(
                        "{key}: unknown strategy {other:?}; the strategies are {}",
                        STRATEGIES.join(", ")
                    ),
                ))
            }
        })
    };
    match v {
        toml::Value::String(s) => named(s),
        toml::Value::Table(t) => {
            for k in t.keys() {
                if k != "strategy" && k != "value" {
                    return Err(rules_error(
                        file,
                        Some(key),
                        format!(
                            "{key}: unknown key {k:?} in a rule; a rule takes strategy or value"
                        ),
                    ));
                }
            }
            let strategy = match t.get("strategy") {
                None => None,
                Some(toml::Value::String(s)) => Some(s.as_str()),
                Some(_) => {
                    return Err(rules_error(
                        file,
                        Some(key),
                        format!(
                            "{key}: strategy is a string, one of {}",
                            STRATEGIES.join(", ")
                        ),
                    ))
                }
            };
            match (strategy, t.get("value")) {
                (None | Some("value"), Some(v)) => Ok(Strategy::Fixed(literal(file, key, v)?)),
                (Some(s), None) => named(s),
                (Some(s), Some(_)) => Err(rules_error(
                    file,
                    Some(key),
                    format!("{key}: value goes with no strategy (or strategy = \"value\"), not with {s:?}"),
                )),
                (None, None) => Err(rules_error(
                    file,
                    Some(key),
                    format!("{key}: the rule has neither strategy nor value"),
                )),
            }
        }
        toml::Value::Integer(_) | toml::Value::Float(_) | toml::Value::Boolean(_) => {
            Err(rules_error(
                file,
                Some(key),
                format!("{key}: a fixed value is written {{ value = {v} }}"),
            ))
        }
        _ => Err(rules_error(
            file,
            Some(key),
            format!("{key}: a rule is a strategy name or {{ value = ... }}"),
        )),
    }
}

fn literal(file: &Path, key: &str, v: &toml::Value) -> Result<Literal> {
    Ok(match v {
        toml::Value::String(s) => {
            if s.contains('\0') {
                return Err(rules_error(
                    file,
                    Some(key),
                    format!("{key}: the value holds a NUL character, which PostgreSQL text cannot"),
                ));
            }
            Literal::Text(s.clone())
        }
        toml::Value::Integer(i) => Literal::Int(*i),
        toml::Value::Float(f) if f.is_finite() => Literal::Float(*f),
        toml::Value::Boolean(b) => Literal::Bool(*b),
        toml::Value::Datetime(d) => Literal::Text(d.to_string()),
        _ => {
            return Err(rules_error(
                file,
                Some(key),
                format!("{key}: the value is a string, number or boolean"),
            ))
        }
    })
}

/// The helper functions of the keyed strategies (temporary: they go with
/// the masking session). `bpg_mac` is HMAC-SHA256 with the key from
/// [`KEY_SETTING`] (the padded inner and outer keys, hex).
const KEYED_PRELUDE: &str = r#"CREATE OR REPLACE FUNCTION pg_temp.bpg_mac(v text) RETURNS bytea
  LANGUAGE sql STABLE STRICT
  AS $f$ SELECT sha256(decode(substr(k, 129, 128), 'hex') || sha256(decode(substr(k, 1, 128), 'hex') || convert_to(v, 'UTF8'))) FROM current_setting('betterpg.mask_key') AS k $f$;
CREATE OR REPLACE FUNCTION pg_temp.bpg_hash(v text) RETURNS text
  LANGUAGE sql STABLE STRICT AS $f$ SELECT encode(pg_temp.bpg_mac(v), 'hex') $f$;
CREATE OR REPLACE FUNCTION pg_temp.bpg_hash(v bigint) RETURNS bigint
  LANGUAGE sql STABLE STRICT AS $f$ SELECT ('x' || encode(substr(pg_temp.bpg_mac(v::text), 1, 8), 'hex'))::bit(64)::bigint & 9223372036854775807 $f$;
CREATE OR REPLACE FUNCTION pg_temp.bpg_hash(v integer) RETURNS integer
  LANGUAGE sql STABLE STRICT AS $f$ SELECT ('x' || encode(substr(pg_temp.bpg_mac(v::text), 1, 4), 'hex'))::bit(32)::integer & 2147483647 $f$;
CREATE OR REPLACE FUNCTION pg_temp.bpg_hash(v smallint) RETURNS smallint
  LANGUAGE sql STABLE STRICT AS $f$ SELECT (('x' || encode(substr(pg_temp.bpg_mac(v::text), 1, 2), 'hex'))::bit(16)::integer & 32767)::smallint $f$;
CREATE OR REPLACE FUNCTION pg_temp.bpg_hash(v uuid) RETURNS uuid
  LANGUAGE sql STABLE STRICT AS $f$ SELECT encode(substr(pg_temp.bpg_mac(v::text), 1, 16), 'hex')::uuid $f$;
CREATE OR REPLACE FUNCTION pg_temp.bpg_email(v text) RETURNS text
  LANGUAGE sql STABLE STRICT AS $f$ SELECT 'user.' || left(encode(pg_temp.bpg_mac(v), 'hex'), 20) || '@example.com' $f$;
CREATE OR REPLACE FUNCTION pg_temp.bpg_name(v text) RETURNS text
  LANGUAGE sql STABLE STRICT
  AS $f$ SELECT initcap(string_agg(substr('bdfghjklmnprstvz', get_byte(m, i) % 16 + 1, 1) || substr('aeiou', get_byte(m, i) / 16 % 5 + 1, 1) || CASE WHEN i = 2 THEN ' ' ELSE '' END, '' ORDER BY i)) FROM pg_temp.bpg_mac(v) AS m, generate_series(0, 6) AS i $f$;
CREATE OR REPLACE FUNCTION pg_temp.bpg_phone(v text) RETURNS text
  LANGUAGE sql STABLE STRICT
  AS $f$ SELECT coalesce(string_agg(CASE WHEN c ~ '^[0-9]$' THEN (get_byte(m, ((i - 1) % 32)::integer) % 10)::text ELSE c END, '' ORDER BY i), '') FROM pg_temp.bpg_mac(v) AS m, regexp_split_to_table(v, '') WITH ORDINALITY AS t(c, i) $f$;
"#;

/// Rules compiled to SQL.
#[derive(Debug, Clone, PartialEq)]
pub struct Compiled {
    /// The rules file.
    pub path: PathBuf,
    /// The rules (what [`check_targets`] looks for).
    pub rules: Vec<Rule>,
    /// The SQL, without the key: statements separated by `;` (see
    /// [`crate::pg::mask::split_statements`]).
    pub sql: String,
    /// Whether the SQL reads the key ([`KEY_SETTING`]).
    pub needs_key: bool,
}

/// Compile `rules` to SQL. `key_label` names whose key the keyed
/// strategies use, for the comment that stands where the key is set (the
/// key itself is never in the text).
pub fn compile(rules: &Rules, key_label: &str) -> Compiled {
    let mut sql = String::new();
    let needs_key = rules.needs_key();
    let _ = writeln!(
        sql,
        "-- Masking rules compiled from {}, run in the masking transaction after the masking SQL files.",
        rules.path.display()
    );
    let _ = writeln!(
        sql,
        "-- Rules run without triggers or foreign-key checks (hash both sides of a key)."
    );
    sql.push_str("SET LOCAL session_replication_role = replica;\n");
    if needs_key {
        let _ = writeln!(
            sql,
            "-- The key ({key_label}) is set by betterpg from a bound parameter, never written here:\n--   SELECT set_config('{KEY_SETTING}', <key of {key_label}>, true);"
        );
        sql.push_str(KEYED_PRELUDE);
    }
    let truncated: Vec<&Rule> = rules
        .rules
        .iter()
        .filter(|r| r.strategy == Strategy::Truncate)
        .collect();
    let mut by_table: BTreeMap<(&str, &str), Vec<&Rule>> = BTreeMap::new();
    for r in &rules.rules {
        if r.column.is_some()
            && !truncated
                .iter()
                .any(|t| t.schema == r.schema && t.table == r.table)
        {
            by_table
                .entry((r.schema.as_str(), r.table.as_str()))
                .or_default()
                .push(r);
        }
    }
    for ((schema, table), cols) in &by_table {
        let _ = writeln!(
            sql,
            "UPDATE {}.{} SET",
            quote_ident(schema),
            quote_ident(table)
        );
        for (i, r) in cols.iter().enumerate() {
            let col = quote_ident(r.column.as_deref().unwrap_or_default());
            let expr = match &r.strategy {
                Strategy::Null => "NULL".to_string(),
                Strategy::Fixed(l) => l.to_sql(),
                Strategy::Hash => format!("pg_temp.bpg_hash({col})"),
                Strategy::Email => format!("pg_temp.bpg_email({col})"),
                Strategy::Name => format!("pg_temp.bpg_name({col})"),
                Strategy::Phone => format!("pg_temp.bpg_phone({col})"),
                Strategy::Truncate => unreachable!("truncate rules name tables"),
            };
            let sep = if i + 1 < cols.len() { "," } else { ";" };
            let _ = writeln!(sql, "  {col} = {expr}{sep}");
        }
    }
    if !truncated.is_empty() {
        let names: Vec<String> = truncated
            .iter()
            .map(|r| format!("{}.{}", quote_ident(&r.schema), quote_ident(&r.table)))
            .collect();
        let _ = writeln!(sql, "TRUNCATE {};", names.join(", "));
    }
    sql.push_str("SET LOCAL session_replication_role = DEFAULT;\n");
    Compiled {
        path: rules.path.clone(),
        rules: rules.rules.clone(),
        sql,
        needs_key,
    }
}

/// The value of [`KEY_SETTING`] for a key (32 random bytes, hex): the
/// HMAC-SHA256 inner and outer padded keys, hex (the compiled SQL needs no
/// XOR of its own).
pub fn key_setting(key_hex: &str) -> Result<String> {
    let key = decode_hex(key_hex.trim())
        .ok_or_else(|| Error::Config("the masking key file does not hold a hex key".into()))?;
    if key.is_empty() || key.len() > 64 {
        return Err(Error::Config(
            "the masking key file holds a key of the wrong length".into(),
        ));
    }
    let mut ipad = [0x36u8; 64];
    let mut opad = [0x5cu8; 64];
    for (i, b) in key.iter().enumerate() {
        ipad[i] ^= b;
        opad[i] ^= b;
    }
    let mut out = String::with_capacity(256);
    for b in ipad.iter().chain(opad.iter()) {
        let _ = write!(out, "{b:02x}");
    }
    Ok(out)
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Check that every table and column `c` names exists in the database
/// `client` is on (catalog names, bound as parameters). A missing one is
/// a [`Error::Mask`] naming the rules file and the rule's key.
pub async fn check_targets(client: &Client, c: &Compiled) -> Result<()> {
    for r in &c.rules {
        let col = r.column.clone().unwrap_or_default();
        let row = client
            .query_one(
                "SELECT cl.oid IS NOT NULL, a.attnum IS NOT NULL \
                 FROM (SELECT $1::text AS s, $2::text AS t, $3::text AS c) x \
                 LEFT JOIN pg_catalog.pg_namespace n ON n.nspname = x.s \
                 LEFT JOIN pg_catalog.pg_class cl ON cl.relnamespace = n.oid AND cl.relname = x.t \
                      AND cl.relkind IN ('r', 'p') \
                 LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid = cl.oid AND a.attname = x.c \
                      AND a.attnum > 0 AND NOT a.attisdropped",
                &[&r.schema, &r.table, &col],
            )
            .await
            .map_err(|e| {
                Error::from(e).reword(|m| format!("checking the masking rule {}: {m}", r.key))
            })?;
        let (table, column): (bool, bool) = (row.get(0), row.get(1));
        let what = if !table {
            Some(format!(
                "there is no table {}.{}",
                quote_ident(&r.schema),
                quote_ident(&r.table)
            ))
        } else if r.column.is_some() && !column {
            Some(format!(
                "table {}.{} has no column {}",
                quote_ident(&r.schema),
                quote_ident(&r.table),
                quote_ident(&col)
            ))
        } else {
            None
        };
        if let Some(what) = what {
            return Err(rules_error(
                &c.path,
                Some(&r.key),
                format!(
                    "masking rule {}: {what}; nothing was applied and the branch was destroyed: fix the rules file and branch again",
                    r.key
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Result<Rules> {
        parse(Path::new("/r/rules.toml"), text)
    }

    #[test]
    fn every_form_of_rule_parses() {
        let r = p(r#"
["public.users.email"]
strategy = "email"

[public.users.phone]
strategy = "phone"

[public.users]
first_name = "name"
id = "hash"
notes = "null"
country = { value = "it's \\ here" }
age = { value = 42 }
vip = { strategy = "value", value = false }

["public.Weird \"T\""]
strategy = "truncate"

[public]
sessions = "truncate"
"#)
        .unwrap();
        let keys: Vec<(&str, &str)> = r
            .rules
            .iter()
            .map(|r| (r.key.as_str(), r.strategy.name()))
            .collect();
        assert_eq!(
            keys,
            vec![
                ("public.Weird \"T\"", "truncate"),
                ("public.sessions", "truncate"),
                ("public.users.age", "value"),
                ("public.users.country", "value"),
                ("public.users.email", "email"),
                ("public.users.first_name", "name"),
                ("public.users.id", "hash"),
                ("public.users.notes", "null"),
                ("public.users.phone", "phone"),
                ("public.users.vip", "value"),
            ]
        );
        assert!(r.needs_key());
        assert!(r.covers("public", "users", "email"));
        assert!(r.covers("public", "sessions", "anything"));
        assert!(!r.covers("public", "users", "other"));
    }

    #[test]
    fn bad_rules_are_errors_naming_file_and_key() {
        for (text, key, says) in [
            ("this is = = not toml", None, "not a TOML rules file"),
            (
                "[public.users]\nemail = \"scramble\"",
                Some("public.users.email"),
                "unknown strategy \"scramble\"",
            ),
            (
                "[public.users]\nemail = { strategy = \"email\", salt = 1 }",
                Some("public.users.email"),
                "unknown key \"salt\"",
            ),
            (
                "[public]\nusers = \"null\"",
                Some("public.users"),
                "only \"truncate\"",
            ),
            (
                "[public.users]\nemail = \"truncate\"",
                Some("public.users.email"),
                "whole table",
            ),
            ("\"a.b.c.d\" = \"null\"", Some("a.b.c.d"), "4 parts"),
            (
                "[public.users]\nemail = 3",
                Some("public.users.email"),
                "{ value = 3 }",
            ),
            (
                "\"public.users.email\" = \"null\"\n[public.users]\nemail = \"hash\"",
                None,
                "named twice",
            ),
            ("", None, "no rules"),
            ("x = 1", Some("x"), "schema.table.column"),
        ] {
            let e = p(text).unwrap_err();
            match &e {
                Error::Mask {
                    file, statement, ..
                } => {
                    assert_eq!(file.as_deref(), Some(Path::new("/r/rules.toml")));
                    if key.is_some() {
                        assert_eq!(statement.as_deref(), key, "{text}: {e}");
                    }
                }
                other => panic!("{text}: not a mask error: {other}"),
            }
            assert!(e.to_string().contains(says), "{text}: {e}");
        }
    }

    #[test]
    fn compiled_sql_quotes_names_escapes_values_and_holds_no_key() {
        let r = p(r#"
[public.'Us"ers']
"e-mail" = "email"
id = "hash"
note = { value = "o'brien \\ x" }
gone = "null"
[public.orders]
user_id = "hash"
[public]
logs = "truncate"
"#)
        .unwrap();
        let c = compile(&r, "the source \"prod\"");
        assert!(c.needs_key);
        assert!(
            c.sql.contains("UPDATE \"public\".\"Us\"\"ers\" SET\n"),
            "{}",
            c.sql
        );
        assert!(c
            .sql
            .contains("  \"e-mail\" = pg_temp.bpg_email(\"e-mail\"),\n"));
        assert!(
            c.sql.contains("  \"note\" = E'o''brien \\\\ x';\n"),
            "{}",
            c.sql
        );
        assert!(c.sql.contains("TRUNCATE \"public\".\"logs\";"), "{}", c.sql);
        assert!(c.sql.contains("<key of the source \"prod\">"));
        // Every statement splits cleanly (dollar quotes hold the bodies).
        let stmts = crate::pg::mask::split_statements(&c.sql);
        assert!(stmts.iter().all(|s| !s.text.trim().is_empty()));
        assert!(stmts.iter().any(|s| s
            .text
            .starts_with("CREATE OR REPLACE FUNCTION pg_temp.bpg_phone")));
        // Without keyed rules, no key and no helper functions.
        let plain = compile(&p("[public.t]\nc = \"null\"").unwrap(), "x");
        assert!(!plain.needs_key);
        assert!(!plain.sql.contains("bpg_mac"));
        assert!(!plain.sql.contains(KEY_SETTING));
    }

    #[test]
    fn the_key_setting_is_the_padded_hmac_keys() {
        let k = key_setting("0001ff").unwrap();
        assert_eq!(k.len(), 256);
        assert!(k.starts_with("3637c9363636"));
        assert!(k[128..].starts_with("5c5da35c5c5c"));
        assert!(key_setting("xyz").is_err());
        assert!(key_setting("").is_err());
    }

    #[test]
    fn the_example_rules_file_parses() {
        let r = p(include_str!("../../../examples/masking/rules.toml")).unwrap();
        assert_eq!(r.rules.len(), 8);
        assert!(r.covers("public", "sessions", "token"));
    }

    #[test]
    fn literals_are_escaped() {
        assert_eq!(quote_literal("a'b"), "'a''b'");
        assert_eq!(quote_literal("a\\b'"), "E'a\\\\b'''");
        assert_eq!(Literal::Int(-3).to_sql(), "-3");
        assert_eq!(Literal::Bool(true).to_sql(), "true");
        assert_eq!(Literal::Float(1.5).to_sql(), "'1.5'");
    }
}
