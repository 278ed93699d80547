//! Buckets for the store under test: filesystem bucket directories built from promtool blocks (with an optional
//! Thanos section added to meta.json), deliberate corruption, deletion marks, and objstore.yml texts.

use std::fs;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, ensure};

use crate::fixture::Block;
use crate::model::Labels;

/// Copies a directory tree.
pub fn copy_dir(src: &Path, dst: &Path) -> Result<()> {
    fs::create_dir_all(dst).with_context(|| format!("create {}", dst.display()))?;
    for e in fs::read_dir(src).with_context(|| format!("list {}", src.display()))? {
        let e = e?;
        let to = dst.join(e.file_name());
        if e.file_type()?.is_dir() {
            copy_dir(&e.path(), &to)?;
        } else {
            fs::copy(e.path(), &to)
                .with_context(|| format!("copy {} to {}", e.path().display(), to.display()))?;
        }
    }
    Ok(())
}

/// meta.json of `block`, with a Thanos section carrying `external` labels when given (`None` leaves promtool's
/// meta.json as it is: no Thanos section, no external labels).
pub fn meta_json(block: &Block, external: Option<&Labels>) -> Result<Vec<u8>> {
    let mut meta = block.meta.clone();
    if let Some(ext) = external {
        let labels: serde_json::Map<String, serde_json::Value> = ext
            .iter()
            .map(|(n, v)| (n.clone(), serde_json::Value::String(v.clone())))
            .collect();
        meta["thanos"] = serde_json::json!({
            "version": 1,
            "labels": labels,
            "downsample": {"resolution": 0},
            "source": "test",
        });
    }
    Ok(serde_json::to_vec_pretty(&meta)?)
}

/// Copies `block` into `bucket_dir/<ULID>/` in upload order (chunks, index, then meta.json, written to a temporary
/// name and renamed), so a store syncing concurrently never sees a meta.json before the rest.
pub fn put_block(bucket_dir: &Path, block: &Block, external: Option<&Labels>) -> Result<()> {
    let dst = bucket_dir.join(&block.ulid);
    copy_dir(&block.dir.join("chunks"), &dst.join("chunks"))?;
    for e in fs::read_dir(&block.dir)? {
        let e = e?;
        let name = e.file_name();
        if e.file_type()?.is_file() && name != "meta.json" {
            fs::copy(e.path(), dst.join(&name))?;
        }
    }
    let tmp = dst.join(".meta.json.tmp");
    fs::write(&tmp, meta_json(block, external)?)?;
    fs::rename(&tmp, dst.join("meta.json"))?;
    Ok(())
}

/// Deletes a block the way Thanos does: meta.json first, then the rest.
pub fn delete_block(bucket_dir: &Path, ulid: &str) -> Result<()> {
    let dir = bucket_dir.join(ulid);
    fs::remove_file(dir.join("meta.json")).with_context(|| format!("remove {ulid}/meta.json"))?;
    fs::remove_dir_all(&dir)?;
    Ok(())
}

/// The text of `<ULID>/deletion-mark.json` for a block marked `age_secs` ago.
pub fn deletion_mark(ulid: &str, age_secs: u64) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    serde_json::json!({
        "id": ulid,
        "version": 1,
        "details": "marked by sluice-e2e",
        "deletion_time": now.saturating_sub(age_secs),
    })
    .to_string()
}

/// Writes a deletion mark into a filesystem bucket.
pub fn mark_deleted(bucket_dir: &Path, ulid: &str, age_secs: u64) -> Result<()> {
    fs::write(
        bucket_dir.join(ulid).join("deletion-mark.json"),
        deletion_mark(ulid, age_secs),
    )?;
    Ok(())
}

/// Flips one bit inside the index's symbol table (the first symbol's first byte, right after the 5-byte header,
/// the table's 4-byte length, its 4-byte count and the symbol's 1-byte length), so its CRC-32C no longer matches.
pub fn corrupt_index_crc(block_dir: &Path) -> Result<()> {
    let path = block_dir.join("index");
    let mut data = fs::read(&path)?;
    ensure!(data.len() > 64, "index too small to corrupt");
    let off = 5 + 4 + 4 + 1;
    data[off] ^= 0x01;
    fs::write(&path, data)?;
    Ok(())
}

/// Cuts the index file in half (the TOC and most tables are lost).
pub fn truncate_index(block_dir: &Path) -> Result<()> {
    let path = block_dir.join("index");
    let data = fs::read(&path)?;
    fs::write(&path, &data[..data.len() / 2])?;
    Ok(())
}

/// Removes the first chunk segment file.
pub fn remove_first_segment(block_dir: &Path) -> Result<()> {
    fs::remove_file(block_dir.join("chunks").join("000001"))?;
    Ok(())
}

/// A Thanos FILESYSTEM objstore.yml.
pub fn fs_objstore_yaml(dir: &Path) -> String {
    format!(
        "type: FILESYSTEM\nconfig:\n  directory: {}\n",
        yaml_str(&dir.display().to_string())
    )
}

/// A Thanos S3 objstore.yml for a path-style, plain-HTTP endpoint.
pub fn s3_objstore_yaml(endpoint: &str, bucket: &str, prefix: Option<&str>) -> String {
    let mut y = format!(
        "type: S3\nconfig:\n  bucket: {}\n  endpoint: {}\n  access_key: testing\n  secret_key: testing\n  \
         insecure: true\n  region: us-east-1\n  bucket_lookup_type: path\n",
        yaml_str(bucket),
        yaml_str(endpoint)
    );
    if let Some(p) = prefix {
        y.push_str(&format!("prefix: {}\n", yaml_str(p)));
    }
    y
}

fn yaml_str(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}
