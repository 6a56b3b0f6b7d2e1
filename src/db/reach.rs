//! Whether a database that could not be reached or opened may come back by
//! itself, decided from the typed error (sqlx's `DatabaseError::code()`, an
//! io error's `ErrorKind`, sea-orm's variants), never from message text.
//!
//! `serve` retries what [`Outlook::MayClear`] and exits at once on
//! [`Outlook::NeedsOperator`]; operator commands fail at once on either.
use std::error::Error;
use std::io::ErrorKind;

use sea_orm::{DbErr, RuntimeErr};

pub use super::codes::Transient;

/// What becomes of a failure to reach or open a database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outlook {
    /// It may clear without anyone acting: worth waiting for.
    MayClear(Transient),
    /// It cannot clear without a person: a missing database, file or
    /// directory, bad credentials, a URL or file this build cannot use.
    NeedsOperator,
}

impl Transient {
    /// The cause in a few words, with no address, host, port or path: what
    /// `/readyz` may show anyone while the service starts.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Refused => "connection refused",
            Self::TimedOut => "timed out",
            Self::StartingUp => "the database server is starting up or shutting down",
            Self::TooManyConnections => "the database server has too many connections",
            Self::Busy => "the database is busy (locked by another session)",
            Self::Network => "the network to the database failed",
        }
    }
}

/// The outlook of `error` and of the causes in its `source()` chain: the
/// first link of a known type (sea-orm's, sqlx's, io's) decides. Anything
/// else (an unsupported URL, a configuration error) needs an operator.
pub fn outlook(error: &(dyn Error + 'static)) -> Outlook {
    let mut link = Some(error);
    while let Some(e) = link {
        if let Some(e) = e.downcast_ref::<DbErr>() {
            return of_db(e);
        }
        if let Some(RuntimeErr::SqlxError(e)) = e.downcast_ref::<RuntimeErr>() {
            return of_sqlx(e);
        }
        if let Some(e) = e.downcast_ref::<sqlx::Error>() {
            return of_sqlx(e);
        }
        if let Some(e) = e.downcast_ref::<std::io::Error>() {
            return of_io(e);
        }
        link = e.source();
    }
    Outlook::NeedsOperator
}

/// sea-orm's error: a pooled connection that did not come in time may
/// clear; the driver's own error decides otherwise.
pub fn of_db(error: &DbErr) -> Outlook {
    match error {
        DbErr::ConnectionAcquire(_) => Outlook::MayClear(Transient::TimedOut),
        DbErr::Conn(RuntimeErr::SqlxError(e))
        | DbErr::Exec(RuntimeErr::SqlxError(e))
        | DbErr::Query(RuntimeErr::SqlxError(e)) => of_sqlx(e),
        // This crate's own waits (the SQLite writer slot).
        DbErr::Conn(RuntimeErr::Internal(_)) => Outlook::MayClear(Transient::Busy),
        _ => Outlook::NeedsOperator,
    }
}

/// sqlx's error, by its kind and the database's code.
pub fn of_sqlx(error: &sqlx::Error) -> Outlook {
    match error {
        sqlx::Error::Io(e) => of_io(e),
        sqlx::Error::PoolTimedOut => Outlook::MayClear(Transient::TimedOut),
        sqlx::Error::Database(db) => {
            let postgres = db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>().is_some();
            of_code(db.code().as_deref().unwrap_or_default(), postgres)
        }
        // A bad URL or option, TLS, a server that does not speak the
        // protocol, a crashed worker: a person must look.
        _ => Outlook::NeedsOperator,
    }
}

/// An io error, by its kind: a file or directory that is missing or may
/// not be opened needs a person; a refused or failed connection may clear.
pub fn of_io(error: &std::io::Error) -> Outlook {
    match error.kind() {
        ErrorKind::ConnectionRefused => Outlook::MayClear(Transient::Refused),
        ErrorKind::TimedOut => Outlook::MayClear(Transient::TimedOut),
        ErrorKind::NotFound
        | ErrorKind::PermissionDenied
        | ErrorKind::ReadOnlyFilesystem
        | ErrorKind::NotADirectory
        | ErrorKind::IsADirectory
        | ErrorKind::InvalidInput
        | ErrorKind::InvalidData
        | ErrorKind::Unsupported
        | ErrorKind::StorageFull
        | ErrorKind::OutOfMemory => Outlook::NeedsOperator,
        _ => Outlook::MayClear(Transient::Network),
    }
}

/// PostgreSQL SQLSTATE codes (`postgres`) and SQLite (extended) result
/// codes, by the one table of codes ([`super::codes`]): notably a missing
/// database (`3D000`), bad credentials (`28000`, `28P01`) or a file that
/// cannot be opened (SQLite's `14`) need a person.
pub(super) fn of_code(code: &str, postgres: bool) -> Outlook {
    match super::codes::read(code, postgres).1 {
        Some(transient) => Outlook::MayClear(transient),
        None => Outlook::NeedsOperator,
    }
}

/// The kind of database a URL names, for anyone to see (never its host,
/// port, name or path).
pub fn kind(url: &str) -> &'static str {
    if url.starts_with("sqlite:") {
        "sqlite"
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        "postgres"
    } else {
        "unsupported"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each code the issue names, on its side; a PostgreSQL code of five
    /// digits (`42501`) is never read as a SQLite one.
    #[test]
    fn codes_fall_on_their_side() {
        for (code, postgres, outlook) in [
            ("57P03", true, Outlook::MayClear(Transient::StartingUp)),
            ("53300", true, Outlook::MayClear(Transient::TooManyConnections)),
            ("08006", true, Outlook::MayClear(Transient::Network)),
            ("3D000", true, Outlook::NeedsOperator),
            ("28P01", true, Outlook::NeedsOperator),
            ("28000", true, Outlook::NeedsOperator),
            ("42501", true, Outlook::NeedsOperator),
            ("14", false, Outlook::NeedsOperator),
            ("8", false, Outlook::NeedsOperator),
            ("1032", false, Outlook::NeedsOperator),
            ("5", false, Outlook::MayClear(Transient::Busy)),
            ("517", false, Outlook::MayClear(Transient::Busy)),
        ] {
            assert_eq!(of_code(code, postgres), outlook, "code {code}");
        }
    }

    #[test]
    fn io_kinds_and_the_chain_decide() {
        let refused = std::io::Error::from(ErrorKind::ConnectionRefused);
        assert_eq!(of_io(&refused), Outlook::MayClear(Transient::Refused));
        assert_eq!(of_io(&std::io::Error::from(ErrorKind::NotFound)), Outlook::NeedsOperator);
        let wrapped = DbErr::Conn(RuntimeErr::SqlxError(std::sync::Arc::new(sqlx::Error::Io(refused))));
        assert_eq!(outlook(&wrapped), Outlook::MayClear(Transient::Refused));
        let timed_out = sqlx::Error::PoolTimedOut;
        assert_eq!(outlook(&timed_out), Outlook::MayClear(Transient::TimedOut));
        assert_eq!(outlook(&std::fmt::Error), Outlook::NeedsOperator);
        assert_eq!(kind("postgres://u:p@h:5432/db"), "postgres");
        assert_eq!(kind("sqlite:///tmp/x.db?mode=rwc"), "sqlite");
    }
}
