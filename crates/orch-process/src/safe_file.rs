//! Reading and writing files inside a work tree that an agent controls, without being fooled by
//! what the agent left there.
//!
//! Every path is taken relative to a root orch trusts (a work tree, the log directory). Each
//! component below the root is opened with `O_NOFOLLOW` (directories also with `O_DIRECTORY`),
//! so a symbolic link anywhere on the way is refused, not followed: a link to
//! `/proc/self/environ` can never put orch's environment into a prompt or a page. Only regular
//! files are read or written: a FIFO, a socket or a device is refused by its type before it is
//! opened, and opens are non-blocking, so a FIFO swapped in at the last moment cannot hang orch.
//! Reads are bounded (a link to `/dev/zero`, or a huge file, costs at most the bound), and the
//! async read is raced against the run's cancellation and a time limit.
//!
//! This module must never follow a link below the root, never open anything but a regular file
//! or a directory, and never read more than it was asked to.

use std::ffi::{OsStr, OsString};
use std::io::{Read as _, Write as _};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{FileStat, Mode, SFlag};
use tokio_util::sync::CancellationToken;

/// What a path below the root is, read without following it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Regular,
    Directory,
    Symlink,
    Fifo,
    Socket,
    CharDevice,
    BlockDevice,
}

impl FileKind {
    fn of(st: &FileStat) -> Self {
        match SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()) {
            SFlag::S_IFREG => Self::Regular,
            SFlag::S_IFDIR => Self::Directory,
            SFlag::S_IFLNK => Self::Symlink,
            SFlag::S_IFIFO => Self::Fifo,
            SFlag::S_IFSOCK => Self::Socket,
            SFlag::S_IFBLK => Self::BlockDevice,
            _ => Self::CharDevice,
        }
    }

    /// The kind of a file whose type a directory walk gave.
    pub fn of_type(t: std::fs::FileType) -> Self {
        use std::os::unix::fs::FileTypeExt as _;
        if t.is_symlink() {
            Self::Symlink
        } else if t.is_dir() {
            Self::Directory
        } else if t.is_fifo() {
            Self::Fifo
        } else if t.is_socket() {
            Self::Socket
        } else if t.is_block_device() {
            Self::BlockDevice
        } else if t.is_char_device() {
            Self::CharDevice
        } else {
            Self::Regular
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Self::Regular => "regular file",
            Self::Directory => "directory",
            Self::Symlink => "symbolic link",
            Self::Fifo => "FIFO (named pipe)",
            Self::Socket => "socket",
            Self::CharDevice => "character device",
            Self::BlockDevice => "block device",
        }
    }
}

/// Why a file was not read or written. Every variant names the path (relative to the root).
#[derive(Debug, thiserror::Error)]
pub enum SafeFileError {
    #[error("{0}: refusing a path that is empty, absolute or holds `..`")]
    BadPath(String),
    #[error("{path} does not exist")]
    NotFound { path: String },
    #[error("{path}: {at} is a symbolic link; orch opens nothing through a link")]
    Symlink { path: String, at: String },
    #[error("{path} is a {}, not a regular file", kind.describe())]
    NotRegular { path: String, kind: FileKind },
    #[error("reading {path} was stopped: {why}")]
    Stopped { path: String, why: &'static str },
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

/// Bytes read from a file, at most the bound asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bounded {
    pub bytes: Vec<u8>,
    /// The file had more than the bound.
    pub truncated: bool,
}

impl Bounded {
    /// The bytes as text; invalid UTF-8 (or a character cut at the bound) becomes U+FFFD.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }
}

/// Reads at most `max_bytes` of the regular file `rel` below `root`, following no link below
/// `root` and opening nothing but a regular file.
pub fn read_regular_bounded(
    root: &Path,
    rel: &Path,
    max_bytes: usize,
) -> Result<Bounded, SafeFileError> {
    let (dir, name, shown) = open_parent(root, rel, false)?;
    read_in(&dir, name, &shown, max_bytes)
}

/// At most `max_bytes` of the regular file `rel` below `root` from byte `offset` on (a log
/// being followed), with the file's size at the time of the read; refused as
/// [`read_regular_bounded`] refuses.
pub fn read_regular_from(
    root: &Path,
    rel: &Path,
    offset: u64,
    max_bytes: usize,
) -> Result<(Bounded, u64), SafeFileError> {
    use std::io::{Seek as _, SeekFrom};
    let (dir, name, shown) = open_parent(root, rel, false)?;
    let mut file = open_regular_in(&dir, name, &shown)?;
    let io_err = |source| SafeFileError::Io {
        path: shown.clone(),
        source,
    };
    let size = file.metadata().map_err(io_err)?.len();
    file.seek(SeekFrom::Start(offset.min(size)))
        .map_err(io_err)?;
    Ok((bounded(file, &shown, max_bytes)?, size))
}

/// [`read_regular_bounded`] off the async threads, given up when `cancel` fires or `limit`
/// passes (the run's cancellation and what is left of its timeout).
pub async fn read_regular_within(
    root: &Path,
    rel: &Path,
    max_bytes: usize,
    cancel: &CancellationToken,
    limit: Duration,
) -> Result<Bounded, SafeFileError> {
    let (r, p) = (root.to_owned(), rel.to_owned());
    let shown = rel.display().to_string();
    let read = tokio::task::spawn_blocking(move || read_regular_bounded(&r, &p, max_bytes));
    // Biased: a run already cancelled reads nothing more, however fast the read would be.
    tokio::select! {
        biased;
        () = cancel.cancelled() => Err(SafeFileError::Stopped { path: shown, why: "the run was cancelled" }),
        joined = read => joined.unwrap_or_else(|e| Err(SafeFileError::Io {
            path: shown,
            source: std::io::Error::other(e.to_string()),
        })),
        () = tokio::time::sleep(limit) => Err(SafeFileError::Stopped { path: shown, why: "it took longer than the run may" }),
    }
}

/// The regular files directly in the directory `rel_dir` below `root` whose names end with
/// `suffix`, sorted by name, each read as [`read_regular_bounded`] would (a link, a FIFO or a
/// device among them gives its error, never its content). A missing directory has none.
#[allow(clippy::type_complexity)]
pub fn read_dir_regular(
    root: &Path,
    rel_dir: &Path,
    suffix: &str,
    max_bytes: usize,
) -> Result<Vec<(String, Result<Bounded, SafeFileError>)>, SafeFileError> {
    let parts = components(rel_dir)?;
    let dir = match open_dirs(root, &parts, false) {
        Err(SafeFileError::NotFound { .. }) => return Ok(Vec::new()),
        other => other?,
    };
    let shown = rel_dir.display().to_string();
    let listing = nix::fcntl::openat(
        &dir,
        ".",
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| io(&shown, e))?;
    let mut names: Vec<OsString> = Vec::new();
    let mut listing = nix::dir::Dir::from_fd(listing).map_err(|e| io(&shown, e))?;
    for entry in listing.iter() {
        let entry = entry.map_err(|e| io(&shown, e))?;
        let name = OsStr::from_bytes(entry.file_name().to_bytes());
        if name.to_str().is_some_and(|n| n.ends_with(suffix)) {
            names.push(name.to_owned());
        }
    }
    names.sort();
    Ok(names
        .into_iter()
        .map(|name| {
            let path = rel_dir.join(&name).display().to_string();
            let read = read_in(&dir, &name, &path, max_bytes);
            (name.to_string_lossy().into_owned(), read)
        })
        .collect())
}

/// Writes `bytes` as the regular file `rel` below `root`, creating missing directories; a link
/// on the way or at the file, or anything but a regular file there, is refused.
pub fn write_regular(root: &Path, rel: &Path, bytes: &[u8]) -> Result<(), SafeFileError> {
    let (dir, name, shown) = open_parent(root, rel, true)?;
    match kind_in(&dir, name, &shown)? {
        None | Some(FileKind::Regular) => {}
        Some(FileKind::Symlink) => {
            return Err(SafeFileError::Symlink {
                at: shown.clone(),
                path: shown,
            });
        }
        Some(kind) => return Err(SafeFileError::NotRegular { path: shown, kind }),
    }
    let fd = nix::fcntl::openat(
        &dir,
        name,
        OFlag::O_WRONLY
            | OFlag::O_CREAT
            | OFlag::O_TRUNC
            | OFlag::O_NOFOLLOW
            | OFlag::O_NONBLOCK
            | OFlag::O_NOCTTY
            | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o644),
    )
    .map_err(|e| refused(&shown, &shown, e))?;
    let kind = FileKind::of(&nix::sys::stat::fstat(&fd).map_err(|e| io(&shown, e))?);
    if kind != FileKind::Regular {
        return Err(SafeFileError::NotRegular { path: shown, kind });
    }
    let mut file = std::fs::File::from(fd);
    file.write_all(bytes).map_err(|source| SafeFileError::Io {
        path: shown,
        source,
    })
}

/// Removes the file `rel` below `root` (a link is removed itself, never what it points to).
/// Returns whether there was one; a directory there is refused.
pub fn remove_file(root: &Path, rel: &Path) -> Result<bool, SafeFileError> {
    let (dir, name, shown) = match open_parent(root, rel, false) {
        Err(SafeFileError::NotFound { .. }) => return Ok(false),
        other => other?,
    };
    match kind_in(&dir, name, &shown)? {
        None => Ok(false),
        Some(FileKind::Directory) => Err(SafeFileError::NotRegular {
            path: shown,
            kind: FileKind::Directory,
        }),
        Some(_) => {
            nix::unistd::unlinkat(&dir, name, nix::unistd::UnlinkatFlags::NoRemoveDir)
                .map_err(|e| io(&shown, e))?;
            Ok(true)
        }
    }
}

/// What `rel` below `root` is, without following it; `None` when it does not exist. A link on
/// the way to it is an error.
pub fn kind_of(root: &Path, rel: &Path) -> Result<Option<FileKind>, SafeFileError> {
    let (dir, name, shown) = match open_parent(root, rel, false) {
        Err(SafeFileError::NotFound { .. }) => return Ok(None),
        other => other?,
    };
    kind_in(&dir, name, &shown)
}

/// Where the symbolic link `rel` below `root` points, as written in the link.
pub fn link_target(root: &Path, rel: &Path) -> Result<PathBuf, SafeFileError> {
    let (dir, name, shown) = open_parent(root, rel, false)?;
    nix::fcntl::readlinkat(&dir, name)
        .map(PathBuf::from)
        .map_err(|e| io(&shown, e))
}

/// Every path below `root` (relative, `.git` skipped) that is a FIFO, a socket or a device,
/// found without following links. Git does not see such files, so neither a diff nor `git
/// clean` does; this walk does. With `remove`, each is unlinked as it is found.
pub fn special_files(root: &Path, remove: bool) -> Result<Vec<(String, FileKind)>, SafeFileError> {
    let mut found = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let here = root.join(&rel);
        let entries = std::fs::read_dir(&here).map_err(|source| SafeFileError::Io {
            path: rel.display().to_string(),
            source,
        })?;
        for entry in entries {
            let entry = entry.map_err(|source| SafeFileError::Io {
                path: rel.display().to_string(),
                source,
            })?;
            let path = rel.join(entry.file_name());
            if path == Path::new(".git") {
                continue;
            }
            let kind =
                entry
                    .file_type()
                    .map(FileKind::of_type)
                    .map_err(|source| SafeFileError::Io {
                        path: path.display().to_string(),
                        source,
                    })?;
            match kind {
                FileKind::Directory => stack.push(path),
                FileKind::Regular | FileKind::Symlink => {}
                special => {
                    if remove {
                        remove_file(root, &path)?;
                    }
                    found.push((path.display().to_string(), special));
                }
            }
        }
    }
    found.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(found)
}

/// The normal components of a relative path; anything else (absolute, `..`, empty) is refused.
fn components(rel: &Path) -> Result<Vec<&OsStr>, SafeFileError> {
    let mut parts = Vec::new();
    for c in rel.components() {
        match c {
            Component::Normal(p) => parts.push(p),
            Component::CurDir => {}
            _ => return Err(SafeFileError::BadPath(rel.display().to_string())),
        }
    }
    Ok(parts)
}

/// The directory holding `rel`'s last component, opened without following links, its name,
/// and `rel` for messages.
fn open_parent<'a>(
    root: &Path,
    rel: &'a Path,
    create: bool,
) -> Result<(OwnedFd, &'a OsStr, String), SafeFileError> {
    let parts = components(rel)?;
    let Some((name, dirs)) = parts.split_last() else {
        return Err(SafeFileError::BadPath(rel.display().to_string()));
    };
    let dir = open_dirs(root, dirs, create)?;
    Ok((dir, name, rel.display().to_string()))
}

/// Opens `root` (trusted: orch's own path) and then each of `dirs` below it with `O_NOFOLLOW`.
fn open_dirs(root: &Path, dirs: &[&OsStr], create: bool) -> Result<OwnedFd, SafeFileError> {
    let dir_flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
    let mut fd = nix::fcntl::open(root, dir_flags, Mode::empty())
        .map_err(|e| io(&root.display().to_string(), e))?;
    let mut walked = PathBuf::new();
    for part in dirs {
        walked.push(part);
        let shown = walked.display().to_string();
        let open = |fd: &OwnedFd| {
            nix::fcntl::openat(fd, *part, dir_flags | OFlag::O_NOFOLLOW, Mode::empty())
        };
        let next = match open(&fd) {
            Err(Errno::ENOENT) if create => {
                match nix::sys::stat::mkdirat(&fd, *part, Mode::from_bits_truncate(0o755)) {
                    Ok(()) | Err(Errno::EEXIST) => open(&fd),
                    Err(e) => Err(e),
                }
            }
            other => other,
        };
        fd = match next {
            Ok(next) => next,
            Err(Errno::ENOENT) => return Err(SafeFileError::NotFound { path: shown }),
            Err(Errno::ELOOP | Errno::ENOTDIR) => {
                return Err(match kind_in(&fd, part, &shown)? {
                    Some(FileKind::Symlink) => SafeFileError::Symlink {
                        path: shown.clone(),
                        at: shown,
                    },
                    Some(kind) => SafeFileError::NotRegular { path: shown, kind },
                    None => SafeFileError::NotFound { path: shown },
                });
            }
            Err(e) => return Err(io(&shown, e)),
        };
    }
    Ok(fd)
}

/// What `name` in `dir` is, not following it; `None` when it does not exist.
fn kind_in(dir: &OwnedFd, name: &OsStr, shown: &str) -> Result<Option<FileKind>, SafeFileError> {
    match nix::sys::stat::fstatat(dir.as_fd(), name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(FileKind::of(&st))),
        Err(Errno::ENOENT) => Ok(None),
        Err(e) => Err(io(shown, e)),
    }
}

/// Reads the regular file `name` in `dir`: its type is checked before the open (so a FIFO or a
/// device is never opened) and again on the open descriptor (so a swap in between is caught).
fn read_in(
    dir: &OwnedFd,
    name: &OsStr,
    shown: &str,
    max_bytes: usize,
) -> Result<Bounded, SafeFileError> {
    let file = open_regular_in(dir, name, shown)?;
    bounded(file, shown, max_bytes)
}

/// Opens the regular file `name` in `dir` for reading: its type is checked before the open (so
/// a FIFO or a device is never opened) and again on the open descriptor (so a swap in between
/// is caught).
fn open_regular_in(
    dir: &OwnedFd,
    name: &OsStr,
    shown: &str,
) -> Result<std::fs::File, SafeFileError> {
    match kind_in(dir, name, shown)? {
        Some(FileKind::Regular) => {}
        None => {
            return Err(SafeFileError::NotFound {
                path: shown.to_owned(),
            });
        }
        Some(FileKind::Symlink) => {
            return Err(SafeFileError::Symlink {
                path: shown.to_owned(),
                at: shown.to_owned(),
            });
        }
        Some(kind) => {
            return Err(SafeFileError::NotRegular {
                path: shown.to_owned(),
                kind,
            });
        }
    }
    let fd = nix::fcntl::openat(
        dir,
        name,
        OFlag::O_RDONLY
            | OFlag::O_NOFOLLOW
            | OFlag::O_NONBLOCK
            | OFlag::O_NOCTTY
            | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| refused(shown, shown, e))?;
    let kind = FileKind::of(&nix::sys::stat::fstat(&fd).map_err(|e| io(shown, e))?);
    if kind != FileKind::Regular {
        return Err(SafeFileError::NotRegular {
            path: shown.to_owned(),
            kind,
        });
    }
    Ok(std::fs::File::from(fd))
}

/// At most `max_bytes` from where `file` stands.
fn bounded(file: std::fs::File, shown: &str, max_bytes: usize) -> Result<Bounded, SafeFileError> {
    let mut bytes = Vec::new();
    let limit = u64::try_from(max_bytes)
        .unwrap_or(u64::MAX)
        .saturating_add(1);
    file.take(limit)
        .read_to_end(&mut bytes)
        .map_err(|source| SafeFileError::Io {
            path: shown.to_owned(),
            source,
        })?;
    let truncated = bytes.len() > max_bytes;
    bytes.truncate(max_bytes);
    Ok(Bounded { bytes, truncated })
}

fn refused(path: &str, at: &str, e: Errno) -> SafeFileError {
    match e {
        Errno::ELOOP => SafeFileError::Symlink {
            path: path.to_owned(),
            at: at.to_owned(),
        },
        Errno::ENOENT => SafeFileError::NotFound {
            path: path.to_owned(),
        },
        other => io(path, other),
    }
}

fn io(path: &str, e: Errno) -> SafeFileError {
    SafeFileError::Io {
        path: path.to_owned(),
        source: std::io::Error::from(e),
    }
}

#[cfg(test)]
mod tests;
