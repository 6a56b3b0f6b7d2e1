//! A split view's checkpoint rows read as one (see
//! `crate::projection::segment`): a view is at token T exactly when every
//! one of its segments has passed T.
//!
//! Every reader of checkpoint rows that speaks of views (`writeVisible`,
//! `consistentWith`, the status fields, `/readyz`, `/metrics`, the HTTP
//! validators) folds them first with [`fold`], so each sees one row per
//! view whatever the number of segments.
use std::collections::BTreeMap;

use entity::read::projection_checkpoint::{Model, StoredStatus};

use crate::catalog::parse_segment;
use crate::token::LogPosition;

/// Where a split view stands, from what is known of its segments
/// (`at(k)`: segment k's position, if known): the lowest of them, and the
/// start while any is unknown (a segment not heard of has not caught up).
pub fn lowest(count: u32, at: impl Fn(u32) -> Option<LogPosition>) -> LogPosition {
    (0..count)
        .map(at)
        .try_fold(None::<LogPosition>, |low, p| {
            let p = p?;
            Some(Some(low.map_or(p, |l| l.min(p))))
        })
        .flatten()
        .unwrap_or(LogPosition::START)
}

/// Folds the segment rows (`view#k/N`) into their view's own row: its
/// position is its segments' lowest (the start while one is missing), its
/// runner facts (heartbeat, progress, wait, owner, attempts) are that
/// laggard's, it is stopped when any segment is stopped (with that
/// segment's error), and its events applied add up. The segment rows go.
/// Rows of unsplit views are left as they are.
pub fn fold(rows: Vec<Model>) -> Vec<Model> {
    if !rows.iter().any(|r| parse_segment(&r.name).is_some()) {
        return rows;
    }
    let mut segments: BTreeMap<String, Vec<(u32, u32, Model)>> = BTreeMap::new();
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        match parse_segment(&row.name) {
            Some((view, index, count)) => {
                segments.entry(view.to_owned()).or_default().push((index, count, row.clone()));
            }
            None => out.push(row),
        }
    }
    for (view, parts) in segments {
        // One layout at a time (start-up refuses another); if two were
        // ever seen, the larger count decides and the position is the
        // lowest of all, which never claims too much.
        let count = parts.iter().map(|(_, c, _)| *c).max().unwrap_or(1);
        let at = |p: &Model| LogPosition::new(p.last_tx_id, p.last_position);
        let complete = (0..count).all(|k| parts.iter().any(|(i, c, _)| *i == k && *c == count));
        let laggard = parts.iter().map(|(_, _, p)| p).min_by_key(|p| at(p)).cloned();
        let Some(laggard) = laggard else { continue };
        let position = if complete { at(&laggard) } else { LogPosition::START };
        let stopped = parts.iter().map(|(_, _, p)| p).find(|p| p.status == StoredStatus::Stopped);
        let applied: i64 = parts.iter().map(|(_, _, p)| p.events_applied).sum();
        let index = out.iter().position(|r| r.name == view);
        let row = match index {
            Some(i) => &mut out[i],
            None => {
                out.push(Model { name: view.clone(), events_applied: 0, ..laggard.clone() });
                let last = out.len() - 1;
                &mut out[last]
            }
        };
        row.last_tx_id = position.tx_id;
        row.last_position = position.position;
        row.events_applied += applied;
        row.heartbeat_at = laggard.heartbeat_at;
        row.progressed_at = laggard.progressed_at;
        row.waiting_on = laggard.waiting_on.clone();
        row.owner = laggard.owner.clone();
        row.attempts = parts.iter().map(|(_, _, p)| p.attempts).max().unwrap_or(0);
        if let Some(stopped) = stopped {
            if row.status != StoredStatus::Rebuilding {
                row.status = StoredStatus::Stopped;
                row.last_error = stopped.last_error.clone();
            }
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}
