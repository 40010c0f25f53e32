//! Where backups live: a local directory or an S3-compatible bucket, behind `object_store`.

use crate::BackupError;
use object_store::path::Path as ObjectPath;
use object_store::ObjectStore;
use std::sync::Arc;

/// A place backups are written to and read from, with a prefix inside it.
#[derive(Debug, Clone)]
pub struct Location {
    store: Arc<dyn ObjectStore>,
    prefix: ObjectPath,
    shown: String,
}

impl Location {
    /// Parses `PATH`, `file:///PATH` or `s3://BUCKET/PREFIX`. S3 takes its endpoint, region
    /// and credentials from the environment (`AWS_ENDPOINT_URL`, `AWS_REGION`,
    /// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_ALLOW_HTTP=true` for a plain-HTTP
    /// endpoint). A local directory is created when missing.
    pub fn parse(s: &str) -> Result<Location, BackupError> {
        if let Some(rest) = s.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(BackupError::Location(format!("{s}: no bucket named")));
            }
            let store = object_store::aws::AmazonS3Builder::from_env()
                .with_bucket_name(bucket)
                .build()
                .map_err(|e| BackupError::Location(format!("{s}: {e}")))?;
            return Ok(Location {
                store: Arc::new(store),
                prefix: ObjectPath::from(prefix.trim_matches('/')),
                shown: s.to_string(),
            });
        }
        if s.contains("://") && !s.starts_with("file://") {
            return Err(BackupError::Location(format!(
                "{s}: expected a directory, file:///DIR or s3://BUCKET/PREFIX"
            )));
        }
        let dir = std::path::PathBuf::from(s.strip_prefix("file://").unwrap_or(s));
        std::fs::create_dir_all(&dir).map_err(|e| BackupError::io("creating", &dir, e))?;
        let abs = dir
            .canonicalize()
            .map_err(|e| BackupError::io("resolving", &dir, e))?;
        // Rooted at / with the directory as prefix, so that a backup's parent (where newer
        // backups are) is reachable from it as it is on S3.
        let prefix = ObjectPath::from_absolute_path(&abs)
            .map_err(|e| BackupError::Location(format!("{s}: {e}")))?;
        Ok(Location {
            store: Arc::new(object_store::local::LocalFileSystem::new()),
            prefix,
            shown: s.trim_end_matches('/').to_string(),
        })
    }

    /// The same storage, one level further down.
    pub fn child(&self, name: &str) -> Location {
        Location {
            store: self.store.clone(),
            prefix: self.path(name),
            shown: format!("{}/{}", self.shown.trim_end_matches('/'), name),
        }
    }

    /// The location one level up, and this one's name in it (`None` at the root).
    pub fn parent(&self) -> Option<(Location, String)> {
        let parts: Vec<String> = self
            .prefix
            .parts()
            .map(|p| p.as_ref().to_string())
            .collect();
        let (name, up) = parts.split_last()?;
        Some((
            Location {
                store: self.store.clone(),
                prefix: ObjectPath::from_iter(up.iter().map(String::as_str)),
                shown: self
                    .shown
                    .rsplit_once('/')
                    .map_or_else(|| self.shown.clone(), |(a, _)| a.to_string()),
            },
            name.clone(),
        ))
    }

    /// The object path of `name` under this location.
    pub(crate) fn path(&self, name: &str) -> ObjectPath {
        let mut p = self.prefix.clone();
        for part in name.split('/').filter(|s| !s.is_empty()) {
            p = p.child(part);
        }
        p
    }

    pub(crate) fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    pub(crate) fn prefix(&self) -> &ObjectPath {
        &self.prefix
    }

    /// Writes `bytes` at `name`.
    pub(crate) async fn put(&self, name: &str, bytes: Vec<u8>) -> Result<(), BackupError> {
        self.store
            .put(&self.path(name), bytes.into())
            .await
            .map_err(|e| BackupError::object(format!("writing {}", self.show(name)), e))?;
        Ok(())
    }

    /// Reads `name`; `Ok(None)` when it does not exist.
    pub(crate) async fn get(&self, name: &str) -> Result<Option<bytes::Bytes>, BackupError> {
        match self.store.get(&self.path(name)).await {
            Ok(r) => Ok(Some(r.bytes().await.map_err(|e| {
                BackupError::object(format!("reading {}", self.show(name)), e)
            })?)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(BackupError::object(
                format!("reading {}", self.show(name)),
                e,
            )),
        }
    }

    /// How a name under this location is shown to people.
    pub fn show(&self, name: &str) -> String {
        format!("{}/{}", self.shown.trim_end_matches('/'), name)
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.shown)
    }
}
