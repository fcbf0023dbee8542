//! `logs`: a server's log, its last lines, and following it as a stream of
//! chunks as the server writes them.

use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::time::Duration;

use crate::context::Context;
use crate::error::{Error, Result};

/// How often a followed log file is looked at.
pub const FOLLOW_POLL: Duration = Duration::from_millis(250);

pub use crate::runtime::LogStream;
use crate::util::with_final_newline;

/// A stream of `initial`, then of what is appended to the file at `path`
/// after `from` (its length when `initial` was read). A file truncated or
/// replaced is read again from its start; a file that is missing for a
/// while (a server not started yet) is waited for.
pub(crate) fn follow_file(path: PathBuf, initial: String, from: u64) -> LogStream {
    struct State {
        path: PathBuf,
        pos: u64,
        first: Option<Vec<u8>>,
    }
    let st = State {
        path,
        pos: from,
        first: Some(with_final_newline(initial).into_bytes()).filter(|b| !b.is_empty()),
    };
    Box::pin(futures_util::stream::unfold(st, |mut st| async move {
        if let Some(b) = st.first.take() {
            return Some((Ok(b), st));
        }
        loop {
            tokio::time::sleep(FOLLOW_POLL).await;
            match read_from(&st.path, &mut st.pos) {
                Ok(Some(b)) => return Some((Ok(b), st)),
                Ok(None) => continue,
                Err(e) => return Some((Err(e), st)),
            }
        }
    }))
}

/// What `path` holds past `*pos` (advancing it), `None` when nothing new.
fn read_from(path: &std::path::Path, pos: &mut u64) -> Result<Option<Vec<u8>>> {
    let Ok(mut f) = std::fs::File::open(path) else {
        return Ok(None);
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    if len < *pos {
        *pos = 0; // truncated or replaced
    }
    if len == *pos {
        return Ok(None);
    }
    let mut buf = Vec::new();
    f.seek(SeekFrom::Start(*pos))
        .and_then(|_| f.read_to_end(&mut buf))
        .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    *pos += buf.len() as u64;
    Ok(if buf.is_empty() { None } else { Some(buf) })
}

/// The length of the file at `path` now (0 when missing).
pub(crate) fn file_len(path: &std::path::Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// The server log, or its last `tail` lines.
pub(crate) async fn logs(ctx: &Context, name: &str, tail: Option<usize>) -> Result<String> {
    let e = ctx.entry(name)?;
    let spec = ctx.control_spec_for(&e, PathBuf::new());
    ctx.runtime(&e.runtime)?.logs(&spec, tail).await
}

/// Path of the server log (for following it).
pub(crate) fn log_path(ctx: &Context, name: &str) -> Result<PathBuf> {
    let e = ctx.entry(name)?;
    Ok(ctx.home.log_path(&e.name))
}

/// Follow the server log of `name`: its last `tail` lines (all when
/// `None`), then what the server writes, as it writes it.
pub(crate) async fn follow(ctx: &Context, name: &str, tail: Option<usize>) -> Result<LogStream> {
    let e = ctx.entry(name)?;
    let path = ctx.home.log_path(&e.name);
    if e.runtime == "docker" {
        return crate::runtime::DockerRuntime::new()
            .log_stream(ctx.home.root(), &e.name, &path, tail)
            .await;
    }
    let text = logs(ctx, name, tail).await?;
    let from = file_len(&path);
    Ok(follow_file(path, text, from))
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;
    use std::io::Write;

    #[tokio::test]
    async fn a_followed_file_yields_its_tail_then_what_is_appended() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("server.log");
        std::fs::write(&path, "one\ntwo").unwrap();
        let mut s = follow_file(path.clone(), "two".into(), file_len(&path));
        assert_eq!(s.next().await.unwrap().unwrap(), b"two\n");
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        f.write_all(b"\nthree\n").unwrap();
        let got = tokio::time::timeout(Duration::from_secs(5), s.next())
            .await
            .expect("appended text within 5 s")
            .unwrap()
            .unwrap();
        assert_eq!(got, b"\nthree\n");
        // Replaced by a shorter file: read again from its start.
        std::fs::write(&path, "new\n").unwrap();
        let got = tokio::time::timeout(Duration::from_secs(5), s.next())
            .await
            .expect("the new file within 5 s")
            .unwrap()
            .unwrap();
        assert_eq!(got, b"new\n");
    }

    #[tokio::test]
    async fn nothing_new_yields_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing.log");
        let mut s = follow_file(path, String::new(), 0);
        assert!(
            tokio::time::timeout(FOLLOW_POLL * 3, s.next())
                .await
                .is_err(),
            "an empty initial text and no file yield nothing"
        );
    }
}
