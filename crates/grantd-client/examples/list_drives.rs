//! List a connection's drives through grantd's proxy: grantd injects a fresh access token and
//! forwards the call to Microsoft Graph.
//!
//! `GRANTD_SECRET_KEY=… cargo run -p grantd-client --example list_drives -- <connection id>`

use grantd_client::GrantdClient;
use serde::Deserialize;

#[derive(Deserialize)]
struct Drives {
    value: Vec<Drive>,
}

#[derive(Deserialize)]
struct Drive {
    id: String,
    name: Option<String>,
    #[serde(rename = "driveType")]
    drive_type: String,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("GRANTD_URL").unwrap_or_else(|_| "http://localhost:3003".into());
    let grantd = GrantdClient::new(url, std::env::var("GRANTD_SECRET_KEY")?)?;
    let connection_id = std::env::args()
        .nth(1)
        .ok_or("usage: list_drives <connection id>")?;

    let drives: Drives = grantd
        .proxy("one-drive", &connection_id)
        .get("/v1.0/me/drives")
        // grantd retries throttled and failed upstream calls this often.
        .retries(3)
        .send()
        .await?
        .json()
        .await?;
    for d in drives.value {
        println!("{} {} ({})", d.id, d.name.unwrap_or_default(), d.drive_type);
    }
    Ok(())
}
