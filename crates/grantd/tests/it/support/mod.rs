//! Helpers shared by the integration test modules.

pub mod app;
pub mod db;
pub mod webhook_receiver;
