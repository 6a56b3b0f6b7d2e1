//! Read replicas as operators see them: each one's state and lag, for
//! `/readyz` (the metrics come from `crate::db::replica` directly).
pub use crate::db::replica::{ReplicaReport, ReplicaSet, ReplicaState};
