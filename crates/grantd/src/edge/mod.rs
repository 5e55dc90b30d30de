//! What the HTTP edges (`api`, `web`, `proxy`) share, below the router so they need not import
//! each other or `server`: `AppState`, `ApiError` (the one place domain errors become HTTP), the
//! `SecretKey` / `SecretOrSession` extractors and strict body/query extractors, CORS for the
//! session-token routes (`cors.rs`), the WebSocket hub, and the authentication throttle
//! (`throttle.rs`).

pub mod cors;
pub mod error;
pub mod extract;
pub mod gate;
pub mod state;
pub mod throttle;
pub mod ws_hub;
pub mod ws_limits;

pub use error::ApiError;
pub use extract::{
    Caller, JsonBody, Query, SecretKey, SecretOrSession, bearer, error_chain, no_query, parse_bool,
    wrong_secret_key,
};
pub use state::AppState;
pub use ws_hub::WsHub;
