//! The consistency token: a position in the event log.
//!
//! A token is the `(tx_id, position)` of a command's last event. Projectors
//! advance their checkpoint through the log in exactly that order, and a
//! checkpoint is always a completed prefix of it, so "the write is visible in
//! projection P" is simply `checkpoint(P) >= token`.
//!
//! On the wire it is opaque (`"tx.position"`); clients only pass it back.
use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, serde::Serialize, serde::Deserialize)]
pub struct LogPosition {
    /// Transaction id of the appending transaction (0 on SQLite).
    pub tx_id: i64,
    /// Global position of the event.
    pub position: i64,
}

impl LogPosition {
    pub const START: Self = Self { tx_id: 0, position: 0 };

    pub fn new(tx_id: i64, position: i64) -> Self {
        Self { tx_id, position }
    }
}

impl fmt::Display for LogPosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.tx_id, self.position)
    }
}

#[derive(Debug, thiserror::Error)]
#[error("'{0}' is not a valid token: pass back a token exactly as a mutation returned it")]
pub struct BadToken(pub String);

impl FromStr for LogPosition {
    type Err = BadToken;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BadToken(s.chars().take(64).collect());
        let (tx, pos) = s.split_once('.').ok_or_else(bad)?;
        let tx_id: i64 = tx.parse().map_err(|_| bad())?;
        let position: i64 = pos.parse().map_err(|_| bad())?;
        if tx_id < 0 || position < 0 {
            return Err(bad());
        }
        Ok(Self { tx_id, position })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_order_by_transaction_first() {
        let a: LogPosition = "7.100".parse().unwrap();
        assert_eq!(a.to_string(), "7.100");
        assert!(LogPosition::new(7, 100) < LogPosition::new(8, 1));
        assert!(LogPosition::new(7, 100) < LogPosition::new(7, 101));
        for bad in ["", "7", "a.b", "-1.5", "1.2.3", "1.-2"] {
            assert!(bad.parse::<LogPosition>().is_err(), "{bad}");
        }
    }
}
