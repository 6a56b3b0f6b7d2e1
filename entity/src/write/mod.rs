//! The normalized write model (source of truth for the current state).
pub mod customer;
pub mod customer_order;
pub mod order_line;
pub mod product;
