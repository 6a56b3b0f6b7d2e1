//! Custom scalars.
use async_graphql::{InputValueError, InputValueResult, Scalar, ScalarType, Value, ID};
use uuid::Uuid;

use crate::token::LogPosition;

/// An opaque consistency token: the position in the event log of a
/// command's last event. Pass it back as `consistentWith` or to
/// `writeVisible` to read your own write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Token(pub LogPosition);

#[Scalar(name = "Token")]
impl ScalarType for Token {
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

/// Parses a GraphQL `ID` as a UUID, naming the argument in the error.
pub fn uuid(field: &str, id: &ID) -> async_graphql::Result<Uuid> {
    Uuid::parse_str(id.as_str()).map_err(|_| {
        super::error::validation(format!(
            "{field}: '{}' is not a valid id (a UUID)",
            id.as_str().chars().take(64).collect::<String>()
        ))
    })
}
