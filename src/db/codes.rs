//! The one table of database error codes, PostgreSQL SQLSTATEs and SQLite
//! (extended) result codes, answering both questions asked of a code in one
//! row: what a running service makes of it ([`Running`], which
//! [`super::classify`] turns into a `DbFailure`) and whether start-up waits
//! it out (a [`Transient`], which [`super::reach`] turns into an `Outlook`).
//! One row per code, so the two answers cannot drift apart. A leaf of `db`.

/// What a running service makes of a code: a `DbFailure` without the
/// constraint's name, which the error carries beside its code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Running {
    Unavailable,
    Contention,
    LockTimeout,
    Constraint,
    Data,
    Deployment,
    Unclassified,
}

/// The failures that may clear by themselves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transient {
    /// Nothing listens at the address (yet).
    Refused,
    /// No answer in time (a connect, or a pooled connection).
    TimedOut,
    /// The server is starting up or shutting down (PostgreSQL `57P03`, `57P01`, `57P02`).
    StartingUp,
    /// The server has no connection slot free (PostgreSQL `53300`).
    TooManyConnections,
    /// Another session holds a lock the step needs (SQLite busy or locked,
    /// PostgreSQL lock time-out, serialization failure or deadlock).
    Busy,
    /// Any other network failure (a reset connection, a host name that does
    /// not resolve yet, PostgreSQL connection exceptions `08xxx`).
    Network,
}

/// The row of `code` (a SQLSTATE when `postgres`, else a SQLite result
/// code): how a running service classes it, and what start-up waits out
/// (`None`: a person must act before start-up can go on).
pub(super) fn read(code: &str, postgres: bool) -> (Running, Option<Transient>) {
    if postgres {
        sqlstate(code)
    } else {
        sqlite(code)
    }
}

/// PostgreSQL SQLSTATE codes and classes.
fn sqlstate(code: &str) -> (Running, Option<Transient>) {
    use Running::*;
    let class = |classes: &[&str]| code.len() == 5 && classes.iter().any(|c| code.starts_with(c));
    match code {
        // Serialization failure, deadlock, object in use, snapshot too old.
        "40001" | "40P01" | "55006" | "72000" => (Contention, Some(Transient::Busy)),
        // lock_not_available (lock_timeout, NOWAIT).
        "55P03" => (LockTimeout, Some(Transient::Busy)),
        // An integrity constraint failed at commit; a PL/pgSQL RAISE (a
        // trigger refused the row).
        "40002" | "P0001" => (Constraint, None),
        // Read-only transaction (a standby was written to).
        "25006" => (Deployment, None),
        // cannot_connect_now, admin_shutdown, crash_shutdown.
        "57P03" | "57P01" | "57P02" => (Unavailable, Some(Transient::StartingUp)),
        // too_many_connections.
        "53300" => (Unavailable, Some(Transient::TooManyConnections)),
        // Connection exceptions.
        _ if class(&["08"]) => (Unavailable, Some(Transient::Network)),
        // Operator intervention (a cancelled statement), insufficient
        // resources (a full disk: a request retries it, start-up needs a
        // person), system errors, internal errors, commit unknown.
        _ if class(&["57", "53", "58", "XX"]) || code == "40003" => (Unavailable, None),
        // Data exceptions (numeric value out of range, invalid text…),
        // program limits (a row too large for an index).
        _ if class(&["22", "54"]) => (Data, None),
        // Any other integrity constraint.
        _ if class(&["23"]) => (Constraint, None),
        // Syntax or access rule (undefined table or column, insufficient
        // privilege), feature not supported, invalid authorization
        // (`28000`, `28P01`), catalog (`3D000`: no such database) or schema
        // name, configuration file.
        _ if class(&["42", "0A", "28", "3D", "3F", "F0"]) => (Deployment, None),
        _ => (Unclassified, None),
    }
}

/// SQLite result codes and their extended codes (the primary code in the
/// low byte).
fn sqlite(code: &str) -> (Running, Option<Transient>) {
    use Running::*;
    let Ok(n) = code.parse::<i32>() else { return (Unclassified, None) };
    match n {
        // A trigger's RAISE(ABORT) (SQLITE_CONSTRAINT_TRIGGER), any constraint.
        1811 | 19 => (Constraint, None),
        // SQLITE_TOOBIG, SQLITE_MISMATCH, SQLITE_RANGE.
        18 | 20 | 25 => (Data, None),
        _ => match n & 0xff {
            // SQLITE_PERM, SQLITE_READONLY, SQLITE_AUTH.
            3 | 8 | 23 => (Deployment, None),
            // SQLITE_NOMEM, SQLITE_IOERR, SQLITE_FULL, SQLITE_CANTOPEN (a
            // missing file or directory: start-up needs a person).
            7 | 10 | 13 | 14 => (Unavailable, None),
            // SQLITE_BUSY, SQLITE_LOCKED.
            5 | 6 => (Contention, Some(Transient::Busy)),
            // Notably SQLITE_NOTADB, SQLITE_CORRUPT.
            _ => (Unclassified, None),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The two answers of a row never disagree: what start-up waits out is
    /// a failure a request retries (contention, a lock timeout, an outage),
    /// and nothing a request retries at once (contention, a lock timeout)
    /// makes start-up give up. (Start-up may be stricter otherwise: a full
    /// disk, `53100`, is retried by a request but needs a person at
    /// start-up.)
    #[test]
    fn start_up_and_running_read_each_code_alike() {
        let postgres = [
            "57P01", "57P02", "57P03", "53300", "53100", "08000", "08001", "08006", "40001", "40P01", "55P03", "3D000",
            "28000", "28P01", "42501", "42P01", "0A000", "25006", "22003", "23505", "XX000", "40003", "57014", "55006",
            "72000",
        ];
        let sqlite = ["5", "6", "261", "517", "8", "14", "23", "3", "1032", "2067", "19", "10", "13", "1", "26"];
        let codes = postgres.iter().map(|c| (*c, true)).chain(sqlite.iter().map(|c| (*c, false)));
        for (code, postgres) in codes {
            let (running, start_up) = read(code, postgres);
            match start_up {
                Some(why) => assert!(
                    matches!(running, Running::Contention | Running::LockTimeout | Running::Unavailable),
                    "{code}: start-up waits it out ({why:?}) but a request takes it for {running:?}"
                ),
                None => assert!(
                    !matches!(running, Running::Contention | Running::LockTimeout),
                    "{code}: a request retries it ({running:?}) but start-up gives up"
                ),
            }
        }
    }

    /// A SQLite code is never read as a SQLSTATE, nor the other way round.
    #[test]
    fn the_store_decides_how_a_code_is_read() {
        assert_eq!(read("40001", true), (Running::Contention, Some(Transient::Busy)));
        assert_eq!(read("40001", false), (Running::Unclassified, None));
        assert_eq!(read("5", false), (Running::Contention, Some(Transient::Busy)));
        assert_eq!(read("5", true), (Running::Unclassified, None));
    }
}
