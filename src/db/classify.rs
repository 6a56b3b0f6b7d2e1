//! Database errors classed by what to do about them: from SQLSTATE codes
//! (PostgreSQL), extended result codes (SQLite), sqlx's and sea-orm's own
//! error kinds, never from message text.
use sea_orm::DbErr;

/// What kind of failure a database error is, decided from SQLSTATE codes
/// (PostgreSQL), extended result codes (SQLite), sqlx's and sea-orm's own
/// error kinds, never from message text. Every class says what to do about
/// it ([`DbFailure::recovery`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DbFailure {
    /// The database cannot be reached, or no pooled connection was free in
    /// time, or the server ran out of a resource: the client may retry later
    /// (`UNAVAILABLE`).
    Unavailable,
    /// A serialization failure or deadlock: retrying the same work may succeed.
    Contention,
    /// A lock wait ran past `lock_timeout` (PostgreSQL `55P03`): another
    /// session holds a lock this statement needs.
    LockTimeout,
    /// A UNIQUE or PRIMARY KEY constraint; the constraint's name where the
    /// database reports it (PostgreSQL does, SQLite does not).
    Unique(Option<String>),
    /// A FOREIGN KEY, CHECK or NOT NULL constraint, or a trigger that refused the row.
    Constraint(Option<String>),
    /// A value the column cannot hold (out of range, malformed, too large):
    /// the same statement will fail the same way every time.
    Data,
    /// A row or value is not what the code expects: a decode or conversion
    /// failed, or no row was there to update. The same data fails the same
    /// way every time.
    Decode,
    /// The deployment is not what this build expects: a table, column or
    /// function missing, a permission refused, a read-only server, a
    /// configuration error. Not the data's fault: retried while an operator
    /// mends it (the projection's status shows the error meanwhile).
    Deployment,
    /// None of the above (SQLite's generic `SQLITE_ERROR`, an internal
    /// server error, an error of this crate's own). See
    /// [`DbFailure::recovery`] for why it counts as the data's.
    Unclassified,
}

/// What a consumer of the log does about a failed apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recovery {
    /// The same work may succeed later: retry it, backing off.
    Retry,
    /// The same statement on the same data fails again: find the event that
    /// causes it and dead-letter it under the projection's poison policy.
    Isolate,
}

impl DbFailure {
    /// Transient classes and the deployment's own failures are retried;
    /// the data's (`Unique`, `Constraint`, `Data`, `Decode`) isolate the
    /// event. So does `Unclassified`: a failure nobody could name stops the
    /// projection at one dead-lettered event (the default `stop` policy),
    /// with the error in the dead letter and the status, instead of
    /// retrying a whole group forever without a word; `retryDeadLetter`
    /// takes it up again once it is understood.
    pub fn recovery(&self) -> Recovery {
        match self {
            Self::Unavailable | Self::Contention | Self::LockTimeout | Self::Deployment => Recovery::Retry,
            Self::Unique(_) | Self::Constraint(_) | Self::Data | Self::Decode | Self::Unclassified => Recovery::Isolate,
        }
    }
}

/// The one mapping from sea-orm's error to what a client can do about it
/// (see [`crate::failure::DbError`]).
impl From<DbErr> for crate::failure::DbError {
    fn from(e: DbErr) -> Self {
        match classify(&e) {
            DbFailure::Unavailable => Self::Unavailable(e.to_string()),
            DbFailure::Contention => Self::Contention(e.to_string()),
            _ => Self::Internal(e.to_string()),
        }
    }
}

/// Classifies a database error.
pub fn classify(err: &DbErr) -> DbFailure {
    use sea_orm::RuntimeErr;
    match err {
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => DbFailure::Unavailable,
        DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e)) => classify_sqlx(e),
        DbErr::TryIntoErr { .. }
        | DbErr::ConvertFromU64(_)
        | DbErr::UnpackInsertId
        | DbErr::UpdateGetPrimaryKey
        | DbErr::RecordNotFound(_)
        | DbErr::AttrNotSet(_)
        | DbErr::Type(_)
        | DbErr::Json(_)
        | DbErr::RecordNotInserted
        | DbErr::RecordNotUpdated
        | DbErr::KeyArityMismatch { .. }
        | DbErr::PrimaryKeyNotSet { .. } => DbFailure::Decode,
        DbErr::Migration(_) | DbErr::BackendNotSupported { .. } | DbErr::RbacError(_) | DbErr::AccessDenied { .. } => {
            DbFailure::Deployment
        }
        _ => DbFailure::Unclassified,
    }
}

/// sqlx's error kinds; a database's own error by its code.
fn classify_sqlx(error: &sqlx::Error) -> DbFailure {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::BeginFailed => DbFailure::Unavailable,
        sqlx::Error::RowNotFound | sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) => DbFailure::Decode,
        sqlx::Error::Encode(_) => DbFailure::Data,
        sqlx::Error::Configuration(_)
        | sqlx::Error::InvalidArgument(_)
        | sqlx::Error::TypeNotFound { .. }
        | sqlx::Error::ColumnIndexOutOfBounds { .. }
        | sqlx::Error::ColumnNotFound(_)
        | sqlx::Error::InvalidSavePointStatement
        | sqlx::Error::Migrate(_) => DbFailure::Deployment,
        sqlx::Error::Database(db) => {
            let postgres = db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>().is_some();
            let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
            let constraint = db.constraint().map(str::to_owned);
            match db.kind() {
                // SQLite names no constraint; its extended code tells a
                // primary key (1555, SQLITE_CONSTRAINT_PRIMARYKEY) from
                // another unique index (2067).
                sqlx::error::ErrorKind::UniqueViolation => {
                    DbFailure::Unique(constraint.or_else(|| (code == "1555").then(|| PRIMARY_KEY.to_owned())))
                }
                sqlx::error::ErrorKind::ForeignKeyViolation
                | sqlx::error::ErrorKind::NotNullViolation
                | sqlx::error::ErrorKind::CheckViolation
                | sqlx::error::ErrorKind::ExclusionViolation => DbFailure::Constraint(constraint),
                _ => classify_code(&code, postgres, constraint),
            }
        }
        _ => DbFailure::Unclassified,
    }
}

/// PostgreSQL SQLSTATE codes (`postgres`) and SQLite (extended) result
/// codes, by the one table of codes ([`super::codes`]).
fn classify_code(code: &str, postgres: bool, constraint: Option<String>) -> DbFailure {
    use super::codes::Running;
    match super::codes::read(code, postgres).0 {
        Running::Unavailable => DbFailure::Unavailable,
        Running::Contention => DbFailure::Contention,
        Running::LockTimeout => DbFailure::LockTimeout,
        Running::Constraint => DbFailure::Constraint(constraint),
        Running::Data => DbFailure::Data,
        Running::Deployment => DbFailure::Deployment,
        Running::Unclassified => DbFailure::Unclassified,
    }
}

/// True when `err` is a wait for the SQLite writer slot that ran past its
/// deadline (see [`Db::begin_write_as`]).
pub fn is_writer_slot_timeout(err: &DbErr) -> bool {
    matches!(err, DbErr::Conn(sea_orm::RuntimeErr::Internal(m)) if m.contains("SQLite writer slot"))
}

/// True when `err` is a UNIQUE violation of the constraint named `name`
/// (any, when `name` is empty). SQLite does not name constraints: there a
/// primary-key violation matches every `*_pkey` name and another unique
/// violation every other name.
pub fn is_unique_violation(err: &DbErr, name: &str) -> bool {
    match classify(err) {
        DbFailure::Unique(Some(constraint)) if constraint == PRIMARY_KEY => name.is_empty() || name.ends_with("_pkey"),
        DbFailure::Unique(Some(constraint)) => name.is_empty() || constraint == name,
        // SQLite, another unique index than the primary key.
        DbFailure::Unique(None) => !name.ends_with("_pkey"),
        _ => false,
    }
}

/// What [`classify`] calls a SQLite primary-key violation (PostgreSQL names
/// the constraint, `<table>_pkey`).
const PRIMARY_KEY: &str = "(primary key)";

#[cfg(test)]
mod tests {
    /// The failures the projection runtime once retried forever (issue 22):
    /// a decode error and an update that found no row are the data's, and
    /// isolate the event; the deployment's own failures and outages retry.
    #[test]
    fn every_failure_class_says_what_to_do() {
        use super::{classify, classify_code, DbFailure, Recovery};
        use sea_orm::DbErr;
        let cases = [
            (DbErr::RecordNotUpdated, DbFailure::Decode, Recovery::Isolate),
            (DbErr::Type("a text where a number was".into()), DbFailure::Decode, Recovery::Isolate),
            (DbErr::Json("expected value".into()), DbFailure::Decode, Recovery::Isolate),
            (DbErr::Migration("missing".into()), DbFailure::Deployment, Recovery::Retry),
            (DbErr::Custom("a bug of ours".into()), DbFailure::Unclassified, Recovery::Isolate),
            (DbErr::Conn(sea_orm::RuntimeErr::Internal("gone".into())), DbFailure::Unavailable, Recovery::Retry),
        ];
        for (error, class, recovery) in cases {
            assert_eq!(classify(&error), class, "{error}");
            assert_eq!(class.recovery(), recovery, "{error}");
        }
        let postgres = [
            ("40001", DbFailure::Contention),
            ("55P03", DbFailure::LockTimeout),
            ("22003", DbFailure::Data),
            ("54000", DbFailure::Data),
            ("23514", DbFailure::Constraint(None)),
            ("P0001", DbFailure::Constraint(None)),
            ("42P01", DbFailure::Deployment),
            ("42501", DbFailure::Deployment),
            ("25006", DbFailure::Deployment),
            ("53100", DbFailure::Unavailable),
            ("57014", DbFailure::Unavailable),
            ("XX000", DbFailure::Unavailable),
        ];
        let sqlite = [
            ("517", DbFailure::Contention),
            ("1032", DbFailure::Deployment),
            ("13", DbFailure::Unavailable),
            ("1", DbFailure::Unclassified),
        ];
        let codes = postgres.iter().map(|(c, f)| (*c, true, f)).chain(sqlite.iter().map(|(c, f)| (*c, false, f)));
        for (code, is_postgres, class) in codes {
            assert_eq!(&classify_code(code, is_postgres, None), class, "code {code}");
        }
    }
}
