//! The close codes both protocols end a connection with (see the table in
//! the module docs of `ws`): the state machine and the socket loop both
//! send them.

/// Close codes: RFC 6455's (1xxx) and the protocols' own (4xxx); see the
/// table above for when each is sent.
pub const CLOSE_GOING_AWAY: u16 = 1001;
pub const CLOSE_PROTOCOL_ERROR: u16 = 1002;
pub const CLOSE_INVALID_PAYLOAD: u16 = 1007;
pub const CLOSE_TOO_BIG: u16 = 1009;
pub const CLOSE_BAD_REQUEST: u16 = 4400;
pub const CLOSE_UNAUTHORIZED: u16 = 4401;
pub const CLOSE_FORBIDDEN: u16 = 4403;
pub const CLOSE_INIT_TIMEOUT: u16 = 4408;
pub const CLOSE_DUPLICATE_ID: u16 = 4409;
pub const CLOSE_TOO_MANY_INITS: u16 = 4429;
pub const CLOSE_SLOW_CONSUMER: u16 = 4503;
