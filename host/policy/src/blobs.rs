//! A component's bytes in the store, in chunks: a component may be 16 MiB
//! (32 MiB as hex), more than one etcd request may carry (1.5 MiB) and far
//! more than one transaction should. Each chunk is a record of its own
//! (`policy_chunks`, keyed `<sha256>/<n>`), written in a transaction of
//! its own before the policy's record names how many there are; chunks are
//! content-addressed, so an install cut short leaves chunks the next
//! install of the same bytes reuses. A record written by an older berth
//! holds the whole component (`wasm_hex`) and is read as before.

use berth_store::{Record, Store, StoreError, Txn};
use serde::{Deserialize, Serialize};

use crate::error::RegistryError;
use crate::host::sha256_hex;
use crate::registry::PolicyRecord;

/// Bytes of component per chunk: 512 KiB of hex in its record, a third of
/// etcd's default request limit.
pub const CHUNK_BYTES: usize = 256 * 1024;

/// One chunk of an installed component.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PolicyChunk {
    /// `<sha256>/<n>`, n from 0, five digits.
    pub id: String,
    /// The chunk's bytes, hex-encoded.
    pub hex: String,
}

impl Record for PolicyChunk {
    const TABLE: &'static str = "policy_chunks";
    fn key(&self) -> String {
        self.id.clone()
    }
}

fn chunk_key(sha256: &str, n: usize) -> String {
    format!("{sha256}/{n:05}")
}

/// Stores `bytes` as chunks of `sha256`, each in its own transaction
/// (a chunk already there is left as it is); answers how many there are.
pub(crate) fn write_chunks(store: &Store, sha256: &str, bytes: &[u8]) -> Result<u32, StoreError> {
    let mut n = 0;
    for (i, chunk) in bytes.chunks(CHUNK_BYTES).enumerate() {
        let rec = PolicyChunk {
            id: chunk_key(sha256, i),
            hex: hex::encode(chunk),
        };
        store
            .update(|txn| {
                if txn.peek::<PolicyChunk>(&rec.id)?.is_none() {
                    txn.put(&rec)?;
                }
                Ok::<_, StoreError>(())
            })
            .map_err(|e| StoreError::Backend(e.to_string()))?;
        n += 1;
    }
    Ok(n)
}

/// The component a policy record stands for, checked against its sha256.
pub(crate) fn read_component(txn: &Txn, rec: &PolicyRecord) -> Result<Vec<u8>, RegistryError> {
    let corrupt = |what: String| RegistryError::Store(format!("policy {}: {what}", rec.sha256));
    let bytes = if rec.chunks == 0 {
        hex::decode(&rec.wasm_hex).map_err(|e| corrupt(e.to_string()))?
    } else {
        let mut bytes = Vec::with_capacity(rec.size);
        for n in 0..rec.chunks as usize {
            let chunk = txn
                .peek::<PolicyChunk>(&chunk_key(&rec.sha256, n))
                .map_err(|e| corrupt(e.to_string()))?
                .ok_or_else(|| corrupt(format!("chunk {n} of {} is missing", rec.chunks)))?;
            bytes.extend(hex::decode(&chunk.value.hex).map_err(|e| corrupt(e.to_string()))?);
        }
        bytes
    };
    if sha256_hex(&bytes) != rec.sha256 {
        return Err(corrupt(
            "the stored bytes do not match its sha256".to_owned(),
        ));
    }
    Ok(bytes)
}

/// Deletes a policy's chunks in `txn` (the one that deletes its record).
pub(crate) fn delete_chunks(txn: &mut Txn, rec: &PolicyRecord) -> Result<(), StoreError> {
    for n in 0..rec.chunks as usize {
        txn.delete::<PolicyChunk>(&chunk_key(&rec.sha256, n))?;
    }
    Ok(())
}
