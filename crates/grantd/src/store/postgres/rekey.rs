//! PostgreSQL SQL for key rotation (`store::rekey`): list values not under the current key, and
//! replace one value if it is unchanged.

use async_trait::async_trait;
use sqlx::Row;

use super::PgBackend;
use crate::crypto::Sealed;
use crate::store::Error;
use crate::store::rekey::{RekeyBackend, SealedColumn};

#[async_trait]
impl RekeyBackend for PgBackend {
    async fn sealed_batch(
        &self,
        c: &SealedColumn,
        current_key_id: &str,
        after: i64,
        limit: i64,
    ) -> Result<Vec<(i64, Sealed)>, Error> {
        let sql = format!(
            "SELECT {id} AS id, {data} AS data, {key} AS key_id FROM {table} \
             WHERE {data} IS NOT NULL AND {key} <> $1 AND {id} > $2 ORDER BY {id} LIMIT $3",
            id = c.id,
            data = c.data,
            key = c.key_id,
            table = c.table
        );
        let rows = sqlx::query(&sql)
            .bind(current_key_id)
            .bind(after)
            .bind(limit)
            .fetch_all(&self.pool)
            .await
            .map_err(Error::Database)?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("id").map_err(Error::Database)?,
                    Sealed {
                        key_id: r.try_get("key_id").map_err(Error::Database)?,
                        bytes: r.try_get("data").map_err(Error::Database)?,
                    },
                ))
            })
            .collect()
    }

    async fn reseal(
        &self,
        c: &SealedColumn,
        id: i64,
        old: &Sealed,
        new: &Sealed,
    ) -> Result<bool, Error> {
        let sql = format!(
            "UPDATE {table} SET {data} = $1, {key} = $2 WHERE {id} = $3 AND {data} = $4 AND {key} = $5",
            id = c.id,
            data = c.data,
            key = c.key_id,
            table = c.table
        );
        let done = sqlx::query(&sql)
            .bind(&new.bytes)
            .bind(&new.key_id)
            .bind(id)
            .bind(&old.bytes)
            .bind(&old.key_id)
            .execute(&self.pool)
            .await
            .map_err(Error::Database)?;
        Ok(done.rows_affected() == 1)
    }
}
