//! The one error type of the TSDB format layer. Every decoder of outside bytes
//! returns it instead of panicking; variants say what was being read.

/// Errors from decoding or encoding TSDB on-disk structures.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The bytes ended before the structure did.
    #[error("truncated {what}: need {need} bytes at offset {offset}, have {have}")]
    Truncated {
        what: &'static str,
        offset: usize,
        need: usize,
        have: usize,
    },
    /// A CRC-32C checksum did not match.
    #[error(
        "checksum mismatch in {what} at offset {offset}: stored {stored:#010x}, computed {computed:#010x}"
    )]
    Checksum {
        what: &'static str,
        offset: usize,
        stored: u32,
        computed: u32,
    },
    /// A magic number or version byte was wrong.
    #[error("bad {what}: {detail}")]
    BadFormat { what: &'static str, detail: String },
    /// A structurally invalid value (reference out of range, varint overflow, ...).
    #[error("corrupt {what}: {detail}")]
    Corrupt { what: &'static str, detail: String },
    /// A chunk encoding this crate does not decode.
    #[error("unsupported chunk encoding {0:#04x}")]
    UnsupportedEncoding(u8),
    /// An encoder was given input it cannot represent.
    #[error("invalid input to {what}: {detail}")]
    InvalidInput { what: &'static str, detail: String },
    /// meta.json or a marker file could not be parsed or written.
    #[error("{what}: {source}")]
    Json {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    /// A file could not be read or written (block writer only).
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    pub(crate) fn corrupt(what: &'static str, detail: impl Into<String>) -> Self {
        Error::Corrupt {
            what,
            detail: detail.into(),
        }
    }

    pub(crate) fn truncated(what: &'static str, offset: usize, need: usize, have: usize) -> Self {
        Error::Truncated {
            what,
            offset,
            need,
            have,
        }
    }
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
