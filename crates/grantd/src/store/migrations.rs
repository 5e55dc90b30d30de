//! Schema migrations: one template per migration (`migrations/NNNN_name.sql`), rendered for the
//! database in use and run by sqlx's `Migrator` (which records each migration's checksum).
//!
//! A template is plain SQL plus three deterministic rules, so each database's DDL is written once
//! where it agrees and apart only where it differs:
//! - `{{ts}}`, `{{text}}`, `{{int}}`, `{{bigint}}`, `{{bool}}`, `{{bytes}}` become the column type
//!   (`TIMESTAMPTZ` / `TEXT`, `BYTEA` / `BLOB`, …), padded to the type column's width (11 on
//!   PostgreSQL, 7 on SQLite); a `,` or `;` right after the token comes before the padding, and
//!   trailing spaces are trimmed. `{{id}}` is the auto-increment primary key, `{{false}}` the
//!   boolean default.
//! - A line `--@postgres` or `--@sqlite` opens a block kept for that database only, closed by
//!   `--@end`; a line starting `--@postgres ` or `--@sqlite ` is that one line for that database.
//!
//! Released migrations must render to exactly the bytes that were shipped (an installed database
//! refuses to start when an applied migration's checksum changes): `RELEASED` records their
//! SHA-384, and a test checks every template against it. A new migration is a new template plus
//! its two checksums (the test prints them).

use std::borrow::Cow;

use sqlx::error::BoxDynError;
use sqlx::migrate::{Migration, MigrationSource, MigrationType, Migrator};

/// Which database a template is rendered for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    pub(super) fn name(self) -> &'static str {
        match self {
            Dialect::Sqlite => "sqlite",
            Dialect::Postgres => "postgres",
        }
    }

    /// Width of the type column in rendered DDL.
    fn type_width(self) -> usize {
        match self {
            Dialect::Sqlite => 7,
            Dialect::Postgres => 11,
        }
    }

    /// What `{{token}}` renders to, and whether it is a padded column type.
    fn token(self, name: &str) -> Option<(&'static str, bool)> {
        let pg = self == Dialect::Postgres;
        Some(match name {
            "ts" => (if pg { "TIMESTAMPTZ" } else { "TEXT" }, true),
            "text" => ("TEXT", true),
            "int" => ("INTEGER", true),
            "bigint" => (if pg { "BIGINT" } else { "INTEGER" }, true),
            "bool" => (if pg { "BOOLEAN" } else { "INTEGER" }, true),
            "bytes" => (if pg { "BYTEA" } else { "BLOB" }, true),
            "id" => (
                if pg {
                    "BIGSERIAL   PRIMARY KEY"
                } else {
                    "INTEGER PRIMARY KEY AUTOINCREMENT"
                },
                false,
            ),
            "false" => (if pg { "FALSE" } else { "0" }, false),
            _ => return None,
        })
    }
}

/// The migrations, in order: (version, description as sqlx derives it from the file name, template).
const TEMPLATES: &[(i64, &str, &str)] = &[
    (1, "initial", include_str!("migrations/0001_initial.sql")),
    (
        2,
        "lifecycle",
        include_str!("migrations/0002_lifecycle.sql"),
    ),
    (
        3,
        "cache notify",
        include_str!("migrations/0003_cache_notify.sql"),
    ),
    (
        4,
        "app credentials",
        include_str!("migrations/0004_app_credentials.sql"),
    ),
    (5, "sync", include_str!("migrations/0005_sync.sql")),
    (
        6,
        "lowercase tag keys",
        include_str!("migrations/0006_lowercase_tag_keys.sql"),
    ),
    (
        7,
        "session overrides",
        include_str!("migrations/0007_session_overrides.sql"),
    ),
    (
        9,
        "sync selection",
        include_str!("migrations/0009_sync_selection.sql"),
    ),
    (
        10,
        "dashboard sessions",
        include_str!("migrations/0010_dashboard_sessions.sql"),
    ),
    (
        11,
        "tenant throttle",
        include_str!("migrations/0011_tenant_throttle.sql"),
    ),
    (
        12,
        "picker sessions",
        include_str!("migrations/0012_picker_sessions.sql"),
    ),
    (
        13,
        "sync push health",
        include_str!("migrations/0013_sync_push_health.sql"),
    ),
    (
        16,
        "picker pick once",
        include_str!("migrations/0016_picker_pick_once.sql"),
    ),
    (
        17,
        "sync sweep",
        include_str!("migrations/0017_sync_sweep.sql"),
    ),
    (
        18,
        "sync record path",
        include_str!("migrations/0018_sync_record_path.sql"),
    ),
];

/// SHA-384 (hex) of each released migration as shipped: (version, SQLite, PostgreSQL).
#[cfg(test)]
const RELEASED: &[(i64, &str, &str)] = &[
    (
        1,
        "6d6ab253a86b80e5ce3394e7a45569a65d519cb7f2d514c8efbfcdd8f9ab2c960ebb77b46c7416c5f2ff1680f6090235",
        "d216581b3745fc98459c8e1ef8ad5a7c34150520054d9dd6d8b1a1718cfd86abfd6f328ed5243ac095a968a6d176bc50",
    ),
    (
        2,
        "ef34d61779f539638fd8a36bebfd78a3d9bef9b421b2f3eebf6a42d16cb88d5e0e588b39e6984a2ac84edecddc77a346",
        "d185bdfcb1239e10ddd69ea19c73d74c9f4cb0e37974467181d82dd8895da90b5888541c46f3f554bc138cfd1d463fe8",
    ),
    (
        3,
        "e47fd673ce0bc0f8fe6e5217a46f70680a807e0c6518622e6fd8abf7bb1e41cb89f1cc717607260e2a70999e88272001",
        "0940bd8c0781ee4116133181cabda982a4eae7eb12968aecf12c79649d148cdc7d094aca349f9cfe4b85aa57643e6a8d",
    ),
    (
        4,
        "d93d897139fc51f1bc54b970b347e2fc6ceb2d8635050ce2598b0a3d788b914e000671c70a25b1ac1dad56e8fc34959a",
        "2e4962161cd83b4e3ffd90c618bdd6f015c86d87d6741f02397fa6f34e45db1bead0d519219c65bba08b6cac443ce118",
    ),
    (
        5,
        "0bd5a99ae8509bdb1d3f7a761aa3f158bf0f3cd42cc7c5ab4c6d3fd7c3498cb1f84970fd7df499e6401d9cc7f28fff2d",
        "ceea57135920f64d4536cc68a0d4ea9da335180d67fc088ba9388669aac371429f4c21f7ba694edf086e9d8117868282",
    ),
    (
        6,
        "79e018577b10eee87ef99d858aa4b5c5dc75ed3dfbd2ec253dd9facd423368da02afae53583c4b4228d054814b902c2f",
        "b1a9228163c2779fd0f82d2d60364b1f79f57584929221d46f4540d10c9141c5e3eece6a5ecc472e90d8cf24173ee973",
    ),
    (
        7,
        "f472008f4ca7aab91fc85e4fc201a5a7b939735dd38dcb138630bbdaab0a5710efb7f95aaa4dbb4ef08a8cdad53dbef1",
        "f472008f4ca7aab91fc85e4fc201a5a7b939735dd38dcb138630bbdaab0a5710efb7f95aaa4dbb4ef08a8cdad53dbef1",
    ),
    (
        9,
        "10947869a59d07300c0054b707601069a2ce79387dde9766267d6e4f8c0e5b26129bfb2971aea9941e1ba8b6cb2b671e",
        "af6838617da941408278bcdef9cb22010d3511156f8f15174fa18bc277134fceaac6883caa3406ed42f515167ac662e5",
    ),
    (
        10,
        "9a5f1551dbd6a54034130f0cf4b5e055381354191db786fff98ac0250a765a4d3c3f14222ccdcccc598687101157e44c",
        "909d5aaf573ad9023b086a9d481dacfe53dc8438bb689916cc5998add8a2e1cbe0302e3714d559575a7d0c517b9304ff",
    ),
    (
        11,
        "6d4ceb44e59ca1f3ec756aed514d6215a18904c5051d5a549abb897274fde73af7d115222209888800d101c8c9ad54a1",
        "2280db93977145509038b972ce92dcfe48c927d200f3758e30e78d217d957d3570886e3fb7bd134aebafa5a7a42328bc",
    ),
    (
        12,
        "cf984a2b77c9c432fbb430b5f27e528569d45b70aa939d91d9624112dacf9370426eb32face8dad95eba945603eba168",
        "eb22e6c7bd39356f3302021344d41d929cc63acc5254182b371862cdab852e8e038a9bb47ac830d1e0b7a49c5cf15613",
    ),
    (
        13,
        "5dc961eb916e10d46e5e32990a3e8ca9858079495526dd82d34948fd1469c0b4899c9b3b10a4b1ce71a3c332996007d3",
        "6cb03ff79bc66a74d39ccc0140ebf01c03769d25b5044fb7f9be27c4e90fd617d003bd2a0da9dc4d7dbe4e365fa9ab7f",
    ),
    (
        16,
        "af5b36709965523bcae1b606c3671b6ce82ed8f14d68b6ae9b7c7cb2caf89a739d9c9032aec9da0ec3d1f400c7ebc170",
        "3c8a0dfd35133743f60c231422232da6aeca1c3ee3dd5c13523804b6c882825f9dbc06394e9a720186c8e66437bf257c",
    ),
    (
        17,
        "56bf4c3fbe77573b99538693577a4fd7061bd16a2e3a3d9c18cee64b62f90f740f41c1d83043504c40c3426baa51320a",
        "6226705c05998a08c22f77347677e303d8c48aa6b71df004cddcfd536e6c3ddde52eb65cb9710207faf3d237ce7d1ad5",
    ),
    (
        18,
        "23e40f77ae21b50db82d7b201452fbe79bea44f6e806ae6bcdc5f95ba0833101d81dd59f5e3a77e8c15024693ab6a242",
        "10c8422034da1cdcf2b5b62123549816ccfd641db69677ec556675594f123cced949b56b016f6d1d3634bf0b14529471",
    ),
];

/// Renders one template for `dialect` (see the module docs for the rules).
pub(super) fn render(template: &str, dialect: Dialect) -> String {
    let mut out = String::with_capacity(template.len());
    let mut block: Option<Dialect> = None;
    for line in template.split_inclusive('\n') {
        let (body, eol) = match line.strip_suffix('\n') {
            Some(b) => (b, "\n"),
            None => (line, ""),
        };
        match body {
            "--@postgres" => block = Some(Dialect::Postgres),
            "--@sqlite" => block = Some(Dialect::Sqlite),
            "--@end" => block = None,
            _ if block.is_some_and(|b| b != dialect) => {}
            _ => {
                let body = match one_line(body) {
                    Some((d, _)) if d != dialect => continue,
                    Some((_, rest)) => rest,
                    None => body,
                };
                out.push_str(&substitute(body, dialect));
                out.push_str(eol);
            }
        }
    }
    out
}

/// `--@postgres rest` / `--@sqlite rest`: the line `rest`, for that database only.
fn one_line(line: &str) -> Option<(Dialect, &str)> {
    if let Some(rest) = line.strip_prefix("--@postgres ") {
        Some((Dialect::Postgres, rest))
    } else {
        line.strip_prefix("--@sqlite ")
            .map(|rest| (Dialect::Sqlite, rest))
    }
}

fn substitute(line: &str, dialect: Dialect) -> Cow<'_, str> {
    if !line.contains("{{") {
        return Cow::Borrowed(line);
    }
    let mut out = String::with_capacity(line.len() + 16);
    let mut rest = line;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            break;
        };
        let name = &after[..end];
        rest = &after[end + 2..];
        match dialect.token(name) {
            Some((text, padded)) => {
                out.push_str(text);
                if padded {
                    if let Some(p) = rest.chars().next().filter(|c| matches!(c, ',' | ';')) {
                        out.push(p);
                        rest = &rest[1..];
                    }
                    let pad = dialect.type_width().saturating_sub(text.len());
                    out.extend(std::iter::repeat_n(' ', pad));
                }
            }
            // Not a token: keep it as written.
            None => {
                out.push_str("{{");
                out.push_str(name);
                out.push_str("}}");
            }
        }
    }
    out.push_str(rest);
    Cow::Owned(out.trim_end_matches(' ').to_owned())
}

/// The rendered migrations of `dialect`, as sqlx loads them.
#[derive(Debug)]
struct Rendered(Dialect);

impl MigrationSource<'static> for Rendered {
    fn resolve(self) -> futures::future::BoxFuture<'static, Result<Vec<Migration>, BoxDynError>> {
        Box::pin(async move { Ok(migrations(self.0)) })
    }
}

fn migrations(dialect: Dialect) -> Vec<Migration> {
    TEMPLATES
        .iter()
        .map(|(version, description, template)| {
            Migration::new(
                *version,
                Cow::Borrowed(*description),
                MigrationType::Simple,
                Cow::Owned(render(template, dialect)),
                false,
            )
        })
        .collect()
}

/// The migrator for `dialect`.
pub(super) async fn migrator(dialect: Dialect) -> Result<Migrator, sqlx::migrate::MigrateError> {
    Migrator::new(Rendered(dialect)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn released_migrations_render_to_the_shipped_bytes() {
        let versions: Vec<i64> = TEMPLATES.iter().map(|t| t.0).collect();
        let released: Vec<i64> = RELEASED.iter().map(|r| r.0).collect();
        for (dialect, pick) in [(Dialect::Sqlite, 1), (Dialect::Postgres, 2)] {
            let got: Vec<(i64, String)> = migrations(dialect)
                .iter()
                .map(|m| (m.version, hex(&m.checksum)))
                .collect();
            let want: Vec<(i64, String)> = RELEASED
                .iter()
                .map(|r| (r.0, (if pick == 1 { r.1 } else { r.2 }).to_owned()))
                .collect();
            assert_eq!(
                got,
                want,
                "{} migrations must render to the released bytes (versions {versions:?}, \
                 released {released:?}); a new migration adds its checksums to RELEASED",
                dialect.name()
            );
        }
    }

    #[test]
    fn tokens_pad_the_type_column_and_blocks_pick_a_dialect() {
        let t = "a {{ts}} NOT NULL,\nb {{text}},  -- c\n--@postgres\npg\n--@end\n--@sqlite lite\n";
        assert_eq!(
            render(t, Dialect::Postgres),
            "a TIMESTAMPTZ NOT NULL,\nb TEXT,         -- c\npg\n"
        );
        assert_eq!(
            render(t, Dialect::Sqlite),
            "a TEXT    NOT NULL,\nb TEXT,     -- c\nlite\n"
        );
    }
}
