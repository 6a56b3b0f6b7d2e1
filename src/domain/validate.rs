//! Input rules shared by the aggregates.
use super::DomainError;

pub const MAX_NAME_CHARS: usize = 200;
pub const MAX_EMAIL_CHARS: usize = 254;
pub const MAX_SKU_CHARS: usize = 64;
pub const MAX_TEXT_CHARS: usize = 500;
// Money and quantity limits, chosen so that no sum any view keeps can leave
// 64 bits in any plausible lifetime, and every per-order figure fits
// GraphQL's 32-bit `Int`:
//
// - a unit price is at most 100,000,000 cents ($1,000,000.00);
// - a line has at most 10,000 units, an order at most 100 lines;
// - an order's total is at most 1,000,000,000 cents ($10,000,000.00), so
//   `totalCents`, `unitPriceCents` and `lineTotalCents` (a line total is at
//   most its order's total) all fit in `Int` (2,147,483,647).
//
// The views add order totals up: a customer's lifetime value, a product's
// revenue, a day's gross. i64::MAX is 9,223,372,036,854,775,807 cents, so a
// sum overflows only after 9.2e9 orders at the maximum total, all on the
// same customer or product. At the measured ceiling of about 1,100
// commands/s per node, a hostile client placing nothing but $10M orders on
// one customer needs 9.2e9 / 1.1e3 s = 97 days of doing nothing else; as
// real money, 9.2e18 cents is about a thousand years of world GDP. A day's
// row is safe outright: 86,400 s × 10,000 orders/s × 1e9 = 8.6e17. Units
// sold grow by at most 1,000,000 per order: 9.2e12 orders. The projections
// still add with checked arithmetic and dead-letter an event that would
// overflow (see `projection`): these limits are a promise to clients, not
// the only line of defence.
pub const MAX_ORDER_LINES: usize = 100;
pub const MAX_QUANTITY: i32 = 10_000;
/// $1,000,000.00 per unit.
pub const MAX_PRICE_CENTS: i64 = 100_000_000;
/// $10,000,000.00 per order.
pub const MAX_ORDER_TOTAL_CENTS: i64 = 1_000_000_000;
/// The most events one aggregate may record: every version fits GraphQL's `Int`.
pub const MAX_STREAM_VERSION: i64 = i32::MAX as i64;

/// Trims and checks a required, bounded piece of text.
pub fn required_text(field: &str, value: &str, max_chars: usize) -> Result<String, DomainError> {
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return Err(DomainError::validation(format!("{field} must not be blank")));
    }
    if trimmed.chars().count() > max_chars {
        return Err(DomainError::validation(format!("{field} must be at most {max_chars} characters")));
    }
    if trimmed.chars().any(char::is_control) {
        return Err(DomainError::validation(format!("{field} must not contain control characters")));
    }
    Ok(trimmed.to_owned())
}

/// Normalizes an email (trimmed, lower-cased) and checks its shape: one `@`,
/// a non-empty local part, a domain with a dot, no spaces.
pub fn email(value: &str) -> Result<String, DomainError> {
    let email = value.trim().to_lowercase();
    let bad = || DomainError::validation(format!("'{}' is not a valid email address", value.trim()));
    if email.is_empty()
        || email.chars().count() > MAX_EMAIL_CHARS
        || email.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(bad());
    }
    let (local, domain) = email.split_once('@').ok_or_else(bad)?;
    if local.is_empty()
        || domain.contains('@')
        || !domain.contains('.')
        || domain.starts_with('.')
        || domain.ends_with('.')
    {
        return Err(bad());
    }
    Ok(email)
}

pub fn price_cents(value: i64) -> Result<i64, DomainError> {
    if value <= 0 {
        return Err(DomainError::validation(format!("priceCents must be greater than 0, got {value}")));
    }
    if value > MAX_PRICE_CENTS {
        return Err(DomainError::validation(format!(
            "priceCents must be at most {MAX_PRICE_CENTS} ($1,000,000.00), got {value}"
        )));
    }
    Ok(value)
}

/// An aggregate at [`MAX_STREAM_VERSION`] records nothing more.
pub fn room_for_another_event(what: &str, version: i64) -> Result<(), DomainError> {
    if version >= MAX_STREAM_VERSION {
        return Err(DomainError::invariant(format!(
            "this {what} has recorded the most changes it may ({MAX_STREAM_VERSION})"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_normalized_and_checked() {
        assert_eq!(email("  Ada@Example.COM ").as_deref(), Ok("ada@example.com"));
        for bad in ["", "ada", "ada@", "@example.com", "ada@example", "a b@example.com", "a@b@c.com", "ada@.com"] {
            assert!(matches!(email(bad), Err(DomainError::Validation(_))), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn blank_and_overlong_text_is_rejected() {
        assert!(required_text("name", "   ", 10).is_err());
        assert!(required_text("name", "abcdefghijk", 10).is_err());
        assert_eq!(required_text("name", "  Ada ", 10).as_deref(), Ok("Ada"));
    }

    #[test]
    fn prices_must_be_positive_and_bounded() {
        assert!(price_cents(0).is_err());
        assert!(price_cents(-5).is_err());
        assert_eq!(price_cents(1), Ok(1));
        assert_eq!(price_cents(MAX_PRICE_CENTS), Ok(MAX_PRICE_CENTS));
        assert!(price_cents(MAX_PRICE_CENTS + 1).is_err());
    }

    #[test]
    fn the_limits_keep_per_order_figures_within_graphql_int() {
        let int_max = i64::from(i32::MAX);
        assert!(MAX_PRICE_CENTS <= int_max);
        assert!(MAX_ORDER_TOTAL_CENTS <= int_max);
        // A day's row at 10,000 maximum orders a second stays within i64.
        assert!(86_400i64.checked_mul(10_000).and_then(|n| n.checked_mul(MAX_ORDER_TOTAL_CENTS)).is_some());
    }
}
