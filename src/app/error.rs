//! Why the service could not start ([`StartError`]): a leaf of `app`, so
//! the wiring and its pre-flight checks can both name it.
use crate::db::reach::{Outlook, Transient};
use crate::db::ConnectError;

/// Why the service could not start: each variant keeps its cause as its
/// `source()` (printed by `main` as `caused by:` lines), and
/// [`StartError::outlook`] says whether it may clear by itself.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error("cannot apply migrations to {url}")]
    Migrate {
        url: String,
        #[source]
        source: sea_orm::DbErr,
    },
    #[error("cannot listen on {addr}")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("start-up failed")]
    Database(#[from] sea_orm::DbErr),
    #[error("an inline projection could not catch up")]
    CatchUp(#[from] crate::projection::runtime::StepError),
    #[error("server error")]
    Serve(#[source] std::io::Error),
    #[error("start-up cancelled: shutdown was requested before the database could be reached")]
    Cancelled,
}

impl StartError {
    /// Whether the failure may clear by itself (a refused connection, a
    /// time-out, a server starting up or out of connection slots: `serve`
    /// waits for it) or needs a person (a missing database, file or
    /// directory, bad credentials, a bad URL or configuration: every
    /// command exits at once). Decided on the typed cause (see
    /// [`crate::db::reach`]), never on its message.
    pub fn outlook(&self) -> Outlook {
        use crate::projection::runtime::{Pause, StepError};
        match self {
            Self::Connect(e) => e.outlook(),
            Self::Migrate { source, .. } | Self::Database(source) => crate::db::reach::of_db(source),
            Self::CatchUp(StepError::Database(e)) => crate::db::reach::of_db(e),
            Self::CatchUp(e) if e.pause() == Pause::Outage => Outlook::MayClear(Transient::TimedOut),
            Self::CatchUp(_) | Self::Bind { .. } | Self::Config(_) | Self::Serve(_) | Self::Cancelled => {
                Outlook::NeedsOperator
            }
        }
    }
}
