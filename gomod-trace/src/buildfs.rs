//! Reading a build's files inside its root. The build is untrusted code and the
//! daemon reads as root, so every path is resolved by the kernel inside the
//! build's root directory (`openat2` with `RESOLVE_IN_ROOT`: an absolute symlink
//! or `..` cannot leave it; `RESOLVE_NO_MAGICLINKS`: no /proc/PID/fd or
//! /proc/PID/root tricks), only regular files are read (checked on an `O_PATH`
//! descriptor, so no device's open, FIFO or socket is ever entered), and at most
//! [`MAX_FILE`] bytes. What cannot be read this way is refused with a reason,
//! which the build's notes carry.
use std::{
    io::Read as _,
    os::fd::{AsRawFd as _, OwnedFd},
    path::{Path, PathBuf},
};

use nix::{
    errno::Errno,
    fcntl::{OFlag, OpenHow, ResolveFlag, openat2},
    sys::stat::{FileStat, Mode, SFlag, fstat},
};

/// The largest file read on a build's behalf. A larger one is refused, not cut:
/// a truncated GOENV file or go.mod would report a configuration (or a list of
/// modules) that the build does not have, without saying which part is missing.
pub const MAX_FILE: u64 = 64 * 1024;

/// Why a file was not read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unread {
    /// It does not exist (nor a directory on its way): as for cmd/go, no file.
    Missing,
    /// It exists but is not read; the reason, for the build's notes.
    Refused(String),
}

/// A build's root directory, held open (`O_PATH`): every path of the build is
/// resolved inside it.
pub struct BuildRoot {
    dir: OwnedFd,
}

/// A build's process as /proc shows it, held open: what is read through it is that
/// process's even if it exits meanwhile and its PID is given to another (then
/// reading fails: the kernel ties the descriptor to the process, not the number).
pub struct BuildProcess {
    dir: OwnedFd,
}

impl BuildProcess {
    /// Process `pid`, which was seen running at `seen_ns` (CLOCK_MONOTONIC; an
    /// exec of it). A process of that PID that started later is another one
    /// (the PID was reused): refused, as one that exited.
    pub fn open(pid: u32, seen_ns: u64) -> Result<BuildProcess, String> {
        let exited = |e: Errno| match e {
            Errno::ENOENT | Errno::ESRCH => "the process had exited".to_string(),
            e => format!("cannot open its /proc directory: {}", e.desc().to_lowercase()),
        };
        let dir = nix::fcntl::open(
            Path::new(&format!("/proc/{pid}")),
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(exited)?;
        let stat = nix::fcntl::openat(&dir, "stat", OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty()).map_err(exited)?;
        let mut text = String::new();
        std::fs::File::from(stat).take(4096).read_to_string(&mut text).map_err(|e| format!("cannot read its /proc stat: {e}"))?;
        let started = crate::procstat::start_monotonic_ns(&text).ok_or("cannot read its start time from /proc")?;
        if started > seen_ns.saturating_add(START_TOLERANCE_NS) {
            return Err("the process had exited (its PID names a later process)".to_string());
        }
        Ok(BuildProcess { dir })
    }

    /// Its root directory (/proc/PID/root). When it cannot be opened, nothing is
    /// read: the reason is returned for the build's notes (there is no falling
    /// back to our own root).
    pub fn root(&self) -> Result<BuildRoot, String> {
        nix::fcntl::openat(&self.dir, "root", OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
            .map(|dir| BuildRoot { dir })
            .map_err(|e| match e {
                Errno::ENOENT | Errno::ESRCH => "the process had exited".to_string(),
                e => format!("cannot open its root directory: {}", e.desc().to_lowercase()),
            })
    }

    /// Makes the calling thread read files as the process would: with its
    /// filesystem user and group, which also drops this thread's capabilities to
    /// override file permissions (the kernel's rule for a filesystem user other
    /// than 0). Only for a thread of its own, which ends after the reads: the
    /// change is not undone. Its supplementary groups are not taken, so a file it
    /// may read only through one of them is refused (the safe side).
    pub fn read_as_it(&self) -> Result<(), String> {
        let status = nix::fcntl::openat(&self.dir, "status", OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty())
            .map_err(|e| format!("cannot read its credentials: {}", e.desc().to_lowercase()))?;
        let mut text = String::new();
        std::fs::File::from(status).take(16 * 1024).read_to_string(&mut text).map_err(|e| format!("cannot read its credentials: {e}"))?;
        // `Uid:\treal\teffective\tsaved\tfilesystem`, and the same for Gid.
        let filesystem_id = |line: &str| -> Option<u32> {
            text.lines().find_map(|l| l.strip_prefix(line))?.split_whitespace().nth(3)?.parse().ok()
        };
        let (Some(uid), Some(gid)) = (filesystem_id("Uid:"), filesystem_id("Gid:")) else {
            return Err("cannot read its credentials from /proc".to_string());
        };
        let (uid, gid) = (nix::unistd::Uid::from_raw(uid), nix::unistd::Gid::from_raw(gid));
        nix::unistd::setfsgid(gid);
        nix::unistd::setfsuid(uid);
        // Both calls return the previous value whether or not they succeeded.
        if nix::unistd::setfsgid(gid) != gid || nix::unistd::setfsuid(uid) != uid {
            return Err("cannot take its credentials to read its files".to_string());
        }
        Ok(())
    }

    /// The directory it runs in, as it sees it.
    pub fn cwd(&self) -> Option<PathBuf> {
        nix::fcntl::readlinkat(&self.dir, "cwd").ok().map(PathBuf::from)
    }
}

/// How much later than seen a process may seem to start: the clocks are read one
/// after the other when converting its start time.
const START_TOLERANCE_NS: u64 = 1_000_000;

impl BuildRoot {
    /// A directory (as seen from here) taken as a build's root.
    pub fn open(dir: &Path) -> Result<BuildRoot, Errno> {
        let dir = nix::fcntl::open(dir, OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())?;
        Ok(BuildRoot { dir })
    }

    /// `path` (as the build sees it) resolved inside the root, opened with `flags`.
    fn open_in(&self, path: &Path, flags: OFlag) -> Result<OwnedFd, Errno> {
        let how = OpenHow::new()
            .flags(flags | OFlag::O_CLOEXEC)
            .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
        let path = if path.as_os_str().is_empty() { Path::new("/") } else { path };
        // EAGAIN: a rename or mount elsewhere raced the resolution; it may be retried.
        let mut result = Err(Errno::EAGAIN);
        for _ in 0..8 {
            result = openat2(&self.dir, path, how);
            if !matches!(result, Err(Errno::EAGAIN)) {
                break;
            }
        }
        result
    }

    /// The text of a regular file of the build (lossy UTF-8), at most [`MAX_FILE`] bytes.
    pub fn read(&self, path: &Path) -> Result<String, Unread> {
        let located = self.open_in(path, OFlag::O_PATH).map_err(unread)?;
        regular(&fstat(&located).map_err(unread)?)?;
        // Reopened for reading through our own descriptor: the same inode, whose
        // type was just checked (an O_PATH descriptor cannot be read).
        let fd = nix::fcntl::open(
            Path::new(&format!("/proc/self/fd/{}", located.as_raw_fd())),
            OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(unread)?;
        regular(&fstat(&fd).map_err(unread)?)?;
        let mut bytes = Vec::new();
        std::fs::File::from(fd)
            .take(MAX_FILE + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| Unread::Refused(e.to_string().to_lowercase()))?;
        if bytes.len() as u64 > MAX_FILE {
            return Err(too_large());
        }
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// `path` with the symbolic links of its last component followed inside the
    /// root (directories on the way are resolved by the kernel, inside the root
    /// too); a relative target is taken from the link's directory, lexically (as
    /// cmd/go's GOROOT lookup). None when it does not exist or links too deep.
    pub fn resolve_links(&self, path: &Path) -> Option<PathBuf> {
        let mut path = clean(path);
        for _ in 0..40 {
            let fd = self.open_in(&path, OFlag::O_PATH | OFlag::O_NOFOLLOW).ok()?;
            if kind(&fstat(&fd).ok()?) != SFlag::S_IFLNK {
                return Some(path);
            }
            let target = nix::fcntl::readlinkat(&fd, "").ok()?;
            path = clean(&path.parent()?.join(target));
        }
        None
    }
}

fn kind(stat: &FileStat) -> SFlag {
    SFlag::from_bits_truncate(stat.st_mode & SFlag::S_IFMT.bits())
}

/// Only a regular file, and not one larger than [`MAX_FILE`], is read.
fn regular(stat: &FileStat) -> Result<(), Unread> {
    let what = match kind(stat) {
        SFlag::S_IFREG if stat.st_size as u64 > MAX_FILE => return Err(too_large()),
        SFlag::S_IFREG => return Ok(()),
        SFlag::S_IFIFO => "a FIFO",
        SFlag::S_IFCHR => "a character device",
        SFlag::S_IFBLK => "a block device",
        SFlag::S_IFSOCK => "a socket",
        SFlag::S_IFDIR => "a directory",
        SFlag::S_IFLNK => "a symbolic link",
        _ => "of an unknown type",
    };
    Err(Unread::Refused(format!("not a regular file: {what}")))
}

fn too_large() -> Unread {
    Unread::Refused(format!("larger than {} KiB", MAX_FILE / 1024))
}

fn unread(e: Errno) -> Unread {
    Unread::Refused(match e {
        Errno::ENOENT | Errno::ENOTDIR => return Unread::Missing,
        Errno::ELOOP => "too many symbolic links, or a link into /proc".to_string(),
        Errno::ENOSYS => "the kernel cannot resolve paths inside a root (openat2, Linux 5.6)".to_string(),
        e => e.desc().to_lowercase(),
    })
}

/// An absolute path without `.` and `..` (lexically, as Go's filepath.Clean).
pub fn clean(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::from("/");
    for component in path.components() {
        match component {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(name) => out.push(name),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::{os::unix::fs::symlink, time::Instant};

    use super::*;

    /// A fake build root: a tempdir with `etc/passwd` of its own.
    fn fake_root() -> (tempfile::TempDir, BuildRoot) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("etc")).unwrap();
        std::fs::create_dir_all(dir.path().join("home/u/.config/go")).unwrap();
        std::fs::write(dir.path().join("etc/passwd"), "the build's own passwd\n").unwrap();
        let root = BuildRoot::open(dir.path()).unwrap();
        (dir, root)
    }

    fn refused(reason: &str) -> Result<String, Unread> {
        Err(Unread::Refused(reason.to_string()))
    }

    /// Catches `under(root, path)` + `read_to_string`: the kernel follows an absolute
    /// link (and `..`) from our root, and reads the host's file.
    #[test]
    fn absolute_links_and_dot_dot_stay_inside_the_root() {
        let (dir, root) = fake_root();
        let host = std::fs::read_to_string("/etc/passwd").unwrap();
        symlink("/etc/passwd", dir.path().join("home/u/.config/go/env")).unwrap();
        let read = root.read(Path::new("/home/u/.config/go/env")).unwrap();
        assert_eq!(read, "the build's own passwd\n");
        assert_ne!(read, host);
        assert_eq!(root.read(Path::new("/../../../etc/passwd")).unwrap(), "the build's own passwd\n");
        assert_eq!(root.read(Path::new("home/../../../../etc/passwd")).unwrap(), "the build's own passwd\n");
        // Through an intermediate directory link too.
        symlink("/etc", dir.path().join("home/u/etclink")).unwrap();
        assert_eq!(root.read(Path::new("/home/u/etclink/passwd")).unwrap(), "the build's own passwd\n");
        // A host file the root lacks is missing, not read from the host.
        assert!(Path::new("/etc/hostname").exists() || Path::new("/etc/os-release").exists());
        symlink("/etc/os-release", dir.path().join("osr")).unwrap();
        assert_eq!(root.read(Path::new("/osr")), Err(Unread::Missing));
        assert_eq!(root.read(Path::new("/etc/hostname")), Err(Unread::Missing));
    }

    /// Catches a blocking open (it never returns: the test hangs) and a read of a FIFO.
    #[test]
    fn a_fifo_is_refused_at_once() {
        let (dir, root) = fake_root();
        nix::unistd::mkfifo(&dir.path().join("fifo"), Mode::from_bits_truncate(0o600)).unwrap();
        symlink("/fifo", dir.path().join("home/u/.config/go/env")).unwrap();
        let started = Instant::now();
        assert_eq!(root.read(Path::new("/home/u/.config/go/env")), refused("not a regular file: a FIFO"));
        assert!(started.elapsed().as_secs_f64() < 1.0);
    }

    /// Catches reading devices whole (GOENV=/dev/zero: gigabytes), and a type check
    /// made only after the device's open.
    #[test]
    fn devices_are_refused() {
        let (dir, root) = fake_root();
        // A link to the host's /dev/zero resolves inside the root: missing there…
        symlink("/dev/zero", dir.path().join("zero")).unwrap();
        assert_eq!(root.read(Path::new("/zero")), Err(Unread::Missing));
        // …and a build whose root is ours (or that has its own /dev) gets a refusal.
        let ours = BuildRoot::open(Path::new("/")).unwrap();
        let started = Instant::now();
        assert_eq!(ours.read(Path::new("/dev/zero")), refused("not a regular file: a character device"));
        std::fs::create_dir_all(dir.path().join("dev")).unwrap();
        let node = dir.path().join("dev/zero");
        match nix::sys::stat::mknod(&node, SFlag::S_IFCHR, Mode::from_bits_truncate(0o600), nix::sys::stat::makedev(1, 5)) {
            Ok(()) => assert_eq!(root.read(Path::new("/zero")), refused("not a regular file: a character device")),
            Err(e) => eprintln!("mknod not permitted here ({e}); the host's /dev/zero was tested"),
        }
        assert_eq!(root.read(Path::new("/etc")), refused("not a regular file: a directory"));
        assert!(started.elapsed().as_secs_f64() < 1.0);
    }

    /// Catches an uncapped read, and a cap that trusts st_size (procfs files show 0).
    #[test]
    fn large_files_are_refused_unread() {
        let (dir, root) = fake_root();
        std::fs::write(dir.path().join("big"), vec![b'x'; 10 << 20]).unwrap();
        assert_eq!(root.read(Path::new("/big")), refused("larger than 64 KiB"));
        std::fs::write(dir.path().join("edge"), vec![b'x'; MAX_FILE as usize]).unwrap();
        assert_eq!(root.read(Path::new("/edge")).map(|t| t.len()), Ok(MAX_FILE as usize));
        // A regular file whose size says 0 but that reads on (procfs): capped by the read.
        let ours = BuildRoot::open(Path::new("/")).unwrap();
        let kallsyms = ours.read(Path::new("/proc/kallsyms"));
        assert!(matches!(&kallsyms, Err(Unread::Refused(r)) if r == "larger than 64 KiB"), "{kallsyms:?}");
    }

    /// Catches resolving without RESOLVE_NO_MAGICLINKS: /proc/self/root would be
    /// our root, whatever root the build has.
    #[test]
    fn magic_links_are_refused() {
        let (dir, root) = fake_root();
        // A link (planted in the build's root) into /proc/self/root: a way out
        // of any root, when the root has a /proc (ours does).
        symlink("/proc/self/root/etc/passwd", dir.path().join("x")).unwrap();
        let ours = BuildRoot::open(Path::new("/")).unwrap();
        assert_eq!(root.read(Path::new("/x")), Err(Unread::Missing));
        assert_eq!(ours.read(&dir.path().join("x")), refused("too many symbolic links, or a link into /proc"));
        assert_eq!(ours.read(Path::new("/proc/self/root/etc/passwd")), refused("too many symbolic links, or a link into /proc"));
    }

    fn monotonic_now_ns() -> u64 {
        let now = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).unwrap();
        now.tv_sec() as u64 * 1_000_000_000 + now.tv_nsec() as u64
    }

    /// Catches the old fallback to our root when the process is gone.
    #[test]
    fn a_gone_process_has_no_root() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        assert_eq!(BuildProcess::open(pid, monotonic_now_ns()).err().as_deref(), Some("the process had exited"));
        let ours = BuildProcess::open(std::process::id(), monotonic_now_ns()).unwrap();
        assert!(ours.root().is_ok());
        assert_eq!(ours.cwd(), std::env::current_dir().ok());
    }

    /// Catches reading the files of whichever process holds a reused PID: a
    /// process that started after the build's exec was seen is not the build.
    #[test]
    fn a_reused_pid_names_another_process() {
        let before = monotonic_now_ns();
        std::thread::sleep(std::time::Duration::from_millis(50));
        let mut child = std::process::Command::new("sleep").arg("5").spawn().unwrap();
        let pid = child.id();
        let after = monotonic_now_ns();
        let seen_before = BuildProcess::open(pid, before).err();
        let seen_after = BuildProcess::open(pid, after).map(|process| process.root().is_ok());
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(seen_before.as_deref(), Some("the process had exited (its PID names a later process)"));
        assert_eq!(seen_after, Ok(true));
    }

    /// Catches reading as root what the build's own user may not read (GOENV
    /// pointing at a root-only file of its root, e.g. /etc/shadow).
    #[test]
    fn files_are_read_with_the_builds_own_credentials() {
        use std::os::unix::{fs::PermissionsExt as _, process::CommandExt as _};
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let private = dir.path().join("private");
        std::fs::write(&private, "GOPROXY=https://secret.example\n").unwrap();
        std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o600)).unwrap();
        let public = dir.path().join("public");
        std::fs::write(&public, "GOPROXY=https://public.example\n").unwrap();
        std::fs::set_permissions(&public, std::fs::Permissions::from_mode(0o644)).unwrap();
        if !nix::unistd::Uid::effective().is_root() {
            eprintln!("not root: the files are ours whatever the credentials; nothing to show");
            return;
        }
        let mut child = std::process::Command::new("sleep").arg("5").uid(65534).gid(65534).spawn().unwrap();
        let pid = child.id();
        // On a thread of its own, as the daemon reads.
        let read = std::thread::spawn(move || {
            let process = BuildProcess::open(pid, monotonic_now_ns()).unwrap();
            let root = process.root().unwrap();
            process.read_as_it().unwrap();
            (root.read(&private), root.read(&public))
        })
        .join()
        .unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(read.0, refused("permission denied"));
        assert_eq!(read.1.as_deref(), Ok("GOPROXY=https://public.example\n"));
        // This thread kept its own credentials.
        assert!(std::fs::read(dir.path().join("private")).is_ok());
    }

    /// Catches following links with our root (`std::fs::read_link` on joined paths).
    #[test]
    fn links_are_resolved_inside_the_root() {
        let (dir, root) = fake_root();
        std::fs::create_dir_all(dir.path().join("usr/bin")).unwrap();
        std::fs::create_dir_all(dir.path().join("opt/go/bin")).unwrap();
        std::fs::write(dir.path().join("opt/go/bin/go"), "").unwrap();
        symlink("/opt/go/bin/go", dir.path().join("usr/bin/go")).unwrap();
        symlink("../../usr/bin/go", dir.path().join("home/u/go")).unwrap();
        assert_eq!(root.resolve_links(Path::new("/home/u/go")), Some(PathBuf::from("/opt/go/bin/go")));
        // A link to a host path the root lacks resolves to nothing.
        symlink("/proc/self/exe", dir.path().join("usr/bin/self")).unwrap();
        assert_eq!(root.resolve_links(Path::new("/usr/bin/self")), None);
    }
}
