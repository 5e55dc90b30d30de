//! SQLite SQL for `integration_app_credentials` (certificate credentials and expiry state).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::sqlite::SqliteRow;

use super::{SqliteBackend, get, get_ts_opt, ts, ts_opt};
use crate::crypto::Sealed;
use crate::store::Error;
use crate::store::app_credentials::{AppCredentialBackend, AppCredentialRow};

const COLS: &str = "integration_id, certificate_pem, certificate_thumbprint, \
     certificate_not_after, private_key, private_key_key_id, assertion_alg, secret_expires_at, \
     expiry_warned_days";

const UPDATE_INTEGRATION: &str = "UPDATE integrations SET updated_at = ? WHERE id = ?";

fn row(r: &SqliteRow) -> Result<AppCredentialRow, Error> {
    let key: Option<Vec<u8>> = get(r, "private_key")?;
    let key_id: Option<String> = get(r, "private_key_key_id")?;
    Ok(AppCredentialRow {
        integration_id: get(r, "integration_id")?,
        certificate_pem: get(r, "certificate_pem")?,
        certificate_thumbprint: get(r, "certificate_thumbprint")?,
        certificate_not_after: get_ts_opt(r, "certificate_not_after")?,
        private_key: match (key, key_id) {
            (Some(bytes), Some(key_id)) => Some(Sealed { key_id, bytes }),
            _ => None,
        },
        assertion_alg: get(r, "assertion_alg")?,
        secret_expires_at: get_ts_opt(r, "secret_expires_at")?,
        expiry_warned_days: get(r, "expiry_warned_days")?,
    })
}

#[async_trait]
impl AppCredentialBackend for SqliteBackend {
    async fn get_app_credential(
        &self,
        integration_id: i64,
    ) -> Result<Option<AppCredentialRow>, Error> {
        let sql =
            format!("SELECT {COLS} FROM integration_app_credentials WHERE integration_id = ?");
        sqlx::query(&sql)
            .bind(integration_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(Error::Database)?
            .map(|r| row(&r))
            .transpose()
    }

    async fn list_app_credentials(&self) -> Result<Vec<AppCredentialRow>, Error> {
        let sql = format!("SELECT {COLS} FROM integration_app_credentials");
        sqlx::query(&sql)
            .fetch_all(&self.pool)
            .await
            .map_err(Error::Database)?
            .iter()
            .map(row)
            .collect()
    }

    async fn put_app_credential(
        &self,
        r: &AppCredentialRow,
        at: DateTime<Utc>,
    ) -> Result<(), Error> {
        let mut tx = self.pool.begin().await.map_err(Error::Database)?;
        // Touch the integration so caches keyed on its row (and their change notifications)
        // see the change.
        sqlx::query(UPDATE_INTEGRATION)
            .bind(ts(at))
            .bind(r.integration_id)
            .execute(&mut *tx)
            .await
            .map_err(Error::Database)?;
        sqlx::query(
            "INSERT INTO integration_app_credentials (integration_id, certificate_pem, \
             certificate_thumbprint, certificate_not_after, private_key, private_key_key_id, \
             assertion_alg, secret_expires_at, expiry_warned_days, updated_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
             ON CONFLICT (integration_id) DO UPDATE SET certificate_pem = excluded.certificate_pem, \
             certificate_thumbprint = excluded.certificate_thumbprint, \
             certificate_not_after = excluded.certificate_not_after, \
             private_key = excluded.private_key, private_key_key_id = excluded.private_key_key_id, \
             assertion_alg = excluded.assertion_alg, secret_expires_at = excluded.secret_expires_at, \
             expiry_warned_days = excluded.expiry_warned_days, updated_at = excluded.updated_at",
        )
        .bind(r.integration_id)
        .bind(&r.certificate_pem)
        .bind(&r.certificate_thumbprint)
        .bind(ts_opt(r.certificate_not_after))
        .bind(r.private_key.as_ref().map(|s| s.bytes.clone()))
        .bind(r.private_key.as_ref().map(|s| s.key_id.clone()))
        .bind(&r.assertion_alg)
        .bind(ts_opt(r.secret_expires_at))
        .bind(r.expiry_warned_days)
        .bind(ts(at))
        .execute(&mut *tx)
        .await
        .map_err(Error::Database)?;
        tx.commit().await.map_err(Error::Database)
    }

    async fn delete_app_credential(&self, integration_id: i64) -> Result<(), Error> {
        sqlx::query("DELETE FROM integration_app_credentials WHERE integration_id = ?")
            .bind(integration_id)
            .execute(&self.pool)
            .await
            .map_err(Error::Database)?;
        Ok(())
    }

    async fn swap_expiry_warned(
        &self,
        integration_id: i64,
        expected: Option<i32>,
        days: Option<i32>,
        at: DateTime<Utc>,
    ) -> Result<bool, Error> {
        let done = sqlx::query(
            "UPDATE integration_app_credentials SET expiry_warned_days = ?, updated_at = ? \
             WHERE integration_id = ? AND expiry_warned_days IS ?",
        )
        .bind(days)
        .bind(ts(at))
        .bind(integration_id)
        .bind(expected)
        .execute(&self.pool)
        .await
        .map_err(Error::Database)?;
        Ok(done.rows_affected() == 1)
    }
}
