//! Custom scalars.
use async_graphql::{InputValueError, InputValueResult, Scalar, ScalarType, Value, ID};
use uuid::Uuid;

use crate::token::LogPosition;

/// An opaque consistency token: the position in the event log of a
/// command's last event. Pass it back as `consistentWith` or to
/// `writeVisible` to read your own write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Token(pub LogPosition);

/// An opaque consistency token: the position in the event log of a
/// command's last event. Pass it back as `consistentWith` or to
/// `writeVisible` to read your own write.
#[Scalar(name = "Token")]
impl ScalarType for Token {
    /// Checked during validation, so a bad token is a request error.
    fn is_valid(value: &Value) -> bool {
        matches!(value, Value::String(s) if s.parse::<LogPosition>().is_ok())
    }

    fn parse(value: Value) -> InputValueResult<Self> {
        match &value {
            Value::String(s) => s.parse::<LogPosition>().map(Token).map_err(|e| InputValueError::custom(e.to_string())),
            _ => Err(InputValueError::custom("a token is a string, exactly as a mutation returned it")),
        }
    }

    fn to_value(&self) -> Value {
        Value::String(self.0.to_string())
    }
}

/// A 64-bit integer carried as a string of decimal digits, e.g.
/// `"6442450944"`. GraphQL's `Int` is 32-bit and a JSON number loses
/// precision past 2^53 in JavaScript, so totals that accumulate over many
/// events (lifetime value, revenue, daily sums, counters) use this scalar:
/// exact in every client. Parse it with `BigInt(value)` in JavaScript.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BigInt(pub i64);

/// A 64-bit integer as a string of decimal digits, e.g. "6442450944": exact
/// in every client, unlike a JSON number past 2^53. Totals that accumulate
/// over many events use it; parse it with `BigInt(value)` in JavaScript.
#[Scalar(name = "BigInt")]
impl ScalarType for BigInt {
    fn is_valid(value: &Value) -> bool {
        match value {
            Value::String(s) => s.trim().parse::<i64>().is_ok(),
            Value::Number(n) => n.as_i64().is_some(),
            _ => false,
        }
    }

    fn parse(value: Value) -> InputValueResult<Self> {
        match &value {
            Value::String(s) => s
                .trim()
                .parse::<i64>()
                .map(BigInt)
                .map_err(|_| InputValueError::custom("a BigInt is a string of decimal digits, e.g. \"6442450944\"")),
            Value::Number(n) => {
                n.as_i64().map(BigInt).ok_or_else(|| InputValueError::custom("a BigInt must be a whole number"))
            }
            _ => Err(InputValueError::expected_type(value)),
        }
    }

    fn to_value(&self) -> Value {
        Value::String(self.0.to_string())
    }
}

/// A stored value that the domain bounds to GraphQL's 32-bit `Int`. A value
/// outside it means the bound was broken: an internal error, never an
/// out-of-range `Int` on the wire.
pub fn int(what: &str, value: i64) -> async_graphql::Result<i32> {
    i32::try_from(value)
        .map_err(|_| super::error::internal_error_of(&format!("{what} = {value} does not fit GraphQL's Int")))
}

/// Parses a GraphQL `ID` as a UUID, naming the argument in the error.
pub fn uuid(field: &str, id: &ID) -> async_graphql::Result<Uuid> {
    Uuid::parse_str(id.as_str()).map_err(|_| {
        super::error::validation(format!(
            "{field}: '{}' is not a valid id (a UUID)",
            id.as_str().chars().take(64).collect::<String>()
        ))
    })
}

/// The ids of one input, parsed together so that every malformed one is
/// reported at once, each with its path (`extensions.invalid`), rather
/// than only the first.
#[derive(Default)]
pub struct Ids {
    invalid: Vec<(String, String)>,
}

impl Ids {
    /// The UUID of `id`; a malformed one is noted (and stands in as nil
    /// until [`Ids::check`] refuses the input).
    pub fn parse(&mut self, path: &str, id: &ID) -> Uuid {
        Uuid::parse_str(id.as_str()).unwrap_or_else(|_| {
            let shown: String = id.as_str().chars().take(64).collect();
            self.invalid.push((path.to_owned(), format!("{path}: '{shown}' is not a valid id (a UUID)")));
            Uuid::nil()
        })
    }

    /// VALIDATION naming every malformed id, if there was one.
    pub fn check(self) -> async_graphql::Result<()> {
        use async_graphql::ErrorExtensions;
        if self.invalid.is_empty() {
            return Ok(());
        }
        let message = self.invalid.iter().map(|(_, m)| m.as_str()).collect::<Vec<_>>().join("; ");
        let list: Vec<Value> = self
            .invalid
            .into_iter()
            .map(|(path, message)| {
                Value::from_json(serde_json::json!({ "path": path, "message": message })).unwrap_or(Value::Null)
            })
            .collect();
        Err(super::error::validation(message).extend_with(move |_, e| e.set("invalid", Value::List(list.clone()))))
    }
}
