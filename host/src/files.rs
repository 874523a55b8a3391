//! File writes other processes, or a restart after a crash, may read.

use anyhow::{Context, Result};
use std::path::Path;

/// Write to a temporary file beside `path` and rename it into place, so a crash
/// never leaves half a file under the real name, and a reader (the plugins
/// directory watcher, another process) never sees one.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
