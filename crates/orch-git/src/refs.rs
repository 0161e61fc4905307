//! Reading a branch or `HEAD` from the files git keeps them in, without starting git.
//!
//! orch asks for the default branch, a work tree's `HEAD` and a branch's tip many times per
//! stage; each answer from `git rev-parse` or `git symbolic-ref` is a process (2 to 8 ms on a
//! small machine). Git's "files" ref storage is a documented, stable format
//! (`gitrepository-layout(5)`): a loose ref is a file holding a full object id, or `ref: <name>`
//! for a symbolic one such as `HEAD`, and `packed-refs` holds `<id> <name>` lines (with `^<id>`
//! lines peeling the tag before them). Git replaces both files by renaming a finished lock file
//! over them, so a reader sees the old content or the new one, never half of it; and it writes
//! a packed ref before deleting the loose one, so reading the loose file first and
//! `packed-refs` second, as git does, never misses a ref.
//!
//! Anything outside that format answers [`Read::AskGit`] and the caller runs git as before:
//! a repository using the reftable storage, a file orch does not recognise, an error other than
//! "no such file". Only reads are done here; every change to a ref stays a git command.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

/// How deep a chain of symbolic refs is followed (git's own limit is 5).
const MAX_DEPTH: usize = 5;

/// What reading a ref from git's files found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Read {
    /// The full object id the ref names.
    Found(String),
    /// No such ref (neither loose nor packed).
    Missing,
    /// A symbolic ref (`HEAD` on a branch): the ref it names.
    Symbolic(String),
    /// Not in the form this module reads: run git.
    AskGit,
}

/// Where a repository keeps its refs: the common directory (branches, `packed-refs`) and the
/// directory of the work tree asked about (its `HEAD`).
#[derive(Debug, Clone)]
pub(crate) struct RefFiles<'a> {
    pub(crate) common: &'a Path,
    pub(crate) worktree_dir: &'a Path,
}

impl RefFiles<'_> {
    /// Whether this repository keeps refs as files at all (not the reftable storage).
    pub(crate) fn readable(common: &Path) -> bool {
        !common.join("reftable").exists()
    }

    /// The object id `name` resolves to, following symbolic refs (`HEAD`).
    pub(crate) fn resolve(&self, name: &str) -> Read {
        let mut name = name.to_owned();
        for _ in 0..MAX_DEPTH {
            match self.read(&name) {
                Read::Symbolic(target) => name = target,
                other => return other,
            }
        }
        Read::AskGit
    }

    /// The ref `HEAD` points at (`refs/heads/main`), [`Read::Found`] when it is detached.
    pub(crate) fn head_target(&self) -> Read {
        self.read("HEAD")
    }

    /// One level: a loose ref's content, else its packed line.
    fn read(&self, name: &str) -> Read {
        let Some(path) = self.path_of(name) else {
            return Read::AskGit;
        };
        match std::fs::read(&path) {
            Ok(bytes) => parse_loose(&bytes),
            Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::IsADirectory) => {
                if name == "HEAD" {
                    return Read::AskGit;
                }
                self.packed(name)
            }
            Err(_) => Read::AskGit,
        }
    }

    /// The loose file of `name`: `HEAD` in the work tree's directory, branches in the common
    /// one. Names this module does not handle (per-work-tree refs, pseudo-refs, anything that
    /// could leave the directory) have none.
    fn path_of(&self, name: &str) -> Option<PathBuf> {
        if name == "HEAD" {
            return Some(self.worktree_dir.join("HEAD"));
        }
        let rest = name.strip_prefix("refs/")?;
        let plain = rest.split('/').all(|part| {
            !part.is_empty()
                && !part.starts_with('.')
                && !part.ends_with(".lock")
                && part
                    .bytes()
                    .all(|b| b.is_ascii_graphic() && !b"\\:?*[~^".contains(&b))
        });
        let per_worktree = ["bisect/", "worktree/", "rewritten/"]
            .iter()
            .any(|p| rest.starts_with(p));
        (plain && !per_worktree).then(|| self.common.join(name))
    }

    fn packed(&self, name: &str) -> Read {
        let text = match std::fs::read(self.common.join("packed-refs")) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == ErrorKind::NotFound => return Read::Missing,
            Err(_) => return Read::AskGit,
        };
        let Ok(text) = String::from_utf8(text) else {
            return Read::AskGit;
        };
        for line in text.lines() {
            if line.starts_with('#') || line.starts_with('^') {
                continue;
            }
            let Some((id, ref_name)) = line.split_once(' ') else {
                return Read::AskGit;
            };
            if !is_object_id(id) {
                return Read::AskGit;
            }
            if ref_name == name {
                return Read::Found(id.to_owned());
            }
        }
        Read::Missing
    }
}

/// A loose ref file: `<id>\n` or `ref: <name>\n`.
fn parse_loose(bytes: &[u8]) -> Read {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return Read::AskGit;
    };
    let Some(line) = text.strip_suffix('\n') else {
        return Read::AskGit;
    };
    if let Some(target) = line.strip_prefix("ref: ") {
        return if target.starts_with("refs/") && !target.contains(char::is_whitespace) {
            Read::Symbolic(target.to_owned())
        } else {
            Read::AskGit
        };
    }
    if is_object_id(line) {
        Read::Found(line.to_owned())
    } else {
        Read::AskGit
    }
}

/// A full SHA-1 or SHA-256 object id in lower-case hex, as git writes them.
fn is_object_id(text: &str) -> bool {
    matches!(text.len(), 40 | 64) && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "1111111111111111111111111111111111111111";
    const B: &str = "2222222222222222222222222222222222222222";

    fn files(dir: &Path) -> RefFiles<'_> {
        RefFiles {
            common: dir,
            worktree_dir: dir,
        }
    }

    fn write(dir: &Path, name: &str, text: &str) {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, text).expect("write");
    }

    #[test]
    fn loose_refs_win_over_packed_ones_and_symbolic_heads_are_followed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        write(d, "HEAD", "ref: refs/heads/main\n");
        write(d, "refs/heads/main", &format!("{A}\n"));
        write(
            d,
            "packed-refs",
            &format!(
                "# pack-refs with: peeled fully-peeled sorted \n{B} refs/heads/main\n{B} refs/heads/orch/X-1\n{A} refs/tags/v1\n^{B}\n"
            ),
        );
        let f = files(d);
        assert_eq!(f.resolve("HEAD"), Read::Found(A.into()));
        assert_eq!(f.head_target(), Read::Symbolic("refs/heads/main".into()));
        assert_eq!(f.resolve("refs/heads/orch/X-1"), Read::Found(B.into()));
        assert_eq!(f.resolve("refs/heads/nope"), Read::Missing);
        // A directory of branches (`refs/heads/orch/`) is not a ref.
        assert_eq!(f.resolve("refs/heads/orch"), Read::Missing);
    }

    #[test]
    fn anything_unusual_is_left_to_git() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        write(d, "refs/heads/short", "1234\n");
        write(
            d,
            "refs/heads/upper",
            "ABCDEF0123456789ABCDEF0123456789ABCDEF01\n",
        );
        write(d, "refs/heads/no-newline", A);
        write(d, "refs/heads/loop", "ref: refs/heads/loop\n");
        write(d, "HEAD", "ref: ../../etc/passwd\n");
        let f = files(d);
        for name in [
            "refs/heads/short",
            "refs/heads/upper",
            "refs/heads/no-newline",
            "refs/heads/loop",
            "HEAD",
            "refs/heads/../../x",
            "refs/heads/a..b/../c",
            "refs/bisect/bad",
            "MERGE_HEAD",
            "main",
        ] {
            assert_eq!(f.resolve(name), Read::AskGit, "{name}");
        }
        write(d, "packed-refs", "garbage\n");
        assert_eq!(f.resolve("refs/heads/gone"), Read::AskGit);
    }

    #[test]
    fn a_missing_head_or_reftable_storage_is_left_to_git() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(files(dir.path()).resolve("HEAD"), Read::AskGit);
        assert!(RefFiles::readable(dir.path()));
        std::fs::create_dir(dir.path().join("reftable")).expect("mkdir");
        assert!(!RefFiles::readable(dir.path()));
    }
}
