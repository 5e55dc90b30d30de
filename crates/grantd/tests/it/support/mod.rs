//! Helpers shared by the integration test modules.

pub mod app;
pub mod db;
pub mod pg_cluster;
pub mod webhook_receiver;
