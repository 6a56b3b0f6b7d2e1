//! Full-text search (issue 35), part one: the search documents, kept by
//! the projections in the same transaction as their views.
//!
//! Each searchable view gets two columns the projection writes, folded to
//! ASCII words in Rust (`twofold::search`): `search_name` (the customer's
//! name, kept current on rename with one value for every row; a product's
//! title) and `search_text` (everything else that is searched). NULL means
//! "not computed yet": rows written before this release are filled by the
//! backfill (`twofold::projection::search_backfill`), in small batches,
//! after the migration, so no statement here rewrites or scans a view.
//!
//! - PostgreSQL: a `search tsvector` column, set by a trigger from the two
//!   (a generated column would rewrite the table under an exclusive lock
//!   on a live database), indexed with GIN by the next migration.
//! - SQLite: an FTS5 table per view (contentless, deletes by rowid, with
//!   prefix indexes for one to three letters, so search as you type reads
//!   one list however many words begin so), kept by triggers on the view.
use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261206_000014_search_documents"
    }
}

/// The searchable views.
pub(crate) const VIEWS: [&str; 3] = ["order_summary", "customer_view", "product_catalog"];

const POSTGRES_FUNCTION: &str = r#"CREATE OR REPLACE FUNCTION twofold_search_document() RETURNS trigger LANGUAGE plpgsql AS $body$
BEGIN
    NEW.search := to_tsvector('simple', coalesce(NEW.search_name, '') || ' ' || coalesce(NEW.search_text, ''));
    RETURN NEW;
END
$body$"#;

fn postgres(view: &str) -> Vec<String> {
    vec![
        format!("ALTER TABLE {view} ADD COLUMN search_name TEXT NULL"),
        format!("ALTER TABLE {view} ADD COLUMN search_text TEXT NULL"),
        format!("ALTER TABLE {view} ADD COLUMN search tsvector NULL"),
        format!(
            "CREATE TRIGGER {view}_search_insert BEFORE INSERT ON {view} FOR EACH ROW \
             EXECUTE FUNCTION twofold_search_document()"
        ),
        format!(
            "CREATE TRIGGER {view}_search_update BEFORE UPDATE OF search_name, search_text ON {view} FOR EACH ROW \
             WHEN (OLD.search_name IS DISTINCT FROM NEW.search_name OR OLD.search_text IS DISTINCT FROM NEW.search_text) \
             EXECUTE FUNCTION twofold_search_document()"
        ),
    ]
}

/// What SQLite's FTS5 tables hold for a row: the same words PostgreSQL's
/// trigger indexes, in the same order.
pub(crate) const SQLITE_DOCUMENT: &str = "coalesce(new.search_name, '') || ' ' || coalesce(new.search_text, '')";

fn sqlite(view: &str) -> Vec<String> {
    vec![
        format!("ALTER TABLE {view} ADD COLUMN search_name TEXT NULL"),
        format!("ALTER TABLE {view} ADD COLUMN search_text TEXT NULL"),
        format!(
            "CREATE VIRTUAL TABLE {view}_fts USING fts5(doc, content='', contentless_delete=1, prefix='1 2 3', \
             tokenize='unicode61 remove_diacritics 2')"
        ),
        format!(
            "CREATE TRIGGER {view}_fts_insert AFTER INSERT ON {view} BEGIN \
             INSERT INTO {view}_fts(rowid, doc) VALUES (new.rowid, {SQLITE_DOCUMENT}); END"
        ),
        format!(
            "CREATE TRIGGER {view}_fts_update AFTER UPDATE OF search_name, search_text ON {view} \
             WHEN old.search_name IS NOT new.search_name OR old.search_text IS NOT new.search_text BEGIN \
             DELETE FROM {view}_fts WHERE rowid = old.rowid; \
             INSERT INTO {view}_fts(rowid, doc) VALUES (new.rowid, {SQLITE_DOCUMENT}); END"
        ),
        format!(
            "CREATE TRIGGER {view}_fts_delete AFTER DELETE ON {view} BEGIN \
             DELETE FROM {view}_fts WHERE rowid = old.rowid; END"
        ),
    ]
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let conn = manager.get_connection();
        let statements: Vec<String> = match manager.get_database_backend() {
            sea_orm::DbBackend::Postgres => {
                std::iter::once(POSTGRES_FUNCTION.to_owned()).chain(VIEWS.iter().flat_map(|v| postgres(v))).collect()
            }
            sea_orm::DbBackend::Sqlite => VIEWS.iter().flat_map(|v| sqlite(v)).collect(),
            other => return Err(DbErr::Migration(format!("unsupported database backend {other:?}"))),
        };
        for statement in statements {
            conn.execute_unprepared(&statement).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let conn = manager.get_connection();
        let postgres = manager.get_database_backend() == sea_orm::DbBackend::Postgres;
        for view in VIEWS {
            if postgres {
                for trigger in ["search_insert", "search_update"] {
                    conn.execute_unprepared(&format!("DROP TRIGGER IF EXISTS {view}_{trigger} ON {view}")).await?;
                }
                conn.execute_unprepared(&format!("ALTER TABLE {view} DROP COLUMN search")).await?;
            } else {
                for trigger in ["fts_insert", "fts_update", "fts_delete"] {
                    conn.execute_unprepared(&format!("DROP TRIGGER IF EXISTS {view}_{trigger}")).await?;
                }
                conn.execute_unprepared(&format!("DROP TABLE IF EXISTS {view}_fts")).await?;
            }
            conn.execute_unprepared(&format!("ALTER TABLE {view} DROP COLUMN search_text")).await?;
            conn.execute_unprepared(&format!("ALTER TABLE {view} DROP COLUMN search_name")).await?;
        }
        if postgres {
            conn.execute_unprepared("DROP FUNCTION IF EXISTS twofold_search_document()").await?;
        }
        Ok(())
    }
}
