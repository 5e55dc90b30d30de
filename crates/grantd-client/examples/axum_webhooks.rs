//! Receive grantd's webhooks in an axum app: the `VerifiedWebhook` extractor checks the
//! `X-Nango-Hmac-Sha256` signature over the raw body (401 when it does not match) and parses
//! it into the typed `Webhook`.
//!
//! `GRANTD_WEBHOOK_SIGNING_KEY=… cargo run -p grantd-client --features axum --example axum_webhooks`
//! and point grantd's `GRANTD_WEBHOOK_URL` at `http://localhost:8080/webhooks/grantd`.

use axum::Router;
use axum::routing::post;
use grantd_client::types::Webhook;
use grantd_client::{VerifiedWebhook, WebhookVerifier};

async fn on_webhook(VerifiedWebhook(hook): VerifiedWebhook) -> &'static str {
    match hook {
        Webhook::Auth(a) if a.success => {
            println!(
                "{} connection {} ({})",
                a.operation.as_str(),
                a.connection_id,
                a.provider_config_key
            );
        }
        Webhook::Auth(a) => {
            let why = a.error.map(|e| e.description).unwrap_or_default();
            println!("connection {} needs attention: {why}", a.connection_id);
        }
        Webhook::Sync(s) => {
            println!(
                "{} changed for {}: {:?}",
                s.model, s.connection_id, s.response_results
            );
        }
        other => println!("{other:?}"),
    }
    "ok"
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let verifier = WebhookVerifier::new(std::env::var("GRANTD_WEBHOOK_SIGNING_KEY")?);
    let app = Router::new()
        .route("/webhooks/grantd", post(on_webhook))
        .with_state(verifier);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
    axum::serve(listener, app).await?;
    Ok(())
}
