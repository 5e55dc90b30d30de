//! An async Rust client for [grantd](https://github.com/grantd/grantd), the self-hosted,
//! Nango-compatible OAuth broker and Microsoft Graph proxy.
//!
//! ```no_run
//! use grantd_client::GrantdClient;
//!
//! # async fn run() -> Result<(), grantd_client::Error> {
//! let grantd = GrantdClient::new("http://localhost:3003", "your secret key")?;
//! let token = grantd.access_token("one-drive", "connection id").await?;
//! let drives: serde_json::Value = grantd
//!     .proxy("one-drive", "connection id")
//!     .get("/v1.0/me/drives")
//!     .send()
//!     .await?
//!     .json()
//!     .await?;
//! # let _ = (token, drives);
//! # Ok(())
//! # }
//! ```
//!
//! - [`GrantdClient::new`] / [`GrantdClient::builder`]: base URL and secret key; timeouts,
//!   user agent and a [`RetryPolicy`] (idempotent calls are retried on 429/502/503/504 and
//!   connection failures, waiting what `Retry-After` says).
//! - API groups, as methods on [`GrantdClient`]: integrations and providers, connect sessions,
//!   File Picker sessions, connections (credentials, refresh, metadata), records and syncs (the
//!   change feed), and
//!   [`proxy`](GrantdClient::proxy) with streamed bodies both ways.
//! - Errors are [`Error`]; grantd's answers in Nango's envelope are [`ApiError`] with an
//!   [`ErrorCode`] to match on.
//! - [`WebhookVerifier`] checks `X-Nango-Hmac-Sha256` on incoming webhooks and parses them; with
//!   the `axum` feature, `VerifiedWebhook` does it as an extractor.
//! - [`types`] are the wire types, shared with the server (the `grantd-api` crate).
//!
//! TLS is rustls (ring); there is no OpenSSL dependency.
#![cfg_attr(docsrs, feature(doc_auto_cfg))]
#![warn(missing_debug_implementations)]

mod client;
mod connections;
pub mod error;
mod integrations;
mod proxy;
mod sessions;
mod sync;
pub mod webhook;

pub use client::{GrantdClient, GrantdClientBuilder, RetryPolicy, USER_AGENT};
pub use connections::GetConnection;
pub use error::{ApiError, Error, ErrorCode, Issue};
pub use integrations::Include;
pub use proxy::{Proxy, ProxyRequest, ProxyResponse};
#[cfg(feature = "axum")]
pub use webhook::{VerifiedWebhook, WebhookRejection};
pub use webhook::{WebhookError, WebhookVerifier};

/// The wire types of grantd's API (re-exported from `grantd-api`): request bodies such as
/// [`CreateConnectSession`](types::CreateConnectSession), answers such as
/// [`Connection`](types::Connection), records, sync status and webhook bodies.
pub mod types {
    pub use grantd_api::webhooks::{
        AuthOperation, AuthWebhook, PickerWebhook, SyncWebhook, Webhook,
    };
    pub use grantd_api::*;
}

/// The crate README's code, compiled as a doc test.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

/// The examples in `crates/grantd-client/examples/`, compiled as doc tests (they need a running
/// grantd, so they are not run here; the client's live tests cover what they call).
pub mod examples {
    /// Connect a user: create a connect session and print its link.
    ///
    /// ```no_run
    #[doc = include_str!("../examples/connect_user.rs")]
    /// ```
    pub mod connect_user {}

    /// List a connection's drives through the proxy.
    ///
    /// ```no_run
    #[doc = include_str!("../examples/list_drives.rs")]
    /// ```
    pub mod list_drives {}

    /// Stream a file's content to disk without holding it in memory.
    ///
    /// ```no_run
    #[doc = include_str!("../examples/download.rs")]
    /// ```
    pub mod download {}

    /// Verify and parse webhooks in an axum app.
    ///
    /// ```no_run
    #[doc = include_str!("../examples/axum_webhooks.rs")]
    /// ```
    #[cfg(feature = "axum")]
    pub mod axum_webhooks {}
}
