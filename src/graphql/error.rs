//! Error codes at the API boundary: every error a client sees carries
//! `extensions.code` from this closed set and a message written for a person.
//! Internal causes are logged, never shown.
use async_graphql::{Error, ErrorExtensions, ServerError};

use crate::command::CommandError;
use crate::domain::DomainError;
use crate::failure::DbError;
use crate::query::QueryError;

pub const VALIDATION: &str = "VALIDATION";
pub const NOT_FOUND: &str = "NOT_FOUND";
pub const INVARIANT_VIOLATION: &str = "INVARIANT_VIOLATION";
pub const CONFLICT: &str = "CONFLICT";
pub const NOT_VISIBLE_YET: &str = "NOT_VISIBLE_YET";
/// The write will never become visible without an operator (see `extensions.reason`).
pub const NOT_PROJECTED: &str = "NOT_PROJECTED";
/// No valid credentials where they are needed (over HTTP with an invalid token: 401).
pub const UNAUTHENTICATED: &str = "UNAUTHENTICATED";
pub const FORBIDDEN: &str = "FORBIDDEN";
pub const INTERNAL: &str = "INTERNAL";
/// A `documentId` or APQ hash the server does not know (APQ clients then send the text).
pub const PERSISTED_QUERY_NOT_FOUND: &str = "PERSISTED_QUERY_NOT_FOUND";
/// `--only-trusted`: a document that is not in the manifest.
pub const PERSISTED_QUERY_NOT_ALLOWED: &str = "PERSISTED_QUERY_NOT_ALLOWED";
/// The service cannot serve this now (a database is unreachable, or too
/// busy to hand out a connection in time); retry after a moment.
pub const UNAVAILABLE: &str = "UNAVAILABLE";

pub fn coded(code: &'static str, message: impl Into<String>) -> Error {
    Error::new(message).extend_with(|_, e| e.set("code", code))
}

pub fn validation(message: impl Into<String>) -> Error {
    coded(VALIDATION, message)
}

/// An internal error for the client, its cause logged with an incident id.
pub fn internal_error_of(detail: &dyn std::fmt::Display) -> Error {
    internal(detail)
}

fn internal(detail: &dyn std::fmt::Display) -> Error {
    let incident = uuid::Uuid::new_v4();
    tracing::error!(%incident, error = %detail, "internal error");
    coded(INTERNAL, format!("internal error (incident {incident}); it has been logged"))
}

/// An internal error as a JSON GraphQL error (for transports that build
/// their messages themselves); the cause is logged with an incident id.
pub fn internal_error(detail: &dyn std::fmt::Display) -> serde_json::Value {
    let incident = uuid::Uuid::new_v4();
    tracing::error!(%incident, error = %detail, "internal error");
    serde_json::json!({ "message": format!("internal error (incident {incident}); it has been logged"), "extensions": { "code": INTERNAL } })
}

/// The database could not serve: the client retries in a moment (HTTP 503).
pub fn unavailable_error(detail: &dyn std::fmt::Display) -> Error {
    crate::metrics::shed(detail);
    coded(UNAVAILABLE, "the service is overloaded or its database is unreachable; retry in a moment")
}

/// A request-level error (about the request's extensions, its time, …):
/// it has no place in the document, so no `locations`. async-graphql's
/// `Error::into_server_error` always gives one, and callers without a
/// place used to pass `Pos::default()`, which the spec cannot have (line
/// and column count from 1).
pub fn request_level(error: Error) -> ServerError {
    let mut server_error = ServerError::new(error.message, None);
    server_error.extensions = error.extensions;
    server_error
}

/// What every transport does to a response's errors before they go out:
/// each gets a code ([`label_codeless`]), and no location that is not a
/// place in the document (see [`drop_placeless_locations`]).
pub fn for_client(errors: &mut [ServerError], validated: bool) {
    label_codeless(errors, validated);
    drop_placeless_locations(errors);
}

/// Drops every location with a 0 line or column. GraphQL counts both from
/// 1; a 0 is async-graphql's `Pos::default()`, which it (and older code of
/// ours) uses where an error has no place in the document, e.g. for an
/// argument left out. Such an error has no `locations` at all.
pub fn drop_placeless_locations(errors: &mut [ServerError]) {
    for e in errors {
        e.locations.retain(|pos| pos.line >= 1 && pos.column >= 1);
    }
}

/// Gives every error without a code one. Before validation has passed,
/// async-graphql's own errors are about the request (it does not parse,
/// does not validate, a value is not of its type): `VALIDATION`. After it,
/// every error we raise carries its code, and input values were checked by
/// validation (custom scalars included, see `scalars`), so a codeless error
/// is unexpected: `INTERNAL`, its cause logged with an incident id.
pub fn label_codeless(errors: &mut [ServerError], validated: bool) {
    for e in errors {
        let has_code = e.extensions.as_ref().is_some_and(|x| x.get("code").is_some());
        if has_code {
            continue;
        }
        let labelled = if validated {
            internal(&e.message)
        } else {
            Error::new(e.message.clone()).extend_with(|_, x| x.set("code", VALIDATION))
        };
        e.message = labelled.message;
        e.extensions = labelled.extensions;
    }
}

pub fn from_domain(e: DomainError) -> Error {
    match e {
        DomainError::Validation(m) => coded(VALIDATION, m),
        DomainError::NotFound(m) => coded(NOT_FOUND, m),
        DomainError::InvariantViolation(m) => coded(INVARIANT_VIOLATION, m),
        DomainError::Conflict(m) => coded(CONFLICT, m),
        DomainError::Unauthenticated(m) => coded(UNAUTHENTICATED, m),
        DomainError::Forbidden(m) => coded(FORBIDDEN, m),
    }
}

/// A database failure, whichever side met it: the one mapping to codes.
pub fn from_db(e: DbError) -> Error {
    match e {
        DbError::Unavailable(m) => unavailable_error(&m),
        DbError::Contention(_) => coded(CONFLICT, "a concurrent write got in the way; retry"),
        DbError::Internal(m) => internal(&m),
    }
}

pub fn from_command(e: CommandError) -> Error {
    match e {
        CommandError::Rejected(d) => from_domain(d),
        CommandError::AlreadyExecuted => coded(CONFLICT, "this command is being executed concurrently; retry"),
        CommandError::Database(DbError::Contention(_)) => {
            coded(CONFLICT, "another command changed this aggregate at the same time; reload it and retry")
        }
        CommandError::Database(e) => from_db(e),
        CommandError::Internal(m) => internal(&m),
    }
}

pub fn from_query(e: QueryError) -> Error {
    match e {
        QueryError::Validation(m) => coded(VALIDATION, m),
        QueryError::NotVisibleYet(m) => coded(NOT_VISIBLE_YET, m),
        QueryError::Stalled { message, projection, wait } => Error::new(message).extend_with(move |_, e| {
            e.set("code", NOT_VISIBLE_YET);
            e.set("reason", "STALLED");
            e.set("blockedBy", projection.clone());
            e.set("waitingOn", wait.kind.as_str().to_uppercase());
        }),
        QueryError::NotProjected(why, token) => {
            let message = match &why {
                crate::query::consistency::NotProjected::ProjectionStopped(p) => {
                    format!("the write {token} will not become visible: the projection {p} is stopped (a poison event); an operator must retry or skip it")
                }
                crate::query::consistency::NotProjected::DeadLettered(p) => {
                    format!("the write {token} will not become visible: the projection {p} could not apply it and dead-lettered it")
                }
            };
            let (reason, projection) = (why.reason(), why.projection().to_owned());
            Error::new(message).extend_with(move |_, e| {
                e.set("code", NOT_PROJECTED);
                e.set("reason", reason);
                e.set("projection", projection.clone());
            })
        }
        QueryError::Database(e) => from_db(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_location_at_line_or_column_zero_is_dropped_and_a_place_is_kept() {
        let place = async_graphql::Pos { line: 3, column: 7 };
        let mut errors = vec![
            coded(VALIDATION, "no place").into_server_error(async_graphql::Pos::default()),
            ServerError::new("half a place", Some(async_graphql::Pos { line: 1, column: 0 })),
            coded(NOT_FOUND, "a place").into_server_error(place),
        ];
        for_client(&mut errors, false);
        let locations: Vec<_> = errors.iter().map(|e| e.locations.clone()).collect();
        assert_eq!(locations, [vec![], vec![], vec![place]]);
        let json = serde_json::to_value(&errors[0]).expect("JSON");
        assert!(json.get("locations").is_none(), "no empty list either: {json}");
        assert!(request_level(validation("x")).locations.is_empty());
    }
}
