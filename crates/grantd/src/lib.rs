//! grantd: a self-hosted OAuth token broker and Graph proxy for Microsoft 365, wire-compatible
//! with the auth/connections/proxy subset of Nango's API. See ARCHITECTURE.md for the map.

pub mod api;
pub mod catalog;
pub mod cli;
pub mod clock;
pub mod config;
pub mod connections;
pub mod crypto;
pub mod edge;
pub mod front;
pub mod jobs;
pub mod listener;
pub mod metrics;
pub mod microsoft;
pub mod model;
pub mod oauth;
pub mod outbound;
pub mod proxy;
pub mod runtime;
pub mod server;
pub mod sqlite_file;
pub mod store;
pub mod throttle;
pub mod validate;
pub mod web;
pub mod webhooks;

#[cfg(test)]
mod properties;
