//! The product aggregate.
use uuid::Uuid;

use super::event::{ProductAdded, ProductPriceChanged};
use super::validate::{self, MAX_SKU_CHARS, MAX_TEXT_CHARS};
use super::{DomainError, DomainEvent};

/// A product's current state (the write model's `product` row).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Product {
    pub id: Uuid,
    pub sku: String,
    pub title: String,
    pub price_cents: i64,
    pub version: i64,
}

impl Product {
    /// Decides the addition of a product. The uniqueness of the sku is
    /// checked by the store (a UNIQUE constraint).
    pub fn add(id: Uuid, sku: &str, title: &str, price_cents: i64) -> Result<DomainEvent, DomainError> {
        let sku = validate::required_text("sku", sku, MAX_SKU_CHARS)?;
        if sku.chars().any(char::is_whitespace) {
            return Err(DomainError::validation("sku must not contain spaces"));
        }
        let title = validate::required_text("title", title, MAX_TEXT_CHARS)?;
        let price_cents = validate::price_cents(price_cents)?;
        Ok(DomainEvent::ProductAdded(ProductAdded { product_id: id, sku, title, price_cents }))
    }

    pub fn change_price(&self, price_cents: i64, expected_version: Option<i64>) -> Result<DomainEvent, DomainError> {
        let price_cents = validate::price_cents(price_cents)?;
        DomainError::check_expected_version("product", expected_version, self.version)?;
        validate::room_for_another_event("product", self.version)?;
        Ok(DomainEvent::ProductPriceChanged(ProductPriceChanged {
            product_id: self.id,
            previous_price_cents: self.price_cents,
            price_cents,
        }))
    }

    pub fn apply(state: Option<Self>, event: &DomainEvent) -> Option<Self> {
        match (state, event) {
            (None, DomainEvent::ProductAdded(e)) => Some(Self {
                id: e.product_id,
                sku: e.sku.clone(),
                title: e.title.clone(),
                price_cents: e.price_cents,
                version: 1,
            }),
            (Some(mut p), DomainEvent::ProductPriceChanged(e)) => {
                p.price_cents = e.price_cents;
                p.version += 1;
                Some(p)
            }
            (state, _) => state,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adding_a_product_with_a_non_positive_price_is_rejected() {
        for price in [0, -1] {
            assert!(matches!(Product::add(Uuid::now_v7(), "SKU-1", "Tea", price), Err(DomainError::Validation(_))));
        }
    }

    #[test]
    fn changing_the_price_records_the_previous_price() {
        // given
        let id = Uuid::now_v7();
        let product = Product::apply(None, &Product::add(id, "SKU-1", "Tea", 450).unwrap()).unwrap();
        // when
        let event = product.change_price(500, Some(1)).unwrap();
        // then
        assert_eq!(
            event,
            DomainEvent::ProductPriceChanged(ProductPriceChanged {
                product_id: id,
                previous_price_cents: 450,
                price_cents: 500
            })
        );
        let product = Product::apply(Some(product), &event).unwrap();
        assert_eq!((product.price_cents, product.version), (500, 2));
    }

    #[test]
    fn changing_the_price_with_a_stale_version_is_a_conflict() {
        let product = Product::apply(None, &Product::add(Uuid::now_v7(), "SKU-1", "Tea", 450).unwrap()).unwrap();
        assert!(matches!(product.change_price(500, Some(3)), Err(DomainError::Conflict(_))));
    }
}
