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
    /// Bytes reserved for an encoding before it is written: about a record's usual
    /// size, so the buffer is not grown (copied) on the way.
    const SIZE_HINT: usize = 512;
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
    // Starting at the record's usual size saves the reallocations of growing from
    // empty (a tenth of encoding an objective, scheduler-10k's profile).
    let mut out = Vec::with_capacity(T::SIZE_HINT);
    // Serializing plain data structs to a Vec cannot fail.
    match serde_json::to_writer(
        &mut out,
        &EnvelopeRef {
            v: T::VERSION,
            r: record,
        },
    ) {
        Ok(()) => out,
        Err(_) => Vec::new(),
    }
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

/// The envelope `add` leaves after [`crate::WriteOp::Add`] on a row holding `current`:
/// `current` with every integer field of `add`'s record added to its own (saturating),
/// or `add` itself when there is no row or the row is not an envelope.
pub(crate) fn add_counts(current: Option<&[u8]>, add: &[u8]) -> Vec<u8> {
    use serde_json::Value;
    let Some(current) = current else {
        return add.to_vec();
    };
    let (Ok(mut stored), Ok(adding)) = (
        serde_json::from_slice::<Value>(current),
        serde_json::from_slice::<Value>(add),
    ) else {
        return add.to_vec();
    };
    let (Some(into), Some(from)) = (
        stored.get_mut("r").and_then(Value::as_object_mut),
        adding.get("r").and_then(Value::as_object),
    ) else {
        return add.to_vec();
    };
    for (name, n) in from {
        let Some(n) = n.as_i64() else { continue };
        let sum = into
            .get(name)
            .and_then(Value::as_i64)
            .unwrap_or(0)
            .saturating_add(n);
        into.insert(name.clone(), Value::from(sum));
    }
    serde_json::to_vec(&stored).unwrap_or_else(|_| add.to_vec())
}

#[cfg(test)]
mod tests {
    use super::add_counts;

    #[test]
    fn adding_sums_integer_fields_and_keeps_the_rest() {
        let first = br#"{"v":1,"r":{"agent":"a","n":2,"m":5}}"#;
        assert_eq!(add_counts(None, first), first.to_vec());
        let sum = add_counts(Some(first), br#"{"v":1,"r":{"agent":"b","n":3,"k":1}}"#);
        let sum: serde_json::Value = serde_json::from_slice(&sum).unwrap();
        assert_eq!(
            sum,
            serde_json::json!({"v":1,"r":{"agent":"a","n":5,"m":5,"k":1}})
        );
    }
}
