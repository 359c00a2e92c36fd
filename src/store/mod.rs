//! Persistence of the control plane in one SQLite database in the data dir.
//!
//! Every resource is one row `(kind, id, name, doc)` where `doc` is the resource's JSON; the
//! control plane keeps the live copy in memory and writes each change through [`Store::apply`],
//! one transaction per API action, before it answers. `PRAGMA user_version` carries the schema
//! version; a database from a newer ec2lab is refused rather than misread.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The schema this build writes. Bump it with a migration step in [`Store::migrate`].
pub const SCHEMA_VERSION: i64 = 1;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open database {path}: {source}")]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error(
        "database {path} has schema version {found}, newer than this ec2lab understands ({SCHEMA_VERSION})"
    )]
    TooNew { path: PathBuf, found: i64 },
    #[error("database error: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("record {kind}/{id} is not valid JSON: {source}")]
    Decode {
        kind: String,
        id: String,
        source: serde_json::Error,
    },
    #[error("record {kind}/{id} cannot be encoded: {source}")]
    Encode {
        kind: String,
        id: String,
        source: serde_json::Error,
    },
}

/// One change to the stored state.
#[derive(Debug, Clone)]
pub enum Change {
    Put {
        kind: &'static str,
        id: String,
        name: Option<String>,
        doc: String,
    },
    Delete {
        kind: &'static str,
        id: String,
    },
}

impl Change {
    pub fn put<T: Serialize>(
        kind: &'static str,
        id: &str,
        name: Option<&str>,
        value: &T,
    ) -> Result<Change, StoreError> {
        let doc = serde_json::to_string(value).map_err(|source| StoreError::Encode {
            kind: kind.to_string(),
            id: id.to_string(),
            source,
        })?;
        Ok(Change::Put {
            kind,
            id: id.to_string(),
            name: name.map(str::to_string),
            doc,
        })
    }

    pub fn delete(kind: &'static str, id: &str) -> Change {
        Change::Delete {
            kind,
            id: id.to_string(),
        }
    }
}

pub struct Store {
    conn: Mutex<Connection>,
    path: PathBuf,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

impl Store {
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let open_err = |source| StoreError::Open {
            path: path.to_path_buf(),
            source,
        };
        let conn = Connection::open(path).map_err(open_err)?;
        // WAL keeps readers off the writer's lock. With synchronous=NORMAL a committed change is
        // in the WAL file before the API answers, so it survives the daemon crashing or being
        // killed; only a power cut of the host can lose the last commits (an fsync per change
        // would cost more than the launch of an instance).
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(open_err)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(open_err)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(open_err)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(open_err)?;
        let store = Store {
            conn: Mutex::new(conn),
            path: path.to_path_buf(),
        };
        store.migrate()?;
        Ok(store)
    }

    fn migrate(&self) -> Result<(), StoreError> {
        let conn = self.lock();
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::TooNew {
                path: self.path.clone(),
                found: version,
            });
        }
        if version < 1 {
            conn.execute_batch(
                "BEGIN;
                 CREATE TABLE IF NOT EXISTS resources (
                     kind TEXT NOT NULL,
                     id   TEXT NOT NULL,
                     name TEXT,
                     doc  TEXT NOT NULL,
                     PRIMARY KEY (kind, id)
                 );
                 CREATE UNIQUE INDEX IF NOT EXISTS resources_name ON resources(kind, name);
                 CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
                 PRAGMA user_version = 1;
                 COMMIT;",
            )?;
        }
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves SQLite consistent (the transaction rolls back).
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every stored record of one kind.
    pub fn load<T: DeserializeOwned>(&self, kind: &str) -> Result<Vec<T>, StoreError> {
        let conn = self.lock();
        let mut stmt =
            conn.prepare_cached("SELECT id, doc FROM resources WHERE kind = ?1 ORDER BY rowid")?;
        let rows = stmt.query_map(params![kind], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (id, doc) = row?;
            let v = serde_json::from_str(&doc).map_err(|source| StoreError::Decode {
                kind: kind.to_string(),
                id,
                source,
            })?;
            out.push(v);
        }
        Ok(out)
    }

    /// Applies the changes in one transaction: all or nothing.
    pub fn apply(&self, changes: &[Change]) -> Result<(), StoreError> {
        if changes.is_empty() {
            return Ok(());
        }
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        for c in changes {
            match c {
                Change::Put {
                    kind,
                    id,
                    name,
                    doc,
                } => {
                    tx.prepare_cached(
                        "INSERT INTO resources(kind, id, name, doc) VALUES (?1, ?2, ?3, ?4)
                         ON CONFLICT(kind, id) DO UPDATE SET name = excluded.name, doc = excluded.doc",
                    )?
                    .execute(params![kind, id, name, doc])?;
                }
                Change::Delete { kind, id } => {
                    tx.prepare_cached("DELETE FROM resources WHERE kind = ?1 AND id = ?2")?
                        .execute(params![kind, id])?;
                }
            }
        }
        tx.commit()?;
        Ok(())
    }

    pub fn meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .lock()
            .query_row("SELECT value FROM meta WHERE key = ?1", params![key], |r| {
                r.get(0)
            })
            .optional()?)
    }

    pub fn set_meta(&self, key: &str, value: &str) -> Result<(), StoreError> {
        self.lock().execute(
            "INSERT INTO meta(key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            params![key, value],
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize, serde::Deserialize, PartialEq, Debug)]
    struct Rec {
        id: String,
        n: u32,
    }

    #[test]
    fn changes_persist_across_reopen_and_are_atomic() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        {
            let s = Store::open(&path).unwrap();
            let a = Rec {
                id: "a".into(),
                n: 1,
            };
            s.apply(&[Change::put("rec", "a", Some("alpha"), &a).unwrap()])
                .unwrap();
            // A unique-name violation aborts the whole transaction, including the first put.
            let b = Rec {
                id: "b".into(),
                n: 2,
            };
            let c = Rec {
                id: "c".into(),
                n: 3,
            };
            let err = s.apply(&[
                Change::put("rec", "b", Some("beta"), &b).unwrap(),
                Change::put("rec", "c", Some("alpha"), &c).unwrap(),
            ]);
            assert!(err.is_err());
            s.set_meta("k", "v").unwrap();
        }
        let s = Store::open(&path).unwrap();
        let all: Vec<Rec> = s.load("rec").unwrap();
        assert_eq!(
            all,
            vec![Rec {
                id: "a".into(),
                n: 1
            }]
        );
        assert_eq!(s.meta("k").unwrap().as_deref(), Some("v"));
        s.apply(&[Change::delete("rec", "a")]).unwrap();
        assert!(s.load::<Rec>("rec").unwrap().is_empty());
    }

    #[test]
    fn refuses_newer_schema() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        Connection::open(&path)
            .unwrap()
            .pragma_update(None, "user_version", 99)
            .unwrap();
        assert!(matches!(
            Store::open(&path),
            Err(StoreError::TooNew { found: 99, .. })
        ));
    }
}
