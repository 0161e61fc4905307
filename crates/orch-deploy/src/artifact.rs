//! The artifact on disk: its digest and its copy into the build directory.
//!
//! The digest is what ties staging to prod (build once, contract 6): prod refuses a build whose
//! files no longer hash to the digest recorded when it was built. A directory hashes its files in
//! sorted order, each with its relative path, so a renamed or moved file changes the digest too.
//! Only plain files and directories are allowed: a symlink could point the "same" build anywhere.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::DeployError;

/// `sha256:<hex>` of a file's bytes (what `sha256sum` prints), or of a directory's files: each
/// one's relative path and length, then its bytes, in sorted order.
pub(crate) fn digest(path: &Path) -> Result<String, DeployError> {
    let mut hasher = Sha256::new();
    let meta = fs::symlink_metadata(path).map_err(DeployError::io("read", path))?;
    if meta.is_file() {
        hash_file(path, &mut hasher)?;
    } else if meta.is_dir() {
        for relative in files_under(path)? {
            let bytes = relative.to_string_lossy().replace('\\', "/").into_bytes();
            hasher.update(u64::try_from(bytes.len()).unwrap_or(u64::MAX).to_le_bytes());
            hasher.update(&bytes);
            let file = path.join(&relative);
            let length = fs::metadata(&file)
                .map_err(DeployError::io("read", &file))?
                .len();
            hasher.update(length.to_le_bytes());
            hash_file(&file, &mut hasher)?;
        }
    } else {
        return Err(DeployError::ArtifactNotPlain {
            path: path.to_owned(),
        });
    }
    Ok(format!("sha256:{}", hex(&hasher.finalize())))
}

/// Copies a file or a directory tree to `to`, which must not exist yet. Permissions are kept (the
/// executable bit matters).
pub(crate) fn copy(from: &Path, to: &Path) -> Result<(), DeployError> {
    let meta = fs::symlink_metadata(from).map_err(DeployError::io("read", from))?;
    if meta.is_file() {
        fs::copy(from, to).map_err(DeployError::io("copy the artifact to", to))?;
        return Ok(());
    }
    if !meta.is_dir() {
        return Err(DeployError::ArtifactNotPlain {
            path: from.to_owned(),
        });
    }
    fs::create_dir_all(to).map_err(DeployError::io("create", to))?;
    for relative in files_under(from)? {
        let target = to.join(&relative);
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent).map_err(DeployError::io("create", parent))?;
        }
        fs::copy(from.join(&relative), &target)
            .map_err(DeployError::io("copy the artifact to", &target))?;
    }
    Ok(())
}

/// Every file below `root`, as sorted relative paths. Any entry that is not a file or a directory
/// is an error.
fn files_under(root: &Path) -> Result<Vec<PathBuf>, DeployError> {
    let mut files = Vec::new();
    let mut pending = vec![PathBuf::new()];
    while let Some(dir) = pending.pop() {
        let absolute = root.join(&dir);
        for entry in fs::read_dir(&absolute).map_err(DeployError::io("list", &absolute))? {
            let entry = entry.map_err(DeployError::io("list", &absolute))?;
            let kind = entry
                .file_type()
                .map_err(DeployError::io("read", entry.path()))?;
            let relative = dir.join(entry.file_name());
            if kind.is_dir() {
                pending.push(relative);
            } else if kind.is_file() {
                files.push(relative);
            } else {
                return Err(DeployError::ArtifactNotPlain { path: entry.path() });
            }
        }
    }
    files.sort();
    Ok(files)
}

fn hash_file(path: &Path, hasher: &mut Sha256) -> Result<(), DeployError> {
    let mut file = fs::File::open(path).map_err(DeployError::io("open", path))?;
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let n = file
            .read(&mut buffer)
            .map_err(DeployError::io("read", path))?;
        if n == 0 {
            return Ok(());
        }
        hasher.update(&buffer[..n]);
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &Path, text: &str) {
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).expect("mkdir");
        }
        fs::write(path, text).expect("write");
    }

    #[test]
    fn a_file_digest_is_the_sha256_of_its_bytes_and_changes_with_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("app");
        write(&file, "abc");
        let first = digest(&file).expect("digest");
        // The well-known SHA-256 of "abc".
        assert_eq!(
            first,
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(digest(&file).expect("again"), first, "stable");
        write(&file, "v2");
        assert_ne!(digest(&file).expect("changed"), first);
    }

    #[test]
    fn a_directory_digest_covers_names_and_contents_and_its_copy_hashes_the_same() {
        let dir = tempfile::tempdir().expect("tempdir");
        let tree = dir.path().join("dist");
        write(&tree.join("app.py"), "print(1)");
        write(&tree.join("static/a.txt"), "a");
        let original = digest(&tree).expect("digest");

        let copied = dir.path().join("copy");
        copy(&tree, &copied).expect("copy");
        assert_eq!(digest(&copied).expect("copy digest"), original);

        fs::rename(tree.join("static/a.txt"), tree.join("static/b.txt")).expect("rename");
        assert_ne!(
            digest(&tree).expect("renamed"),
            original,
            "a rename changes the digest"
        );
    }

    #[test]
    fn symlinks_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let tree = dir.path().join("dist");
        write(&tree.join("app.py"), "x");
        std::os::unix::fs::symlink("/etc/hostname", tree.join("link")).expect("symlink");
        assert!(matches!(
            digest(&tree),
            Err(DeployError::ArtifactNotPlain { .. })
        ));
        assert!(matches!(
            copy(&tree, &dir.path().join("copy")),
            Err(DeployError::ArtifactNotPlain { .. })
        ));
    }
}
