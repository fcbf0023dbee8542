//! `doctor` and following a server's log through the Rust API (async and
//! blocking): real ZFS pool, real PostgreSQL 15.

use std::time::{Duration, Instant};

use betterpg_core::blocking::{self, LogEvent};
use betterpg_core::{BranchManager, CreateOptions};
use betterpg_testkit::*;
use futures_util::StreamExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_reports_an_initialised_home_and_a_bare_machine() {
    let (env, _mgr) = TestEnv::new("bpgd").await;
    let r = BranchManager::doctor(&env.home).await.unwrap();
    assert!(r.ok(), "{:?}", r.problems);
    assert!(r.initialised);
    assert!(r.zpool_list_ok);
    assert_eq!(r.postgres.ok().map(|p| p.major), Some(15));
    assert_eq!(r.os_user.ok().map(|u| u.name.as_str()), Some("postgres"));
    assert!(r.storage.ok().is_some(), "{:?}", r.storage);
    assert!(r.dataset_properties.is_some());
    let pf = r.pool_file.as_ref().expect("a file-backed pool");
    assert_eq!(pf.path, env.pool_file);
    assert!(pf.space.ok().is_some());
    assert!(r.clone().into_result().is_ok());

    let bare = BranchManager::doctor(env.home.join("not-a-home"))
        .await
        .unwrap();
    assert!(!bare.initialised);
    assert!(bare.docker.is_none() && bare.pool_file.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_logs_streams_the_tail_then_what_the_server_writes() {
    let (_env, mgr) = TestEnv::new("bpgd").await;
    let info = mgr.create("db", CreateOptions::default()).await.unwrap();
    let mut s = mgr.follow_logs("db", Some(2)).await.unwrap();
    let first = tokio::time::timeout(Duration::from_secs(10), s.next())
        .await
        .expect("the tail within 10 s")
        .expect("a chunk")
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&first).matches('\n').count(),
        2,
        "{}",
        String::from_utf8_lossy(&first)
    );
    connect(&info.url)
        .await
        .batch_execute("DO $$BEGIN RAISE LOG 'bpg-rust-follow-marker'; END$$")
        .await
        .unwrap();
    let mut seen = String::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !seen.contains("bpg-rust-follow-marker") && Instant::now() < deadline {
        if let Ok(Some(c)) = tokio::time::timeout(Duration::from_millis(500), s.next()).await {
            seen.push_str(&String::from_utf8_lossy(&c.unwrap()));
        }
    }
    assert!(seen.contains("bpg-rust-follow-marker"), "{seen}");
    assert!(matches!(
        mgr.follow_logs("nosuch", None).await.map(|_| ()),
        Err(betterpg_core::Error::NotFound { .. })
    ));
    mgr.destroy("db", true).await.unwrap();
}

#[test]
fn the_blocking_follower_waits_with_a_timeout() {
    let env = TestEnv::plan("bpgd");
    let mgr = blocking::BranchManager::init(&env.home, env.init_options()).unwrap();
    let info = mgr.create("db", CreateOptions::default()).unwrap();
    let mut f = mgr.follow_logs("db", Some(1)).unwrap();
    match f.next_within(Duration::from_secs(10)).unwrap() {
        LogEvent::Chunk(b) => assert_eq!(String::from_utf8_lossy(&b).matches('\n').count(), 1),
        other => panic!("expected the tail, got {other:?}"),
    }
    // Nothing written meanwhile: idle, not ended.
    let quiet = f.next_within(Duration::from_millis(300)).unwrap();
    assert!(
        matches!(quiet, LogEvent::Idle | LogEvent::Chunk(_)),
        "{quiet:?}"
    );
    mgr.block_on(async {
        connect(&info.url)
            .await
            .batch_execute("DO $$BEGIN RAISE LOG 'bpg-blocking-marker'; END$$")
            .await
            .unwrap();
    });
    // The iterator blocks until a chunk comes (one is on its way).
    let mut seen = String::from_utf8_lossy(&f.next().expect("a chunk").unwrap()).into_owned();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !seen.contains("bpg-blocking-marker") && Instant::now() < deadline {
        if let LogEvent::Chunk(b) = f.next_within(Duration::from_millis(500)).unwrap() {
            seen.push_str(&String::from_utf8_lossy(&b));
        }
    }
    assert!(seen.contains("bpg-blocking-marker"), "{seen}");
    let r = blocking::BranchManager::doctor(&env.home).unwrap();
    assert!(r.ok() && r.initialised, "{:?}", r.problems);
    drop(f);
    mgr.destroy("db", true).unwrap();
}
