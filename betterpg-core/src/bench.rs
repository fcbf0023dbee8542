//! Bench-only doors into internal hot paths, for the criterion benchmarks
//! of the `betterpg-benches` crate (`benches/`, run with `cargo bench`).
//!
//! Hidden from the documentation and NOT part of the API: it may change or
//! go with any release. Each function does exactly what the operation does
//! on that path (same code), with the set-up a benchmark needs around it.

use std::path::Path;

use crate::catalog::{Catalog, Entry, Kind, Mode};
use crate::error::Result;
use crate::home::Home;
use crate::osuser::OsUser;
use crate::pg::datadir::DataDir;
use crate::pg::wal;

/// The user running the benchmark (new WAL files go to it: no ownership
/// change, unlike a branch run as root, whose files go to `postgres`).
fn current_user() -> OsUser {
    OsUser {
        name: "bench".into(),
        uid: nix::unistd::Uid::effective().as_raw(),
        gid: nix::unistd::Gid::effective().as_raw(),
        home: "/".into(),
    }
}

/// The branch recipe's WAL step: make each of `segments` in `dst`
/// byte-identical to `src`'s, writing only the pages that differ (see
/// `pg::wal::copy_segments`). Returns the bytes written.
pub fn copy_wal_segments(
    src: &Path,
    dst: &Path,
    segments: &[String],
    segment_size: u64,
) -> Result<u64> {
    let (src, dst) = (DataDir::open(src)?, DataDir::open(dst)?);
    wal::copy_segments(&src, &dst, segments, segment_size, &current_user())
}

/// Write a catalog of `entries` ready entries into the home at `home`
/// (created when missing): a database for every ten entries, the others
/// branches of it, as a busy home holds them.
pub fn write_catalog(home: &Path, entries: usize) -> Result<()> {
    let home = Home::new(home);
    home.ensure_dirs()?;
    let mut catalog = Catalog::lock(&home)?;
    for i in 0..entries {
        let db = format!("db{}", i / 10);
        let (name, kind, parent, mode) = if i % 10 == 0 {
            (db.clone(), Kind::Database, None, None)
        } else {
            (
                format!("{db}-branch{}", i % 10),
                Kind::Branch,
                Some(db.clone()),
                Some(Mode::ApplicationConsistent),
            )
        };
        catalog.insert(Entry {
            dataset: format!("tank/betterpg/{name}"),
            snapshot: parent
                .as_ref()
                .map(|p| format!("tank/betterpg/{p}@betterpg-{name}")),
            parent,
            mode,
            pg_bin: "/usr/lib/postgresql/15/bin".into(),
            created_at: 1_764_000_000 + i as u64,
            ..Entry::sample(&name, kind, 50_000 + i as u16)
        })?;
    }
    catalog.save()
}

/// What every operation starts with: take the catalog's lock, read and
/// parse it. Returns the number of entries (the lock is released).
pub fn load_catalog(home: &Path) -> Result<usize> {
    Ok(Catalog::lock(&Home::new(home))?.entries().count())
}

/// A catalog loaded and locked, to be stored again and again.
pub struct LockedCatalog(Catalog);

impl LockedCatalog {
    /// Lock and load the catalog of the home at `home`.
    pub fn open(home: &Path) -> Result<LockedCatalog> {
        Ok(LockedCatalog(Catalog::lock(&Home::new(home))?))
    }

    /// What every change ends with: serialise the catalog and replace the
    /// file atomically (write, fsync, rename).
    pub fn store(&self) -> Result<()> {
        self.0.save()
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.0.entries().count()
    }

    /// True when the catalog has no entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_fixture_round_trips() {
        let d = tempfile::tempdir().unwrap();
        write_catalog(d.path(), 250).unwrap();
        assert_eq!(load_catalog(d.path()).unwrap(), 250);
        let c = LockedCatalog::open(d.path()).unwrap();
        c.store().unwrap();
        assert_eq!(c.len(), 250);
        drop(c);
        assert_eq!(load_catalog(d.path()).unwrap(), 250);
    }

    #[test]
    fn wal_copy_writes_only_the_page_that_differs() {
        let d = tempfile::tempdir().unwrap();
        let (src, dst) = (d.path().join("src"), d.path().join("dst"));
        std::fs::create_dir_all(&src).unwrap();
        std::fs::create_dir_all(&dst).unwrap();
        let seg = "000000010000000000000001".to_string();
        let mut data = vec![1u8; 1 << 20];
        std::fs::write(dst.join(&seg), &data).unwrap();
        data[5000] = 2;
        std::fs::write(src.join(&seg), &data).unwrap();
        let n = copy_wal_segments(&src, &dst, std::slice::from_ref(&seg), 1 << 24).unwrap();
        assert_eq!(n, 8192);
        assert_eq!(std::fs::read(dst.join(&seg)).unwrap(), data);
    }
}
