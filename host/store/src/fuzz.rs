//! Fuzz targets over the store's byte formats: record envelopes and change
//! log entries as read back from disk (a corrupt file must give an error
//! naming what is wrong, never a panic or a huge allocation), and page
//! tokens as clients send them back. `cargo test` runs them on their corpus
//! and random inputs; `cargo bolero test` fuzzes them (docs/fuzzing.md).

use crate::codec::{
    decode_commit_changes, decode_record, decode_token, encode_commit_changes, encode_record,
    encode_token,
};

/// Longest error text for any input: errors name the input, they do not repeat it.
const ERROR_BYTES: usize = 512;

#[test]
fn record_envelopes() {
    bolero::check!().for_each(|bytes: &[u8]| {
        match decode_record("tasks", "t1", bytes) {
            // What decodes encodes back to the same bytes.
            Ok(r) => assert_eq!(encode_record(r.version, &r.index_keys, &r.data), bytes),
            Err(e) => assert!(e.to_string().len() <= ERROR_BYTES),
        }
    });
}

#[test]
fn change_log_entries() {
    bolero::check!().for_each(|bytes: &[u8]| match decode_commit_changes(7, bytes) {
        Ok(changes) => {
            let borrowed: Vec<(&str, &str, u64)> = changes
                .iter()
                .map(|(t, k, v)| (t.as_str(), k.as_str(), *v))
                .collect();
            let again = encode_commit_changes(&borrowed);
            // Trailing bytes are ignored; the entry itself encodes back.
            assert_eq!(&bytes[..again.len()], &again[..]);
        }
        Err(e) => assert!(e.to_string().len() <= ERROR_BYTES),
    });
}

#[test]
fn page_tokens() {
    bolero::check!().for_each(|bytes: &[u8]| {
        let token = String::from_utf8_lossy(bytes);
        match decode_token(&token) {
            Ok(key) => assert_eq!(encode_token(&key), token.to_ascii_lowercase()),
            Err(e) => assert!(
                e.to_string().len() <= ERROR_BYTES,
                "a {}-byte error for a {}-byte token",
                e.to_string().len(),
                token.len()
            ),
        }
        // Any key's token decodes back to it.
        if !token.is_empty() {
            assert_eq!(
                decode_token(&encode_token(&token)).ok().as_deref(),
                Some(&*token)
            );
        }
    });
}
