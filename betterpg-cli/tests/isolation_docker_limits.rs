//! Issue 11 item 7, the CLI surface: `bpg init --docker-memory SIZE
//! --docker-pids N` stores the container limits in the home's config,
//! `--json` and `bpg doctor` show them, and values too small for PostgreSQL
//! are refused before anything is made. (That containers run with them, on
//! betterpg's network, hardened, is proven against the real engine by the
//! docker stage: betterpg-core/tests/docker.rs.) Real ZFS.

use betterpg_testkit::*;

#[test]
fn init_stores_container_limits_and_refuses_too_small_ones() {
    let env = TestEnv::plan("bpgisodk");
    let bpg = Bpg::of(&env);
    let base = init_args(&env, &env.pool_file, "1G");

    // Too small: a config error naming the minimum, and nothing is made.
    for extra in [["--docker-memory", "1M"], ["--docker-pids", "5"]] {
        let mut args: Vec<&str> = base.iter().map(String::as_str).collect();
        args.extend_from_slice(&extra);
        let err = bpg.fails(&args);
        assert!(err.contains("0 for no limit"), "{extra:?}: {err}");
        assert!(
            !env.home.join("config.json").exists(),
            "{extra:?}: a config was written"
        );
        assert!(!env.pool_file.exists(), "{extra:?}: a pool file was made");
        assert!(zfs_tree(&env.pool).is_empty(), "{extra:?}: a pool was made");
    }

    // Given: stored, printed by --json, shown by doctor.
    let mut args: Vec<&str> = vec!["--json"];
    args.extend(base.iter().map(String::as_str));
    args.extend_from_slice(&["--docker-memory", "512M", "--docker-pids", "200"]);
    let out: serde_json::Value = serde_json::from_str(&bpg.ok(&args)).expect("JSON");
    assert_eq!(out["docker_memory"], 512u64 << 20, "{out}");
    assert_eq!(out["docker_pids"], 200, "{out}");
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(env.home.join("config.json")).unwrap())
            .unwrap();
    assert_eq!(
        (cfg["docker_memory"].as_u64(), cfg["docker_pids"].as_u64()),
        (Some(512 << 20), Some(200))
    );
    let doc = bpg.json(&["doctor"]);
    assert_eq!(doc["docker"]["memory"], 512u64 << 20, "{doc}");
    assert_eq!(doc["docker"]["pids"], 200, "{doc}");
    assert_eq!(doc["docker"]["network"], "betterpg", "{doc}");
    let text = bpg.ok(&["doctor"]);
    assert!(
        text.contains("memory 512 MiB, pids 200 per container"),
        "{text}"
    );
}

#[test]
fn init_without_limits_stores_the_defaults() {
    let env = TestEnv::plan("bpgisodk");
    let bpg = Bpg::of(&env);
    let mut args: Vec<&str> = vec!["--json"];
    let base = init_args(&env, &env.pool_file, "1G");
    args.extend(base.iter().map(String::as_str));
    let out: serde_json::Value = serde_json::from_str(&bpg.ok(&args)).expect("JSON");
    assert_eq!(
        out["docker_memory"],
        betterpg_core::home::DEFAULT_DOCKER_MEMORY,
        "{out}"
    );
    assert_eq!(
        out["docker_pids"],
        betterpg_core::home::DEFAULT_DOCKER_PIDS,
        "{out}"
    );
    // 0: no limit.
    let env2 = TestEnv::plan("bpgisodk");
    let mut args: Vec<&str> = vec!["--json"];
    let base2 = init_args(&env2, &env2.pool_file, "1G");
    args.extend(base2.iter().map(String::as_str));
    args.extend_from_slice(&["--docker-memory", "0", "--docker-pids", "0"]);
    let out = Bpg::of(&env2).ok(&args);
    let out: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (out["docker_memory"].as_u64(), out["docker_pids"].as_u64()),
        (Some(0), Some(0))
    );
    let text = Bpg::of(&env2).ok(&["doctor"]);
    assert!(text.contains("memory no limit, pids no limit"), "{text}");
}
