//! Hot load by file: a `.seampack` written into `PACKS_DIR/<tenant>/` (`packs_dir`) is loaded
//! for that tenant. Write packs atomically (to a temporary name, then rename)
//! so the watcher never reads half a file; a file that does not open as a pack
//! is reported and left alone.

use crate::packs::Registry;
use anyhow::{Context, Result};
use notify::{EventKind, RecursiveMode, Watcher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Watch `dir` (one sub-directory per tenant) until the returned watcher is dropped.
pub fn start(dir: &Path, registry: Arc<Registry>, tenants: Vec<String>) -> Result<notify::RecommendedWatcher> {
    for tenant in &tenants {
        std::fs::create_dir_all(dir.join(tenant))
            .with_context(|| format!("creating {}", dir.join(tenant).display()))?;
    }
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<PathBuf>();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event {
            if matches!(event.kind, EventKind::Create(_) | EventKind::Modify(_)) {
                for path in event.paths {
                    let _ = tx.send(path);
                }
            }
        }
    })
    .context("starting the watcher of packs_dir")?;
    watcher.watch(dir, RecursiveMode::Recursive).with_context(|| format!("watching {}", dir.display()))?;
    let root = dir.to_path_buf();
    tokio::spawn(async move {
        while let Some(first) = rx.recv().await {
            // Let a burst of events for one write settle, then load each pack written once.
            tokio::time::sleep(Duration::from_millis(100)).await;
            let mut paths = std::collections::BTreeSet::from([first]);
            while let Ok(more) = rx.try_recv() {
                paths.insert(more);
            }
            for path in paths.into_iter().filter(|p| p.extension().is_some_and(|e| e == "seampack")) {
                load(&registry, &root, &path).await;
            }
        }
    });
    Ok(watcher)
}

async fn load(registry: &Registry, root: &Path, path: &Path) {
    let Some(tenant) = path
        .parent()
        .filter(|p| p.parent() == Some(root))
        .and_then(|p| p.file_name())
        .map(|t| t.to_string_lossy().into_owned())
    else {
        tracing::warn!(path = %path.display(), "a pack outside PACKS_DIR/<tenant>/ is ignored");
        return;
    };
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => return tracing::warn!(path = %path.display(), "reading the pack failed: {e}"),
    };
    match registry.install(&tenant, &bytes, "directory").await {
        Ok(active) => tracing::info!(tenant, path = %path.display(), "loaded {active}"),
        Err(e) => {
            tracing::error!(tenant, path = %path.display(), "pack refused, the tenant keeps its current pack: {e:#}")
        }
    }
}
