//! Declarative masking rules (docs/masking.md): `bpg branch SRC NAME
//! --mask-rules FILE.toml` compiles per-column strategies (null, a value,
//! a keyed hash, email, name and phone fakes) and table truncation to SQL
//! run in the masking transaction; every strategy has its effect, joins on
//! hashed keys still join, fakes keep format and uniqueness, no original
//! and not the source's key is left in the branch's data directory (or
//! the server logs), the same source hashes the same way and another
//! source differently; a rule on a missing column fails closed; a bad file
//! is a typed error that changes nothing; a source's policy
//! (`bpg config --mask-rules`) masks its branches, their branches and
//! resets; `bpg mask-sql` shows the SQL with the key as a placeholder.
//!
//! Real ZFS, real PostgreSQL 15, the real `bpg` binary.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use betterpg_testkit::*;

const USERS: i64 = 300;

fn setup(prefix: &str) -> TestEnv {
    default_port_base(47000);
    let env = TestEnv::plan(prefix);
    init(&env, "1G");
    env
}

/// `name` with `users` (real-looking, unique values), `orders`
/// referencing users' ids, and `audit_log`, analysed and checkpointed.
async fn source_with_users(bpg: &Bpg<'_>, name: &str) -> String {
    bpg.ok(&["create", name]);
    let url = bpg.ok(&["url", name]).trim().to_string();
    let c = connect(&url).await;
    c.batch_execute(&format!(
        "CREATE TABLE users (id bigint PRIMARY KEY, name text NOT NULL, email text NOT NULL UNIQUE, \
                             phone text, notes text, country text); \
         CREATE TABLE orders (id serial PRIMARY KEY, user_id bigint NOT NULL REFERENCES users(id), amount int); \
         CREATE TABLE audit_log (at timestamptz DEFAULT now(), line text); \
         INSERT INTO users SELECT i, 'Margaret Okafor ' || i, 'margaret.okafor' || i || '@gmail.com', \
                '+44 7700 9' || lpad(i::text, 5, '0'), 'lives at ' || i || ' Harrow Road', 'GB' \
           FROM generate_series(1, {USERS}) i; \
         INSERT INTO orders (user_id, amount) SELECT 1 + i % {USERS}, i FROM generate_series(1, 900) i; \
         INSERT INTO audit_log (line) SELECT 'login of margaret.okafor' || i || '@gmail.com' FROM generate_series(1, 50) i; \
         ANALYZE; CHECKPOINT"
    ))
    .await
    .unwrap();
    url
}

const RULES: &str = r#"# masking of the users
[public.users]
id = "hash"
email = "email"
name = "name"
phone = "phone"
notes = "null"
country = { value = "XX" }

[public.orders]
user_id = "hash"

["public.audit_log"]
strategy = "truncate"
"#;

fn write_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn mask_exit() -> Option<i32> {
    Some(betterpg_core::ErrorKind::Mask.code() as i32 + 9)
}

/// As a superuser of the branch would look: every file of its data
/// directory through `pg_read_binary_file`, searched for each needle
/// (bound, never in the query text).
async fn superuser_finds(url: &str, needles: &[Vec<u8>]) -> Vec<String> {
    files_holding(&connect(url).await, needles).await
}

async fn strings(url: &str, sql: &str) -> Vec<String> {
    let c = connect(url).await;
    c.query(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .iter()
        .map(|r| r.get(0))
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_mask_every_strategy_keep_joins_and_leave_no_original_or_key() {
    let env = setup("bpgmr");
    let bpg = Bpg::of(&env);
    let prod_url = source_with_users(&bpg, "prod").await;
    let dir = tempfile::tempdir().unwrap();
    let rules = write_file(dir.path(), "rules.toml", RULES);
    let rules_s = rules.to_str().unwrap();
    let key_file = env.home.join("secrets").join("prod.mask-key");

    // mask-sql: the SQL, the key a placeholder; no key is made for it.
    let sql = bpg.ok(&["mask-sql", rules_s, "--source", "prod"]);
    assert!(sql.contains("UPDATE \"public\".\"users\" SET"), "{sql}");
    assert!(
        sql.contains("\"email\" = pg_temp.bpg_email(\"email\")"),
        "{sql}"
    );
    assert!(sql.contains("\"country\" = 'XX'"), "{sql}");
    assert!(sql.contains("TRUNCATE \"public\".\"audit_log\";"), "{sql}");
    assert!(sql.contains("<key of the source \"prod\">"), "{sql}");
    assert!(!key_file.exists(), "mask-sql made a key");
    let j = bpg.json(&["mask-sql", rules_s, "--source", "prod"]);
    assert_eq!(j["file"], rules_s);
    assert_eq!(j["key_source"], "prod");
    assert_eq!(j["needs_key"], true);
    assert_eq!(j["rules"], 8);
    assert_eq!(j["sql"].as_str().unwrap(), sql);
    let e = bpg.fails(&["mask-sql", rules_s, "--source", "nosuch"]);
    assert!(e.contains("nosuch"), "{e}");

    // The branch: masked by the rules, reported as their file.
    let dev = bpg.json(&["branch", "prod", "dev", "--mask-rules", rules_s]);
    assert_eq!(dev["masking"]["files"][0], rules_s, "{dev}");
    let url = dev["branch"]["url"].as_str().unwrap().to_string();
    let c = connect(&url).await;
    let q = |sql: &'static str| {
        let c = &c;
        async move { query_i64(c, sql).await }
    };
    assert_eq!(q("SELECT count(*) FROM users").await, USERS);
    assert_eq!(
        q("SELECT count(*) FROM users WHERE notes IS NULL").await,
        USERS
    );
    assert_eq!(
        q("SELECT count(*) FROM users WHERE country = 'XX'").await,
        USERS
    );
    assert_eq!(q("SELECT count(*) FROM audit_log").await, 0);
    // Emails: email-shaped, unique, none the original.
    assert_eq!(
        q("SELECT count(DISTINCT email) FROM users WHERE email ~ '^user\\.[0-9a-f]{20}@example\\.com$'")
            .await,
        USERS
    );
    // Names: two capitalised words; phones: the format kept, new digits.
    assert_eq!(
        q("SELECT count(*) FROM users WHERE name ~ '^[A-Z][a-z]{5} [A-Z][a-z]{7}$'").await,
        USERS
    );
    assert!(q("SELECT count(DISTINCT name) FROM users").await > USERS - 3);
    assert_eq!(
        q("SELECT count(DISTINCT phone) FROM users WHERE phone ~ '^\\+[0-9]{2} [0-9]{4} [0-9]{6}$'")
            .await,
        USERS
    );
    assert_eq!(
        q("SELECT count(*) FROM users WHERE phone LIKE '+44 7700 9%'").await,
        0
    );
    // Hashed ids: new values, and orders still join to their users.
    assert_eq!(q("SELECT count(*) FROM users WHERE id <= 300").await, 0);
    assert_eq!(
        q("SELECT count(*) FROM orders o JOIN users u ON u.id = o.user_id").await,
        900
    );
    assert_eq!(q("SELECT count(DISTINCT user_id) FROM orders").await, USERS);
    // A foreign key's check still passes on the masked data.
    c.batch_execute("INSERT INTO orders (user_id, amount) SELECT min(id), 1 FROM users")
        .await
        .unwrap();
    drop(c);

    // The key: the source's, 0600, hex; the hash is HMAC-SHA256 with it
    // (checked independently with pgcrypto on the source).
    let meta = std::fs::metadata(&key_file).expect("the source's key was made");
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let key = std::fs::read_to_string(&key_file)
        .unwrap()
        .trim()
        .to_string();
    assert_eq!(key.len(), 64, "32 bytes, hex");
    let p = connect(&prod_url).await;
    p.batch_execute("CREATE EXTENSION IF NOT EXISTS pgcrypto")
        .await
        .unwrap();
    let want: String = p
        .query_one(
            "SELECT 'user.' || left(encode(hmac(convert_to(email, 'UTF8'), decode($1, 'hex'), 'sha256'), 'hex'), 20) || '@example.com' \
             FROM users WHERE id = 7",
            &[&key],
        )
        .await
        .unwrap()
        .get(0);
    let want_id: i64 = p
        .query_one(
            "SELECT ('x' || encode(substr(hmac(convert_to('7', 'UTF8'), decode($1, 'hex'), 'sha256'), 1, 8), 'hex'))::bit(64)::bigint \
                    & 9223372036854775807",
            &[&key],
        )
        .await
        .unwrap()
        .get(0);
    drop(p);
    let got: String = connect(&url)
        .await
        .query_one("SELECT email FROM users WHERE id = $1", &[&want_id])
        .await
        .unwrap()
        .get(0);
    assert_eq!(got, want, "email of user 7 is HMAC-derived from the key");

    // No original, and not the key, anywhere in the branch.
    let k = unhex(&key);
    let (mut ipad, mut opad) = ([0x36u8; 64], [0x5cu8; 64]);
    for (i, b) in k.iter().enumerate() {
        ipad[i] ^= b;
        opad[i] ^= b;
    }
    let setting = format!("{}{}", hex(&ipad), hex(&opad));
    let mut needles: Vec<Vec<u8>> = [
        "margaret.okafor7@gmail.com",
        "margaret.okafor150@gmail.com",
        "Margaret Okafor 42",
        "+44 7700 900042",
        "42 Harrow Road",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    let secrets: Vec<Vec<u8>> = vec![
        key.as_bytes().to_vec(),
        key.to_uppercase().into_bytes(),
        k.clone(),
        setting.as_bytes().to_vec(),
        ipad[..32].to_vec(),
        opad[..32].to_vec(),
    ];
    needles.extend(secrets.iter().cloned());
    let found = superuser_finds(&url, &needles).await;
    assert!(found.is_empty(), "left in the branch: {found:?}");
    let dd = bpg.data_dir("dev");
    for n in &needles {
        let f = files_containing(&dd, n);
        assert!(f.is_empty(), "{} is in {f:?}", String::from_utf8_lossy(n));
    }
    for n in &secrets {
        let f = files_containing(&env.home.join("logs"), n);
        assert!(f.is_empty(), "the key is in a server log: {f:?}");
    }
    // The search can find: the source's data directory holds originals.
    assert!(!files_containing(&bpg.data_dir("prod"), b"margaret.okafor150@gmail.com").is_empty());

    // The same source twice: the same values; another source: others.
    let dev_emails = strings(&url, "SELECT email FROM users ORDER BY email").await;
    let again = bpg.json(&["branch", "prod", "again", "--mask-rules", rules_s]);
    let again_emails = strings(
        again["branch"]["url"].as_str().unwrap(),
        "SELECT email FROM users ORDER BY email",
    )
    .await;
    assert_eq!(
        dev_emails, again_emails,
        "the same source hashes the same way"
    );
    source_with_users(&bpg, "other").await;
    let o = bpg.json(&["branch", "other", "odev", "--mask-rules", rules_s]);
    let other_emails = strings(
        o["branch"]["url"].as_str().unwrap(),
        "SELECT email FROM users ORDER BY email",
    )
    .await;
    assert_eq!(other_emails.len(), USERS as usize);
    assert!(
        other_emails.iter().all(|e| !dev_emails.contains(e)),
        "another source hashes differently"
    );
    assert!(env.home.join("secrets").join("other.mask-key").exists());
    // A branch of a branch uses the root's key (no key of its own).
    bpg.ok(&["branch", "dev", "dev2", "--mask-rules", rules_s]);
    assert!(!env.home.join("secrets").join("dev.mask-key").exists());
    assert!(!env.home.join("secrets").join("dev2.mask-key").exists());
    // The key goes with its source; gc keeps a live source's key.
    bpg.ok(&["gc"]);
    assert!(key_file.exists(), "gc removed a live source's key");
    bpg.ok(&["destroy", "odev"]);
    bpg.ok(&["destroy", "other"]);
    assert!(!env.home.join("secrets").join("other.mask-key").exists());
    assert_consistent(&env);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_rules_fail_closed_and_a_policy_masks_branches_of_branches_and_resets() {
    let env = setup("bpgmrp");
    let bpg = Bpg::of(&env);
    let prod_url = source_with_users(&bpg, "prod").await;
    let dir = tempfile::tempdir().unwrap();
    let before = state_of(&env);

    // Bad files: typed errors naming the file and the key; nothing made.
    for (text, says) in [
        ("this is = = not toml", "not a TOML rules file"),
        ("[public.users]\nemail = \"scramble\"", "public.users.email"),
        (
            "[public.users]\nemail = { strategy = \"email\", salt = 3 }",
            "salt",
        ),
    ] {
        let f = write_file(dir.path(), "bad.toml", text);
        let o = bpg.run(&["branch", "prod", "dev", "--mask-rules", f.to_str().unwrap()]);
        let err = check_failure(&["branch"], &o);
        assert_eq!(o.status.code(), mask_exit(), "{err}");
        assert!(
            err.contains(f.to_str().unwrap()) && err.contains(says),
            "{err}"
        );
        assert_eq!(state_of(&env), before, "a bad rules file changed something");
        let e = bpg.fails(&["mask-sql", f.to_str().unwrap()]);
        assert!(e.contains(says), "{e}");
    }
    let missing = dir.path().join("none.toml");
    let e = bpg.fails(&[
        "branch",
        "prod",
        "dev",
        "--mask-rules",
        missing.to_str().unwrap(),
    ]);
    assert!(e.contains("none.toml"), "{e}");
    assert_eq!(state_of(&env), before);

    // A rule on a missing column fails closed: named, nothing left.
    let bad = write_file(
        dir.path(),
        "typo.toml",
        "[public.users]\nemail = \"email\"\nemial = \"null\"\n",
    );
    let o = bpg.run(&[
        "branch",
        "prod",
        "dev",
        "--mask-rules",
        bad.to_str().unwrap(),
    ]);
    let err = check_failure(&["branch"], &o);
    assert_eq!(o.status.code(), mask_exit(), "{err}");
    assert!(
        err.contains(bad.to_str().unwrap()) && err.contains("public.users.emial"),
        "the error names the file and the rule: {err}"
    );
    assert!(err.contains("no column"), "{err}");
    assert_eq!(state_of(&env), before, "the failed branch left something");
    assert!(!env.home.join("secrets").join("dev").exists());
    // So does a rule whose strategy does not fit the column's type.
    let wrong = write_file(
        dir.path(),
        "type.toml",
        "[public.orders]\namount = \"email\"\n",
    );
    let o = bpg.run(&[
        "branch",
        "prod",
        "dev",
        "--mask-rules",
        wrong.to_str().unwrap(),
    ]);
    let err = check_failure(&["branch"], &o);
    assert_eq!(o.status.code(), mask_exit(), "{err}");
    assert!(err.contains("bpg_email"), "{err}");
    assert_eq!(state_of(&env), before);

    // A source's policy: its branches, their branches, resets.
    let rules = write_file(dir.path(), "rules.toml", RULES);
    let rules_s = rules.to_str().unwrap();
    bpg.ok(&["config", "prod", "--mask-rules", rules_s]);
    let originals = |url: String| async move {
        query_i64(
            &connect(&url).await,
            "SELECT count(*) FROM users WHERE email LIKE '%@gmail.com'",
        )
        .await
    };
    let dev = bpg.json(&["branch", "prod", "dev"]);
    assert_eq!(dev["masking"]["files"][0], rules_s, "{dev}");
    let dev_url = dev["branch"]["url"].as_str().unwrap().to_string();
    assert_eq!(originals(dev_url.clone()).await, 0);
    connect(&dev_url)
        .await
        .batch_execute("INSERT INTO users VALUES (100000, 'New Person', 'new.person@gmail.com', NULL, NULL, NULL)")
        .await
        .unwrap();
    let dev2 = bpg.json(&["branch", "dev", "dev2"]);
    assert!(dev2["masking"].is_object(), "{dev2}");
    let dev2_url = dev2["branch"]["url"].as_str().unwrap().to_string();
    assert_eq!(originals(dev2_url.clone()).await, 0);
    let c = connect(&dev2_url).await;
    assert_eq!(
        query_i64(
            &c,
            "SELECT count(*) FROM orders o JOIN users u ON u.id = o.user_id"
        )
        .await,
        900,
        "joins hold in a branch of a branch"
    );
    drop(c);
    bpg.ok(&["destroy", "dev2"]);
    let r = bpg.json(&["reset", "dev"]);
    assert!(r["masking"].is_object(), "{r}");
    assert_eq!(originals(dev_url).await, 0);
    assert_eq!(
        originals(prod_url.clone()).await,
        USERS,
        "the source is untouched"
    );
    let raw = bpg.json(&["branch", "prod", "raw", "--unmasked"]);
    assert!(raw["masking"].is_null(), "{raw}");
    assert_eq!(
        originals(raw["branch"]["url"].as_str().unwrap().to_string()).await,
        USERS
    );
    bpg.ok(&["config", "prod", "--forbid-unmasked"]);
    let before = state_of(&env);
    let o = bpg.run(&["branch", "prod", "raw2", "--unmasked"]);
    let err = check_failure(&["branch"], &o);
    assert_eq!(o.status.code(), mask_exit(), "{err}");
    assert_eq!(state_of(&env), before);

    // mask-check counts the rules' columns as covered.
    let mc = bpg.run(&["--json", "mask-check", "prod", "--mask-rules", rules_s]);
    let r: serde_json::Value = serde_json::from_slice(&mc.stdout).unwrap();
    let covered: Vec<String> = r["covered"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            format!(
                "{}.{}",
                c["table"].as_str().unwrap(),
                c["column"].as_str().unwrap()
            )
        })
        .collect();
    for col in ["users.email", "users.phone", "users.name"] {
        assert!(
            covered.contains(&col.to_string()),
            "{col} not covered: {r:#}"
        );
    }
    assert!(
        !r["uncovered"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["table"] == "users"),
        "{r:#}"
    );
    assert_consistent(&env);
}
