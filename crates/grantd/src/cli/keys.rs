//! `grantd keys generate|rotate`: local admin commands for the encryption key at rest.
//! Rotation is online: deploy every instance with the new key as `GRANTD_ENCRYPTION_KEY` and the
//! old one in `GRANTD_ENCRYPTION_KEYS_OLD`, then run `grantd keys rotate` (same environment) to
//! re-encrypt everything still under the old key; afterwards the old key can be dropped.

use clap::Subcommand;

use crate::crypto::Cipher;
use crate::store::Store;

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Print a new random encryption key (base64 of 32 bytes).
    Generate,
    /// Re-encrypt every stored secret with the current key (GRANTD_ENCRYPTION_KEY), reading old
    /// values with GRANTD_ENCRYPTION_KEYS_OLD. Safe while grantd is serving.
    Rotate,
}

pub async fn run(cmd: KeysCommand) -> anyhow::Result<()> {
    match cmd {
        KeysCommand::Generate => {
            println!("{}", Cipher::generate_key());
            Ok(())
        }
        KeysCommand::Rotate => {
            super::init_tracing();
            let config = super::load_config()?;
            let cipher = Cipher::from_config(&config)?;
            let store = Store::connect(&config.database_url, cipher).await?;
            let report = store.reseal_all().await?;
            println!(
                "re-encrypted {} value(s) with key {}",
                report.resealed, report.current_key_id
            );
            for (key_id, n) in store.sealed_key_ids().await? {
                let note = if key_id == report.current_key_id {
                    "(current)"
                } else {
                    "(old: still needed)"
                };
                println!("  key {key_id}: {n} value(s) {note}");
            }
            if report.remaining > 0 {
                return Err(super::remote::ExitError {
                    code: 1,
                    message: format!(
                        "{} value(s) were rewritten under an old key during the rotation (an instance still runs with the old key as current); restart it with the new key and run `grantd keys rotate` again",
                        report.remaining
                    ),
                }
                .into());
            }
            println!(
                "every value is under the current key; the old keys can be removed from GRANTD_ENCRYPTION_KEYS_OLD once in-flight OAuth flows (15 minutes) have ended"
            );
            Ok(())
        }
    }
}
