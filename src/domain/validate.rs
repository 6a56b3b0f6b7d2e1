//! Input rules shared by the aggregates.
use super::DomainError;

pub const MAX_NAME_CHARS: usize = 200;
pub const MAX_EMAIL_CHARS: usize = 254;
pub const MAX_SKU_CHARS: usize = 64;
pub const MAX_TEXT_CHARS: usize = 500;
pub const MAX_ORDER_LINES: usize = 100;
pub const MAX_QUANTITY: i32 = 10_000;
/// One billion dollars: keeps every total far from `i64` overflow.
pub const MAX_PRICE_CENTS: i64 = 100_000_000_000;

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
        return Err(DomainError::validation(format!("priceCents must be at most {MAX_PRICE_CENTS}")));
    }
    Ok(value)
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
    fn prices_must_be_positive() {
        assert!(price_cents(0).is_err());
        assert!(price_cents(-5).is_err());
        assert_eq!(price_cents(1), Ok(1));
    }
}
