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

/// Why a write is not visible.
#[derive(async_graphql::Enum, Copy, Clone, Debug, PartialEq, Eq)]
pub enum NotVisibleReason {
    /// The wait ended first; the write is committed and will be projected.
    TimedOut,
    /// A projection it waits on is stopped by a poison event: an operator must act.
    ProjectionStopped,
    /// A projection could not apply the write's event and dead-lettered it.
    DeadLettered,
    /// The wait ended behind a stalled projection (behind the log with no
    /// progress for `--stall-after-ms`); `blockedBy` names it and
    /// `waitingOn` what it waits on. It may still clear.
    Stalled,
}

/// The answer of `writeVisible`.
#[derive(SimpleObject)]
pub struct WriteVisibility {
    pub token: Token,
    pub projections: Vec<String>,
    /// True once every named projection shows the write.
    pub visible: bool,
    /// Why not, when `visible` is false.
    pub reason: Option<NotVisibleReason>,
    /// The projection that stopped, dead-lettered or (`STALLED`) holds
    /// back the write, for those reasons.
    pub blocked_by: Option<String>,
    /// For `STALLED`: what the projection waits on.
    pub waiting_on: Option<super::types::ProjectionWait>,
}

pub struct SubscriptionRoot;

fn known_projections(requested: Option<Vec<String>>) -> async_graphql::Result<Vec<String>> {
    let all: Vec<String> = crate::catalog::View::names().into_iter().map(str::to_owned).collect();
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
    /// A customer sees only its own streams and the catalog's: other
    /// stream ids are left out, and a batch with none left is not sent.
    ///
    /// With `includeCurrent: true`, first one item per named projection
    /// with its current checkpoint (no stream ids, no event types): once
    /// those arrive the subscription is live, and every batch committed
    /// after them will be sent. Subscribe this way before you send the
    /// command you want to watch.
    async fn projection_updated(
        &self,
        ctx: &Context<'_>,
        projections: Option<Vec<String>>,
        stream_id: Option<ID>,
        #[graphql(default = false)] include_current: bool,
    ) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<ProjectionUpdate>>> {
        let names = known_projections(projections)?;
        let stream_id = stream_id.as_ref().map(|id| uuid("streamId", id)).transpose()?;
        let actor = super::access::actor(ctx);
        actor.require_signed_in().map_err(super::error::from_domain)?;
        let customer = actor.own_customer();
        let notices = ctx.data::<Notices>()?;
        // On an instance served by replicas, a batch is sent once they hold it.
        let reads = ctx.data::<ReadModel>().ok().cloned();
        // Subscribed before the current checkpoints are read: nothing
        // committed after them can be missed.
        let mut receiver = notices.subscribe();
        let current: Vec<ProjectionUpdate> = if include_current {
            // The durable checkpoints (this also brings the in-process
            // notices up to them, when no batch has been announced yet).
            ctx.data::<ReadModel>()?.durable().await.map_err(from_query)?;
            names
                .iter()
                .map(|name| ProjectionUpdate {
                    projection: name.clone(),
                    token: Token(notices.known(name)),
                    stream_ids: Vec::new(),
                    event_types: Vec::new(),
                    rebuild_percent: None,
                })
                .collect()
        } else {
            Vec::new()
        };
        Ok(async_stream::stream! {
            for update in current {
                yield Ok(update);
            }
            loop {
                match receiver.recv().await {
                    Ok(u) if names.contains(&u.projection) && stream_id.is_none_or(|id| u.may_touch(&id)) => {
                        let stream_ids = match customer {
                            None => u.stream_ids.clone(),
                            Some(own) => {
                                let visible = u.visible_to(own);
                                // Nothing of its own in a complete batch: not sent
                                // at all. An incomplete one may hold the stream it
                                // asked for: sent, with no ids it may not see.
                                let keep = !visible.is_empty() || (!u.complete && stream_id.is_some());
                                if !keep || u.rebuild_percent.is_some() {
                                    continue;
                                }
                                visible
                            }
                        };
                        if let (Some(reads), None) = (&reads, u.rebuild_percent) {
                            reads.until_served(&u.projection, u.token).await;
                        }
                        yield Ok(ProjectionUpdate {
                            projection: u.projection,
                            token: Token(u.token),
                            stream_ids: stream_ids.into_iter().map(|id| ID(id.to_string())).collect(),
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
        // The answer's span (traces only): a child of the operation's,
        // linked to the command that wrote the token.
        let span = tracing::info_span!(
            target: crate::telemetry::TARGET,
            "writeVisible",
            otel.name = "writeVisible push",
            otel.kind = "producer",
            twofold.token = %token.0,
            twofold.visible = tracing::field::Empty,
        );
        let answer = async move {
            if !tracing::Span::current().is_disabled() {
                if let Some(parent) = reads.traceparent_of(token.0).await {
                    crate::telemetry::link(&tracing::Span::current(), [parent.as_str()]);
                }
            }
            let refs: Vec<&str> = names.iter().map(String::as_str).collect();
            use crate::query::consistency::{NotProjected, Visibility};
            let (visible, reason, blocked_by, waiting_on) = match reads
                .wait_served(&refs, token.0, wait)
                .await
                .map_err(from_query)?
            {
                Visibility::Visible => (true, None, None, None),
                Visibility::Pending => (false, Some(NotVisibleReason::TimedOut), None, None),
                Visibility::Stalled { projection, wait } => {
                    (false, Some(NotVisibleReason::Stalled), Some(projection), Some(super::types::ProjectionWait(wait)))
                }
                Visibility::NotProjected(NotProjected::ProjectionStopped(p)) => {
                    (false, Some(NotVisibleReason::ProjectionStopped), Some(p), None)
                }
                Visibility::NotProjected(NotProjected::DeadLettered(p)) => {
                    (false, Some(NotVisibleReason::DeadLettered), Some(p), None)
                }
            };
            tracing::Span::current().record("twofold.visible", visible);
            Ok(WriteVisibility { token, projections: names, visible, reason, blocked_by, waiting_on })
        };
        Ok(stream::once(tracing::Instrument::instrument(answer, span)))
    }
}
