//! The bucket catalog: which blocks a bucket holds and in what state — their
//! metadata, their deletion and no-compact marks, and the partial uploads
//! (block directories without `meta.json`). It reads only small objects and
//! knows nothing of indexes, chunks or queries, so the compactor and the
//! bucket tools use it as the store gateway does.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::StreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use sluice_tsdb::meta::{
    BlockMeta, DELETION_MARK_FILENAME, DeletionMark, META_FILENAME, NO_COMPACT_MARK_FILENAME,
    NoCompactMark,
};
use ulid::Ulid;

/// What the catalog knows of one block directory.
#[derive(Debug, Clone)]
pub struct CatalogEntry {
    pub id: Ulid,
    pub state: EntryState,
    pub deletion_mark: Option<DeletionMark>,
    pub no_compact_mark: Option<NoCompactMark>,
}

/// The state of a block directory.
#[derive(Debug, Clone)]
pub enum EntryState {
    /// `meta.json` is there and names this block.
    Ready(Box<BlockMeta>),
    /// No `meta.json` (yet): an upload in progress or one that crashed.
    /// Never served; the compactor's cleanup removes old ones.
    Partial,
    /// `meta.json` exists but cannot be used; the reason. Objects are
    /// immutable, so this does not change by itself.
    Corrupt(String),
    /// `meta.json` could not be read this time (a transient bucket error);
    /// the next sync tries again.
    Unreadable(String),
}

impl CatalogEntry {
    /// The block's metadata when it is ready.
    pub fn meta(&self) -> Option<&BlockMeta> {
        match &self.state {
            EntryState::Ready(m) => Some(m),
            _ => None,
        }
    }
}

/// Errors of listing the bucket. Problems of single blocks are entries'
/// states, not errors.
#[derive(Debug, thiserror::Error)]
#[error("listing the bucket: {0}")]
pub struct CatalogError(#[from] pub object_store::Error);

/// Reads the block list of one bucket.
#[derive(Clone)]
pub struct Catalog {
    bucket: Arc<dyn ObjectStore>,
    concurrency: usize,
}

impl std::fmt::Debug for Catalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Catalog")
            .field("bucket", &self.bucket.to_string())
            .finish()
    }
}

impl Catalog {
    /// A catalog reading `concurrency` blocks' small objects at a time.
    pub fn new(bucket: Arc<dyn ObjectStore>, concurrency: usize) -> Self {
        Catalog {
            bucket,
            concurrency: concurrency.max(1),
        }
    }

    pub fn bucket(&self) -> &Arc<dyn ObjectStore> {
        &self.bucket
    }

    /// ULIDs of the block directories at the bucket's top level, ascending.
    pub async fn block_ids(&self) -> Result<Vec<Ulid>, CatalogError> {
        let listing = self.bucket.list_with_delimiter(None).await?;
        let mut ids: Vec<Ulid> = listing
            .common_prefixes
            .iter()
            .filter_map(|p| {
                p.parts()
                    .last()
                    .and_then(|s| Ulid::from_string(s.as_ref()).ok())
            })
            .collect();
        ids.sort();
        Ok(ids)
    }

    /// Every block directory with its metadata and marks. Blocks in `known`
    /// keep the metadata given there (meta.json is immutable) and only have
    /// their marks re-read.
    pub async fn sync(
        &self,
        known: &BTreeMap<Ulid, BlockMeta>,
    ) -> Result<Vec<CatalogEntry>, CatalogError> {
        let ids = self.block_ids().await?;
        let entries = futures::stream::iter(ids)
            .map(|id| async move {
                let state = match known.get(&id) {
                    Some(m) => EntryState::Ready(Box::new(m.clone())),
                    None => self.read_meta(id).await,
                };
                let deletion_mark = self
                    .read_mark(id, DELETION_MARK_FILENAME, |b| {
                        DeletionMark::parse(b).map_err(|e| e.to_string())
                    })
                    .await;
                let no_compact_mark = self
                    .read_mark(id, NO_COMPACT_MARK_FILENAME, |b| {
                        serde_json::from_slice::<NoCompactMark>(b).map_err(|e| e.to_string())
                    })
                    .await;
                CatalogEntry {
                    id,
                    state,
                    deletion_mark,
                    no_compact_mark,
                }
            })
            .buffered(self.concurrency)
            .collect()
            .await;
        Ok(entries)
    }

    async fn read_meta(&self, id: Ulid) -> EntryState {
        let path = Path::from(format!("{id}/{META_FILENAME}"));
        let bytes = match self.bucket.get(&path).await {
            Ok(r) => match r.bytes().await {
                Ok(b) => b,
                Err(e) => return EntryState::Unreadable(format!("reading {path}: {e}")),
            },
            Err(object_store::Error::NotFound { .. }) => return EntryState::Partial,
            Err(e) => return EntryState::Unreadable(format!("reading {path}: {e}")),
        };
        match BlockMeta::parse(&bytes) {
            Ok(m) if m.ulid != id => EntryState::Corrupt(format!(
                "meta.json names block {} but lives in directory {id}",
                m.ulid
            )),
            Ok(m) => EntryState::Ready(Box::new(m)),
            Err(e) => EntryState::Corrupt(format!("meta.json: {e}")),
        }
    }

    async fn read_mark<T>(
        &self,
        id: Ulid,
        file: &str,
        parse: impl FnOnce(&[u8]) -> Result<T, String>,
    ) -> Option<T> {
        let path = Path::from(format!("{id}/{file}"));
        let bytes = match self.bucket.get(&path).await {
            Ok(r) => r.bytes().await,
            Err(object_store::Error::NotFound { .. }) => return None,
            Err(e) => Err(e),
        };
        match bytes {
            Ok(b) => match parse(&b) {
                Ok(m) => Some(m),
                Err(e) => {
                    tracing::warn!(block = %id, file, error = %e, "ignoring unreadable mark");
                    None
                }
            },
            Err(e) => {
                tracing::warn!(block = %id, file, error = %e, "cannot read mark");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::PutPayload;
    use object_store::memory::InMemory;

    #[tokio::test]
    async fn states_of_block_directories() {
        let bucket: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let ready = Ulid::from_parts(1, 1);
        let partial = Ulid::from_parts(2, 2);
        let wrong = Ulid::from_parts(3, 3);
        let put = |p: String, b: Vec<u8>| {
            let bucket = bucket.clone();
            async move {
                bucket
                    .put(&Path::from(p), PutPayload::from(b))
                    .await
                    .expect("put")
            }
        };
        put(
            format!("{ready}/meta.json"),
            BlockMeta::new(ready, 0, 10).to_json(),
        )
        .await;
        put(
            format!("{ready}/deletion-mark.json"),
            DeletionMark::new(ready, "old", 5).to_json(),
        )
        .await;
        put(format!("{partial}/index"), b"x".to_vec()).await;
        put(
            format!("{wrong}/meta.json"),
            BlockMeta::new(ready, 0, 10).to_json(),
        )
        .await;
        put("not-a-block/file".into(), b"x".to_vec()).await;

        let entries = Catalog::new(bucket, 4)
            .sync(&BTreeMap::new())
            .await
            .expect("sync");
        let ids: Vec<Ulid> = entries.iter().map(|e| e.id).collect();
        assert_eq!(ids, vec![ready, partial, wrong]);
        assert!(entries[0].meta().is_some());
        assert_eq!(
            entries[0].deletion_mark.as_ref().map(|m| m.deletion_time),
            Some(5)
        );
        assert!(matches!(entries[1].state, EntryState::Partial));
        assert!(matches!(&entries[2].state, EntryState::Corrupt(r) if r.contains("names block")));
    }
}
