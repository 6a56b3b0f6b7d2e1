//! What a failed database call means to a client: retry later, retry now,
//! or report it. Commands, queries and operator actions each wrap this one
//! type, and the API maps it to codes once; `db` decides the class from the
//! database's own error (`impl From<sea_orm::DbErr> for DbError` there).
//! A leaf, so that the API can name the classes without reaching the pools.
//!
//! It also tells a failure to an operator: [`Chain`] (one line, for a log
//! field) and [`Report`] (the error, then each cause on a line of its own,
//! as `main` prints it), both walking the `source()` chain.

/// A database failure, classed by what the client can do about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DbError {
    /// The database is unreachable, or no connection was free in time:
    /// retry later (`UNAVAILABLE`).
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// A serialization failure or deadlock: the same request may simply be
    /// retried.
    #[error("contention: {0}")]
    Contention(String),
    /// Anything else (logged with an incident id at the API boundary). Each
    /// layer that wraps this type keeps a one-line `From<sea_orm::DbErr>`
    /// forwarding here, because `?` converts in one step.
    #[error("database error: {0}")]
    Internal(String),
}

/// The messages of `error` and of each cause in its `source()` chain, in
/// order. A cause whose message its wrapper already ends with (sqlx's
/// "error communicating with database: <the io error>" over that io error)
/// is not repeated.
pub fn causes(error: &(dyn std::error::Error + 'static)) -> Vec<String> {
    let mut messages: Vec<String> = vec![error.to_string()];
    let mut link = error.source();
    while let Some(cause) = link {
        let message = cause.to_string();
        if !messages.last().is_some_and(|last| last.ends_with(&message)) {
            messages.push(message);
        }
        link = cause.source();
    }
    messages
}

/// An error and its causes on one line, joined by `: ` (for a log field).
pub struct Chain<'a>(pub &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&causes(self.0).join(": "))
    }
}

/// An error as `main` prints it: `error: …`, then `  caused by: …` for each
/// cause.
pub struct Report<'a>(pub &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for Report<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let causes = causes(self.0);
        let mut lines = causes.iter();
        if let Some(first) = lines.next() {
            write!(f, "error: {first}")?;
        }
        for cause in lines {
            write!(f, "\n  caused by: {cause}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[derive(Debug, thiserror::Error)]
    #[error("cannot connect to sqlite://x.db")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn a_report_names_each_cause_once() {
        let e = Outer(std::io::Error::new(std::io::ErrorKind::NotFound, "unable to open database file"));
        assert_eq!(
            super::Report(&e).to_string(),
            "error: cannot connect to sqlite://x.db\n  caused by: unable to open database file"
        );
        assert_eq!(super::Chain(&e).to_string(), "cannot connect to sqlite://x.db: unable to open database file");
    }
}
