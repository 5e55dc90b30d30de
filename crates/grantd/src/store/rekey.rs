//! Key rotation at rest: `Store::reseal_all` re-encrypts every sealed value that is not under
//! the current key (client secrets, connection credentials, app private keys) while grantd keeps
//! serving. Each row is rewritten with a compare-and-swap on its old ciphertext, so a concurrent
//! write (a refresh saving new credentials) is never overwritten; such rows are picked up by the
//! next pass. Its two statements (list, compare-and-swap) are below, written once for both
//! databases.
//!
//! OAuth flows in flight (15 minutes at most) are not re-sealed: keep the old key configured
//! until they have expired.

use super::db::{Db, execute, fetch};
use super::{Error, Store};
use crate::crypto::Sealed;

/// A sealed column and where it lives. Names are constants (never input), so the queries may
/// format them into SQL.
pub(super) struct SealedColumn {
    pub table: &'static str,
    /// Integer primary key.
    pub id: &'static str,
    pub data: &'static str,
    pub key_id: &'static str,
    /// The seal context (associated data) of the values.
    pub context: &'static str,
}

pub(super) const SEALED_COLUMNS: &[SealedColumn] = &[
    SealedColumn {
        table: "integrations",
        id: "id",
        data: "client_secret",
        key_id: "client_secret_key_id",
        context: super::CTX_CLIENT_SECRET,
    },
    SealedColumn {
        table: "connections",
        id: "id",
        data: "credentials",
        key_id: "credentials_key_id",
        context: super::CTX_CREDENTIALS,
    },
    SealedColumn {
        table: "integration_app_credentials",
        id: "integration_id",
        data: "private_key",
        key_id: "private_key_key_id",
        context: "private_key",
    },
];

impl Db {
    /// Up to `limit` rows with `id > after` whose value is sealed under a key other than
    /// `current_key_id` (NULL values skipped), in id order.
    async fn sealed_batch(
        &self,
        c: &SealedColumn,
        current_key_id: &str,
        after: i64,
        limit: i64,
    ) -> Result<Vec<(i64, Sealed)>, Error> {
        let sql = format!(
            "SELECT {id}, {data}, {key} FROM {table} \
             WHERE {data} IS NOT NULL AND {key} <> $1 AND {id} > $2 ORDER BY {id} LIMIT $3",
            id = c.id,
            data = c.data,
            key = c.key_id,
            table = c.table
        );
        let rows: Vec<(i64, Vec<u8>, String)> =
            fetch!(self, fetch_all::<_>(&sql, current_key_id, after, limit))?;
        Ok(rows
            .into_iter()
            .map(|(id, bytes, key_id)| (id, Sealed { key_id, bytes }))
            .collect())
    }

    /// Replaces the value of row `id` if it still holds `old`. `false` if it changed meanwhile.
    async fn reseal(
        &self,
        c: &SealedColumn,
        id: i64,
        old: &Sealed,
        new: &Sealed,
    ) -> Result<bool, Error> {
        let sql = format!(
            "UPDATE {table} SET {data} = $1, {key} = $2 \
             WHERE {id} = $3 AND {data} = $4 AND {key} = $5",
            id = c.id,
            data = c.data,
            key = c.key_id,
            table = c.table
        );
        execute!(
            self,
            &sql,
            &new.bytes,
            &new.key_id,
            id,
            &old.bytes,
            &old.key_id,
        )
        .map(|n| n == 1)
    }
}

/// What `reseal_all` did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RekeyReport {
    /// Values re-encrypted with the current key.
    pub resealed: u64,
    /// Values that changed during the rotation and still are not under the current key (an
    /// instance still running with the old key as its current one wrote them). Run again.
    pub remaining: u64,
    pub current_key_id: String,
}

const BATCH: i64 = 200;
const PASSES: usize = 5;

impl Store {
    /// Re-encrypts every sealed value with the current key (see the module docs).
    pub async fn reseal_all(&self) -> Result<RekeyReport, Error> {
        let current = self.cipher.current_key_id().to_owned();
        let mut report = RekeyReport {
            current_key_id: current.clone(),
            ..Default::default()
        };
        for pass in 0..PASSES {
            let mut missed = 0u64;
            for col in SEALED_COLUMNS {
                let mut after = 0;
                loop {
                    let batch = self.db.sealed_batch(col, &current, after, BATCH).await?;
                    let Some((last, _)) = batch.last() else { break };
                    after = *last;
                    for (id, old) in &batch {
                        let plain = self.open(col.context, old)?;
                        let new = self.seal(col.context, &plain);
                        if self.db.reseal(col, *id, old, &new).await? {
                            report.resealed += 1;
                        } else {
                            missed += 1;
                        }
                    }
                }
            }
            tracing::info!(
                pass,
                resealed = report.resealed,
                missed,
                "key rotation pass"
            );
            report.remaining = missed;
            if missed == 0 {
                break;
            }
        }
        Ok(report)
    }

    /// Values per key id across every sealed column (to check nothing is left under an old key).
    pub async fn sealed_key_ids(&self) -> Result<Vec<(String, u64)>, Error> {
        let mut counts = std::collections::BTreeMap::<String, u64>::new();
        for col in SEALED_COLUMNS {
            let mut after = 0;
            loop {
                // An empty "current" id matches no key, so every value is listed.
                let batch = self.db.sealed_batch(col, "", after, 1000).await?;
                let Some((last, _)) = batch.last() else { break };
                after = *last;
                for (_, s) in batch {
                    *counts.entry(s.key_id).or_default() += 1;
                }
            }
        }
        Ok(counts.into_iter().collect())
    }
}
