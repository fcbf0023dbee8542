//! `bpg audit`: the home's audit log.

use betterpg_core::Error;

use super::Global;
use crate::args::AuditArgs;
use crate::{output, wire};

pub async fn run(g: &Global, a: AuditArgs) -> Result<(), Error> {
    let mgr = g.open().await?;
    let events = mgr.audit(a.since.as_deref())?;
    if g.json {
        return output::json(&wire::Audit {
            events: events.iter().map(wire::AuditEvent::from).collect(),
        });
    }
    for e in &events {
        let mut line = format!("{} {}({}) {}", e.time, e.user, e.uid, e.operation);
        if let Some(b) = &e.branch {
            line.push(' ');
            line.push_str(b);
        }
        if let Some(s) = &e.source {
            line.push_str(&format!(" from {s}"));
        }
        if let Some(m) = &e.mode {
            line.push_str(&format!(" mode={m}"));
        }
        if let Some(c) = &e.credentials {
            line.push_str(&format!(" credentials={c}"));
        }
        if let Some(r) = &e.role {
            line.push_str(&format!(" role={r}"));
        }
        for f in &e.masking {
            line.push_str(&format!(" mask={}(sha256:{})", f.file, f.sha256));
        }
        if let Some(d) = &e.detail {
            line.push_str(&format!(" ({d})"));
        }
        match &e.error {
            Some(err) => line.push_str(&format!(": error {}: {}", err.kind, err.message)),
            None => line.push_str(": ok"),
        }
        println!("{line}");
    }
    Ok(())
}
