//! Micro-benchmarks of betterpg-core's pure hot paths (no ZFS, no
//! PostgreSQL), with criterion: `cargo bench -p betterpg-benches`.
//!
//! - `wal_copy`: the branch recipe's WAL step on one 16 MiB segment: a
//!   clone one page behind its source (the usual case: only the pages
//!   written since the snapshot differ), and a segment new to the clone,
//!   half written (all-zero pages are left as holes).
//! - `catalog`: what every operation starts with (lock, read, parse) and
//!   ends with (serialise, write, fsync, rename), for 100 and 500 entries.
//!
//! Files live in a temporary directory on the default temporary file system
//! (`TMPDIR`). Results and the machine they were taken on:
//! docs/benchmarks.md.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::Duration;

use betterpg_core::bench::{copy_wal_segments, load_catalog, write_catalog, LockedCatalog};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};

const SEGMENT: u64 = 16 << 20;
const PAGE: usize = 8192;
const NAME: &str = "000000010000000000000001";

/// Deterministic, incompressible-looking WAL bytes (a xorshift stream).
fn wal_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Overwrite page `page` of `path` with `byte`s.
fn dirty_page(path: &Path, page: usize, byte: u8) {
    let f = OpenOptions::new().write(true).open(path).unwrap();
    f.write_all_at(&[byte; PAGE], (page * PAGE) as u64).unwrap();
}

fn wal_copy(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let (src, dst) = (dir.path().join("src"), dir.path().join("dst"));
    std::fs::create_dir_all(&src).unwrap();
    std::fs::create_dir_all(&dst).unwrap();
    let segs = [NAME.to_string()];
    let mut g = c.benchmark_group("wal_copy");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(12))
        .throughput(Throughput::Bytes(SEGMENT));

    // The clone holds the segment as it was at snapshot time: all but the
    // last page written since.
    let full = wal_bytes(SEGMENT as usize, 42);
    std::fs::write(src.join(NAME), &full).unwrap();
    std::fs::write(dst.join(NAME), &full).unwrap();
    let last = SEGMENT as usize / PAGE - 1;
    g.bench_function("clone_one_page_behind", |b| {
        b.iter_batched(
            || dirty_page(&dst.join(NAME), last, 0),
            |()| {
                let n = copy_wal_segments(&src, &dst, &segs, SEGMENT).unwrap();
                assert_eq!(n, PAGE as u64);
            },
            BatchSize::PerIteration,
        )
    });

    // A segment the clone does not have: half written, half zeros.
    let mut half = wal_bytes(SEGMENT as usize / 2, 7);
    half.resize(SEGMENT as usize, 0);
    std::fs::write(src.join(NAME), &half).unwrap();
    g.bench_function("new_segment_half_written", |b| {
        b.iter_batched(
            || {
                let _ = std::fs::remove_file(dst.join(NAME));
            },
            |()| {
                let n = copy_wal_segments(&src, &dst, &segs, SEGMENT).unwrap();
                assert_eq!(n, SEGMENT / 2);
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

fn catalog(c: &mut Criterion) {
    let mut g = c.benchmark_group("catalog");
    g.sample_size(50).measurement_time(Duration::from_secs(10));
    for entries in [100usize, 500] {
        let home = tempfile::tempdir().unwrap();
        write_catalog(home.path(), entries).unwrap();
        g.throughput(Throughput::Elements(entries as u64));
        g.bench_function(format!("load_{entries}"), |b| {
            b.iter(|| assert_eq!(load_catalog(home.path()).unwrap(), entries))
        });
        let locked = LockedCatalog::open(home.path()).unwrap();
        assert_eq!(locked.len(), entries);
        g.bench_function(format!("store_{entries}"), |b| {
            b.iter(|| locked.store().unwrap())
        });
    }
    g.finish();
}

criterion_group!(benches, wal_copy, catalog);
criterion_main!(benches);
