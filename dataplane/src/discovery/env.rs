//! The outside world as discovery sees it: environment variables, files, sockets, sysfs
//! links, sleeping and mounting. [`SystemEnvironment`] is the real one; [`FakeEnvironment`]
//! is an in-memory one for tests (files and sockets can be made to appear late).

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

/// What discovery reads from the machine. Every method must be free of panics.
pub trait Environment {
    /// The value of an environment variable, `None` when unset.
    fn var(&self, name: &str) -> Option<String>;
    /// The names of all environment variables (for error hints).
    fn var_names(&self) -> Vec<String>;
    /// The whole content of a text file.
    fn read_to_string(&self, path: &Path) -> io::Result<String>;
    /// Whether anything exists at `path` (symlinks followed).
    fn exists(&self, path: &Path) -> bool;
    /// Whether `path` is a Unix domain socket (symlinks followed).
    fn is_socket(&self, path: &Path) -> bool;
    /// The entries of a directory, as full paths, in any order.
    fn read_dir(&self, path: &Path) -> io::Result<Vec<PathBuf>>;
    /// The absolute path with all symlinks resolved.
    fn canonicalize(&self, path: &Path) -> io::Result<PathBuf>;
    /// Wait this long.
    fn sleep(&self, duration: Duration);
    /// Mount the filesystem on block device `device` read-only somewhere temporary and return
    /// the mount point.
    fn mount_readonly(&self, device: &Path) -> Result<PathBuf, String>;
    /// Undo [`Environment::mount_readonly`].
    fn unmount(&self, mountpoint: &Path) -> Result<(), String>;
}

/// The real machine: `std::env`, `std::fs`, `std::thread::sleep`, and `mount`/`umount`.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemEnvironment;

impl Environment for SystemEnvironment {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var_os(name).map(|v| v.to_string_lossy().into_owned())
    }

    fn var_names(&self) -> Vec<String> {
        std::env::vars_os()
            .map(|(k, _)| k.to_string_lossy().into_owned())
            .collect()
    }

    fn read_to_string(&self, path: &Path) -> io::Result<String> {
        std::fs::read_to_string(path)
    }

    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }

    fn is_socket(&self, path: &Path) -> bool {
        use std::os::unix::fs::FileTypeExt;
        std::fs::metadata(path)
            .map(|m| m.file_type().is_socket())
            .unwrap_or(false)
    }

    fn read_dir(&self, path: &Path) -> io::Result<Vec<PathBuf>> {
        std::fs::read_dir(path)?
            .map(|e| e.map(|e| e.path()))
            .collect()
    }

    fn canonicalize(&self, path: &Path) -> io::Result<PathBuf> {
        std::fs::canonicalize(path)
    }

    fn sleep(&self, duration: Duration) {
        std::thread::sleep(duration);
    }

    fn mount_readonly(&self, device: &Path) -> Result<PathBuf, String> {
        let dir = std::env::temp_dir().join(format!("cnf-config-drive-{}", std::process::id()));
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let out = std::process::Command::new("mount")
            .arg("-o")
            .arg("ro")
            .arg(device)
            .arg(&dir)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if out.status.success() {
            Ok(dir)
        } else {
            let _ = std::fs::remove_dir(&dir);
            Err(format!(
                "mount -o ro {} {} failed ({}): {}",
                device.display(),
                dir.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    fn unmount(&self, mountpoint: &Path) -> Result<(), String> {
        let out = std::process::Command::new("umount")
            .arg(mountpoint)
            .output()
            .map_err(|e| format!("cannot run umount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "umount {} failed ({}): {}",
                mountpoint.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        std::fs::remove_dir(mountpoint)
            .map_err(|e| format!("cannot remove {}: {e}", mountpoint.display()))
    }
}

/// Something that shows up only after the fake clock has advanced.
#[derive(Debug, Clone)]
struct Late {
    after: Duration,
    path: PathBuf,
    /// `Some(text)` for a file, `None` for a socket.
    content: Option<String>,
}

/// An in-memory [`Environment`] for tests. Sleeping advances a fake clock (nothing really
/// waits); files and sockets added with `*_after` become visible once the clock has
/// advanced that far.
#[derive(Debug, Default)]
pub struct FakeEnvironment {
    vars: BTreeMap<String, String>,
    files: BTreeMap<PathBuf, String>,
    sockets: BTreeSet<PathBuf>,
    dirs: BTreeSet<PathBuf>,
    canonical: BTreeMap<PathBuf, PathBuf>,
    late: Vec<Late>,
    mountable: BTreeMap<PathBuf, PathBuf>,
    slept: Cell<Duration>,
    mounted: RefCell<Vec<PathBuf>>,
    unmounted: RefCell<Vec<PathBuf>>,
}

impl FakeEnvironment {
    /// An empty environment.
    pub fn new() -> Self {
        Self::default()
    }

    /// Set an environment variable.
    pub fn with_var(mut self, name: &str, value: &str) -> Self {
        self.vars.insert(name.to_string(), value.to_string());
        self
    }

    /// Set variables from `KEY=VALUE` lines (blank lines and `#` comments skipped), as in
    /// an env file.
    pub fn with_env_file(mut self, text: &str) -> Self {
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if let Some((k, v)) = line.split_once('=') {
                self.vars.insert(k.to_string(), v.to_string());
            }
        }
        self
    }

    /// Add a text file.
    pub fn with_file(mut self, path: impl Into<PathBuf>, content: &str) -> Self {
        self.files.insert(path.into(), content.to_string());
        self
    }

    /// Add a text file that appears once the fake clock reaches `after`.
    pub fn with_file_after(
        mut self,
        after: Duration,
        path: impl Into<PathBuf>,
        content: &str,
    ) -> Self {
        self.late.push(Late {
            after,
            path: path.into(),
            content: Some(content.to_string()),
        });
        self
    }

    /// Add a Unix socket.
    pub fn with_socket(mut self, path: impl Into<PathBuf>) -> Self {
        self.sockets.insert(path.into());
        self
    }

    /// Add a Unix socket that appears once the fake clock reaches `after`.
    pub fn with_socket_after(mut self, after: Duration, path: impl Into<PathBuf>) -> Self {
        self.late.push(Late {
            after,
            path: path.into(),
            content: None,
        });
        self
    }

    /// Add an (empty) directory.
    pub fn with_dir(mut self, path: impl Into<PathBuf>) -> Self {
        self.dirs.insert(path.into());
        self
    }

    /// Make `path` resolve to `target` (a symlink); `target` exists from then on.
    pub fn with_link(mut self, path: impl Into<PathBuf>, target: impl Into<PathBuf>) -> Self {
        let target = target.into();
        self.dirs.insert(target.clone());
        self.canonical.insert(path.into(), target);
        self
    }

    /// Let [`Environment::mount_readonly`] of `device` succeed, mounting it at `mountpoint`.
    pub fn with_mountable(
        mut self,
        device: impl Into<PathBuf>,
        mountpoint: impl Into<PathBuf>,
    ) -> Self {
        self.mountable.insert(device.into(), mountpoint.into());
        self
    }

    /// How long the code under test has slept in total.
    pub fn slept(&self) -> Duration {
        self.slept.get()
    }

    /// The devices mounted so far.
    pub fn mounted(&self) -> Vec<PathBuf> {
        self.mounted.borrow().clone()
    }

    /// The mount points unmounted so far.
    pub fn unmounted(&self) -> Vec<PathBuf> {
        self.unmounted.borrow().clone()
    }

    fn late_file(&self, path: &Path) -> Option<&str> {
        self.late
            .iter()
            .rev()
            .find(|l| l.path == path && l.after <= self.slept.get())
            .and_then(|l| l.content.as_deref())
    }

    fn late_socket(&self, path: &Path) -> bool {
        self.late
            .iter()
            .any(|l| l.path == path && l.content.is_none() && l.after <= self.slept.get())
    }

    fn file(&self, path: &Path) -> Option<&str> {
        self.late_file(path)
            .or_else(|| self.files.get(path).map(String::as_str))
    }

    /// Every path the environment knows, with all their ancestors.
    fn all_paths(&self) -> BTreeSet<PathBuf> {
        let now = self.slept.get();
        let mut out = BTreeSet::new();
        let leaves = self
            .files
            .keys()
            .chain(self.sockets.iter())
            .chain(self.dirs.iter())
            .chain(self.canonical.keys())
            .chain(self.late.iter().filter(|l| l.after <= now).map(|l| &l.path));
        for p in leaves {
            let mut cur = Some(p.as_path());
            while let Some(c) = cur {
                out.insert(c.to_path_buf());
                cur = c.parent();
            }
        }
        out
    }
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{}: no such file or directory", path.display()),
    )
}

impl Environment for FakeEnvironment {
    fn var(&self, name: &str) -> Option<String> {
        self.vars.get(name).cloned()
    }

    fn var_names(&self) -> Vec<String> {
        self.vars.keys().cloned().collect()
    }

    fn read_to_string(&self, path: &Path) -> io::Result<String> {
        if let Some(t) = self.file(path) {
            return Ok(t.to_string());
        }
        // Follow a symlinked parent: /sys/class/net/eth0 -> /sys/devices/...
        if let (Some(parent), Some(name)) = (path.parent(), path.file_name()) {
            if let Some(target) = self.canonical.get(parent) {
                if let Some(t) = self.file(&target.join(name)) {
                    return Ok(t.to_string());
                }
            }
        }
        if self.exists(path) {
            return Err(io::Error::other(format!(
                "{}: is a directory",
                path.display()
            )));
        }
        Err(not_found(path))
    }

    fn exists(&self, path: &Path) -> bool {
        self.all_paths().contains(path)
    }

    fn is_socket(&self, path: &Path) -> bool {
        self.sockets.contains(path) || self.late_socket(path)
    }

    fn read_dir(&self, path: &Path) -> io::Result<Vec<PathBuf>> {
        let all = self.all_paths();
        if !all.contains(path) {
            return Err(not_found(path));
        }
        Ok(all
            .into_iter()
            .filter(|p| p.parent() == Some(path))
            .collect())
    }

    fn canonicalize(&self, path: &Path) -> io::Result<PathBuf> {
        if let Some(t) = self.canonical.get(path) {
            return Ok(t.clone());
        }
        if path.components().any(|c| matches!(c, Component::ParentDir)) {
            return Err(io::Error::other("fake environment: no `..` support"));
        }
        if self.exists(path) {
            Ok(path.to_path_buf())
        } else {
            Err(not_found(path))
        }
    }

    fn sleep(&self, duration: Duration) {
        self.slept.set(self.slept.get().saturating_add(duration));
    }

    fn mount_readonly(&self, device: &Path) -> Result<PathBuf, String> {
        match self.mountable.get(device) {
            Some(m) => {
                self.mounted.borrow_mut().push(device.to_path_buf());
                Ok(m.clone())
            }
            None => Err(format!(
                "mount -o ro {}: fake mount refused",
                device.display()
            )),
        }
    }

    fn unmount(&self, mountpoint: &Path) -> Result<(), String> {
        self.unmounted.borrow_mut().push(mountpoint.to_path_buf());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fake_files_dirs_and_late_paths() {
        let env = FakeEnvironment::new()
            .with_file("/a/b/c", "x")
            .with_file_after(Duration::from_secs(1), "/a/late", "y")
            .with_socket_after(Duration::from_millis(500), "/run/s.sock");
        assert!(env.exists(Path::new("/a/b")));
        assert!(!env.exists(Path::new("/a/late")));
        assert!(!env.is_socket(Path::new("/run/s.sock")));
        env.sleep(Duration::from_millis(500));
        assert!(env.is_socket(Path::new("/run/s.sock")));
        assert!(env.read_to_string(Path::new("/a/late")).is_err());
        env.sleep(Duration::from_millis(500));
        assert_eq!(
            env.read_to_string(Path::new("/a/late")).ok().as_deref(),
            Some("y")
        );
        let mut entries = env.read_dir(Path::new("/a")).unwrap_or_default();
        entries.sort();
        assert_eq!(
            entries,
            vec![PathBuf::from("/a/b"), PathBuf::from("/a/late")]
        );
        assert!(env.read_to_string(Path::new("/a/b")).is_err());
    }

    #[test]
    fn system_environment_reads_real_files() {
        let env = SystemEnvironment;
        assert!(env.exists(Path::new("/")));
        assert!(!env.is_socket(Path::new("/")));
        assert!(env
            .read_to_string(Path::new("/nonexistent/discovery/file"))
            .is_err());
        assert!(env.var_names().iter().all(|n| !n.is_empty()));
    }
}
