//! Opening what the workspace check approved, and only that: a resolved path is
//! opened one component at a time from `/`, each with `O_NOFOLLOW`, so a component
//! swapped for a symlink after the check fails the open instead of leading out of
//! the roots (`workspace.rs` checks, this module opens).

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Component, Path};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, openat, renameat, statat};

const DIR: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

/// The directory at the resolved absolute `dir`, no component of it followed as a
/// symlink.
pub(super) fn open_dir(dir: &Path) -> io::Result<OwnedFd> {
    let mut fd = openat(rustix::fs::CWD, "/", DIR, Mode::empty())?;
    for component in dir.components() {
        match component {
            Component::RootDir => {}
            Component::Normal(name) => fd = openat(&fd, name, DIR, Mode::empty())?,
            // A resolved path has neither; refuse rather than guess.
            _ => return Err(io::ErrorKind::InvalidInput.into()),
        }
    }
    Ok(fd)
}

/// The regular file `name` in `dir`, for reading, not followed if it is a symlink.
/// `O_NONBLOCK` so a FIFO put there cannot hang the run (a regular file ignores it).
pub(super) fn open_file(dir: &OwnedFd, name: &OsStr) -> io::Result<File> {
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK;
    let file = File::from(openat(dir, name, flags, Mode::empty())?);
    if !file.metadata()?.is_file() {
        return Err(io::ErrorKind::InvalidInput.into());
    }
    Ok(file)
}

/// A new file `name` in `dir`, created here and nowhere else (never through a
/// symlink).
pub(super) fn create_new(dir: &OwnedFd, name: &OsStr) -> io::Result<File> {
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    Ok(File::from(openat(
        dir,
        name,
        flags,
        Mode::from_raw_mode(0o666),
    )?))
}

/// Renames `from` to `to` in `dir`; a symlink at `to` is replaced, never followed.
pub(super) fn rename(dir: &OwnedFd, from: &OsStr, to: &OsStr) -> io::Result<()> {
    Ok(renameat(dir, from, dir, to)?)
}

/// Removes `name` from `dir` (a temporary file left by a failed write).
pub(super) fn remove(dir: &OwnedFd, name: &OsStr) {
    let _ = rustix::fs::unlinkat(dir, name, AtFlags::empty());
}

/// What `name` in `dir` is, a symlink not followed: `(kind, size)`.
pub(super) fn kind(dir: &OwnedFd, name: &OsStr) -> io::Result<(&'static str, u64)> {
    let stat = statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)?;
    let kind = match FileType::from_raw_mode(stat.st_mode) {
        FileType::Directory => "dir",
        FileType::Symlink => "symlink",
        _ => "file",
    };
    Ok((kind, u64::try_from(stat.st_size).unwrap_or(0)))
}

/// The names in the directory `dir` (without `.` and `..`), at most `max`.
pub(super) fn names(dir: &OwnedFd, max: usize) -> io::Result<Vec<std::ffi::OsString>> {
    use std::os::unix::ffi::OsStrExt;
    let mut out = Vec::new();
    for entry in rustix::fs::Dir::read_from(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name == b"." || name == b".." {
            continue;
        }
        out.push(OsStr::from_bytes(name).to_owned());
        if out.len() >= max {
            break;
        }
    }
    Ok(out)
}
