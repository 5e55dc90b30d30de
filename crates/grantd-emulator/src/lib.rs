//! A faithful local emulator of Microsoft Entra ID (identity platform v2.0), the Microsoft Graph
//! drive API and SharePoint REST, served from one HTTP(S) listener.
//!
//! grantd's dev mode, every test and every benchmark talk to this instead of Microsoft. The crate
//! depends on no grantd crate on purpose: it speaks Microsoft's wire format from its own structs, so
//! a misreading on grantd's side is caught here instead of mirrored.
//!
//! URL layout (one listener, all on the same origin):
//! - `/{tenant}/oauth2/v2.0/{authorize,token,logout}`, `/{tenant}/v2.0/.well-known/openid-configuration`,
//!   `/{tenant}/discovery/v2.0/keys`, `/{tenant}/adminconsent`, `/{tenant}/v2.0/adminconsent` — identity
//!   (stands in for `https://login.microsoftonline.com`);
//! - `/v1.0/...` — Graph (stands in for `https://graph.microsoft.com`);
//! - `/_sharepoint/{host}/...` — SharePoint REST of `https://{host}` (hostnames cannot resolve here),
//!   and its File Picker v8 page `/_layouts/15/FilePicker.aspx` (`picker`);
//! - `/_download/...`, `/_upload/...` — pre-authenticated download and upload-session URLs;
//! - `/_monitor/...` — copy monitors (`POST …/copy`);
//! - `/v1.0/subscriptions` — change notifications (`notify`), delivered to the subscriber's URL;
//! - `/_emulator/...` — the control API for tests and benchmarks.

pub mod actions;
pub mod browser;
pub mod cli;
pub mod clock;
pub mod control;
pub mod counters;
pub mod directory;
pub mod faults;
pub mod files;
pub mod graph;
pub mod identity;
pub mod notify;
pub mod picker;
pub mod seed;
pub mod server;
pub mod sharepoint;
pub mod state;
pub mod tls;
pub mod tokens;

pub use server::{EmulatorConfig, EmulatorHandle, spawn};
