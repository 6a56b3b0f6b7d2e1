//! `order_activity`: an order's timeline, one human-readable row per order
//! event, keyed by the event's log position (so a replay inserts nothing).
//! A batch is written with multi-row inserts.
use sea_orm::{DatabaseTransaction, Value};

use super::apply::{ApplyContext, ApplyError, Projection};
use super::sql::insert_rows;
use crate::domain::event::RecordedEvent;
use crate::domain::DomainEvent;

pub struct OrderActivity;

pub const NAME: &str = crate::catalog::View::OrderActivity.name();

const ROWS_PER_STATEMENT: usize = 1000;

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
        let rows: Vec<Vec<Value>> = events
            .iter()
            .filter_map(|e| {
                let description = describe(&e.event)?;
                Some(vec![
                    e.position.into(),
                    e.tx_id.into(),
                    e.stream_id.into(),
                    e.stream_version.into(),
                    e.event.event_type().into(),
                    description.into(),
                    e.recorded_at.into(),
                    e.event.owner().into(),
                    e.actor.as_ref().map(|a| a.sub.clone()).into(),
                    e.actor.as_ref().map(|a| a.role.as_str().to_owned()).into(),
                ])
            })
            .collect();
        let columns = [
            "position",
            "tx_id",
            "order_id",
            "stream_version",
            "event_type",
            "description",
            "occurred_at",
            "customer_id",
            "actor_sub",
            "actor_role",
        ];
        insert_rows(txn, "order_activity", &columns, rows, "ON CONFLICT (position) DO NOTHING", ROWS_PER_STATEMENT)
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn money_is_shown_in_dollars_and_cents() {
        assert_eq!(super::money(1205), "12.05");
        assert_eq!(super::money(7), "0.07");
        assert_eq!(super::money(-250), "-2.50");
    }
}
