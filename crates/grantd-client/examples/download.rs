//! Stream a file from a connection's OneDrive to disk: the proxy's response body is read as it
//! arrives, so a file of any size never sits in memory.
//!
//! `GRANTD_SECRET_KEY=… cargo run -p grantd-client --example download -- <connection id> <item id> <out file>`

use grantd_client::GrantdClient;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("GRANTD_URL").unwrap_or_else(|_| "http://localhost:3003".into());
    let grantd = GrantdClient::new(url, std::env::var("GRANTD_SECRET_KEY")?)?;
    let mut args = std::env::args().skip(1);
    let (Some(connection_id), Some(item), Some(out)) = (args.next(), args.next(), args.next())
    else {
        return Err("usage: download <connection id> <item id> <out file>".into());
    };

    let response = grantd
        .proxy("one-drive", &connection_id)
        .get(&format!("/v1.0/me/drive/items/{item}/content"))
        // Graph answers /content with a redirect to the file's download URL; let grantd follow it.
        .follow_redirects(true)
        .send()
        .await?
        .error_for_status()
        .await?;
    let mut body = response.into_async_read();
    let mut file = tokio::fs::File::create(&out).await?;
    let bytes = tokio::io::copy(&mut body, &mut file).await?;
    println!("wrote {bytes} bytes to {out}");
    Ok(())
}
