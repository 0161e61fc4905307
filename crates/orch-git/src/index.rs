//! A work tree's index, read in-process in git's documented format (`gitformat-index`:
//! versions 2, 3 and 4, SHA-1 repositories), and what it tells without starting git.
//!
//! Two questions are answered here. Which entries has someone told git to look away from
//! (`assume-unchanged`, `skip-worktree`): `git status` and `git add` trust such an entry
//! instead of the file, so an agent that sets the bit and then changes the file hides the
//! change from every measurement while the gates still run on it. And whether a work tree is
//! exactly its index: every entry's file unchanged since git recorded it (git's own stat
//! comparison, strict), nothing on disk that the index does not hold. Anything this reader
//! does not know (a split or sparse index, an unknown required extension, a bad checksum, an
//! entry racily close to the index's own write) answers `None` or "not known clean", and the
//! caller asks git: a doubt costs a process, never a wrong answer.

use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::MetadataExt as _;
use std::path::Path;

use nix::dir::Type;
use sha1::{Digest as _, Sha1};

/// The bytes of an object id in a SHA-1 repository.
const OID: usize = 20;
/// The fixed part of an entry: ten 32-bit stat fields, the object id, the flags.
const ENTRY_FIXED: usize = 40 + OID + 2;

const FLAG_ASSUME_VALID: u16 = 0x8000;
const FLAG_EXTENDED: u16 = 0x4000;
const FLAG_STAGE: u16 = 0x3000;
const FLAG_NAME_LEN: u16 = 0x0fff;
const EXT_SKIP_WORKTREE: u16 = 0x4000;
const EXT_INTENT_TO_ADD: u16 = 0x2000;

/// One file the index records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    /// Relative to the work tree's root, `/`-separated, as git keeps it.
    pub(crate) path: Vec<u8>,
    pub(crate) mode: u32,
    pub(crate) oid: [u8; OID],
    /// ctime s, ctime ns, mtime s, mtime ns, dev, ino, uid, gid, size: as git stored them
    /// (each cut to 32 bits).
    stat: [u32; 9],
    pub(crate) assume_unchanged: bool,
    pub(crate) skip_worktree: bool,
    /// Conflict stage (0 when none) or `git add -N`: an entry that is not simply a file.
    unusual: bool,
}

/// One file of a tree, as an index entry records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct File {
    pub(crate) path: Vec<u8>,
    mode: u32,
    oid: [u8; OID],
}

/// The paths whose file differs between two sorted lists of files (added, removed, or another
/// mode or content): what `git diff --name-only --no-renames` prints for the two trees.
pub(crate) fn changed(old: &[File], new: &[File]) -> Vec<String> {
    let (mut i, mut j) = (0, 0);
    let mut paths = Vec::new();
    loop {
        let path = match (old.get(i), new.get(j)) {
            (None, None) => break,
            (Some(x), Some(y)) if x.path == y.path => {
                i += 1;
                j += 1;
                if x == y {
                    continue;
                }
                &x.path
            }
            (Some(x), Some(y)) if x.path < y.path => {
                i += 1;
                &x.path
            }
            (Some(x), None) => {
                i += 1;
                &x.path
            }
            (_, Some(y)) => {
                j += 1;
                &y.path
            }
        };
        paths.push(String::from_utf8_lossy(path).into_owned());
    }
    paths
}

/// A digest naming a list of files (their paths, modes and object ids): equal lists, equal
/// digests, as two trees with equal content have equal ids.
pub(crate) fn digest(files: &[File]) -> String {
    use sha2::{Digest as _, Sha256};
    let mut hash = Sha256::new();
    for f in files {
        hash.update(&f.path);
        hash.update([0]);
        hash.update(f.mode.to_be_bytes());
        hash.update(f.oid);
    }
    crate::hex(&hash.finalize())
}

/// What [`Index::survey`] found.
pub(crate) struct Survey {
    /// Every regular file and link on disk is one the index holds, and no directory is empty.
    pub(crate) all_held: bool,
    /// The FIFOs, sockets and devices (relative paths, sorted by the walk's order) and their
    /// types.
    pub(crate) special: Vec<(String, std::fs::FileType)>,
}

/// A work tree's index as git last wrote it.
#[derive(Debug)]
pub(crate) struct Index {
    pub(crate) entries: Vec<Entry>,
    /// When the index file was written (seconds, nanoseconds): an entry whose file changed in
    /// that very moment may differ with equal stat data ("racily clean").
    written: (i64, i64),
    /// The file's trailing SHA-1 of its content, which names this content; `None` when git
    /// wrote none (`index.skipHash`).
    pub(crate) checksum: Option<[u8; OID]>,
}

impl Index {
    /// Reads the index at `path`; `None` when it is missing or not something this reader
    /// knows for certain (then git is asked).
    pub(crate) fn read(path: &Path) -> Option<Self> {
        let meta = std::fs::metadata(path).ok()?;
        let data = std::fs::read(path).ok()?;
        let mut index = parse(&data)?;
        index.written = (meta.mtime(), meta.mtime_nsec());
        Some(index)
    }

    /// The entries someone told git to look away from, as (assume-unchanged, skip-worktree).
    pub(crate) fn hidden(&self) -> (Vec<&[u8]>, Vec<&[u8]>) {
        let pick = |f: fn(&Entry) -> bool| {
            self.entries
                .iter()
                .filter(|e| f(e))
                .map(|e| e.path.as_slice())
                .collect()
        };
        (pick(|e| e.assume_unchanged), pick(|e| e.skip_worktree))
    }

    /// Whether `root` holds exactly the index's files: each one as git recorded it (type,
    /// executable bit, size, times, inode, owner), none racily close to the index's write, no
    /// entry hidden or unusual, and nothing else on disk but empty directories (which git does
    /// not track; they are removed) and the top-level `.git`. `false` when in doubt.
    pub(crate) fn tree_is_exactly(&self, root: &Path) -> std::io::Result<bool> {
        use nix::fcntl::OFlag;
        if self
            .entries
            .iter()
            .any(|e| e.assume_unchanged || e.skip_worktree || e.unusual)
        {
            return Ok(false);
        }
        let dir = nix::dir::Dir::open(
            root,
            dir_flags() | OFlag::O_RDONLY,
            nix::sys::stat::Mode::empty(),
        )?;
        let mut seen = 0;
        let exactly = self.exactly_below(root, dir, &mut Vec::new(), &mut seen)?;
        // Every entry met on disk: none was deleted.
        Ok(exactly.is_some() && seen == self.entries.len())
    }

    /// One directory of [`Index::tree_is_exactly`]'s walk (`rel` below the root): each name is
    /// stat-ed relative to the directory (no lookup of the whole path), a file compared with its
    /// entry, a directory walked, an empty one removed. `None` when something differs;
    /// `Some(empty)` otherwise, `empty` when nothing is left in the directory.
    fn exactly_below(
        &self,
        root: &Path,
        mut dir: nix::dir::Dir,
        rel: &mut Vec<u8>,
        seen: &mut usize,
    ) -> std::io::Result<Option<bool>> {
        use nix::fcntl::AtFlags;
        use nix::sys::stat::{SFlag, fstatat};
        let top = rel.is_empty();
        let names = listing(&mut dir, top)?;
        let mut left = names.len();
        for (name, _) in names {
            let len = rel.len();
            if !top {
                rel.push(b'/');
            }
            rel.extend_from_slice(name.to_bytes());
            let st = fstatat(&dir, name.as_c_str(), AtFlags::AT_SYMLINK_NOFOLLOW)?;
            let same = if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR {
                let sub = open_below(&dir, &name)?;
                match self.exactly_below(root, sub, rel, seen)? {
                    Some(true) => {
                        remove_dir_below(&dir, &name)?;
                        left -= 1;
                        true
                    }
                    Some(false) => true,
                    None => false,
                }
            } else {
                *seen += 1;
                self.entries
                    .binary_search_by(|e| e.path.as_slice().cmp(rel))
                    .is_ok_and(|at| self.unchanged(root, &self.entries[at], &st))
            };
            rel.truncate(len);
            if !same {
                return Ok(None);
            }
        }
        Ok(Some(left == 0 && !top))
    }

    /// One walk of `root` after `git add -A` staged it: whether every file on disk is one the
    /// index holds (a file it does not hold is ignored, or something git cannot add; an empty
    /// directory counts as not held, since `git clean -X` may remove it), and the FIFOs,
    /// sockets and devices, which git does not see at all.
    pub(crate) fn survey(&self, root: &Path) -> std::io::Result<Survey> {
        let mut special = Vec::new();
        let all_held = walk(
            root,
            &mut |rel, kind| {
                if matches!(kind, Type::File | Type::Symlink) {
                    return self.holds(rel);
                }
                // Rare: the full path's type, in the form the caller's checks take.
                let path = root.join(std::ffi::OsStr::from_bytes(rel));
                if let Ok(meta) = std::fs::symlink_metadata(&path) {
                    special.push((String::from_utf8_lossy(rel).into_owned(), meta.file_type()));
                }
                true
            },
            false,
        )?;
        Ok(Survey { all_held, special })
    }

    /// The files as a tree records them (path, mode, object id), when every entry is simply a
    /// file: no conflict, no `git add -N`, nothing hidden. `None` otherwise.
    pub(crate) fn files(self) -> Option<Vec<File>> {
        self.entries
            .into_iter()
            .map(|e| {
                (!(e.unusual || e.assume_unchanged || e.skip_worktree)).then_some(File {
                    path: e.path,
                    mode: e.mode,
                    oid: e.oid,
                })
            })
            .collect()
    }

    fn holds(&self, rel: &[u8]) -> bool {
        self.entries
            .binary_search_by(|e| e.path.as_slice().cmp(rel))
            .is_ok()
    }

    /// Whether `e`'s file, whose stat data is `st`, is as git recorded it (see
    /// [`Index::tree_is_exactly`]).
    fn unchanged(&self, root: &Path, e: &Entry, st: &nix::sys::stat::FileStat) -> bool {
        let file_type = st.st_mode & 0o170000;
        let kind = match e.mode & 0o170000 {
            0o100000 if file_type == 0o100000 => (st.st_mode & 0o100 != 0) == (e.mode & 0o100 != 0),
            0o120000 => file_type == 0o120000,
            // A submodule (gitlink) or anything else: git's own comparison is needed.
            _ => false,
        };
        // The stat fields as git stores them: each cut to its low 32 bits.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let disk = [
            st.st_ctime as u32,
            st.st_ctime_nsec as u32,
            st.st_mtime as u32,
            st.st_mtime_nsec as u32,
            st.st_dev as u32,
            st.st_ino as u32,
            st.st_uid,
            st.st_gid,
            st.st_size as u32,
        ];
        if !kind || disk != e.stat {
            return false;
        }
        // Changed in the very instant the index was written, a file may differ with equal stat
        // data ("racily clean"): as git does, its content is compared then.
        let racy = (st.st_mtime, st.st_mtime_nsec) >= self.written;
        !racy || same_content(&root.join(std::ffi::OsStr::from_bytes(&e.path)), e)
    }
}

/// How orch opens a directory it walks: never through a link, not inherited by children.
fn dir_flags() -> nix::fcntl::OFlag {
    use nix::fcntl::OFlag;
    OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC
}

/// The names in `dir` with their types when the listing gives them: `.` and `..` left out, and
/// `.git` at the top of the tree.
fn listing(
    dir: &mut nix::dir::Dir,
    top: bool,
) -> std::io::Result<Vec<(std::ffi::CString, Option<Type>)>> {
    let mut names = Vec::new();
    for entry in dir.iter() {
        let entry = entry?;
        let bytes = entry.file_name().to_bytes();
        if bytes == b"." || bytes == b".." || (top && bytes == b".git") {
            continue;
        }
        names.push((entry.file_name().to_owned(), entry.file_type()));
    }
    Ok(names)
}

/// The directory `name` in `dir`, opened as orch walks directories ([`dir_flags`]).
fn open_below(dir: &nix::dir::Dir, name: &std::ffi::CStr) -> nix::Result<nix::dir::Dir> {
    nix::dir::Dir::openat(
        dir,
        name,
        dir_flags() | nix::fcntl::OFlag::O_RDONLY,
        nix::sys::stat::Mode::empty(),
    )
}

/// Removes the (empty) directory `name` in `dir`.
fn remove_dir_below(dir: &nix::dir::Dir, name: &std::ffi::CStr) -> nix::Result<()> {
    nix::unistd::unlinkat(dir, name, nix::unistd::UnlinkatFlags::RemoveDir)
}

/// Whether the file at `path` hashes to `e`'s object id as git would store it (a blob of its
/// bytes, or of a link's target), without any filter a repository may configure: a file that
/// git filters answers `false`, and then git is asked.
fn same_content(path: &Path, e: &Entry) -> bool {
    let content = if e.mode & 0o170000 == 0o120000 {
        std::fs::read_link(path).map(|target| target.as_os_str().as_bytes().to_vec())
    } else {
        std::fs::read(path)
    };
    let Ok(content) = content else {
        return false;
    };
    let mut hash = Sha1::new();
    hash.update(format!("blob {}\0", content.len()));
    hash.update(&content);
    hash.finalize().as_slice() == e.oid
}

/// Removes every empty directory below `root` (its `.git` left alone), deepest first, so that a
/// directory holding only empty ones goes too; links are never followed.
pub(crate) fn remove_empty_dirs(root: &Path) -> std::io::Result<()> {
    walk(root, &mut |_, _| true, true).map(drop)
}

/// The checksum an index file ends with (the SHA-1 of its content), read without the rest;
/// `None` when it cannot be read or git wrote none (`index.skipHash`).
pub(crate) fn trailer(path: &Path) -> Option<[u8; OID]> {
    use std::io::{Read as _, Seek as _, SeekFrom};
    let mut file = std::fs::File::open(path).ok()?;
    file.seek(SeekFrom::End(-(OID as i64))).ok()?;
    let mut sum = [0u8; OID];
    file.read_exact(&mut sum).ok()?;
    sum.iter().any(|b| *b != 0).then_some(sum)
}

/// Walks the tree at `root` to its end, answering whether `visit` answered `true` for every
/// non-directory (given its path relative to the root and its type); an empty directory is
/// removed when `prune` (and then counts as nothing), else it answers `false`. The root's `.git`
/// is skipped; links are never followed. Each name is looked at relative to its directory.
fn walk(
    root: &Path,
    visit: &mut dyn FnMut(&[u8], Type) -> bool,
    prune: bool,
) -> std::io::Result<bool> {
    let dir = nix::dir::Dir::open(
        root,
        dir_flags() | nix::fcntl::OFlag::O_RDONLY,
        nix::sys::stat::Mode::empty(),
    )?;
    walk_below(dir, &mut Vec::new(), visit, prune).map(|(all, _)| all)
}

/// One directory of [`walk`] (`rel` below the root): whether every file below answered `true`
/// and no directory below was left empty, and how many names the directory holds afterwards.
fn walk_below(
    mut dir: nix::dir::Dir,
    rel: &mut Vec<u8>,
    visit: &mut dyn FnMut(&[u8], Type) -> bool,
    prune: bool,
) -> std::io::Result<(bool, usize)> {
    use nix::fcntl::AtFlags;
    use nix::sys::stat::{SFlag, fstatat};
    let top = rel.is_empty();
    let names = listing(&mut dir, top)?;
    let mut left = names.len();
    let mut all = true;
    for (name, kind) in names {
        let len = rel.len();
        if !top {
            rel.push(b'/');
        }
        rel.extend_from_slice(name.to_bytes());
        // A file system that does not give the type in the listing is asked per name.
        let kind = match kind {
            Some(kind) => kind,
            None => {
                let st = fstatat(&dir, name.as_c_str(), AtFlags::AT_SYMLINK_NOFOLLOW)?;
                match SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT {
                    SFlag::S_IFDIR => Type::Directory,
                    SFlag::S_IFREG => Type::File,
                    SFlag::S_IFLNK => Type::Symlink,
                    SFlag::S_IFIFO => Type::Fifo,
                    SFlag::S_IFSOCK => Type::Socket,
                    SFlag::S_IFBLK => Type::BlockDevice,
                    _ => Type::CharacterDevice,
                }
            }
        };
        all &= if kind == Type::Directory {
            match walk_below(open_below(&dir, &name)?, rel, visit, prune)? {
                (sub_all, 0) if prune => {
                    remove_dir_below(&dir, &name)?;
                    left -= 1;
                    sub_all
                }
                (_, 0) => false,
                (sub_all, _) => sub_all,
            }
        } else {
            visit(rel, kind)
        };
        rel.truncate(len);
    }
    Ok((all, left))
}

/// Parses an index file's bytes; `None` for anything not known for certain.
fn parse(data: &[u8]) -> Option<Index> {
    let body_len = data.len().checked_sub(OID)?;
    let (body, sum) = data.split_at(body_len);
    // `index.skipHash` writes a zero checksum, as git documents.
    let checksum: Option<[u8; OID]> = sum
        .iter()
        .any(|b| *b != 0)
        .then(|| sum.try_into().ok())
        .flatten();
    if checksum.is_some() && Sha1::digest(body).as_slice() != sum {
        return None;
    }
    let mut r = Reader { data: body, at: 0 };
    if r.take(4)? != b"DIRC" {
        return None;
    }
    let version = r.u32()?;
    if !(2..=4).contains(&version) {
        return None;
    }
    let count = usize::try_from(r.u32()?).ok()?;
    let mut entries: Vec<Entry> = Vec::with_capacity(count.min(1 << 20));
    let mut previous: Vec<u8> = Vec::new();
    for _ in 0..count {
        let start = r.at;
        let mut stat = [0u32; 10];
        for field in &mut stat {
            *field = r.u32()?;
        }
        let oid: [u8; OID] = r.take(OID)?.try_into().ok()?;
        let flags = r.u16()?;
        let extended = if flags & FLAG_EXTENDED != 0 {
            if version < 3 {
                return None;
            }
            r.u16()?
        } else {
            0
        };
        let path = if version == 4 {
            let strip = usize::try_from(r.varint()?).ok()?;
            let keep = previous.len().checked_sub(strip)?;
            let mut path = previous[..keep].to_vec();
            path.extend_from_slice(r.until_nul()?);
            path
        } else {
            let name = r.until_nul()?.to_vec();
            // NUL padding up to a multiple of eight bytes, one NUL (read above) at least.
            let used = r.at - start;
            let padded =
                (ENTRY_FIXED + usize::from(flags & FLAG_EXTENDED != 0) * 2 + name.len() + 8) & !7;
            r.take(padded.checked_sub(used)?)?;
            name
        };
        let name_len = usize::from(flags & FLAG_NAME_LEN);
        if name_len < 0xfff && name_len != path.len() || path.is_empty() {
            return None;
        }
        let (mode, rest) = (
            stat[6],
            [
                stat[0], stat[1], stat[2], stat[3], stat[4], stat[5], stat[7], stat[8], stat[9],
            ],
        );
        if entries.last().is_some_and(|e| e.path >= path) && flags & FLAG_STAGE == 0 {
            // Out of order, or a path twice outside a conflict: not an index git wrote.
            return None;
        }
        previous.clone_from(&path);
        entries.push(Entry {
            path,
            mode,
            oid,
            stat: rest,
            assume_unchanged: flags & FLAG_ASSUME_VALID != 0,
            skip_worktree: extended & EXT_SKIP_WORKTREE != 0,
            unusual: flags & FLAG_STAGE != 0 || extended & EXT_INTENT_TO_ADD != 0,
        });
    }
    // Extensions: an optional one (its signature starts with a capital) may be skipped; a
    // required one (a split index's `link`, a sparse index's `sdir`) changes what the entries
    // mean, so the index is not read.
    while r.at < body.len() {
        let signature = r.take(4)?;
        let size = usize::try_from(r.u32()?).ok()?;
        r.take(size)?;
        if !signature[0].is_ascii_uppercase() {
            return None;
        }
    }
    Some(Index {
        entries,
        written: (0, 0),
        checksum,
    })
}

/// A cursor over the index's bytes; every read checks the length.
struct Reader<'a> {
    data: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.at.checked_add(n)?;
        let bytes = self.data.get(self.at..end)?;
        self.at = end;
        Some(bytes)
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }

    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_be_bytes(self.take(2)?.try_into().ok()?))
    }

    fn until_nul(&mut self) -> Option<&'a [u8]> {
        let rest = self.data.get(self.at..)?;
        let len = rest.iter().position(|b| *b == 0)?;
        self.at += len + 1;
        Some(&rest[..len])
    }

    /// git's offset varint (version 4's prefix length): seven bits a byte, each continuation
    /// adding one before the shift.
    fn varint(&mut self) -> Option<u64> {
        let mut byte = self.take(1)?[0];
        let mut value = u64::from(byte & 0x7f);
        while byte & 0x80 != 0 {
            byte = self.take(1)?[0];
            value = value.checked_add(1)?.checked_mul(128)? | u64::from(byte & 0x7f);
        }
        Some(value)
    }
}

#[cfg(test)]
mod tests;
