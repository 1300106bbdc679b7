//! Byte formats shared by backends: the stored record envelope, index keys and page tokens.
//!
//! A stored record is an envelope around the serde payload:
//! `[FORMAT u8][version u64 LE][n u32 LE]` then `n` times `[len u32 LE][index name][len u32 LE][value]`,
//! then the payload. The index keys travel with the record so a backend can drop the old index
//! entries of a record without knowing its Rust type.

use crate::error::StoreError;

const FORMAT: u8 = 1;

/// A record as stored: version, the index entries it owns, and its serialised value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawRecord {
    /// Version of the record (1 on first write).
    pub version: u64,
    /// `(index name, indexed value)` pairs maintained for this record.
    pub index_keys: Vec<(String, String)>,
    /// The serialised value (JSON).
    pub data: Vec<u8>,
}

/// Encodes a record envelope.
pub fn encode_record(version: u64, index_keys: &[(String, String)], data: &[u8]) -> Vec<u8> {
    let idx_len: usize = index_keys.iter().map(|(n, v)| 8 + n.len() + v.len()).sum();
    let mut out = Vec::with_capacity(1 + 8 + 4 + idx_len + data.len());
    out.push(FORMAT);
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(&len_u32(index_keys.len()).to_le_bytes());
    for (name, value) in index_keys {
        out.extend_from_slice(&len_u32(name.len()).to_le_bytes());
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(&len_u32(value.len()).to_le_bytes());
        out.extend_from_slice(value.as_bytes());
    }
    out.extend_from_slice(data);
    out
}

// Lengths are validated by the caller (keys and values are far below 4 GiB; redb refuses more).
fn len_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Decodes a record envelope; `table`/`key` only label the error.
pub fn decode_record(table: &str, key: &str, bytes: &[u8]) -> Result<RawRecord, StoreError> {
    let corrupt = |reason: &str| StoreError::Corrupt {
        table: table.to_owned(),
        key: key.to_owned(),
        reason: reason.to_owned(),
    };
    let mut r = Reader { bytes, pos: 0 };
    let format = r.take(1).ok_or_else(|| corrupt("empty record"))?[0];
    if format != FORMAT {
        return Err(corrupt(&format!("unknown record format {format}")));
    }
    let version = r.u64().ok_or_else(|| corrupt("truncated version"))?;
    let n = r.u32().ok_or_else(|| corrupt("truncated index count"))?;
    let mut index_keys = Vec::new();
    for _ in 0..n {
        let name = r
            .string()
            .ok_or_else(|| corrupt("truncated or non-UTF-8 index name"))?;
        let value = r
            .string()
            .ok_or_else(|| corrupt("truncated or non-UTF-8 index value"))?;
        index_keys.push((name, value));
    }
    Ok(RawRecord {
        version,
        index_keys,
        data: bytes[r.pos..].to_vec(),
    })
}

/// Reads only the version of a record envelope (commit checks do not need the rest).
pub fn decode_version(table: &str, key: &str, bytes: &[u8]) -> Result<u64, StoreError> {
    let mut r = Reader { bytes, pos: 0 };
    match (r.take(1), r.u64()) {
        (Some([FORMAT]), Some(v)) => Ok(v),
        _ => Err(StoreError::Corrupt {
            table: table.to_owned(),
            key: key.to_owned(),
            reason: "bad record header".to_owned(),
        }),
    }
}

/// Encodes one commit's entry of the change log: `[n u32 LE]` then `n` times
/// `[len u32 LE][table][len u32 LE][key][version u64 LE]`, version 0 meaning a delete.
pub fn encode_commit_changes(changes: &[(&str, &str, u64)]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&len_u32(changes.len()).to_le_bytes());
    for (table, key, version) in changes {
        out.extend_from_slice(&len_u32(table.len()).to_le_bytes());
        out.extend_from_slice(table.as_bytes());
        out.extend_from_slice(&len_u32(key.len()).to_le_bytes());
        out.extend_from_slice(key.as_bytes());
        out.extend_from_slice(&version.to_le_bytes());
    }
    out
}

/// Decodes a change log entry made by [`encode_commit_changes`]; `revision` labels the error.
pub fn decode_commit_changes(
    revision: u64,
    bytes: &[u8],
) -> Result<Vec<(String, String, u64)>, StoreError> {
    let corrupt = || StoreError::Corrupt {
        table: "__changes".to_owned(),
        key: revision.to_string(),
        reason: "truncated or non-UTF-8 change log entry".to_owned(),
    };
    let mut r = Reader { bytes, pos: 0 };
    let n = r.u32().ok_or_else(corrupt)?;
    let mut out = Vec::new();
    for _ in 0..n {
        let table = r.string().ok_or_else(corrupt)?;
        let key = r.string().ok_or_else(corrupt)?;
        let version = r.u64().ok_or_else(corrupt)?;
        out.push((table, key, version));
    }
    Ok(out)
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let s = self.bytes.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn string(&mut self) -> Option<String> {
        let n = usize::try_from(self.u32()?).ok()?;
        String::from_utf8(self.take(n)?.to_vec()).ok()
    }
}

/// Separator inside index keys; forbidden in index names and values so prefixes stay unambiguous.
pub const SEP: char = '\0';

/// The key of one index entry: `index\0value\0primarykey`.
pub fn index_entry_key(index: &str, value: &str, primary: &str) -> String {
    format!("{index}{SEP}{value}{SEP}{primary}")
}

/// The prefix shared by all entries of one `(index, value)` pair.
pub fn index_value_prefix(index: &str, value: &str) -> String {
    format!("{index}{SEP}{value}{SEP}")
}

/// Splits an index entry key into `(index, value, primary key)`.
pub fn split_index_entry(entry: &str) -> Option<(&str, &str, &str)> {
    let mut parts = entry.splitn(3, SEP);
    Some((parts.next()?, parts.next()?, parts.next()?))
}

/// Checks a primary key and the index entries of a record before they are buffered.
pub fn validate_record_keys(
    table: &str,
    key: &str,
    index_keys: &[(&'static str, String)],
) -> Result<(), StoreError> {
    let bad = |k: &str, reason| StoreError::InvalidKey {
        table: table.to_owned(),
        key: k.to_owned(),
        reason,
    };
    if key.is_empty() {
        return Err(bad(key, "primary key is empty"));
    }
    for (name, value) in index_keys {
        if name.is_empty() || name.contains(SEP) {
            return Err(bad(name, "index name is empty or contains NUL"));
        }
        if value.contains(SEP) {
            return Err(bad(value, "indexed value contains NUL"));
        }
    }
    Ok(())
}

/// Table names starting with this are the store's own (meta, indexes).
pub const RESERVED_PREFIX: &str = "__";

/// Checks a record table name.
pub fn validate_table(table: &str) -> Result<(), StoreError> {
    if table.is_empty() || table.starts_with(RESERVED_PREFIX) {
        return Err(StoreError::InvalidKey {
            table: table.to_owned(),
            key: String::new(),
            reason: "table name is empty or uses the reserved \"__\" prefix",
        });
    }
    Ok(())
}

/// Makes an opaque page token that resumes after `last_key`.
pub fn encode_token(last_key: &str) -> String {
    hex::encode(last_key.as_bytes())
}

/// Decodes a page token made by [`encode_token`].
pub fn decode_token(token: &str) -> Result<String, StoreError> {
    let bytes = hex::decode(token).map_err(|_| StoreError::InvalidPageToken {
        token: token_shown(token),
        reason: "not a token issued by this store (bad encoding)",
    })?;
    let key = String::from_utf8(bytes).map_err(|_| StoreError::InvalidPageToken {
        token: token_shown(token),
        reason: "not a token issued by this store (bad contents)",
    })?;
    if key.is_empty() {
        return Err(StoreError::InvalidPageToken {
            token: token_shown(token),
            reason: "empty token",
        });
    }
    Ok(key)
}

/// Characters of a refused page token repeated in its error.
const TOKEN_SHOWN_CHARS: usize = 32;

/// The start of a token a client sent, for an error: a token of any length
/// makes an error of bounded length.
fn token_shown(token: &str) -> String {
    match token.char_indices().nth(TOKEN_SHOWN_CHARS) {
        None => token.to_owned(),
        Some((cut, _)) => format!("{}…", &token[..cut]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn record_envelope_round_trips(
            version in any::<u64>(),
            idx in proptest::collection::vec(("[a-z]{1,8}", ".{0,12}"), 0..5),
            data in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let bytes = encode_record(version, &idx, &data);
            let rec = decode_record("t", "k", &bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(rec.version, version);
            prop_assert_eq!(rec.index_keys, idx);
            prop_assert_eq!(rec.data, data);
            prop_assert_eq!(decode_version("t", "k", &bytes).ok(), Some(version));
        }

        #[test]
        fn truncated_envelopes_are_errors_not_panics(
            idx in proptest::collection::vec(("[a-z]{1,8}", "[a-z]{0,12}"), 1..5),
            cut in 0usize..40,
        ) {
            let bytes = encode_record(7, &idx, b"");
            let cut = cut.min(bytes.len().saturating_sub(1));
            prop_assert!(decode_record("t", "k", &bytes[..cut]).is_err());
        }

        #[test]
        fn change_log_entries_round_trip(
            changes in proptest::collection::vec(("[a-z_]{1,8}", ".{1,12}", any::<u64>()), 0..6),
        ) {
            let borrowed: Vec<(&str, &str, u64)> =
                changes.iter().map(|(t, k, v)| (t.as_str(), k.as_str(), *v)).collect();
            let bytes = encode_commit_changes(&borrowed);
            let back = decode_commit_changes(1, &bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(back, changes.clone());
            if !bytes.is_empty() && !changes.is_empty() {
                prop_assert!(decode_commit_changes(1, &bytes[..bytes.len() - 1]).is_err());
            }
        }

        #[test]
        fn tokens_round_trip(key in ".{1,40}") {
            prop_assert_eq!(decode_token(&encode_token(&key)).ok(), Some(key));
        }
    }

    #[test]
    fn malformed_tokens_are_errors() {
        for t in ["zz", "abc", "", "ff"] {
            assert!(
                matches!(decode_token(t), Err(StoreError::InvalidPageToken { .. })),
                "{t}"
            );
        }
    }

    #[test]
    fn index_entries_split_back() {
        let e = index_entry_key("cluster", "arn:c/1", "arn:task/\0odd");
        assert_eq!(
            split_index_entry(&e),
            Some(("cluster", "arn:c/1", "arn:task/\0odd"))
        );
        assert!(index_entry_key("a", "b", "").starts_with(&index_value_prefix("a", "b")));
    }
}
