//! Compiled components, keyed by the SHA-256 of the component bytes.
//!
//! Compiling a component with Cranelift takes tens to hundreds of
//! milliseconds; loading a precompiled one takes about a millisecond. Packs
//! are compiled once on a blocking thread (off the event path), kept in
//! memory, and, with a cache directory, written to disk so a restart or a
//! second tenant with the same pack does not compile again.

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use wasmtime::component::Component;
use wasmtime::Engine;

/// Where a loaded component came from, and what it cost.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum CacheOutcome {
    Compiled(Duration),
    Disk(Duration),
    Memory,
}

pub struct ComponentCache {
    dir: Option<PathBuf>,
    /// Changes whenever the engine's code generation settings change, so a
    /// stale file is never even tried.
    engine_tag: String,
    memory: Mutex<HashMap<String, Component>>,
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

impl ComponentCache {
    pub fn new(engine: &Engine, dir: Option<PathBuf>) -> Result<Self> {
        if let Some(dir) = &dir {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("creating the compile cache directory {}", dir.display()))?;
        }
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        env!("CARGO_PKG_VERSION").hash(&mut hasher);
        Ok(ComponentCache { dir, engine_tag: format!("{:016x}", hasher.finish()), memory: Mutex::new(HashMap::new()) })
    }

    pub fn len(&self) -> usize {
        self.memory.lock().unwrap().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The compiled component for `wasm` (whose hash is `sha256`).
    pub async fn get_or_compile(
        &self,
        engine: &Engine,
        sha256: &str,
        wasm: &[u8],
    ) -> Result<(Component, CacheOutcome)> {
        if let Some(component) = self.memory.lock().unwrap().get(sha256) {
            return Ok((component.clone(), CacheOutcome::Memory));
        }
        let file = self.dir.as_ref().map(|d| d.join(format!("{sha256}-{}.cwasm", self.engine_tag)));
        // The disk and the compiler both block (reads, Cranelift, the cache file's sync): on
        // the blocking pool, never on a tokio worker.
        let (engine, bytes) = (engine.clone(), wasm.to_vec());
        let (component, outcome) =
            crate::store::blocking::off_worker(move || load_or_compile(&engine, file, &bytes)).await?;
        self.remember(sha256, &component);
        Ok((component, outcome))
    }

    fn remember(&self, sha256: &str, component: &Component) {
        self.memory.lock().unwrap().insert(sha256.to_string(), component.clone());
    }
}

/// A component from the cache file when it is usable, else compiled (and written to `file`).
fn load_or_compile(engine: &Engine, file: Option<PathBuf>, wasm: &[u8]) -> Result<(Component, CacheOutcome)> {
    if let Some(file) = file.as_ref().filter(|f| f.exists()) {
        let started = Instant::now();
        // Read, not mmap: a file truncated or rewritten under a mapped
        // component would crash the host with SIGBUS.
        // SAFETY: the file was written by `Component::serialize` of this
        // engine configuration (the tag in its name says so); a truncated
        // or foreign file fails the header checks and is recompiled.
        let loaded = std::fs::read(file)
            .map_err(anyhow::Error::from)
            .and_then(|bytes| unsafe { Component::deserialize(engine, &bytes) }.map_err(anyhow::Error::from));
        match loaded {
            Ok(component) => return Ok((component, CacheOutcome::Disk(started.elapsed()))),
            Err(e) => tracing::warn!("ignoring unusable compile cache entry {}: {e:#}", file.display()),
        }
    }
    let started = Instant::now();
    let component = Component::new(engine, wasm).map_err(anyhow::Error::from).context("compiling the component")?;
    let compiled = started.elapsed();
    if let Some(file) = file {
        if let Err(e) = component
            .serialize()
            .map_err(anyhow::Error::from)
            .and_then(|bytes| crate::files::write_atomically(&file, &bytes))
        {
            tracing::warn!("could not write compile cache entry {}: {e:#}", file.display());
        }
    }
    Ok((component, CacheOutcome::Compiled(compiled)))
}
