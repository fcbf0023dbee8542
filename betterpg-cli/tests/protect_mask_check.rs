//! `bpg mask-check`: the columns of a real server whose name or sampled
//! values look personal, minus those a rules file covers; it only reads.

use betterpg_testkit::*;
use serde_json::Value;

/// Run mask-check; its JSON and exit status.
fn check(bpg: &Bpg, args: &[&str]) -> (Value, Option<i32>) {
    let mut a = vec!["--json", "mask-check"];
    a.extend_from_slice(args);
    let o = bpg.run(&a);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "mask-check printed no JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    });
    (v, o.status.code())
}

fn names(cols: &Value) -> Vec<String> {
    cols.as_array()
        .unwrap()
        .iter()
        .map(|c| {
            format!(
                "{}:{}.{}.{}",
                c["database"].as_str().unwrap(),
                c["schema"].as_str().unwrap(),
                c["table"].as_str().unwrap(),
                c["column"].as_str().unwrap()
            )
        })
        .collect()
}

fn kinds_of(cols: &Value, column: &str) -> Vec<String> {
    cols.as_array()
        .unwrap()
        .iter()
        .find(|c| c["column"] == column)
        .unwrap_or_else(|| panic!("{column} not listed in {cols:#}"))["kinds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn personal_columns_are_found_and_rules_cover_them() {
    default_port_base(57200);
    let env = TestEnv::initialized("bpgpm");
    let bpg = Bpg::of(&env);
    bpg.ok(&["create", "prod"]);
    let url = bpg.ok(&["url", "prod"]).trim().to_string();
    let c = connect(&url).await;
    c.batch_execute(
        r#"
        CREATE TABLE users (
            id bigint PRIMARY KEY,
            email text, phone text, first_name text, street text,
            birth_date date, iban text, card text, last_ip inet,
            contact text,      -- emails under a name that says nothing
            payout text,       -- IBANs under a name that says nothing
            sku text, amount numeric, created_at timestamptz DEFAULT now());
        INSERT INTO users (id, email, phone, first_name, street, birth_date, iban, card, last_ip, contact, payout, sku, amount)
        SELECT g, 'person' || g || '@example.com', '+44 20 7946 ' || lpad(g::text, 4, '0'),
               'Ada' || g, g || ' Main Street', date '1980-01-01' + g,
               'GB82WEST12345698765432', '4111 1111 1111 1111', ('10.0.0.' || g)::inet,
               'contact' || g || '@example.org', 'DE89 3704 0044 0532 0130 00',
               'SKU-' || g, g * 1.5
        FROM generate_series(1, 50) g;
        CREATE TABLE "Weird ""T""" ("e-mail" text, note text);
        INSERT INTO "Weird ""T""" SELECT 'w' || g || '@example.net', 'note ' || g FROM generate_series(1, 10) g;
        CREATE TABLE items (id int, label text);
        INSERT INTO items SELECT g, 'item-' || g FROM generate_series(1, 20) g;
        "#,
    )
    .await
    .unwrap();
    c.batch_execute("CREATE DATABASE shop").await.unwrap();
    let mut shop = url.rsplit_once('/').unwrap().0.to_string();
    shop.push_str("/shop");
    connect(&shop)
        .await
        .batch_execute(
            "CREATE SCHEMA crm; CREATE TABLE crm.leads (mobile text, score int);
             INSERT INTO crm.leads SELECT '(555) 010-' || lpad(g::text, 4, '0'), g FROM generate_series(1, 30) g;",
        )
        .await
        .unwrap();
    let digest_before = digest(&c).await;

    // Without rules: everything personal is uncovered, exit status 15.
    let (r, code) = check(&bpg, &["prod"]);
    assert_eq!(code, Some(15), "config: uncovered columns: {r:#}");
    let found = names(&r["uncovered"]);
    let mut expect: Vec<String> = [
        "postgres:public.users.email",
        "postgres:public.users.phone",
        "postgres:public.users.first_name",
        "postgres:public.users.street",
        "postgres:public.users.birth_date",
        "postgres:public.users.iban",
        "postgres:public.users.card",
        "postgres:public.users.last_ip",
        "postgres:public.users.contact",
        "postgres:public.users.payout",
        "postgres:public.Weird \"T\".e-mail",
        "shop:crm.leads.mobile",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    expect.sort();
    let mut got = found.clone();
    got.sort();
    assert_eq!(got, expect, "{r:#}");
    let un = &r["uncovered"];
    assert_eq!(kinds_of(un, "contact"), vec!["email"]);
    assert_eq!(kinds_of(un, "payout"), vec!["iban"]);
    assert_eq!(kinds_of(un, "card"), vec!["card"]);
    assert_eq!(kinds_of(un, "last_ip"), vec!["ip"]);
    assert_eq!(kinds_of(un, "mobile"), vec!["phone"]);
    assert!(kinds_of(un, "phone").contains(&"phone".to_string()));
    assert_eq!(r["databases"], serde_json::json!(["postgres", "shop"]));
    assert!(r["covered"].as_array().unwrap().is_empty());
    assert!(r["columns_checked"].as_u64().unwrap() >= 18);

    // A rules file covers some columns (quoted key, nested table, a key
    // under a table, a truncated table): they move to `covered`.
    let rules = env.home.join("rules.toml");
    std::fs::write(
        &rules,
        r#"
["public.users.email"]
strategy = "email"

[public.users.phone]
strategy = "phone"

[public.users]
first_name = "name"
contact = { strategy = "email" }

["public.Weird \"T\""]
strategy = "truncate"
"#,
    )
    .unwrap();
    let rules_s = rules.to_string_lossy().into_owned();
    let (r, code) = check(&bpg, &["prod", "--mask-rules", &rules_s]);
    assert_eq!(code, Some(15));
    let mut covered = names(&r["covered"]);
    covered.sort();
    assert_eq!(
        covered,
        vec![
            "postgres:public.Weird \"T\".e-mail",
            "postgres:public.users.contact",
            "postgres:public.users.email",
            "postgres:public.users.first_name",
            "postgres:public.users.phone",
        ]
    );
    assert_eq!(names(&r["uncovered"]).len(), 7);
    let text = bpg.fails(&["mask-check", "prod", "--mask-rules", &rules_s]);
    assert!(text.contains("7 column(s)"), "{text}");
    assert!(text.contains("public.users.iban"), "{text}");

    // Every column covered: exit 0, text says so.
    std::fs::write(
        &rules,
        r#"
[public]
users = "truncate"
"Weird \"T\"" = "truncate"
[crm.leads]
mobile = "phone"
"#,
    )
    .unwrap();
    let out = bpg.ok(&["mask-check", "prod", "--mask-rules", &rules_s]);
    assert!(
        out.contains("no personal-looking column is left uncovered"),
        "{out}"
    );
    let (r, code) = check(
        &bpg,
        &["prod", "--mask-rules", &rules_s, "--sample-rows", "5"],
    );
    assert_eq!(code, Some(0));
    assert_eq!(r["sample_rows"], 5);
    assert_eq!(r["rules"], rules_s.as_str());

    // It only read (a read-only transaction): the data is as it was.
    assert_eq!(
        digest(&c).await,
        digest_before,
        "mask-check changed the source"
    );

    // Bad input: a clear error, nothing changed.
    let before = catalog_bytes(&env);
    let e = bpg.fails(&["mask-check", "nosuch"]);
    assert!(e.contains("nosuch") && e.contains("not found"), "{e}");
    let e = bpg.fails(&[
        "mask-check",
        "prod",
        "--mask-rules",
        "/nonexistent/rules.toml",
    ]);
    assert!(e.contains("/nonexistent/rules.toml"), "{e}");
    std::fs::write(&rules, "this is = = not toml").unwrap();
    let o = bpg.run(&["mask-check", "prod", "--mask-rules", &rules_s]);
    assert_eq!(o.status.code(), Some(15));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not a TOML rules file"));
    let e = bpg.fails(&["mask-check", "prod", "--sample-rows", "999999"]);
    assert!(e.contains("at most 10000"), "{e}");
    let e = bpg.fails(&["mask-check", "bad name"]);
    assert!(e.contains("invalid name"), "{e}");
    bpg.ok(&["stop", "prod"]);
    let e = bpg.fails(&["mask-check", "prod"]);
    assert!(e.contains("connect"), "a stopped source: {e}");
    assert_eq!(catalog_bytes(&env), before);

    // The Rust API: the same report.
    bpg.ok(&["start", "prod"]);
    let mgr = betterpg_core::BranchManager::open(&env.home).await.unwrap();
    let rep = mgr
        .mask_check("prod", betterpg_core::MaskCheckOptions::default())
        .await
        .unwrap();
    assert_eq!(rep.uncovered.len(), 12);
    assert_eq!(rep.into_result().unwrap_err().kind_name(), "config");
    bpg.ok(&["destroy", "prod"]);
}

/// A digest of every row of `users`.
async fn digest(c: &tokio_postgres::Client) -> String {
    c.query_one(
        "SELECT md5(string_agg(u::text, ',' ORDER BY id)) FROM users u",
        &[],
    )
    .await
    .unwrap()
    .get(0)
}
