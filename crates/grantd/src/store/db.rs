//! The database seam: `Db` is the pool of whichever database the URL named, and the few places
//! where SQLite and PostgreSQL really differ are methods here. Every query elsewhere in `store/`
//! is written once, with `$1…$N` placeholders (both drivers take them), and run through
//! `on_pool!`, which expands its body once per pool type so each database gets its own
//! monomorphic, prepared-statement-cached code path (no `Any` driver, no dynamic dispatch).
//!
//! Column types that differ are hidden behind two value types with per-database encodings:
//! - `Ts`: SQLite stores fixed-width RFC 3339 UTC text with microseconds
//!   (`2025-01-31T12:00:00.000000Z`, so text order is time order); PostgreSQL a `TIMESTAMPTZ`.
//! - `Jsonb`: the connection JSON that queries look into is `JSONB` on PostgreSQL and text on
//!   SQLite; the value is bound and read as JSON text either way (no casts in the SQL).
//!
//! Booleans (SQLite INTEGER 0/1, PostgreSQL BOOLEAN) and BLOB/BYTEA need nothing: sqlx maps
//! `bool` and `Vec<u8>` to each natively.

use std::borrow::Cow;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::postgres::{
    PgArgumentBuffer, PgConnectOptions, PgPool, PgPoolOptions, PgTypeInfo, PgValueFormat,
    PgValueRef,
};
use sqlx::sqlite::{
    SqliteArgumentValue, SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous, SqliteTypeInfo, SqliteValueRef,
};
use sqlx::{Decode, Encode, Postgres, QueryBuilder, Sqlite, Transaction, Type, ValueRef};

use super::Error;
use super::migrations::{self, Dialect};

/// One database: the pool is the only per-database state.
#[derive(Clone, Debug)]
pub(super) enum Db {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

impl AsRef<Db> for Db {
    fn as_ref(&self) -> &Db {
        self
    }
}

/// Runs `$body` with `$pool` bound to the concrete pool of `$db` (a `&Db` or `&Arc<Db>`). The body is written
/// once and compiled once per database, so it may use `sqlx::query(…).bind(…)` freely as long as
/// every bound value encodes on both (`Ts`, `Jsonb`, strings, integers, `bool`, bytes).
macro_rules! on_pool {
    (@err) => {
        $crate::store::Error::Database
    };
    (@err $err:expr) => {
        $err
    };
    ($db:expr, |$pool:ident| $body:expr) => {
        match ::core::convert::AsRef::<$crate::store::db::Db>::as_ref($db) {
            $crate::store::db::Db::Sqlite($pool) => $body,
            $crate::store::db::Db::Postgres($pool) => $body,
        }
    };
}
pub(super) use on_pool;

/// One statement returning rows, on whichever pool `$db` holds:
/// `fetch!(db, fetch_optional::<ConnectionRow>(SQL, a, b))` is
/// `sqlx::query_as::<_, ConnectionRow>(SQL).bind(a).bind(b).fetch_optional(pool)`;
/// `fetch!(db, scalar fetch_all::<i64>(SQL, a))` uses `query_scalar`. Errors become
/// `Error::Database`, or go through `=> mapper` when given.
macro_rules! fetch {
    ($db:expr, $fetch:ident::<$row:ty>($sql:expr $(, $arg:expr)* $(,)?) $(=> $err:expr)?) => {
        $crate::store::db::on_pool!($db, |pool| {
            sqlx::query_as::<_, $row>($sql) $(.bind($arg))* .$fetch(pool).await
        })
        .map_err($crate::store::db::on_pool!(@err $($err)?))
    };
    ($db:expr, scalar $fetch:ident::<$row:ty>($sql:expr $(, $arg:expr)* $(,)?)) => {
        $crate::store::db::on_pool!($db, |pool| {
            sqlx::query_scalar::<_, $row>($sql) $(.bind($arg))* .$fetch(pool).await
        })
        .map_err($crate::store::Error::Database)
    };
}
pub(super) use fetch;

/// One statement without rows on whichever pool `$db` holds; the number of rows it changed.
/// Errors as in `fetch!`.
macro_rules! execute {
    ($db:expr, $sql:expr $(, $arg:expr)* $(,)? $(=> $err:expr)?) => {
        $crate::store::db::on_pool!($db, |pool| {
            sqlx::query($sql) $(.bind($arg))* .execute(pool).await.map(|done| done.rows_affected())
        })
        .map_err($crate::store::db::on_pool!(@err $($err)?))
    };
}
pub(super) use execute;

/// Opening a write transaction: the one place transactions start.
pub(super) trait Begin {
    type Database: sqlx::Database;
    /// SQLite: `BEGIN IMMEDIATE`, taking the write lock up front so two writers never deadlock on
    /// upgrading a read lock. PostgreSQL: a plain `BEGIN`; rows read to be written are locked
    /// with `Db::for_update`.
    fn begin_write(
        &self,
    ) -> impl Future<Output = Result<Transaction<'static, Self::Database>, Error>> + Send;
}

impl Begin for SqlitePool {
    type Database = Sqlite;
    async fn begin_write(&self) -> Result<Transaction<'static, Sqlite>, Error> {
        self.begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(Error::Database)
    }
}

impl Begin for PgPool {
    type Database = Postgres;
    async fn begin_write(&self) -> Result<Transaction<'static, Postgres>, Error> {
        self.begin().await.map_err(Error::Database)
    }
}

impl Db {
    /// Opens and migrates. SQLite: the file and its directory are created if missing; an
    /// in-memory database keeps exactly one connection, forever. PostgreSQL: a pool of 10.
    pub(super) async fn connect(url: &str) -> Result<Db, Error> {
        let db = if url.starts_with("sqlite:") {
            Db::Sqlite(connect_sqlite(url).await?)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let options = PgConnectOptions::from_str(url).map_err(|_| Error::UnsupportedUrl)?;
            Db::Postgres(
                PgPoolOptions::new()
                    .max_connections(10)
                    .acquire_timeout(Duration::from_secs(10))
                    .connect_with(options)
                    .await
                    .map_err(Error::Database)?,
            )
        } else {
            return Err(Error::UnsupportedUrl);
        };
        let migrator = migrations::migrator(db.dialect())
            .await
            .map_err(Error::Migrate)?;
        on_pool!(&db, |pool| migrator.run(pool).await.map_err(Error::Migrate))?;
        Ok(db)
    }

    pub(super) fn dialect(&self) -> Dialect {
        match self {
            Db::Sqlite(_) => Dialect::Sqlite,
            Db::Postgres(_) => Dialect::Postgres,
        }
    }

    /// `sqlite` or `postgres`.
    pub(super) fn name(&self) -> &'static str {
        self.dialect().name()
    }

    /// Appended to a `SELECT` inside a write transaction whose rows are then written. PostgreSQL
    /// locks them; SQLite's `BEGIN IMMEDIATE` already holds the database's write lock.
    pub(super) fn for_update(&self) -> &'static str {
        match self {
            Db::Sqlite(_) => "",
            Db::Postgres(_) => " FOR UPDATE",
        }
    }

    /// Announces a WebSocket outcome to every instance (`NOTIFY grantd_ws`); `false` on SQLite,
    /// where the one process holds every socket.
    pub(super) async fn announce_ws_outcome(&self, payload: &str) -> Result<bool, sqlx::Error> {
        match self {
            Db::Postgres(pool) => {
                sqlx::query("SELECT pg_notify($1, $2)")
                    .bind(super::cache::WS_CHANNEL)
                    .bind(payload)
                    .execute(pool)
                    .await?;
                Ok(true)
            }
            Db::Sqlite(_) => Ok(false),
        }
    }

    /// Tells other instances that a webhook was queued: `NOTIFY grantd_outbox` on PostgreSQL
    /// (heard by `cache::listen`); nothing on SQLite, where one process owns the database.
    pub(super) async fn announce_webhook(&self) -> Result<(), sqlx::Error> {
        if let Db::Postgres(pool) = self {
            sqlx::query("SELECT pg_notify($1, '')")
                .bind(super::cache::OUTBOX_CHANNEL)
                .execute(pool)
                .await?;
        }
        Ok(())
    }

    /// The statement that claims work (proactive refreshes, the webhook outbox): sets
    /// `{lease} = $1` on up to `limit` rows of `table` matching `filter`, in `order`, and returns
    /// `returning`. Instances sharing a PostgreSQL database skip rows another is claiming
    /// (`FOR UPDATE SKIP LOCKED`); SQLite serialises writers, so the one statement is atomic as
    /// it is.
    pub(super) fn claim_sql(&self, c: Claim) -> String {
        let skip_locked = match self {
            Db::Sqlite(_) => "",
            Db::Postgres(_) => " FOR UPDATE SKIP LOCKED",
        };
        format!(
            "UPDATE {table} SET {lease} = $1 WHERE id IN ( \
               SELECT id FROM {table} WHERE {filter} ORDER BY {order} LIMIT {limit}{skip_locked}) \
             RETURNING {returning}",
            table = c.table,
            lease = c.lease,
            filter = c.filter,
            order = c.order,
            limit = c.limit,
            returning = c.returning,
        )
    }
}

/// The parts of a claiming statement (`Db::claim_sql`); all are constants, never input.
pub(super) struct Claim {
    pub table: &'static str,
    /// The lease column, set to `$1` (after other constant assignments, if it lists any:
    /// `a = b, lease`).
    pub lease: &'static str,
    pub filter: &'static str,
    pub order: &'static str,
    /// The placeholder of the row limit.
    pub limit: &'static str,
    pub returning: &'static str,
}

/// The connection-list filter "has every tag in `tags`" (a JSON object of strings), pushed onto
/// `qb`. PostgreSQL uses JSONB containment (served by the GIN index on `tags`); SQLite looks each
/// tag up with `json_each`.
pub(super) trait TagFilter {
    fn push_tags(&mut self, tags: &[(String, String)], tags_json: &str);
}

impl TagFilter for QueryBuilder<'_, Postgres> {
    fn push_tags(&mut self, tags: &[(String, String)], tags_json: &str) {
        if !tags.is_empty() {
            self.push(" AND tags @> ")
                .push_bind(Jsonb(tags_json.to_owned()));
        }
    }
}

impl TagFilter for QueryBuilder<'_, Sqlite> {
    fn push_tags(&mut self, tags: &[(String, String)], _tags_json: &str) {
        for (k, v) in tags {
            self.push(" AND EXISTS (SELECT 1 FROM json_each(connections.tags) AS t WHERE t.key = ")
                .push_bind(k.clone())
                .push(" AND t.type = 'text' AND t.value = ")
                .push_bind(v.clone())
                .push(")");
        }
    }
}

async fn connect_sqlite(url: &str) -> Result<SqlitePool, Error> {
    let options = SqliteConnectOptions::from_str(url)
        .map_err(|_| Error::UnsupportedUrl)?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .foreign_keys(true)
        .busy_timeout(Duration::from_secs(5));
    let in_memory = url.contains(":memory:") || url.contains("mode=memory");
    if in_memory {
        // An in-memory database lives as long as its connection: keep exactly one, forever.
        return SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options)
            .await
            .map_err(Error::Database);
    }
    if let Some(dir) = options.get_filename().parent() {
        if !dir.as_os_str().is_empty() && !dir.exists() {
            std::fs::create_dir_all(dir).map_err(|e| Error::Database(sqlx::Error::Io(e)))?;
        }
    }
    SqlitePoolOptions::new()
        .max_connections(5)
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(options)
        .await
        .map_err(Error::Database)
}

/// A timestamp to bind (see the module docs for how each database stores it). Bind every
/// timestamp as `Ts`: a bare `DateTime` would be written in another text format on SQLite. Rows
/// read timestamps as `DateTime<Utc>` directly (sqlx parses the stored text on SQLite).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Ts(pub DateTime<Utc>);

impl Ts {
    pub(super) fn opt(t: Option<DateTime<Utc>>) -> Option<Ts> {
        t.map(Ts)
    }

    /// SQLite's stored form: `2025-01-31T12:00:00.000000Z`.
    pub(super) fn sqlite_text(self) -> String {
        self.0.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
    }
}

impl Type<Sqlite> for Ts {
    fn type_info() -> SqliteTypeInfo {
        <String as Type<Sqlite>>::type_info()
    }
    fn compatible(ty: &SqliteTypeInfo) -> bool {
        <String as Type<Sqlite>>::compatible(ty)
    }
}

impl<'q> Encode<'q, Sqlite> for Ts {
    fn encode_by_ref(&self, buf: &mut Vec<SqliteArgumentValue<'q>>) -> Result<IsNull, BoxDynError> {
        buf.push(SqliteArgumentValue::Text(Cow::Owned(self.sqlite_text())));
        Ok(IsNull::No)
    }
}

impl Type<Postgres> for Ts {
    fn type_info() -> PgTypeInfo {
        <DateTime<Utc> as Type<Postgres>>::type_info()
    }
    fn compatible(ty: &PgTypeInfo) -> bool {
        <DateTime<Utc> as Type<Postgres>>::compatible(ty)
    }
}

impl Encode<'_, Postgres> for Ts {
    fn encode_by_ref(&self, buf: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
        <DateTime<Utc> as Encode<Postgres>>::encode_by_ref(&self.0, buf)
    }
}

/// JSON text in a column that is `JSONB` on PostgreSQL and `TEXT` on SQLite.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Jsonb<S = String>(pub S);

impl<S> std::ops::Deref for Jsonb<S>
where
    S: std::ops::Deref<Target = str>,
{
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl<S> Type<Sqlite> for Jsonb<S> {
    fn type_info() -> SqliteTypeInfo {
        <String as Type<Sqlite>>::type_info()
    }
    fn compatible(ty: &SqliteTypeInfo) -> bool {
        <String as Type<Sqlite>>::compatible(ty)
    }
}

impl<'q, S: AsRef<str>> Encode<'q, Sqlite> for Jsonb<S> {
    fn encode_by_ref(&self, buf: &mut Vec<SqliteArgumentValue<'q>>) -> Result<IsNull, BoxDynError> {
        buf.push(SqliteArgumentValue::Text(Cow::Owned(
            self.0.as_ref().to_owned(),
        )));
        Ok(IsNull::No)
    }
}

impl<'r> Decode<'r, Sqlite> for Jsonb {
    fn decode(value: SqliteValueRef<'r>) -> Result<Self, BoxDynError> {
        <String as Decode<Sqlite>>::decode(value).map(Jsonb)
    }
}

fn pg_jsonb() -> PgTypeInfo {
    <serde_json::Value as Type<Postgres>>::type_info()
}

impl<S> Type<Postgres> for Jsonb<S> {
    fn type_info() -> PgTypeInfo {
        pg_jsonb()
    }
    fn compatible(ty: &PgTypeInfo) -> bool {
        <serde_json::Value as Type<Postgres>>::compatible(ty)
    }
}

/// The binary `JSONB` wire format is a version byte (1) followed by the JSON text.
const JSONB_VERSION: u8 = 1;

impl<S: AsRef<str>> Encode<'_, Postgres> for Jsonb<S> {
    fn encode_by_ref(&self, buf: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
        buf.push(JSONB_VERSION);
        buf.extend_from_slice(self.0.as_ref().as_bytes());
        Ok(IsNull::No)
    }
}

impl<'r> Decode<'r, Postgres> for Jsonb {
    fn decode(value: PgValueRef<'r>) -> Result<Self, BoxDynError> {
        let binary_jsonb =
            value.format() == PgValueFormat::Binary && *value.type_info() == pg_jsonb();
        let mut bytes = value.as_bytes()?;
        if binary_jsonb {
            match bytes.split_first() {
                Some((&JSONB_VERSION, rest)) => bytes = rest,
                _ => return Err("unsupported JSONB format version".into()),
            }
        }
        Ok(Jsonb(std::str::from_utf8(bytes)?.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn sqlite_timestamps_are_fixed_width_and_round_trip() {
        let a = Utc
            .with_ymd_and_hms(2025, 1, 2, 3, 4, 5)
            .single()
            .expect("valid date");
        assert_eq!(Ts(a).sqlite_text(), "2025-01-02T03:04:05.000000Z");
        let b = a + chrono::Duration::microseconds(1_500);
        assert_eq!(Ts(b).sqlite_text(), "2025-01-02T03:04:05.001500Z");
        assert!(Ts(a).sqlite_text() < Ts(b).sqlite_text());
        // Read back through sqlx's chrono decoding, which parses RFC 3339 first.
        let parsed = DateTime::parse_from_rfc3339(&Ts(b).sqlite_text()).map(|t| t.to_utc());
        assert_eq!(parsed.ok(), Some(b));
    }
}
