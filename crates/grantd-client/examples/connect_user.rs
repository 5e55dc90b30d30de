//! Connect a user: create a connect session for an end user of your app and print the link to
//! send them to (grantd's Connect UI signs them in with Microsoft and stores the connection).
//! Then wait for the connection to appear.
//!
//! `GRANTD_URL=http://localhost:3003 GRANTD_SECRET_KEY=… cargo run -p grantd-client --example connect_user`

use grantd_client::GrantdClient;
use grantd_client::types::{CreateConnectSession, EndUserInput, ListConnectionsQuery};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("GRANTD_URL").unwrap_or_else(|_| "http://localhost:3003".into());
    let grantd = GrantdClient::new(url, std::env::var("GRANTD_SECRET_KEY")?)?;

    let session = grantd
        .create_connect_session(&CreateConnectSession {
            end_user: Some(EndUserInput {
                id: "user-42".into(),
                email: Some("adele@contoso.onmicrosoft.com".into()),
                ..Default::default()
            }),
            allowed_integrations: Some(vec!["one-drive".into()]),
            ..Default::default()
        })
        .await?;
    println!(
        "Open this link to connect OneDrive: {}",
        session.connect_link
    );
    println!("(valid until {})", session.expires_at);

    // The connection is linked to the end user once they finish.
    let query = ListConnectionsQuery {
        end_user_id: Some("user-42".into()),
        ..Default::default()
    };
    loop {
        if let Some(c) = grantd.list_connections(&query).await?.first() {
            println!("connected: {} ({})", c.connection_id, c.provider_config_key);
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    }
}
