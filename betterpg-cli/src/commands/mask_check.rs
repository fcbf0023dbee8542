//! `bpg mask-check`: the personal-looking columns no masking rule covers.

use betterpg_core::{Error, MaskCheckOptions};

use super::Global;
use crate::args::MaskCheckArgs;
use crate::{output, wire};

pub async fn run(g: &Global, a: MaskCheckArgs) -> Result<(), Error> {
    let mgr = g.open().await?;
    let mut opts = MaskCheckOptions::with_rules(a.mask_rules);
    opts.sample_rows = a.sample_rows;
    let report = mgr.mask_check(&a.source, opts).await?;
    if g.json {
        output::json(&wire::MaskCheck::from(&report))?;
    } else {
        println!(
            "{}: {} columns in {} database(s), up to {} rows sampled per table",
            report.source,
            report.columns_checked,
            report.databases.len(),
            report.sample_rows
        );
        for (label, cols) in [
            ("NOT COVERED", &report.uncovered),
            ("covered", &report.covered),
        ] {
            for c in cols {
                println!(
                    "{label:<11} {}: {}.{}.{} ({}) {}: {}",
                    c.database,
                    c.schema,
                    c.table,
                    c.column,
                    c.data_type,
                    c.kinds.join(", "),
                    c.reasons.join("; ")
                );
            }
        }
        if report.uncovered.is_empty() {
            println!("no personal-looking column is left uncovered");
        }
    }
    report.into_result().map(|_| ())
}
