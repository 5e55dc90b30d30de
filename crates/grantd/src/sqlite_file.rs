//! The SQLite database file holds end-user PII and metadata in clear (tokens are sealed): it is
//! created readable by its owner only (0600), and an existing file, with its WAL and shared-
//! memory files, is tightened to 0600 at start.

use std::path::PathBuf;
use std::str::FromStr;

/// The file behind a `sqlite:` URL; `None` for PostgreSQL, in-memory databases and URLs the
/// store will refuse anyway.
pub fn path_of(url: &str) -> Option<PathBuf> {
    if !url.starts_with("sqlite:") || url.contains(":memory:") || url.contains("mode=memory") {
        return None;
    }
    let options = sqlx::sqlite::SqliteConnectOptions::from_str(url).ok()?;
    Some(options.get_filename().to_path_buf())
}

/// Creates the database file 0600 when missing and sets 0600 on it and its `-wal`/`-shm` files.
#[cfg(unix)]
pub fn restrict(url: &str) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let Some(path) = path_of(url) else {
        return Ok(());
    };
    if let Some(dir) = path.parent() {
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(dir)?;
        }
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(&path)?;
    for suffix in ["", "-wal", "-shm"] {
        let mut p = path.clone().into_os_string();
        p.push(suffix);
        if std::path::Path::new(&p).exists() {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600))?;
        }
    }
    Ok(())
}

#[cfg(not(unix))]
pub fn restrict(_url: &str) -> std::io::Result<()> {
    Ok(())
}
