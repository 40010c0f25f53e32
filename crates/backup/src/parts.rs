//! Streams to and from parts: zstd-compressed, cut at a bounded size, optionally sealed, each
//! checksummed.

use crate::manifest::{PartEntry, StreamEntry};
use crate::{BackupError, BackupKey, Location};
use sha2::{Digest, Sha256};
use std::io::Write;

/// Parts are cut when this many compressed bytes have gathered: small enough to hold in
/// memory and to retry, large enough that object storage round trips do not dominate.
pub(crate) const PART_SIZE: usize = 32 << 20;

/// What every part of a backup shares.
#[derive(Debug)]
pub(crate) struct PartContext<'a> {
    pub(crate) at: &'a Location,
    pub(crate) backup_id: &'a str,
    pub(crate) key: Option<&'a BackupKey>,
}

impl PartContext<'_> {
    fn aad(&self, path: &str) -> String {
        format!("vigil-backup/{}/{}", self.backup_id, path)
    }
}

/// Compresses one stream into parts as bytes arrive.
pub(crate) struct StreamWriter<'a> {
    ctx: &'a PartContext<'a>,
    name: String,
    columns: Vec<String>,
    encoder: zstd::stream::write::Encoder<'static, Vec<u8>>,
    raw_bytes: u64,
    parts: Vec<PartEntry>,
}

impl<'a> StreamWriter<'a> {
    pub(crate) fn new(
        ctx: &'a PartContext<'a>,
        name: &str,
        columns: Vec<String>,
    ) -> Result<Self, BackupError> {
        let mut encoder = zstd::stream::write::Encoder::new(Vec::new(), 3)
            .map_err(|e| BackupError::io("starting compression for", name, e))?;
        encoder
            .include_checksum(true)
            .map_err(|e| BackupError::io("starting compression for", name, e))?;
        Ok(StreamWriter {
            ctx,
            name: name.to_string(),
            columns,
            encoder,
            raw_bytes: 0,
            parts: Vec::new(),
        })
    }

    /// Adds bytes of the stream.
    pub(crate) async fn write(&mut self, data: &[u8]) -> Result<(), BackupError> {
        self.raw_bytes += data.len() as u64;
        self.encoder
            .write_all(data)
            .map_err(|e| BackupError::io("compressing", &self.name, e))?;
        if self.encoder.get_ref().len() >= PART_SIZE {
            let out = std::mem::take(self.encoder.get_mut());
            self.emit(out).await?;
        }
        Ok(())
    }

    /// Ends the stream: the last part goes out and its manifest entry comes back.
    pub(crate) async fn finish(mut self) -> Result<StreamEntry, BackupError> {
        let rest = self
            .encoder
            .finish()
            .map_err(|e| BackupError::io("compressing", &self.name, e))?;
        self.encoder = zstd::stream::write::Encoder::new(Vec::new(), 3)
            .map_err(|e| BackupError::io("compressing", &self.name, e))?;
        self.emit(rest).await?;
        Ok(StreamEntry {
            name: self.name,
            columns: self.columns,
            raw_bytes: self.raw_bytes,
            parts: self.parts,
        })
    }

    async fn emit(&mut self, compressed: Vec<u8>) -> Result<(), BackupError> {
        let path = format!(
            "parts/{}.{:05}.zst{}",
            self.name,
            self.parts.len(),
            if self.ctx.key.is_some() { ".enc" } else { "" }
        );
        let stored = match self.ctx.key {
            Some(k) => k.seal(&self.ctx.aad(&path), &compressed),
            None => compressed,
        };
        let sha256 = hex::encode(Sha256::digest(&stored));
        let bytes = stored.len() as u64;
        self.ctx.at.put(&path, stored).await?;
        self.parts.push(PartEntry {
            path,
            bytes,
            sha256,
        });
        Ok(())
    }
}

/// Fetches a part and checks it against its entry: size, checksum, then (when sealed) the
/// authentication tag. Returns the compressed bytes.
pub(crate) async fn fetch(ctx: &PartContext<'_>, part: &PartEntry) -> Result<Vec<u8>, BackupError> {
    let corrupt = |reason: String| BackupError::CorruptPart {
        part: ctx.at.show(&part.path),
        reason,
    };
    let stored = ctx
        .at
        .get(&part.path)
        .await?
        .ok_or_else(|| corrupt("missing".into()))?;
    if stored.len() as u64 != part.bytes {
        return Err(corrupt(format!(
            "{} bytes, the manifest says {}",
            stored.len(),
            part.bytes
        )));
    }
    let sha = hex::encode(Sha256::digest(&stored));
    if sha != part.sha256 {
        return Err(corrupt(format!(
            "SHA-256 {sha}, the manifest says {}",
            part.sha256
        )));
    }
    match ctx.key {
        Some(k) => k
            .open(&ctx.aad(&part.path), &stored)
            .ok_or_else(|| corrupt("does not decrypt with this key".into())),
        None => Ok(stored.to_vec()),
    }
}

/// Decompresses a stream part by part, handing out the raw bytes a slice at a time.
pub(crate) struct StreamReader {
    decoder: zstd::stream::write::Decoder<'static, Vec<u8>>,
    pub(crate) raw_bytes: u64,
}

/// Compressed bytes fed to the decoder at a time, which bounds the raw bytes in memory.
pub(crate) const FEED: usize = 1 << 20;

impl StreamReader {
    pub(crate) fn new() -> Result<StreamReader, BackupError> {
        Ok(StreamReader {
            decoder: zstd::stream::write::Decoder::new(Vec::new())
                .map_err(|e| BackupError::io("starting decompression", "zstd", e))?,
            raw_bytes: 0,
        })
    }

    /// Decompresses the next compressed bytes of the stream (feed at most [`FEED`] at a time
    /// to bound memory); returns the raw bytes they yield.
    pub(crate) fn decode(&mut self, part: &str, compressed: &[u8]) -> Result<Vec<u8>, BackupError> {
        self.decoder
            .write_all(compressed)
            .and_then(|_| self.decoder.flush())
            .map_err(|e| BackupError::CorruptPart {
                part: part.to_string(),
                reason: format!("does not decompress: {e}"),
            })?;
        let out = std::mem::take(self.decoder.get_mut());
        self.raw_bytes += out.len() as u64;
        Ok(out)
    }
}
