//! Commits read in-process from git's loose objects (`objects/xx/yyyy…`: a zlib stream of
//! `commit <size>\0` and the commit's text, as `gitformat-loose` documents), for the questions a
//! promotion asks about a few recent commits: a commit's parents, and whether one commit is an
//! ancestor of another nearby. Every object read is checked against its id (its SHA-1), so a
//! file planted under a wrong name is never believed. A commit that is not a loose object (packed
//! by `git gc`, or in an alternate object store) answers `None`, and git is asked.

use std::io::Read as _;
use std::path::Path;

use sha1::{Digest as _, Sha1};

/// The most of an object this module inflates: a commit's text is far smaller.
const MAX_COMMIT: u64 = 1 << 20;
/// How many commits an ancestor walk reads before it leaves the question to git.
const MAX_WALK: usize = 256;

/// What a commit names: its parents, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Commit {
    pub(crate) parents: Vec<String>,
}

/// The commit `sha` from the loose objects in `objects` (a repository's `objects/`), when it is
/// stored there as a loose object whose content hashes to `sha`; `None` otherwise.
pub(crate) fn loose_commit(objects: &Path, sha: &str) -> Option<Commit> {
    if sha.len() != 40
        || !sha
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    {
        return None;
    }
    let file = std::fs::File::open(objects.join(&sha[..2]).join(&sha[2..])).ok()?;
    let mut data = Vec::new();
    flate2::read::ZlibDecoder::new(file)
        .take(MAX_COMMIT)
        .read_to_end(&mut data)
        .ok()?;
    if crate::hex(&Sha1::digest(&data)) != sha {
        return None;
    }
    let nul = data.iter().position(|b| *b == 0)?;
    let (header, body) = (&data[..nul], &data[nul + 1..]);
    let size: usize = std::str::from_utf8(header.strip_prefix(b"commit ")?)
        .ok()?
        .parse()
        .ok()?;
    if size != body.len() {
        return None;
    }
    let text = std::str::from_utf8(body).ok()?;
    let mut lines = text.lines();
    lines.next()?.strip_prefix("tree ")?;
    let parents = lines
        .map_while(|line| line.strip_prefix("parent "))
        .map(str::to_owned)
        .collect();
    Some(Commit { parents })
}

/// Whether `ancestor` is reachable from `descendant` through loose commits: `Some(true)` once
/// found, `Some(false)` when every commit reachable was read (all loose) without finding it,
/// `None` when the walk met a commit it cannot read or grew past [`MAX_WALK`].
pub(crate) fn reaches(objects: &Path, descendant: &str, ancestor: &str) -> Option<bool> {
    let full = |s: &str| s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit());
    if !full(ancestor) || !full(descendant) {
        return None;
    }
    let mut seen = std::collections::HashSet::new();
    let mut queue = vec![descendant.to_owned()];
    while let Some(sha) = queue.pop() {
        if sha == ancestor {
            return Some(true);
        }
        if !seen.insert(sha.clone()) {
            continue;
        }
        if seen.len() > MAX_WALK {
            return None;
        }
        queue.extend(loose_commit(objects, &sha)?.parents);
    }
    Some(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::git;

    fn repo() -> (tempfile::TempDir, Vec<String>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        git(root, &["init", "-q", "-b", "main"]);
        let mut commits = Vec::new();
        for n in 0..3 {
            git(
                root,
                &["commit", "-q", "--allow-empty", "-m", &format!("c{n}")],
            );
            commits.push(git(root, &["rev-parse", "HEAD"]).trim().to_owned());
        }
        (dir, commits)
    }

    #[test]
    fn parents_are_read_as_git_lists_them() {
        let (dir, commits) = repo();
        let objects = dir.path().join(".git/objects");
        assert_eq!(
            loose_commit(&objects, &commits[2]).expect("loose").parents,
            [commits[1].clone()]
        );
        assert!(
            loose_commit(&objects, &commits[0])
                .expect("loose")
                .parents
                .is_empty()
        );
        assert_eq!(reaches(&objects, &commits[2], &commits[0]), Some(true));
        assert_eq!(reaches(&objects, &commits[0], &commits[2]), Some(false));
    }

    #[test]
    fn a_planted_object_is_not_believed() {
        let (dir, commits) = repo();
        let objects = dir.path().join(".git/objects");
        // Another commit's object filed under the first one's name.
        let path = |sha: &str| objects.join(&sha[..2]).join(&sha[2..]);
        std::fs::remove_file(path(&commits[0])).expect("rm");
        std::fs::copy(path(&commits[1]), path(&commits[0])).expect("plant");
        assert!(loose_commit(&objects, &commits[0]).is_none());
        assert_eq!(reaches(&objects, &commits[2], &"0".repeat(40)), None);
        assert!(loose_commit(&objects, "not a sha").is_none());
    }

    #[test]
    fn a_packed_commit_is_left_to_git() {
        let (dir, commits) = repo();
        git(dir.path(), &["gc", "-q"]);
        let objects = dir.path().join(".git/objects");
        assert!(loose_commit(&objects, &commits[2]).is_none());
        assert_eq!(reaches(&objects, &commits[2], &commits[0]), None);
    }
}
