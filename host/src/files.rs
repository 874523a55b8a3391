//! File writes other processes, or a restart after a crash, may read.

use anyhow::{Context, Result};
use std::path::Path;

/// Write to a temporary file beside `path` and rename it into place, so a crash
/// never leaves half a file under the real name, and a reader (the packs
/// directory watcher, another process) never sees one.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    write_with_mode(path, bytes, 0o644)
}

/// As [`write_atomically`], readable by the owner alone (0600 on Unix) from the first byte:
/// configuration that holds secrets, private keys, the emulators' credentials.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    write_with_mode(path, bytes, 0o600)
}

fn write_with_mode(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
    let mut file = options.open(&tmp).with_context(|| format!("writing {}", tmp.display()))?;
    // A temporary file an earlier crash left keeps its old mode through open(): set it.
    #[cfg(unix)]
    file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(mode))
        .with_context(|| format!("setting the mode of {}", tmp.display()))?;
    #[cfg(not(unix))]
    let _ = mode;
    std::io::Write::write_all(&mut file, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    drop(file);
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Read and parse a JSON file, naming the file in every error.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path, what: &str) -> Result<T> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {what} {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {what} {}", path.display()))
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn private_files_are_the_owners_alone_even_over_a_public_one() {
        let dir = std::env::temp_dir().join(format!("seam-files-{}", std::process::id()));
        let path = dir.join("seam.json");
        super::write_atomically(&path, b"{}").unwrap();
        super::write_private(&path, b"{\"secret\": 1}").unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::read(&path).unwrap(), b"{\"secret\": 1}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
