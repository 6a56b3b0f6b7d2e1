//! Runs a list's statements against the read views: the page (choosing,
//! on SQLite, how a search's matches are found), each owner's page, and
//! the counts.
use sea_orm::{ConnectionTrait, DbBackend};
use uuid::Uuid;

use super::{ListQuery, Matching, FEW_MATCHES};
use crate::query::QueryError;

/// Runs a list's page and count statements.
impl crate::query::ReadModel {
    /// The rows of one page (`first + 1` at most) of `list`, as raw rows.
    pub(crate) async fn page_rows(
        &self,
        list: &ListQuery,
        select: &str,
    ) -> Result<Vec<sea_orm::QueryResult>, QueryError> {
        list.check()?;
        let mut list = list.clone();
        let backend = self.read_backend();
        list.matching = match (&list.search, backend) {
            (_, DbBackend::Postgres) => Matching::Postgres,
            (Some(_), _) if list.ranks_search_alone() => Matching::Recent,
            (Some(query), _) => {
                let probe = self.conn().query_one_raw(list.probe_statement(query)).await?;
                let matches = probe.map(|r| r.try_get::<i64>("", "n")).transpose()?.unwrap_or(0);
                if matches > FEW_MATCHES {
                    Matching::Many
                } else {
                    Matching::Few
                }
            }
            (None, _) => Matching::Few,
        };
        let statement = list.page_statement(backend, select);
        Ok(self.conn().query_all_raw(statement).await?)
    }

    /// Each owner's page of `list` (at most `first + 1` rows each, in
    /// order), in one statement; `column` names the owner.
    pub(crate) async fn partition_rows(
        &self,
        list: &ListQuery,
        select: &str,
        column: &str,
        owners: &[Uuid],
    ) -> Result<Vec<sea_orm::QueryResult>, QueryError> {
        if owners.is_empty() {
            return Ok(Vec::new());
        }
        let statement = list.partition_statement(self.read_backend(), select, column, owners);
        Ok(self.conn().query_all_raw(statement).await?)
    }

    /// How many rows each owner has in `list`, in one statement.
    pub(crate) async fn partition_counts(
        &self,
        list: &ListQuery,
        column: &str,
        owners: &[Uuid],
    ) -> Result<std::collections::HashMap<Uuid, i64>, QueryError> {
        if owners.is_empty() {
            return Ok(Default::default());
        }
        let statement = list.partition_count_statement(self.read_backend(), column, owners);
        let rows = self.conn().query_all_raw(statement).await?;
        let mut counts: std::collections::HashMap<Uuid, i64> = owners.iter().map(|id| (*id, 0)).collect();
        for row in rows {
            counts.insert(row.try_get("", "k")?, row.try_get("", "n")?);
        }
        Ok(counts)
    }

    /// How many rows `list` holds in all.
    pub async fn count(&self, list: &ListQuery) -> Result<i64, QueryError> {
        list.check()?;
        let statement = list.count_statement(self.read_backend());
        let row = self.conn().query_one_raw(statement).await?;
        Ok(row.map(|r| r.try_get::<i64>("", "n")).transpose()?.unwrap_or(0))
    }
}
