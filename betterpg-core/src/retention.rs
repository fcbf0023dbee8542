//! Retention of named snapshots: which ones a policy keeps, and when the
//! schedule is due to take the next one. Pure decisions on plain values
//! (times are Unix seconds, buckets are UTC hours and days); the
//! operation `ops::snapshot` applies them.
//!
//! The rules, as `bpg snapshot --prune` applies them to one source:
//!
//! - only snapshots whose name betterpg chose (`auto`: taken without
//!   `--name`, or by the schedule) are candidates; a snapshot someone named
//!   is kept until it is destroyed by name;
//! - `keep_last N` keeps the N newest;
//! - `keep_hourly N` keeps the newest snapshot of each of the N most recent
//!   UTC hours that have one; `keep_daily N` the same per UTC day;
//! - a snapshot any of these keeps is kept (the rules add up);
//! - a snapshot a branch was cloned from is never removed;
//! - a source without any of the three settings loses nothing.

use serde::Serialize;

/// A source's retention settings (`bpg config SRC --keep-last N
/// --keep-hourly N --keep-daily N`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionPolicy {
    /// Keep this many of the newest.
    pub keep_last: Option<u32>,
    /// Keep the newest of each of this many most recent hours.
    pub keep_hourly: Option<u32>,
    /// Keep the newest of each of this many most recent days.
    pub keep_daily: Option<u32>,
}

impl RetentionPolicy {
    /// True when no rule is set: nothing is pruned, nothing scheduled.
    pub fn is_empty(&self) -> bool {
        self.keep_last.is_none() && self.keep_hourly.is_none() && self.keep_daily.is_none()
    }

    /// The bucket length (seconds) the schedule takes snapshots at: an
    /// hour with `keep_hourly`, else a day with `keep_daily`, else none
    /// (`keep_last` alone says how many to keep, not how often to take).
    pub fn interval(&self) -> Option<u64> {
        if self.keep_hourly.is_some_and(|n| n > 0) {
            Some(HOUR)
        } else if self.keep_daily.is_some_and(|n| n > 0) {
            Some(DAY)
        } else {
            None
        }
    }

    /// Whether the schedule should take a snapshot at `now`, given the time
    /// of the newest automatic snapshot: when none was taken in the current
    /// bucket (UTC hour or day) of [`RetentionPolicy::interval`].
    pub fn due(&self, newest_auto: Option<u64>, now: u64) -> bool {
        match self.interval() {
            None => false,
            Some(len) => newest_auto.is_none_or(|t| t / len != now / len),
        }
    }
}

/// Seconds in an hour.
pub const HOUR: u64 = 3600;
/// Seconds in a day.
pub const DAY: u64 = 86_400;

/// One snapshot of a source, as retention sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// Its name.
    pub name: String,
    /// Unix time it was taken.
    pub created_at: u64,
    /// betterpg chose its name.
    pub auto: bool,
    /// Branches were cloned from it.
    pub pinned: bool,
}

/// Why a snapshot is kept (JSON: the snake-case name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum KeepReason {
    /// The source has no retention settings.
    NoPolicy,
    /// Its name was given by someone (only automatic ones are pruned).
    Named,
    /// Among the `keep_last` newest.
    Last,
    /// The newest of one of the `keep_hourly` most recent hours.
    Hourly,
    /// The newest of one of the `keep_daily` most recent days.
    Daily,
    /// Branches were cloned from it.
    Branches,
}

impl KeepReason {
    /// Stable string, as in JSON.
    pub fn as_str(&self) -> &'static str {
        match self {
            KeepReason::NoPolicy => "no_policy",
            KeepReason::Named => "named",
            KeepReason::Last => "last",
            KeepReason::Hourly => "hourly",
            KeepReason::Daily => "daily",
            KeepReason::Branches => "branches",
        }
    }
}

/// What retention decides for each candidate, in the candidates' order:
/// the reasons to keep it, empty when it goes.
pub fn decide(policy: &RetentionPolicy, snaps: &[Candidate]) -> Vec<Vec<KeepReason>> {
    let mut out: Vec<Vec<KeepReason>> = vec![Vec::new(); snaps.len()];
    // Newest first (the name breaks ties: default names sort by time).
    let mut order: Vec<usize> = (0..snaps.len()).filter(|&i| snaps[i].auto).collect();
    order.sort_by(|&a, &b| {
        (snaps[b].created_at, &snaps[b].name).cmp(&(snaps[a].created_at, &snaps[a].name))
    });
    if let Some(n) = policy.keep_last {
        for &i in order.iter().take(n as usize) {
            out[i].push(KeepReason::Last);
        }
    }
    for (keep, len, why) in [
        (policy.keep_hourly, HOUR, KeepReason::Hourly),
        (policy.keep_daily, DAY, KeepReason::Daily),
    ] {
        let Some(n) = keep else { continue };
        let mut seen = Vec::new();
        for &i in &order {
            let bucket = snaps[i].created_at / len;
            if seen.len() >= n as usize {
                break;
            }
            if !seen.contains(&bucket) {
                seen.push(bucket);
                out[i].push(why);
            }
        }
    }
    for (i, s) in snaps.iter().enumerate() {
        if policy.is_empty() {
            out[i].push(KeepReason::NoPolicy);
        }
        if !s.auto {
            out[i].push(KeepReason::Named);
        }
        if s.pinned {
            out[i].push(KeepReason::Branches);
        }
        out[i].sort();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(name: &str, t: u64) -> Candidate {
        Candidate {
            name: name.into(),
            created_at: t,
            auto: true,
            pinned: false,
        }
    }

    fn kept(p: &RetentionPolicy, s: &[Candidate]) -> Vec<String> {
        decide(p, s)
            .iter()
            .zip(s)
            .filter(|(r, _)| !r.is_empty())
            .map(|(_, c)| c.name.clone())
            .collect()
    }

    #[test]
    fn no_policy_keeps_everything() {
        let s = [c("a", 1), c("b", 2)];
        let d = decide(&RetentionPolicy::default(), &s);
        assert_eq!(d, vec![vec![KeepReason::NoPolicy]; 2]);
    }

    #[test]
    fn keep_last_keeps_the_newest_whatever_the_order() {
        let s = [c("c", 30), c("a", 10), c("d", 40), c("b", 20)];
        let p = RetentionPolicy {
            keep_last: Some(2),
            ..Default::default()
        };
        assert_eq!(kept(&p, &s), vec!["c", "d"]);
        let p0 = RetentionPolicy {
            keep_last: Some(0),
            ..Default::default()
        };
        assert!(kept(&p0, &s).is_empty(), "keep_last 0 is a policy too");
    }

    #[test]
    fn hourly_and_daily_keep_the_newest_per_bucket_and_add_up() {
        let h = HOUR;
        // Day 0: hours 1 (two), 2; day 1: hours 25, 26 (two).
        let s = [
            c("h1a", h + 10),
            c("h1b", h + 20),
            c("h2", 2 * h + 5),
            c("h25", 25 * h),
            c("h26a", 26 * h + 1),
            c("h26b", 26 * h + 2),
        ];
        let hourly = RetentionPolicy {
            keep_hourly: Some(2),
            ..Default::default()
        };
        assert_eq!(kept(&hourly, &s), vec!["h25", "h26b"]);
        let daily = RetentionPolicy {
            keep_daily: Some(2),
            ..Default::default()
        };
        assert_eq!(kept(&daily, &s), vec!["h2", "h26b"]);
        let both = RetentionPolicy {
            keep_hourly: Some(1),
            keep_daily: Some(2),
            keep_last: Some(1),
        };
        let d = decide(&both, &s);
        assert_eq!(d[2], vec![KeepReason::Daily]);
        assert_eq!(
            d[5],
            vec![KeepReason::Last, KeepReason::Hourly, KeepReason::Daily]
        );
        assert!(d[0].is_empty() && d[1].is_empty() && d[3].is_empty() && d[4].is_empty());
    }

    #[test]
    fn pinned_and_named_snapshots_are_never_pruned_nor_counted() {
        let mut s = [c("old", 1), c("mid", 2), c("new", 3), c("mine", 4)];
        s[0].pinned = true;
        s[3].auto = false;
        let p = RetentionPolicy {
            keep_last: Some(1),
            ..Default::default()
        };
        let d = decide(&p, &s);
        assert_eq!(d[0], vec![KeepReason::Branches]);
        assert!(d[1].is_empty());
        assert_eq!(d[2], vec![KeepReason::Last], "the named one is not counted");
        assert_eq!(d[3], vec![KeepReason::Named]);
    }

    #[test]
    fn the_schedule_is_due_once_per_bucket() {
        let hourly = RetentionPolicy {
            keep_hourly: Some(3),
            keep_daily: Some(7),
            ..Default::default()
        };
        assert_eq!(hourly.interval(), Some(HOUR));
        assert!(hourly.due(None, 10 * HOUR));
        assert!(!hourly.due(Some(10 * HOUR + 1), 10 * HOUR + 3599));
        assert!(hourly.due(Some(10 * HOUR + 1), 11 * HOUR));
        let daily = RetentionPolicy {
            keep_daily: Some(7),
            ..Default::default()
        };
        assert!(!daily.due(Some(DAY + 5), 2 * DAY - 1));
        assert!(daily.due(Some(DAY + 5), 2 * DAY));
        let last = RetentionPolicy {
            keep_last: Some(5),
            ..Default::default()
        };
        assert_eq!(last.interval(), None);
        assert!(!last.due(None, 0), "keep_last alone schedules nothing");
    }
}
