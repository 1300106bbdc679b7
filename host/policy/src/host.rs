//! The engine side: one wasmtime `Engine` with epoch interruption, the
//! linker with an empty WASI context and the logger, and install-time checks
//! of a component.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use sha2::{Digest, Sha256};
use wasmtime::component::{
    Component, ComponentExportIndex, HasSelf, Linker, ResourceTable, types::ComponentItem,
};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, OptLevel, PoolingAllocationConfig, ResourceLimiter,
};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::bindings::PlacementPolicyPre;
use crate::bindings::berth::{placement0_1_0::logger, placement0_2_0::names};
use crate::error::InstallError;

/// The WIT world a policy must implement, with its version.
pub const WORLD: &str = "berth:placement/placement-policy@0.1.0";
/// The world of policies that also name instances (SDK 0.2); it exports
/// the same `policy` interface.
pub const WORLD_0_2: &str = "berth:placement/placement-policy@0.2.0";
/// The export every policy must have.
pub const POLICY_EXPORT: &str = "berth:placement/policy@0.1.0";
/// The logger import, the only non-WASI import allowed (with the types
/// interface it uses, which has no functions).
pub const LOGGER_IMPORT: &str = "berth:placement/logger@0.1.0";
/// The world of policies that also take the full sync in bulk (SDK 0.3);
/// they export `policy` too.
pub const WORLD_0_3: &str = "berth:placement/placement-policy@0.3.0";
/// The instance-names import of contract 0.2.0 (policies built with SDK
/// 0.2 import it when they name instances).
pub const NAMES_IMPORT: &str = "berth:placement/names@0.2.0";
/// The bulk-sync export of contract 0.3.0: attributes as columns and
/// static ports as one flat list, called in place of `set-attributes` and
/// `set-ports` when a component has it.
pub const BULK_EXPORT: &str = "berth:placement/bulk@0.3.0";
const TYPES_IMPORT: &str = "berth:placement/types@0.1.0";

/// Import prefixes a component may have: what a Rust wasm32-wasip2 build
/// links (stdio, exit, environment, streams), all backed by an empty context.
const ALLOWED_IMPORT_PREFIXES: [&str; 2] = ["wasi:io/", "wasi:cli/"];

/// Limits and deadlines of the host.
#[derive(Debug, Clone)]
pub struct HostConfig {
    /// Wall time one call into a policy may take before it is interrupted.
    pub deadline: Duration,
    /// Linear memory one policy instance may grow to, in bytes.
    pub memory_limit: usize,
    /// Log lines a policy may emit per call; the rest are dropped and counted.
    pub log_lines_per_call: u32,
    /// Use the pooling allocator (fast instantiation); off for hosts that
    /// create many engines, such as tests.
    pub pooling: bool,
    /// Pooled instance slots when `pooling` is on.
    pub pool_size: u32,
    /// Where compiled components are kept across restarts (by content hash
    /// and engine compatibility); None compiles on every load.
    pub cache_dir: Option<std::path::PathBuf>,
    /// Fully sync a policy that exports contract 0.3.0's `bulk` through it
    /// (on by default); off, every policy is synced as contract 0.2.0
    /// does, which tests use to compare the two paths.
    pub bulk_sync: bool,
}

impl Default for HostConfig {
    fn default() -> Self {
        HostConfig {
            deadline: Duration::from_millis(10),
            memory_limit: 64 << 20,
            log_lines_per_call: 32,
            pooling: true,
            pool_size: 64,
            cache_dir: None,
            bulk_sync: true,
        }
    }
}

/// How often the ticker advances the engine's epoch; deadlines are counted
/// in these ticks.
pub(crate) const TICK: Duration = Duration::from_millis(1);

/// Per-store data: the empty WASI context, the memory limit, the log budget.
pub(crate) struct StoreData {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(crate) memory_limit: usize,
    /// Set when the guest asked for more memory than allowed, so a trap
    /// after it is reported as the memory limit.
    pub(crate) memory_exceeded: bool,
    pub(crate) log_budget: u32,
    pub(crate) logs_dropped: Arc<AtomicU64>,
    pub(crate) policy: Arc<str>,
    /// The last panic the guest reported through the logger during the
    /// current call (the SDK's panic hook), attached to the trap after it.
    pub(crate) panic: Option<String>,
    /// Container instance ids by dense id, for `names`; filled only for a
    /// policy that imports it.
    pub(crate) names: InstanceNames,
    /// The lines logged during the current call, kept when the session
    /// was asked to (`PolicySession::capture_logs`, for an explanation).
    pub(crate) captured: Option<Vec<String>>,
}

/// Container instance ids by dense id, in one string: a full sync of
/// 10,000 instances makes two allocations, not 10,000.
#[derive(Default)]
pub(crate) struct InstanceNames {
    text: String,
    /// Per dense id, its name's byte range in `text`.
    spans: Vec<(u32, u32)>,
    /// Bytes of `text` no span covers any more.
    garbage: usize,
}

impl InstanceNames {
    /// Replaces every name.
    pub(crate) fn set_all<'a>(&mut self, names: impl ExactSizeIterator<Item = &'a str>) {
        self.text.clear();
        self.spans.clear();
        self.garbage = 0;
        self.spans.reserve(names.len());
        for n in names {
            let start = self.text.len() as u32;
            self.text.push_str(n);
            self.spans.push((start, self.text.len() as u32));
        }
    }

    /// Names instance `i`: appended, the old bytes left behind until they
    /// are half of the text, then the text is rebuilt.
    pub(crate) fn set(&mut self, i: usize, name: &str) {
        if self.spans.len() <= i {
            self.spans.resize(i + 1, (0, 0));
        }
        let (a, b) = self.spans[i];
        self.garbage += (b - a) as usize;
        let start = self.text.len() as u32;
        self.text.push_str(name);
        self.spans[i] = (start, self.text.len() as u32);
        if self.garbage > 4096 && self.garbage * 2 > self.text.len() {
            let old = std::mem::take(self);
            self.set_all((0..old.spans.len()).map(|k| old.get(k).unwrap_or("")));
        }
    }

    fn get(&self, i: usize) -> Option<&str> {
        let &(a, b) = self.spans.get(i)?;
        self.text.get(a as usize..b as usize)
    }
}

impl StoreData {
    pub(crate) fn new(cfg: &HostConfig, logs_dropped: Arc<AtomicU64>, policy: Arc<str>) -> Self {
        StoreData {
            // No preopens, environment, arguments, sockets or inherited stdio.
            wasi: WasiCtx::builder().build(),
            table: ResourceTable::new(),
            memory_limit: cfg.memory_limit,
            memory_exceeded: false,
            log_budget: cfg.log_lines_per_call,
            logs_dropped,
            policy,
            panic: None,
            names: InstanceNames::default(),
            captured: None,
        }
    }
}

impl WasiView for StoreData {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl ResourceLimiter for StoreData {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_limit {
            self.memory_exceeded = true;
            return Ok(false);
        }
        Ok(true)
    }
    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

/// The tracing target of the lines policies log, so a subscriber can send
/// them elsewhere than berth's own log (`berth bench placement` drops them
/// unless asked).
pub const POLICY_LOG_TARGET: &str = "berth_policy::guest";

impl logger::Host for StoreData {
    fn log(&mut self, level: logger::Level, message: String) {
        // Kept whatever the budget: the trap that follows reports it.
        if matches!(level, logger::Level::Error) && message.starts_with("panicked") {
            self.panic = Some(message.chars().take(512).collect());
        }
        if self.log_budget == 0 {
            self.logs_dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.log_budget -= 1;
        // A long line is cut so one call cannot flood the log either.
        let msg: String = message.chars().take(512).collect();
        if let Some(lines) = &mut self.captured {
            let level = match level {
                logger::Level::Debug => "debug",
                logger::Level::Info => "info",
                logger::Level::Warn => "warn",
                logger::Level::Error => "error",
            };
            lines.push(format!("{level}: {msg}"));
        }
        let policy = &*self.policy;
        match level {
            logger::Level::Debug => tracing::debug!(target: POLICY_LOG_TARGET, policy, "{msg}"),
            logger::Level::Info => tracing::info!(target: POLICY_LOG_TARGET, policy, "{msg}"),
            logger::Level::Warn => tracing::warn!(target: POLICY_LOG_TARGET, policy, "{msg}"),
            logger::Level::Error => tracing::error!(target: POLICY_LOG_TARGET, policy, "{msg}"),
        }
    }
}

impl crate::bindings::berth::placement0_1_0::types::Host for StoreData {}

impl names::Host for StoreData {
    fn instance_name(&mut self, id: u32) -> Option<String> {
        self.names.get(id as usize).map(str::to_owned)
    }
}

/// One engine for every policy, with its epoch ticker.
pub struct PolicyHost {
    pub(crate) engine: Engine,
    pub(crate) linker: Linker<StoreData>,
    pub(crate) config: HostConfig,
    stop: Arc<AtomicBool>,
    ticker: Option<JoinHandle<()>>,
    /// Makes cache temp files unique within the process.
    tmp_counter: AtomicU64,
}

impl std::fmt::Debug for PolicyHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyHost")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// A checked, compiled policy component, ready to instantiate.
#[derive(Clone)]
pub struct CompiledPolicy {
    /// Hex sha256 of the component bytes.
    pub sha256: String,
    /// Size of the component in bytes.
    pub size: usize,
    /// The world it implements.
    pub world: &'static str,
    /// Whether it imports `names` (then sessions keep instance names for it).
    pub uses_names: bool,
    /// Whether it exports contract 0.3.0's `bulk` (then its full sync goes
    /// through it).
    pub bulk: bool,
    pub(crate) bulk_exports: Option<BulkExports>,
    pub(crate) pre: PlacementPolicyPre<StoreData>,
}

/// The functions of the `bulk` export, found once at compile time.
#[derive(Clone)]
pub(crate) struct BulkExports {
    pub(crate) attribute_column: ComponentExportIndex,
    pub(crate) ports_flat: ComponentExportIndex,
}

impl BulkExports {
    fn find(component: &Component) -> Result<Option<BulkExports>, InstallError> {
        let Some(iface) = component.get_export_index(None, BULK_EXPORT) else {
            return Ok(None);
        };
        let func = |name: &str| {
            component
                .get_export_index(Some(&iface), name)
                .ok_or_else(|| {
                    InstallError::WrongWorld(format!("`{BULK_EXPORT}` has no function `{name}`"))
                })
        };
        Ok(Some(BulkExports {
            attribute_column: func("set-attribute-column")?,
            ports_flat: func("set-ports-flat")?,
        }))
    }
}

impl std::fmt::Debug for CompiledPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompiledPolicy")
            .field("sha256", &self.sha256)
            .field("size", &self.size)
            .finish()
    }
}

/// Hex sha256 of bytes, the content address of a policy.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

impl PolicyHost {
    /// Builds the engine (Cranelift, no proposals berth does not need,
    /// component-model concurrency off) and starts the epoch ticker.
    pub fn new(config: HostConfig) -> Result<Self, InstallError> {
        let mut c = Config::new();
        // Threads, GC and exceptions are compiled out (crate features off).
        c.wasm_component_model(true)
            .concurrency_support(false)
            .wasm_stack_switching(false)
            .wasm_memory64(false)
            .wasm_multi_memory(false)
            .wasm_relaxed_simd(false)
            .epoch_interruption(true)
            .max_wasm_stack(1 << 20)
            .cranelift_opt_level(OptLevel::Speed);
        if config.pooling {
            let mut pool = PoolingAllocationConfig::default();
            pool.total_component_instances(config.pool_size)
                .total_core_instances(config.pool_size * 16)
                .total_memories(config.pool_size * 4)
                .total_tables(config.pool_size * 8)
                .total_stacks(config.pool_size)
                .max_memory_size(config.memory_limit);
            c.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        }
        let engine = Engine::new(&c).map_err(|e| InstallError::Engine(format!("{e:#}")))?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
            .map_err(|e| InstallError::Engine(format!("{e:#}")))?;
        crate::bindings::PlacementPolicy::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)
            .map_err(|e| InstallError::Engine(format!("{e:#}")))?;
        let stop = Arc::new(AtomicBool::new(false));
        let ticker = {
            let (engine, stop) = (engine.clone(), stop.clone());
            std::thread::Builder::new()
                .name("berth-policy-epoch".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(TICK);
                        engine.increment_epoch();
                    }
                })
                .map_err(|e| InstallError::Engine(format!("epoch ticker: {e}")))?
        };
        Ok(PolicyHost {
            engine,
            linker,
            config,
            stop,
            ticker: Some(ticker),
            tmp_counter: AtomicU64::new(0),
        })
    }

    /// The host's limits.
    pub fn config(&self) -> &HostConfig {
        &self.config
    }

    /// Checks and compiles a component: it must be a component (not a core
    /// module or anything else), import nothing beyond wasi:io, wasi:cli and
    /// berth's logger, and export `berth:placement/policy@0.1.0` with the
    /// expected functions.
    pub fn compile(&self, bytes: &[u8]) -> Result<CompiledPolicy, InstallError> {
        let is_component =
            bytes.len() >= 8 && &bytes[..4] == b"\0asm" && bytes[4..8] == [0x0d, 0x00, 0x01, 0x00];
        if !is_component {
            let what = if bytes.len() >= 8 && &bytes[..4] == b"\0asm" {
                "a core WebAssembly module"
            } else {
                "not WebAssembly"
            };
            return Err(InstallError::NotAComponent(format!(
                "{what}; build the policy with `cargo build --target wasm32-wasip2 --release` to get a component"
            )));
        }
        let sha256 = sha256_hex(bytes);
        let component = self.load_or_compile(&sha256, bytes)?;
        let ty = component.component_type();
        let mut uses_names = false;
        for (name, _) in ty.imports(&self.engine) {
            uses_names |= name == NAMES_IMPORT;
            let allowed = name == LOGGER_IMPORT
                || name == NAMES_IMPORT
                || name == TYPES_IMPORT
                || ALLOWED_IMPORT_PREFIXES.iter().any(|p| name.starts_with(p));
            if !allowed {
                return Err(InstallError::ForbiddenImport(name.to_owned()));
            }
        }
        let bulk_exports = BulkExports::find(&component)?;
        let mut exports = ty.exports(&self.engine);
        let found = exports.find(|(n, _)| *n == POLICY_EXPORT);
        match found {
            Some((_, ext)) if matches!(ext.ty, ComponentItem::ComponentInstance(_)) => {}
            _ => {
                let names: Vec<String> = ty
                    .exports(&self.engine)
                    .map(|(n, _)| n.to_owned())
                    .collect();
                let other_version = names
                    .iter()
                    .find(|n| n.starts_with("berth:placement/policy@"));
                return Err(match other_version {
                    Some(v) => InstallError::WrongWorld(format!(
                        "exports `{v}`; this host serves `{POLICY_EXPORT}` (world {WORLD})"
                    )),
                    None => InstallError::WrongWorld(format!(
                        "missing export `{POLICY_EXPORT}` (world {WORLD}); the component exports [{}]",
                        names.join(", ")
                    )),
                });
            }
        }
        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|e| InstallError::WrongWorld(format!("{e:#}")))?;
        let pre =
            PlacementPolicyPre::new(pre).map_err(|e| InstallError::WrongWorld(format!("{e:#}")))?;
        Ok(CompiledPolicy {
            sha256,
            size: bytes.len(),
            world: if bulk_exports.is_some() {
                WORLD_0_3
            } else if uses_names {
                WORLD_0_2
            } else {
                WORLD
            },
            uses_names,
            bulk: bulk_exports.is_some(),
            bulk_exports,
            pre,
        })
    }

    /// The compiled component from the disk cache when it holds one for
    /// these bytes and this engine, else compiled now (and cached).
    fn load_or_compile(&self, sha256: &str, bytes: &[u8]) -> Result<Component, InstallError> {
        let Some(dir) = &self.config.cache_dir else {
            return Component::new(&self.engine, bytes)
                .map_err(|e| InstallError::Invalid(format!("{e:#}")));
        };
        let path = dir.join(format!("{sha256}-{}.cwasm", self.compatibility()));
        if path.exists() {
            match self.deserialize_cached(&path) {
                Ok(c) => return Ok(c),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %format!("{e:#}"), "cached compiled policy unusable; compiling again")
                }
            }
        }
        let component = Component::new(&self.engine, bytes)
            .map_err(|e| InstallError::Invalid(format!("{e:#}")))?;
        if let Err(e) = self.write_cache(dir, &path, &component) {
            // The cache only saves time; a failure to write it is not the install's.
            tracing::warn!(path = %path.display(), error = %e, "could not cache the compiled policy");
        }
        Ok(component)
    }

    /// wasmtime's version and a hash of everything in the engine's
    /// configuration that compiled code depends on.
    fn compatibility(&self) -> String {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.engine.precompile_compatibility_hash().hash(&mut h);
        format!("wasmtime{}-{:016x}", wasmtime_version(), h.finish())
    }

    // SAFETY (the one `unsafe` in berth): wasmtime trusts the machine code in
    // a serialized component (it checks only the version and configuration
    // header), so what is loaded must be exactly what this engine wrote.
    // `write_cache` writes a fresh 0600 file in berth's own 0700 directory,
    // prefixed with the sha256 of the artifact, syncs it and renames it into
    // place; here the file must not be writable by group or others and its
    // digest must match before wasmtime sees it, so a torn, truncated or
    // altered file is compiled afresh instead. The bytes are read into
    // memory, not mapped, so a file changed later cannot fault code in use.
    #[allow(unsafe_code)]
    fn deserialize_cached(&self, path: &std::path::Path) -> wasmtime::Result<Component> {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)?.permissions().mode();
        if mode & 0o022 != 0 {
            return Err(wasmtime::Error::msg(format!(
                "writable by others (mode {:o})",
                mode & 0o777
            )));
        }
        let file = std::fs::read(path)?;
        let Some((digest, artifact)) = file.split_at_checked(32) else {
            return Err(wasmtime::Error::msg("shorter than its digest"));
        };
        if Sha256::digest(artifact).as_slice() != digest {
            return Err(wasmtime::Error::msg(
                "its digest does not match its content",
            ));
        }
        unsafe { Component::deserialize(&self.engine, artifact) }
    }

    fn write_cache(
        &self,
        dir: &std::path::Path,
        path: &std::path::Path,
        component: &Component,
    ) -> std::io::Result<()> {
        use std::io::Write;
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        let artifact = component
            .serialize()
            .map_err(|e| std::io::Error::other(format!("{e:#}")))?;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let tmp = dir.join(format!(
            ".{}.{}.{nanos}.tmp",
            std::process::id(),
            self.tmp_counter.fetch_add(1, Ordering::Relaxed)
        ));
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(&Sha256::digest(&artifact))?;
        f.write_all(&artifact)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)?;
        // The rename itself is durable once the directory is synced.
        std::fs::File::open(dir)?.sync_all()
    }
}

/// The wasmtime version berth is built with (pinned in Cargo.toml).
fn wasmtime_version() -> &'static str {
    "48.0.8"
}

impl Drop for PolicyHost {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.ticker.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binpack() -> Vec<u8> {
        let target = match std::env::var_os("CARGO_TARGET_DIR") {
            Some(dir) => std::path::PathBuf::from(dir),
            None => {
                std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../plugins/target")
            }
        };
        let path = target.join("wasm32-wasip2/release/binpack.wasm");
        std::fs::read(&path)
            .unwrap_or_else(|e| panic!("{} ({e}): build the plugins first", path.display()))
    }

    #[test]
    fn instance_names_survive_many_renames_in_one_string() {
        let mut names = InstanceNames::default();
        names.set_all(["a", "bb", "ccc"].into_iter());
        assert_eq!(names.get(1), Some("bb"));
        for round in 0..5000 {
            names.set(round % 3, &format!("name-{round}"));
        }
        names.set(5, "late");
        assert_eq!(
            (0..7).map(|i| names.get(i)).collect::<Vec<_>>(),
            [
                Some("name-4998"),
                Some("name-4999"),
                Some("name-4997"),
                Some(""),
                Some(""),
                Some("late"),
                None
            ]
        );
        // Renames are compacted away, not kept forever.
        assert!(names.text.len() < 2 * 4096 + 100, "{}", names.text.len());
    }

    #[test]
    fn compiled_components_are_cached_on_disk_and_loaded_from_there() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = dir.path().join("cache");
        let cfg = HostConfig {
            pooling: false,
            cache_dir: Some(cache.clone()),
            ..HostConfig::default()
        };
        let bytes = binpack();
        let first = PolicyHost::new(cfg.clone())
            .expect("host")
            .compile(&bytes)
            .expect("compile");
        let files: Vec<_> = std::fs::read_dir(&cache)
            .expect("cache dir")
            .map(|e| e.expect("entry").path())
            .collect();
        assert_eq!(files.len(), 1, "{files:?}");
        let name = files[0]
            .file_name()
            .and_then(|n| n.to_str())
            .expect("name")
            .to_owned();
        assert!(
            name.starts_with(&first.sha256) && name.contains("wasmtime48.0.8"),
            "{name}"
        );
        let written = std::fs::metadata(&files[0])
            .and_then(|m| m.modified())
            .expect("mtime");
        // A second engine (a restart) loads it: the file is not written again.
        std::thread::sleep(std::time::Duration::from_millis(20));
        let second = PolicyHost::new(cfg.clone())
            .expect("host")
            .compile(&bytes)
            .expect("load from cache");
        assert_eq!(second.sha256, first.sha256);
        assert_eq!(
            std::fs::metadata(&files[0])
                .and_then(|m| m.modified())
                .expect("mtime"),
            written
        );
        // A file whose content does not match its digest (one flipped byte
        // in the code) is never loaded: it is compiled afresh and replaced.
        let mut tampered = std::fs::read(&files[0]).expect("read");
        let last = tampered.len() - 1;
        tampered[last] ^= 0xff;
        std::fs::write(&files[0], &tampered).expect("tamper");
        PolicyHost::new(cfg.clone())
            .expect("host")
            .compile(&bytes)
            .expect("recompiled");
        assert_ne!(
            std::fs::read(&files[0]).expect("read"),
            tampered,
            "replaced"
        );
        // So is one that is not a compiled component at all.
        std::fs::write(&files[0], b"not a compiled component").expect("corrupt");
        PolicyHost::new(cfg)
            .expect("host")
            .compile(&bytes)
            .expect("recompiled");
        assert!(std::fs::metadata(&files[0]).expect("file").len() > 1000);
        // Nothing else is left in the directory (no temp files).
        assert_eq!(std::fs::read_dir(&cache).expect("dir").count(), 1);
    }
}
