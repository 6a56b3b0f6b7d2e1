//! Subscriptions: know when a write has become visible, without polling.
use std::time::Duration;

use async_graphql::{Context, SimpleObject, Subscription, ID};
use futures_util::stream::{self, Stream};

use super::error::{coded, from_query, validation};
use super::scalars::{uuid, Token};
use crate::notice::Notices;
use crate::query::ReadModel;

/// A committed projection batch.
#[derive(SimpleObject)]
pub struct ProjectionUpdate {
    pub projection: String,
    /// The projection's checkpoint after the batch.
    pub token: Token,
    pub stream_ids: Vec<ID>,
    pub event_types: Vec<String>,
    /// Set on the progress notices of a rebuild.
    pub rebuild_percent: Option<f64>,
}

/// The answer of `writeVisible`.
#[derive(SimpleObject)]
pub struct WriteVisibility {
    pub token: Token,
    pub projections: Vec<String>,
    /// False when the wait timed out (the write is committed, only not yet projected).
    pub visible: bool,
}

pub struct SubscriptionRoot;

fn known_projections(requested: Option<Vec<String>>) -> async_graphql::Result<Vec<String>> {
    let all: Vec<String> = crate::projection::names().into_iter().map(str::to_owned).collect();
    match requested {
        None => Ok(all),
        Some(list) if list.is_empty() => Ok(all),
        Some(list) => {
            for name in &list {
                if !all.contains(name) {
                    return Err(validation(format!("unknown projection '{name}'; known: {}", all.join(", "))));
                }
            }
            Ok(list)
        }
    }
}

#[Subscription(name = "Subscription")]
impl SubscriptionRoot {
    /// One item per committed projection batch matching the filter.
    async fn projection_updated(
        &self,
        ctx: &Context<'_>,
        projections: Option<Vec<String>>,
        stream_id: Option<ID>,
    ) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<ProjectionUpdate>>> {
        let names = known_projections(projections)?;
        let stream_id = stream_id.as_ref().map(|id| uuid("streamId", id)).transpose()?;
        let mut receiver = ctx.data::<Notices>()?.subscribe();
        Ok(async_stream::stream! {
            loop {
                match receiver.recv().await {
                    Ok(u) if names.contains(&u.projection) && stream_id.is_none_or(|id| u.may_touch(&id)) => {
                        yield Ok(ProjectionUpdate {
                            projection: u.projection,
                            token: Token(u.token),
                            stream_ids: u.stream_ids.into_iter().map(|id| ID(id.to_string())).collect(),
                            event_types: u.event_types,
                            rebuild_percent: u.rebuild_percent,
                        });
                    }
                    Ok(_) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => {
                        // Bounded memory: a consumer this far behind is cut off, not buffered for.
                        yield Err(coded("SLOW_CONSUMER", format!("this subscription fell {missed} notices behind and was ended; resubscribe and re-query")));
                        break;
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                }
            }
        })
    }

    /// Exactly one item, as soon as every named projection (default: all)
    /// has reached `token` — or `visible: false` after `timeoutMs`.
    async fn write_visible(
        &self,
        ctx: &Context<'_>,
        token: Token,
        projections: Option<Vec<String>>,
        timeout_ms: Option<i32>,
    ) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<WriteVisibility>>> {
        let names = known_projections(projections)?;
        let reads = ctx.data::<ReadModel>()?.clone();
        let wait: Duration = reads.wait_for(timeout_ms).map_err(from_query)?;
        Ok(stream::once(async move {
            let refs: Vec<&str> = names.iter().map(String::as_str).collect();
            let visible = reads.wait_visible(&refs, token.0, wait).await.map_err(from_query)?;
            Ok(WriteVisibility { token, projections: names, visible })
        }))
    }
}
