//! The Rust example of the repository's README.md, verbatim below this header:
//! `client::readme_example_is_the_one_that_runs` checks the README still shows this code and runs it.

use grantd_client::GrantdClient;

/// Prints the drives of every connection, through grantd's proxy; returns how many there were.
pub async fn print_drives(url: &str, secret_key: &str) -> Result<usize, grantd_client::Error> {
    let grantd = GrantdClient::new(url, secret_key)?;
    let mut count = 0;
    for c in grantd.list_connections(&Default::default()).await? {
        let proxy = grantd.proxy(&c.provider_config_key, &c.connection_id);
        let drives: serde_json::Value = proxy.get("/v1.0/me/drives").send().await?.json().await?;
        println!("{}: {}", c.connection_id, drives["value"]);
        count += drives["value"].as_array().map_or(0, Vec::len);
    }
    Ok(count)
}
