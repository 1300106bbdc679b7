//! Where berth's records live in etcd's flat key space, under one prefix:
//!
//! - `P/r/<table>\0<key>`: a record (the envelope of `berth_store::codec`);
//!   its etcd `version` is the record's version, its `mod_revision` the
//!   store revision of the commit that last wrote it;
//! - `P/i/<table>\0<index>\0<value>\0<key>`: an index entry (empty value),
//!   written and removed in the record's transaction;
//! - `P/m/<name>`: the store's own facts (the schema version, the
//!   compaction mark);
//! - `P/l/<work>`: the owners of work that needs one (leases).
//!
//! etcd orders keys bytewise, as redb orders `&str` keys, so scans come back
//! in the same order from both backends.

/// The key layout of one store (one prefix).
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    prefix: String,
}

const SEP: char = '\0';

impl Keys {
    pub(crate) fn new(prefix: &str) -> Keys {
        Keys {
            prefix: prefix.trim_end_matches('/').to_owned(),
        }
    }

    /// The start of every record key.
    pub(crate) fn records(&self) -> String {
        format!("{}/r/", self.prefix)
    }

    /// The start of every index key.
    pub(crate) fn indexes(&self) -> String {
        format!("{}/i/", self.prefix)
    }

    pub(crate) fn record(&self, table: &str, key: &str) -> String {
        format!("{}/r/{table}{SEP}{key}", self.prefix)
    }

    /// The start of the records of `table` whose key starts with `prefix`.
    pub(crate) fn record_prefix(&self, table: &str, prefix: &str) -> String {
        self.record(table, prefix)
    }

    /// The start of the index entries of `table` for `(index, value)`.
    pub(crate) fn index_prefix(&self, table: &str, index: &str, value: &str) -> String {
        format!("{}/i/{table}{SEP}{index}{SEP}{value}{SEP}", self.prefix)
    }

    pub(crate) fn index_entry(&self, table: &str, index: &str, value: &str, key: &str) -> String {
        format!("{}{key}", self.index_prefix(table, index, value))
    }

    pub(crate) fn meta(&self, name: &str) -> String {
        format!("{}/m/{name}", self.prefix)
    }

    pub(crate) fn lease(&self, work: &str) -> String {
        format!("{}/l/{work}", self.prefix)
    }

    /// `(table, key)` of a record key, or None for any other key.
    pub(crate) fn parse_record<'a>(&self, raw: &'a [u8]) -> Option<(&'a str, &'a str)> {
        let s = std::str::from_utf8(raw).ok()?;
        let rest = s.strip_prefix(self.prefix.as_str())?.strip_prefix("/r/")?;
        rest.split_once(SEP)
    }

    /// `(table, index, value, key)` of an index key.
    pub(crate) fn parse_index<'a>(
        &self,
        raw: &'a [u8],
    ) -> Option<(&'a str, &'a str, &'a str, &'a str)> {
        let s = std::str::from_utf8(raw).ok()?;
        let rest = s.strip_prefix(self.prefix.as_str())?.strip_prefix("/i/")?;
        let mut parts = rest.splitn(4, SEP);
        Some((parts.next()?, parts.next()?, parts.next()?, parts.next()?))
    }
}

/// The first key after every key that starts with `prefix` (etcd's range end
/// for a prefix).
pub(crate) fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// The first key after `key` itself.
pub(crate) fn successor(key: &str) -> Vec<u8> {
    let mut k = key.as_bytes().to_vec();
    k.push(0);
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_parse_back() {
        let k = Keys::new("/berth/");
        let r = k.record("tasks", "arn:aws:ecs:x/task/1");
        assert!(r.starts_with("/berth/r/tasks"));
        assert_eq!(
            k.parse_record(r.as_bytes()),
            Some(("tasks", "arn:aws:ecs:x/task/1"))
        );
        let i = k.index_entry("tasks", "cluster", "c/1", "t/1");
        assert_eq!(
            k.parse_index(i.as_bytes()),
            Some(("tasks", "cluster", "c/1", "t/1"))
        );
        assert_eq!(k.parse_record(i.as_bytes()), None);
    }

    #[test]
    fn prefix_end_is_past_every_key_of_the_prefix() {
        assert_eq!(prefix_end("a/b"), b"a/c".to_vec());
        assert_eq!(prefix_end("a\u{7f}"), b"a\x80".to_vec());
        assert!(successor("ab").as_slice() > b"ab".as_slice());
        assert!(successor("ab").as_slice() < b"ab\x01".as_slice());
    }
}
