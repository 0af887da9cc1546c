//! The versioned envelope around every stored value: `{"v": <version>, "r": <record>}`.
//!
//! A record type names its current version; decoding refuses a newer one instead of
//! misreading it, and older ones are upgraded by the schema migrations.

use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::error::StorageError;
use crate::schema::Table;

/// A type stored in a table.
pub trait StoredRecord: Serialize + DeserializeOwned {
    /// The table records of this type live in.
    const TABLE: Table;
    /// Version written by this build.
    const VERSION: u32;
}

#[derive(Serialize)]
struct EnvelopeRef<'a, T> {
    v: u32,
    r: &'a T,
}

#[derive(Deserialize)]
struct Envelope<T> {
    v: u32,
    r: T,
}

/// Serializes `record` inside its envelope.
pub fn encode_record<T: StoredRecord>(record: &T) -> Vec<u8> {
    // Serializing plain data structs to a Vec cannot fail.
    serde_json::to_vec(&EnvelopeRef {
        v: T::VERSION,
        r: record,
    })
    .unwrap_or_default()
}

/// Decodes a value written by [`encode_record`].
pub fn decode_record<T: StoredRecord>(bytes: &[u8]) -> Result<T, StorageError> {
    let env: Envelope<T> = serde_json::from_slice(bytes).map_err(|e| StorageError::Corrupt {
        table: T::TABLE.name(),
        reason: e.to_string(),
    })?;
    if env.v > T::VERSION {
        return Err(StorageError::Corrupt {
            table: T::TABLE.name(),
            reason: format!("record version {} is newer than {}", env.v, T::VERSION),
        });
    }
    Ok(env.r)
}
