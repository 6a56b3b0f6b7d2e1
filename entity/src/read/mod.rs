//! Denormalized read views (built only by projections), their checkpoints and
//! dead letters.
pub mod customer_view;
pub mod daily_sales;
pub mod dead_letter;
pub mod order_activity;
pub mod order_summary;
pub mod product_catalog;
pub mod projection_checkpoint;
