//! grantd: a self-hosted OAuth token broker and Graph proxy for Microsoft 365, wire-compatible
//! with the auth/connections/proxy subset of Nango's API. See ARCHITECTURE.md for the map.

pub mod crypto;
pub mod model;
pub mod store;
