//! What start-up checks and prepares before anything serves: the schema
//! migrated (under the migration lock on PostgreSQL), the trusted
//! documents read and validated, the read replicas connected, and the
//! segment counts checked against what the database was projected with.
//! Each refuses with a [`StartError`] that says what to change.
use std::sync::Arc;

use migration::{Migrator, MigratorTrait};

use super::error::StartError;
use crate::catalog::Mode;
use crate::db::replica::ReplicaSet;
use crate::db::Db;
use crate::graphql::api::Api;
use crate::settings::Settings;

/// The document store: the trusted-documents manifest read and checked
/// (each id the SHA-256 of its text).
pub(super) fn documents(
    settings: &Settings,
    open_mode: bool,
) -> Result<crate::graphql::documents::Documents, StartError> {
    let trusted = match &settings.trusted_documents {
        None => Default::default(),
        Some(path) => {
            let shown = path.display();
            let text = std::fs::read_to_string(path)
                .map_err(|e| StartError::Config(format!("cannot read the trusted documents {shown}: {e}")))?;
            serde_json::from_str(&text).map_err(|e| {
                StartError::Config(format!("the trusted documents {shown} are not a JSON map from id to document: {e}"))
            })?
        }
    };
    let document_settings = crate::graphql::documents::DocumentSettings {
        trusted,
        only_trusted: settings.only_trusted,
        introspection_allowed: open_mode,
    };
    crate::graphql::documents::Documents::new(&document_settings).map_err(|e| StartError::Config(e.to_string()))
}

/// Every trusted document must pass validation (each of its operations).
pub(super) async fn validate_trusted(api: &Api) -> Result<(), StartError> {
    let trusted: Vec<(String, String)> =
        api.documents.trusted().map(|(id, text)| (id.clone(), text.to_string())).collect();
    for (id, text) in trusted {
        let document = async_graphql::parser::parse_query(&text)
            .map_err(|e| StartError::Config(format!("trusted document sha256:{id} does not parse: {e}")))?;
        let names: Vec<Option<String>> = match &document.operations {
            async_graphql::parser::types::DocumentOperations::Single(_) => vec![None],
            async_graphql::parser::types::DocumentOperations::Multiple(ops) => {
                ops.keys().map(|n| Some(n.to_string())).collect()
            }
        };
        for name in names {
            if let Err(errors) = api.validate(&text, name.as_deref()).await {
                let first = errors.first().map(|e| e.message.clone()).unwrap_or_default();
                return Err(StartError::Config(format!("trusted document sha256:{id} is not valid: {first}")));
            }
        }
    }
    Ok(())
}

/// What `migrate` did to one database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migrated {
    /// The database, its URL redacted.
    pub url: String,
    /// The migrations applied now, in order (none: the schema was current).
    pub applied: Vec<String>,
    /// How many migrations the schema has in all.
    pub known: usize,
}

impl std::fmt::Display for Migrated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.applied.is_empty() {
            write!(f, "{}: the schema is current ({} migrations, none pending)", self.url, self.known)
        } else {
            write!(
                f,
                "{}: applied {} of {} migrations: {}",
                self.url,
                self.applied.len(),
                self.known,
                self.applied.join(", ")
            )
        }
    }
}

/// Applies migrations to the write database and, when separate, the read
/// database; says what it applied to each.
pub async fn migrate(database_url: &str, read_database_url: Option<&str>) -> Result<Vec<Migrated>, StartError> {
    let write = Db::connect(database_url, 2).await?;
    let mut done = vec![migrate_db(&write).await?];
    if let Some(read_url) = read_database_url.filter(|u| *u != database_url) {
        done.push(migrate_db(&Db::connect(read_url, 2).await?).await?);
    }
    Ok(done)
}

/// Applies pending migrations. On PostgreSQL under an advisory lock: when
/// several instances start together on a fresh database, one applies the
/// migrations and the others wait, then find them applied (without it, two
/// concurrent `CREATE TABLE`s collide in PostgreSQL's catalog).
pub(super) async fn migrate_db(db: &Db) -> Result<Migrated, StartError> {
    let url = crate::db::redact(&db.url);
    let fail = |source: sea_orm::DbErr| StartError::Migrate { url: url.clone(), source };
    let lock =
        if db.is_postgres() { Some(crate::db::MigrationLock::acquire(&db.url).await.map_err(fail)?) } else { None };
    let applied = async {
        let pending: Vec<String> =
            Migrator::get_pending_migrations(&db.conn).await?.iter().map(|m| m.name().to_owned()).collect();
        Migrator::up(&db.conn, None).await?;
        Ok(pending)
    }
    .await
    .map_err(fail);
    if let Some(lock) = lock {
        lock.release().await;
    }
    let applied = applied?;
    if !applied.is_empty() {
        tracing::info!(database = %url, migrations = %applied.join(", "), "applied {} migrations", applied.len());
    }
    Ok(Migrated { url, applied, known: Migrator::migrations().len() })
}

/// The read replicas (`--replica-url`), when given: hot standbys of the
/// read database. Nothing is ever written to them (no migrations, no
/// checkpoint rows): they are only read.
pub(super) async fn connect_replicas(settings: &Settings, read_db: &Db) -> Result<Option<Arc<ReplicaSet>>, StartError> {
    if settings.replica_urls.is_empty() {
        return Ok(None);
    }
    if !read_db.is_postgres() {
        return Err(StartError::Config("--replica-url needs a PostgreSQL read database".into()));
    }
    Ok(Some(ReplicaSet::connect(read_db, &settings.replica_urls, settings.reads_pool, settings.replicas).await?))
}

/// Refuses segments (`--projection-segments`) where they cannot work, and
/// a number of segments other than the one the database was projected
/// with (changing it is a rebuild; see docs/operators.md, "Segments").
pub(super) async fn check_segments(settings: &Settings, views_db: &Db) -> Result<(), StartError> {
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
    let runtime = &settings.runtime;
    for view in crate::catalog::View::ALL {
        let (name, count) = (view.name(), runtime.segments_of(view.name()));
        if count > 1 && !views_db.is_postgres() {
            return Err(StartError::Config(format!(
                "--projection-segments {name}={count} needs PostgreSQL: on SQLite one write lock takes every \
                 transaction in turn, so segments would only wait for each other; leave {name} at one segment"
            )));
        }
        let mode = runtime.mode_of(name);
        if count > 1 && mode != Mode::Async {
            return Err(StartError::Config(format!(
                "--projection-segments {name}={count}: {name} is {mode}, and only async views are split into \
                 segments (an inline view is applied by each command in its own transaction, a lazy one by the \
                 reads that fold it: neither has a runner to split); make it async or leave it at one segment",
                mode = mode.as_str()
            )));
        }
        if !settings.role.runs_projections() {
            continue;
        }
        let rows = entity::read::projection_checkpoint::Entity::find()
            .filter(entity::read::projection_checkpoint::Column::Name.starts_with(format!("{name}#")))
            .all(&views_db.conn)
            .await?;
        let other = rows.iter().filter_map(|r| crate::catalog::parse_segment(&r.name)).find(|(_, _, n)| *n != count);
        if let Some((_, _, found)) = other {
            return Err(StartError::Config(format!(
                "{name} was projected in {found} segments (its checkpoint rows {name}#k/{found}), and this instance \
                 asks for {count}: changing the number of segments is a rebuild, never a reshuffle in place. Stop \
                 every projector instance, run `twofold rebuild {name}` (blue/green; it removes the segment rows), \
                 then start them all with --projection-segments {name}={count}"
            )));
        }
    }
    Ok(())
}
