//! Single-key reads that need not wait: `order(id:)`, `customer(id:)` and
//! `orderActivity(orderId:)` read the stored row when the view holds the
//! token, fold the stream's events up to it when the view is behind (see
//! [`crate::lazy`]), fold up to the log's head when the view is lazy, and
//! wait like any other field only when a fold gives up (too far behind, an
//! event writer below the token still open, an event that will not fold).
//! Each says how it was served ([`Served`]).
use uuid::Uuid;

use crate::catalog::View;
use crate::lazy::{FoldError, Folder, Upto};

pub use super::Folding;
use crate::token::LogPosition;

use super::{ActivityRow, CustomerRow, OrderSummaryRow, QueryError, ReadModel, Scope};

/// How a read was served (the `served` entry of a response's extensions).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Served {
    /// From the stored rows: the view already held the token.
    Stored,
    /// From the stored row and the stream's events folded onto it.
    Folded,
    /// From the stored rows, after waiting for the view to reach the token.
    Waited,
}

impl Served {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stored => "stored",
            Self::Folded => "folded",
            Self::Waited => "waited",
        }
    }
}

impl ReadModel {
    /// Reads fold through `folding` (lazy views; reads at the token).
    pub fn with_folding(mut self, folding: Folding) -> Self {
        self.folding = Some(folding);
        self
    }

    /// The trace context of the command whose write `token` names, when it
    /// was traced (a `writeVisible` answer links to it).
    pub async fn traceparent_of(&self, token: LogPosition) -> Option<String> {
        let folding = self.folding.as_ref()?;
        folding.folder.traceparent_at(token).await.ok().flatten()
    }

    /// Whether `view` is lazy here.
    pub fn is_lazy(&self, view: View) -> bool {
        self.folding.as_ref().is_some_and(|f| f.lazy.contains(&view))
    }

    /// How a single-key read of `view` at `token` goes: a lazy view folds
    /// to the head; with a token, a view that holds it is read (through
    /// the replicas' own wait), one that never will without an operator
    /// answers why, and one that is merely behind folds to the token.
    async fn plan(&self, view: View, token: Option<LogPosition>) -> Result<Plan<'_>, QueryError> {
        let folder = self.folding.as_ref().map(|f| &f.folder);
        if let Some(folder) = folder.filter(|_| self.is_lazy(view)) {
            return Ok(Plan::Fold(Upto::Head, folder));
        }
        let Some(token) = token else { return Ok(Plan::Stored) };
        match (self.visibility(&[view.name()], token).await?, folder) {
            (super::consistency::Visibility::Pending, Some(folder)) => Ok(Plan::Fold(Upto::Token(token), folder)),
            // Visible (and the replicas' wait), never without an operator (its
            // error), or no folder: as any other read.
            (super::consistency::Visibility::Visible, _) => {
                self.ensure_visible(&[view.name()], Some(token)).await?;
                Ok(Plan::Stored)
            }
            _ => {
                self.ensure_visible(&[view.name()], Some(token)).await?;
                Ok(Plan::Waited)
            }
        }
    }

    /// A fold that gave up: the read waits for the view instead.
    async fn wait_instead(
        &self,
        view: View,
        token: Option<LogPosition>,
        why: &FoldError,
    ) -> Result<Served, QueryError> {
        tracing::debug!(view = view.name(), reason = %why, "a read at the token waits instead of folding");
        if let FoldError::Database(e) = why {
            return Err(QueryError::from(e.clone()));
        }
        self.ensure_visible(&[view.name()], token).await?;
        Ok(Served::Waited)
    }

    /// One order at the token (see the module docs).
    pub async fn order_served(
        &self,
        id: Uuid,
        scope: Scope,
        token: Option<LogPosition>,
    ) -> Result<(Option<OrderSummaryRow>, Served), QueryError> {
        let view = View::OrderSummary;
        let served = match self.plan(view, token).await? {
            Plan::Fold(upto, folder) => match folder.order(id, upto).await {
                Ok(folded) => {
                    let row = folded.value.map(OrderSummaryRow::from).filter(|r| scope.includes(r.customer_id));
                    return Ok((row, Served::Folded));
                }
                Err(why) => self.wait_instead(view, token, &why).await?,
            },
            Plan::Stored => Served::Stored,
            Plan::Waited => Served::Waited,
        };
        Ok((self.order(id, scope).await?, served))
    }

    /// An order's timeline at the token (see the module docs).
    pub async fn activity_served(
        &self,
        order_id: Uuid,
        scope: Scope,
        token: Option<LogPosition>,
    ) -> Result<(Vec<ActivityRow>, Served), QueryError> {
        let view = View::OrderActivity;
        let served = match self.plan(view, token).await? {
            Plan::Fold(upto, folder) => match folder.activity(order_id, upto).await {
                Ok(folded) => {
                    let rows = folded
                        .value
                        .into_iter()
                        .map(ActivityRow::from)
                        .filter(|r| r.customer_id.is_some_and(|c| scope.includes(c)))
                        .collect();
                    return Ok((rows, Served::Folded));
                }
                Err(why) => self.wait_instead(view, token, &why).await?,
            },
            Plan::Stored => Served::Stored,
            Plan::Waited => Served::Waited,
        };
        Ok((self.order_activity(order_id, scope).await?, served))
    }

    /// A customer's dashboard at the token (see the module docs).
    pub async fn customer_served(
        &self,
        id: Uuid,
        scope: Scope,
        token: Option<LogPosition>,
    ) -> Result<(Option<CustomerRow>, Served), QueryError> {
        let view = View::CustomerView;
        let served = match (self.plan(view, token).await?, token) {
            (Plan::Fold(_, folder), Some(token)) => {
                let checkpoint = self.notices.known(view.name());
                match folder.customer(id, token, checkpoint).await {
                    Ok(folded) => {
                        let row = folded.value.map(CustomerRow::from).filter(|r| scope.includes(r.customer_id));
                        return Ok((row, Served::Folded));
                    }
                    Err(why) => self.wait_instead(view, Some(token), &why).await?,
                }
            }
            (Plan::Waited, _) => Served::Waited,
            _ => Served::Stored,
        };
        Ok((self.customer(id, scope).await?, served))
    }
}

/// How a single-key read goes (see [`ReadModel::plan`]).
enum Plan<'a> {
    Fold(Upto, &'a Folder),
    Stored,
    Waited,
}
