//! The two databases' schemas agree: after migrating a fresh SQLite and a fresh PostgreSQL
//! database, their tables, columns (name, storage class, nullability), unique constraints and
//! indexes are the same, but for the differences listed here on purpose. Needs PostgreSQL
//! (`TEST_DATABASE_URL`); prints `SKIPPED` without it.

use std::collections::BTreeSet;

use grantd::crypto::Cipher;
use grantd::store::Store;

use crate::support::db::TestDb;

/// Indexes only PostgreSQL has: the GIN index behind JSONB tag containment (SQLite matches tags
/// with `json_each` and has no equivalent index).
const POSTGRES_ONLY_INDEXES: &[&str] = &["connections_tags"];

/// sqlx's own bookkeeping table.
const SQLX_TABLE: &str = "_sqlx_migrations";

#[derive(Debug, Default, PartialEq, Eq)]
struct Schema {
    tables: BTreeSet<String>,
    /// (table, column, SQLite storage type, nullable)
    columns: BTreeSet<(String, String, String, bool)>,
    /// (table, comma-separated columns) of UNIQUE constraints
    unique: BTreeSet<(String, String)>,
    /// (index, table, unique, partial)
    indexes: BTreeSet<(String, String, bool, bool)>,
}

/// The SQLite declared type a PostgreSQL column type corresponds to (see the migrations' type
/// tokens, `store/migrations.rs`).
fn sqlite_type_of(pg: &str) -> String {
    match pg {
        "bigint" | "integer" | "boolean" => "INTEGER",
        "bytea" => "BLOB",
        "text" | "jsonb" | "timestamp with time zone" => "TEXT",
        other => panic!("PostgreSQL type {other} has no mapping in this test"),
    }
    .to_owned()
}

async fn sqlite_schema(url: &str) -> Schema {
    let pool = sqlx::SqlitePool::connect(url).await.expect("raw connect");
    let mut s = Schema::default();
    let tables: Vec<(String,)> = sqlx::query_as(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' \
         AND name <> $1",
    )
    .bind(SQLX_TABLE)
    .fetch_all(&pool)
    .await
    .expect("tables");
    for (table,) in tables {
        let cols: Vec<(String, String, bool, i64)> =
            sqlx::query_as("SELECT name, type, \"notnull\", pk FROM pragma_table_info($1)")
                .bind(&table)
                .fetch_all(&pool)
                .await
                .expect("columns");
        for (name, ty, notnull, pk) in cols {
            s.columns
                .insert((table.clone(), name, ty.to_uppercase(), !notnull && pk == 0));
        }
        let unique: Vec<(String,)> = sqlx::query_as(
            "SELECT name FROM pragma_index_list($1) WHERE origin = 'u' ORDER BY name",
        )
        .bind(&table)
        .fetch_all(&pool)
        .await
        .expect("unique constraints");
        for (index,) in unique {
            let cols: Vec<(String,)> =
                sqlx::query_as("SELECT name FROM pragma_index_info($1) ORDER BY seqno")
                    .bind(&index)
                    .fetch_all(&pool)
                    .await
                    .expect("unique columns");
            let cols: Vec<String> = cols.into_iter().map(|c| c.0).collect();
            s.unique.insert((table.clone(), cols.join(",")));
        }
        s.tables.insert(table);
    }
    let indexes: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT name, tbl_name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL",
    )
    .fetch_all(&pool)
    .await
    .expect("indexes");
    for (name, table, sql) in indexes {
        let sql = sql.to_uppercase();
        s.indexes.insert((
            name,
            table,
            sql.starts_with("CREATE UNIQUE"),
            sql.contains(" WHERE "),
        ));
    }
    pool.close().await;
    s
}

async fn postgres_schema(url: &str) -> Schema {
    let pool = sqlx::PgPool::connect(url).await.expect("raw connect");
    let mut s = Schema::default();
    let tables: Vec<(String,)> = sqlx::query_as(
        "SELECT table_name::text FROM information_schema.tables \
         WHERE table_schema = 'public' AND table_type = 'BASE TABLE' AND table_name <> $1",
    )
    .bind(SQLX_TABLE)
    .fetch_all(&pool)
    .await
    .expect("tables");
    s.tables = tables.into_iter().map(|t| t.0).collect();
    let cols: Vec<(String, String, String, String)> = sqlx::query_as(
        "SELECT table_name::text, column_name::text, data_type::text, is_nullable::text \
         FROM information_schema.columns WHERE table_schema = 'public' AND table_name <> $1",
    )
    .bind(SQLX_TABLE)
    .fetch_all(&pool)
    .await
    .expect("columns");
    for (table, name, ty, nullable) in cols {
        s.columns
            .insert((table, name, sqlite_type_of(&ty), nullable == "YES"));
    }
    let unique: Vec<(String, String)> = sqlx::query_as(
        "SELECT c.conrelid::regclass::text, \
                string_agg(a.attname::text, ',' ORDER BY k.ord) \
         FROM pg_constraint c \
         CROSS JOIN LATERAL unnest(c.conkey) WITH ORDINALITY AS k(attnum, ord) \
         JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum \
         WHERE c.contype = 'u' AND c.connamespace = 'public'::regnamespace \
         GROUP BY c.oid, c.conrelid",
    )
    .fetch_all(&pool)
    .await
    .expect("unique constraints");
    s.unique = unique.into_iter().collect();
    let indexes: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT indexname::text, tablename::text, indexdef FROM pg_indexes \
         WHERE schemaname = 'public' AND tablename <> $1 \
           AND indexname NOT IN (SELECT conname FROM pg_constraint)",
    )
    .bind(SQLX_TABLE)
    .fetch_all(&pool)
    .await
    .expect("indexes");
    for (name, table, def) in indexes {
        if POSTGRES_ONLY_INDEXES.contains(&name.as_str()) {
            continue;
        }
        let def = def.to_uppercase();
        s.indexes.insert((
            name,
            table,
            def.starts_with("CREATE UNIQUE"),
            def.contains(" WHERE "),
        ));
    }
    pool.close().await;
    s
}

#[tokio::test]
async fn sqlite_and_postgres_schemas_agree_after_migrating() {
    let Some(pg) = TestDb::postgres("schema agreement").await else {
        return;
    };
    let lite = TestDb::sqlite_file();
    for db in [&lite, &pg] {
        // Migrates.
        let store = Store::connect(db.url(), Cipher::new(&Cipher::generate_key(), &[]).unwrap())
            .await
            .expect("store connects and migrates");
        drop(store);
    }
    let (lite, pg) = (
        sqlite_schema(lite.url()).await,
        postgres_schema(pg.url()).await,
    );
    assert!(lite.tables.contains("connections"), "{lite:?}");
    assert!(!lite.indexes.is_empty() && !lite.unique.is_empty());
    assert_eq!(lite.tables, pg.tables, "tables");
    assert_eq!(
        lite.columns, pg.columns,
        "columns (table, name, type, nullable)"
    );
    assert_eq!(lite.unique, pg.unique, "unique constraints");
    assert_eq!(
        lite.indexes, pg.indexes,
        "indexes (name, table, unique, partial)"
    );
}
