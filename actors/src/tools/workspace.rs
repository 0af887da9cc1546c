//! The workspace tools: `workspace_list`, `workspace_read`, `workspace_write` inside
//! an agent's workspace roots.
//! A path is relative to the first root or absolute inside one; it is resolved with
//! its symlinks (for a write, its parent directory is) and refused if the result
//! leaves every root or enters a protected path (the data dir, the config file).
//! What was checked is what is opened: the resolved path is opened component by
//! component without following a symlink (`nofollow.rs`), so a symlink swapped in
//! after the check fails the call rather than escaping the roots.
//! Writes are atomic: a temporary file in the same directory, fsync, rename, fsync of
//! the directory.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};

use rand::Rng;

use super::nofollow;

/// Most bytes of a file `workspace_read` returns (the rest is cut, and said so).
pub const MAX_READ_BYTES: usize = 64 * 1024;
/// Most bytes `workspace_write` writes; a larger content is refused.
pub const MAX_WRITE_BYTES: usize = 1024 * 1024;
/// Most entries `workspace_list` returns.
const MAX_ENTRIES: usize = 1000;

/// Whether `path` is `protected` or inside it, compared on resolved paths.
fn within(path: &Path, protected: &Path) -> bool {
    path.starts_with(protected)
}

/// The path with `.` dropped and `..` applied, without touching the file system.
fn lexical(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// A path resolved with its symlinks where it exists, lexically where it does not.
fn resolved(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| lexical(path))
}

/// Refuses a workspace root that is, contains or lies inside a protected path: a root
/// is where tools read and write, so the data dir (the database, the vault key, the
/// admin token) and the config file can never be reached through one.
pub fn check_root(root: &str, protected: &[PathBuf]) -> Result<(), String> {
    let root_path = resolved(Path::new(root));
    let lexical_root = lexical(Path::new(root));
    for p in protected {
        let p = resolved(p);
        for r in [&root_path, &lexical_root] {
            if within(r, &p) || within(&p, r) {
                return Err(format!(
                    "{root:?} is, contains or lies inside the daemon's data dir or config file, which no workspace may reach"
                ));
            }
        }
    }
    Ok(())
}

/// The workspace of one run: its roots resolved once, and the protected paths.
#[derive(Debug)]
pub struct Workspace {
    /// Roots resolved with their symlinks; roots that do not exist are left out.
    roots: Vec<PathBuf>,
    /// The roots as configured (lexically normalized), for the check before any
    /// file-system access.
    given: Vec<PathBuf>,
    /// The first root as configured, which relative paths start from (when it exists).
    first: Option<PathBuf>,
    protected: Vec<PathBuf>,
}

impl Workspace {
    pub fn new(roots: &[String], protected: &[PathBuf]) -> Self {
        let first = roots.first().and_then(|r| std::fs::canonicalize(r).ok());
        Self {
            roots: roots
                .iter()
                .filter_map(|r| std::fs::canonicalize(r).ok())
                .collect(),
            given: roots.iter().map(|r| lexical(Path::new(r))).collect(),
            first,
            protected: protected.iter().map(|p| resolved(p)).collect(),
        }
    }

    /// Whether the resolved `path` is inside a root and outside every protected path.
    fn allowed(&self, path: &Path) -> Result<(), String> {
        if self.protected.iter().any(|p| within(path, p)) {
            return Err("the path is inside the daemon's data dir or config file".into());
        }
        if !self.roots.iter().any(|r| path.starts_with(r)) {
            return Err("the path resolves outside every workspace root".into());
        }
        Ok(())
    }

    /// The path as given: absolute, or joined to the first root.
    fn joined(&self, raw: &str) -> Result<PathBuf, String> {
        if raw.contains('\0') {
            return Err("the path contains a NUL byte".into());
        }
        let path = Path::new(raw);
        let joined = if path.is_absolute() {
            path.to_owned()
        } else {
            match &self.first {
                Some(first) => first.join(path),
                None => return Err("the agent's first workspace root does not exist".into()),
            }
        };
        // Refused before the file system is asked anything, so a path out of the
        // roots tells nothing about what exists there.
        let normal = lexical(&joined);
        if !self
            .roots
            .iter()
            .chain(&self.given)
            .any(|r| normal.starts_with(r))
        {
            return Err("the path resolves outside every workspace root".into());
        }
        Ok(joined)
    }

    /// An existing path, resolved with every symlink, inside a root.
    fn existing(&self, raw: &str) -> Result<PathBuf, String> {
        let path = self.joined(raw)?;
        let real = std::fs::canonicalize(&path)
            .map_err(|e| format!("{raw:?} cannot be opened: {}", io_reason(&e)))?;
        self.allowed(&real)?;
        Ok(real)
    }

    /// `workspace_list {path?}`: the entries of a directory (the first root by default).
    pub fn list(&self, raw: Option<&str>) -> Result<String, String> {
        let dir = self.existing(raw.unwrap_or("."))?;
        let fd = nofollow::open_dir(&dir).map_err(|e| format!("cannot list: {}", io_reason(&e)))?;
        let mut entries = Vec::new();
        let names = nofollow::names(&fd, MAX_ENTRIES)
            .map_err(|e| format!("cannot list: {}", io_reason(&e)))?;
        for name in names {
            let Ok((kind, size)) = nofollow::kind(&fd, &name) else {
                continue;
            };
            entries.push(serde_json::json!({
                "name": name.to_string_lossy(),
                "kind": kind,
                "size": size,
            }));
        }
        entries.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
        Ok(
            serde_json::json!({ "path": dir.display().to_string(), "entries": entries })
                .to_string(),
        )
    }

    /// `workspace_read {path}`: the file's text, at most [`MAX_READ_BYTES`].
    pub fn read(&self, raw: &str) -> Result<String, String> {
        let file = self.existing(raw)?;
        if !file.is_file() {
            return Err(format!("{raw:?} is not a file"));
        }
        self.read_checked(&file)
    }

    /// Reads the file at `file`, resolved and checked, following no symlink on the way.
    fn read_checked(&self, file: &Path) -> Result<String, String> {
        let (Some(dir), Some(name)) = (file.parent(), file.file_name()) else {
            return Err("the path does not name a file".into());
        };
        let mut f = nofollow::open_dir(dir)
            .and_then(|fd| nofollow::open_file(&fd, name))
            .map_err(|e| format!("cannot read: {}", io_reason(&e)))?;
        let mut bytes = Vec::new();
        (&mut f)
            .take(MAX_READ_BYTES as u64 + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| format!("cannot read: {}", io_reason(&e)))?;
        let cut = bytes.len() > MAX_READ_BYTES;
        bytes.truncate(MAX_READ_BYTES);
        let mut text = String::from_utf8_lossy(&bytes).into_owned();
        if cut {
            text.push_str(&format!("\n[cut at {MAX_READ_BYTES} bytes]"));
        }
        Ok(text)
    }

    /// `workspace_write {path, content}`: replaces the file atomically; answers the
    /// resolved path written.
    pub fn write(&self, raw: &str, content: &str) -> Result<PathBuf, String> {
        if content.len() > MAX_WRITE_BYTES {
            return Err(format!("the content is over {MAX_WRITE_BYTES} bytes"));
        }
        let (dir, name) = self.write_target(raw)?;
        self.write_checked(&dir, &name, content)?;
        Ok(dir.join(name))
    }

    /// Where `raw` is written: its resolved, checked directory and the file's name
    /// there (where a symlink at the path leads, when it is one).
    fn write_target(&self, raw: &str) -> Result<(PathBuf, OsString), String> {
        let path = self.joined(raw)?;
        let Some(Component::Normal(name)) = path.components().next_back() else {
            return Err(format!("{raw:?} does not name a file"));
        };
        let name = name.to_owned();
        let parent = path
            .parent()
            .ok_or_else(|| format!("{raw:?} has no directory"))?;
        let parent = std::fs::canonicalize(parent).map_err(|e| {
            format!(
                "the directory of {raw:?} cannot be opened: {}",
                io_reason(&e)
            )
        })?;
        let mut target = parent.join(&name);
        // A symlink at the target is followed, and where it leads must be allowed too.
        if target
            .symlink_metadata()
            .is_ok_and(|m| m.file_type().is_symlink())
        {
            target = std::fs::canonicalize(&target)
                .map_err(|_| format!("{raw:?} is a symlink that leads nowhere"))?;
        }
        self.allowed(&target)?;
        if target.is_dir() {
            return Err(format!("{raw:?} is a directory"));
        }
        let dir = target.parent().unwrap_or(&parent).to_owned();
        let name = target
            .file_name()
            .ok_or_else(|| format!("{raw:?} does not name a file"))?
            .to_owned();
        Ok((dir, name))
    }

    /// Writes `content` to `name` in the resolved, checked `dir`, following no
    /// symlink on the way: the directory is opened once and the temporary file, the
    /// rename and the fsync all go through that descriptor.
    fn write_checked(&self, dir: &Path, name: &OsString, content: &str) -> Result<(), String> {
        let fd = nofollow::open_dir(dir).map_err(|e| format!("cannot write: {}", io_reason(&e)))?;
        let suffix: u64 = rand::rng().random();
        let temp = OsString::from(format!(".palyra-write-{suffix:016x}.tmp"));
        let written = (|| -> std::io::Result<()> {
            let mut f = nofollow::create_new(&fd, &temp)?;
            f.write_all(content.as_bytes())?;
            f.sync_all()?;
            nofollow::rename(&fd, &temp, name)?;
            // The rename is durable once the directory is.
            std::fs::File::from(fd.try_clone()?).sync_all()
        })();
        if let Err(e) = written {
            nofollow::remove(&fd, &temp);
            return Err(format!("cannot write: {}", io_reason(&e)));
        }
        Ok(())
    }
}

/// An I/O error as a short reason (no OS message that could carry more than a path).
fn io_reason(e: &std::io::Error) -> &'static str {
    match e.kind() {
        std::io::ErrorKind::NotFound => "not found",
        std::io::ErrorKind::PermissionDenied => "permission denied",
        std::io::ErrorKind::AlreadyExists => "already exists",
        _ => "I/O error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "palyra-ws-{name}-{}-{:x}",
            std::process::id(),
            rand::rng().random::<u32>()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn parent_components_and_symlinks_out_of_the_root_are_refused() {
        let root = temp("root");
        let outside = temp("outside");
        std::fs::write(outside.join("secret"), "s").unwrap();
        std::os::unix::fs::symlink(outside.join("secret"), root.join("link")).unwrap();
        std::fs::write(root.join("ok.txt"), "fine").unwrap();
        let ws = Workspace::new(&[root.display().to_string()], &[]);
        assert_eq!(ws.read("ok.txt").unwrap(), "fine");
        assert!(ws.read("../../etc/passwd").unwrap_err().contains("outside"));
        assert!(ws.read("link").unwrap_err().contains("outside"));
        assert!(ws.write("link", "x").unwrap_err().contains("outside"));
        assert!(ws.write("../x", "x").unwrap_err().contains("outside"));
        assert_eq!(
            std::fs::read_to_string(outside.join("secret")).unwrap(),
            "s"
        );
        let written = ws.write("new.txt", "hello").unwrap();
        assert_eq!(std::fs::read_to_string(written).unwrap(), "hello");
        // Only the file itself is left: the temporary file was renamed.
        let names: Vec<_> = std::fs::read_dir(&root)
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names.len(), 3);
        std::fs::remove_dir_all(root).unwrap();
        std::fs::remove_dir_all(outside).unwrap();
    }

    #[test]
    fn a_symlink_swapped_in_after_the_check_is_not_followed() {
        let root = temp("swap-root");
        let outside = temp("swap-outside");
        std::fs::write(outside.join("secret"), "s").unwrap();
        std::fs::create_dir(root.join("sub")).unwrap();
        std::fs::write(root.join("sub").join("secret"), "inside").unwrap();
        std::fs::write(root.join("plain"), "inside").unwrap();
        let ws = Workspace::new(&[root.display().to_string()], &[]);
        // The checks pass on the paths as they are ...
        let file = ws.existing("sub/secret").unwrap();
        let (dir, name) = ws.write_target("sub/secret").unwrap();
        let plain = ws.existing("plain").unwrap();
        // ... then a directory and a file are swapped for symlinks out of the root.
        std::fs::rename(root.join("sub"), root.join("sub-old")).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("sub")).unwrap();
        std::fs::remove_file(root.join("plain")).unwrap();
        std::os::unix::fs::symlink(outside.join("secret"), root.join("plain")).unwrap();
        assert!(ws.read_checked(&file).is_err());
        assert!(ws.read_checked(&plain).is_err());
        assert!(ws.write_checked(&dir, &name, "x").is_err());
        assert_eq!(
            std::fs::read_to_string(outside.join("secret")).unwrap(),
            "s"
        );
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 1);
        // A symlink put at the file's own name is replaced by the write, not followed.
        let (dir, name) = ws.write_target("top.txt").unwrap();
        std::os::unix::fs::symlink(outside.join("secret"), root.join("top.txt")).unwrap();
        ws.write_checked(&dir, &name, "new").unwrap();
        assert_eq!(
            std::fs::read_to_string(outside.join("secret")).unwrap(),
            "s"
        );
        let meta = std::fs::symlink_metadata(root.join("top.txt")).unwrap();
        assert!(meta.is_file());
        assert_eq!(
            std::fs::read_to_string(root.join("top.txt")).unwrap(),
            "new"
        );
        std::fs::remove_dir_all(root).unwrap();
        std::fs::remove_dir_all(outside).unwrap();
    }

    #[test]
    fn a_root_near_a_protected_path_is_refused() {
        let data = temp("data");
        let d = data.display().to_string();
        assert!(check_root(&d, std::slice::from_ref(&data)).is_err());
        assert!(check_root(&format!("{d}/sub"), std::slice::from_ref(&data)).is_err());
        assert!(check_root("/", std::slice::from_ref(&data)).is_err());
        assert!(check_root("/srv/elsewhere", std::slice::from_ref(&data)).is_ok());
        std::fs::remove_dir_all(data).unwrap();
    }
}
