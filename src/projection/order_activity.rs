//! `order_activity`: an order's timeline, one human-readable row per order
//! event, keyed by the event's log position (so a replay inserts nothing).
//! A batch is written in one statement through the fold pipeline
//! ([`super::fold`]).
use sea_orm::DatabaseTransaction;

use entity::read::order_activity::Model as Row;

use super::apply::{ApplyContext, ApplyError, Projection};
use super::fold::{Column, Kind, Table};
use crate::domain::event::RecordedEvent;
use crate::domain::DomainEvent;

pub struct OrderActivity;

pub const NAME: &str = crate::catalog::View::OrderActivity.name();

/// Cents as a dollar amount, e.g. `12.05`.
pub fn money(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    format!("{sign}{}.{:02}", cents.abs() / 100, cents.abs() % 100)
}

/// The sentence shown in the timeline, or `None` for non-order events.
pub fn describe(event: &DomainEvent) -> Option<String> {
    Some(match event {
        DomainEvent::OrderPlaced(p) => {
            let units: i64 = p.lines.iter().map(|l| i64::from(l.quantity)).sum();
            format!(
                "Order placed by {} for {} ({} line{}, {} unit{})",
                p.customer_name,
                money(p.total_cents),
                p.lines.len(),
                if p.lines.len() == 1 { "" } else { "s" },
                units,
                if units == 1 { "" } else { "s" }
            )
        }
        DomainEvent::OrderCancelled(c) => match &c.reason {
            Some(reason) => format!("Order cancelled ({}): {reason}", money(c.total_cents)),
            None => format!("Order cancelled ({})", money(c.total_cents)),
        },
        DomainEvent::OrderShipped(s) => {
            format!("Order shipped with {}, tracking number {}", s.carrier, s.tracking_number)
        }
        _ => return None,
    })
}

/// Every column of `order_activity`, in the entity's order (a test holds
/// it equal to the entity's).
pub(super) const TABLE: Table<Row> = Table {
    name: NAME,
    key: "position",
    key_kind: Kind::BigInt,
    columns: &[
        Column { name: "position", kind: Kind::BigInt, value: |r| r.position.into() },
        Column { name: "tx_id", kind: Kind::BigInt, value: |r| r.tx_id.into() },
        Column { name: "order_id", kind: Kind::Uuid, value: |r| r.order_id.into() },
        Column { name: "stream_version", kind: Kind::BigInt, value: |r| r.stream_version.into() },
        Column { name: "event_type", kind: Kind::Text, value: |r| r.event_type.clone().into() },
        Column { name: "description", kind: Kind::Text, value: |r| r.description.clone().into() },
        Column { name: "occurred_at", kind: Kind::Time, value: |r| r.occurred_at.into() },
        Column { name: "customer_id", kind: Kind::OptUuid, value: |r| r.customer_id.into() },
        Column { name: "actor_sub", kind: Kind::OptText, value: |r| r.actor_sub.clone().into() },
        Column { name: "actor_role", kind: Kind::OptText, value: |r| r.actor_role.clone().into() },
        Column { name: "correlation_id", kind: Kind::OptText, value: |r| r.correlation_id.clone().into() },
        Column { name: "causation_id", kind: Kind::OptText, value: |r| r.causation_id.clone().into() },
    ],
};

/// The timeline row of one order event (`None` for other events): this
/// view's whole fold, pure, so a row is the same however it is computed.
pub fn row_of(e: &RecordedEvent) -> Option<Row> {
    Some(Row {
        position: e.position,
        tx_id: e.tx_id,
        order_id: e.stream_id,
        stream_version: e.stream_version,
        event_type: e.event.event_type().to_owned(),
        description: describe(&e.event)?,
        occurred_at: e.recorded_at,
        customer_id: e.event.owner(),
        actor_sub: e.actor.as_ref().map(|a| a.sub.clone()),
        actor_role: e.actor.as_ref().map(|a| a.role.as_str().to_owned()),
        correlation_id: e.meta.correlation_id.clone(),
        causation_id: e.meta.causation_id.clone(),
    })
}

#[async_trait::async_trait]
impl Projection for OrderActivity {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn apply(
        &self,
        txn: &DatabaseTransaction,
        events: &[RecordedEvent],
        _ctx: ApplyContext,
    ) -> Result<(), ApplyError> {
        let rows: Vec<Row> = events.iter().filter_map(row_of).collect();
        TABLE.write(txn, &rows.iter().collect::<Vec<_>>(), "ON CONFLICT (position) DO NOTHING").await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use sea_orm::{IdenStatic, Iterable};

    #[test]
    fn the_column_list_is_the_entitys() {
        let entity: Vec<&str> = entity::read::order_activity::Column::iter().map(|c| c.as_str()).collect();
        assert_eq!(super::TABLE.column_names(), entity);
    }

    #[test]
    fn money_is_shown_in_dollars_and_cents() {
        assert_eq!(super::money(1205), "12.05");
        assert_eq!(super::money(7), "0.07");
        assert_eq!(super::money(-250), "-2.50");
    }
}
