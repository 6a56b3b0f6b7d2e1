//! The customer aggregate.
use uuid::Uuid;

use super::event::{CustomerRegistered, CustomerRenamed};
use super::validate::{self, MAX_NAME_CHARS};
use super::{DomainError, DomainEvent};

/// A customer's current state (the write model's `customer` row).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Customer {
    pub id: Uuid,
    pub name: String,
    pub email: String,
    /// Stream version: the number of events applied.
    pub version: i64,
}

impl Customer {
    /// Decides the registration of a new customer. The uniqueness of the
    /// email is checked by the store (a UNIQUE constraint), not here.
    pub fn register(id: Uuid, name: &str, email: &str) -> Result<DomainEvent, DomainError> {
        let name = validate::required_text("name", name, MAX_NAME_CHARS)?;
        let email = validate::email(email)?;
        Ok(DomainEvent::CustomerRegistered(CustomerRegistered { customer_id: id, name, email }))
    }

    pub fn rename(&self, name: &str, expected_version: Option<i64>) -> Result<DomainEvent, DomainError> {
        let name = validate::required_text("name", name, MAX_NAME_CHARS)?;
        DomainError::check_expected_version("customer", expected_version, self.version)?;
        validate::room_for_another_event("customer", self.version)?;
        Ok(DomainEvent::CustomerRenamed(CustomerRenamed {
            customer_id: self.id,
            previous_name: self.name.clone(),
            name,
        }))
    }

    /// Folds one of this customer's events into its state.
    pub fn apply(state: Option<Self>, event: &DomainEvent) -> Option<Self> {
        match (state, event) {
            (None, DomainEvent::CustomerRegistered(e)) => {
                Some(Self { id: e.customer_id, name: e.name.clone(), email: e.email.clone(), version: 1 })
            }
            (Some(mut c), DomainEvent::CustomerRenamed(e)) => {
                c.name = e.name.clone();
                c.version += 1;
                Some(c)
            }
            (state, _) => state,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn given(events: &[DomainEvent]) -> Customer {
        events.iter().fold(None, Customer::apply).expect("a registered customer")
    }

    #[test]
    fn registering_normalizes_name_and_email() {
        let id = Uuid::now_v7();
        // when
        let event = Customer::register(id, "  Ada Lovelace ", "ADA@example.com").unwrap();
        // then
        assert_eq!(
            event,
            DomainEvent::CustomerRegistered(CustomerRegistered {
                customer_id: id,
                name: "Ada Lovelace".into(),
                email: "ada@example.com".into()
            })
        );
    }

    #[test]
    fn registering_with_a_blank_name_or_bad_email_is_rejected() {
        assert!(matches!(Customer::register(Uuid::now_v7(), " ", "a@b.co"), Err(DomainError::Validation(_))));
        assert!(matches!(Customer::register(Uuid::now_v7(), "Ada", "nope"), Err(DomainError::Validation(_))));
    }

    #[test]
    fn renaming_records_the_previous_name_and_bumps_the_version() {
        // given
        let id = Uuid::now_v7();
        let customer = given(&[Customer::register(id, "Ada", "ada@example.com").unwrap()]);
        // when
        let event = customer.rename("Ada King", Some(1)).unwrap();
        // then
        assert_eq!(
            event,
            DomainEvent::CustomerRenamed(CustomerRenamed {
                customer_id: id,
                previous_name: "Ada".into(),
                name: "Ada King".into()
            })
        );
        assert_eq!(Customer::apply(Some(customer), &event).unwrap().version, 2);
    }

    #[test]
    fn renaming_with_a_stale_expected_version_is_a_conflict() {
        let customer = given(&[Customer::register(Uuid::now_v7(), "Ada", "ada@example.com").unwrap()]);
        assert!(matches!(customer.rename("Ada King", Some(7)), Err(DomainError::Conflict(_))));
    }
}
