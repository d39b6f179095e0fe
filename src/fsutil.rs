//! File-system rules for channel files and sockets: a private directory, names
//! that cannot escape it, exclusive creation that never follows a symlink.

use std::fs::{self, DirBuilder, File};
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags};

use crate::error::CreateError;

/// Channel names become file names, so they are kept to a small safe alphabet.
#[must_use]
pub fn is_valid_channel_name(name: &str) -> bool {
    (1..=64).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Makes sure `dir` exists and is safe to hold channel files and sockets:
/// a real directory (not a symlink), owned by this user, not world-writable.
/// A missing directory is created with mode 0700.
///
/// # Errors
/// [`CreateError::UnsafeDirectory`] saying which rule failed, or an I/O error.
pub fn ensure_private_dir(dir: &Path) -> Result<(), CreateError> {
    if fs::symlink_metadata(dir).is_err() {
        DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(|source| CreateError::Io {
            action: "creating directory",
            path: dir.to_owned(),
            source,
        })?;
    }
    let meta = fs::symlink_metadata(dir).map_err(|source| CreateError::Io {
        action: "inspecting directory",
        path: dir.to_owned(),
        source,
    })?;
    check_private_dir_metadata(dir, &meta)
}

fn check_private_dir_metadata(dir: &Path, meta: &fs::Metadata) -> Result<(), CreateError> {
    let unsafe_dir = |reason: String| Err(CreateError::UnsafeDirectory { path: dir.to_owned(), reason });
    if meta.file_type().is_symlink() {
        return unsafe_dir("it is a symbolic link; pass the real directory".into());
    }
    if !meta.is_dir() {
        return unsafe_dir("it is not a directory".into());
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o002 != 0 {
        return unsafe_dir(format!(
            "it is world-writable (mode {mode:o}); use a private directory (mode 0700) such as shared_memory_dir/"
        ));
    }
    let me = rustix::process::geteuid().as_raw();
    if meta.uid() != me {
        return unsafe_dir(format!("it is owned by uid {}, not by this user (uid {me})", meta.uid()));
    }
    Ok(())
}

/// Creates `path` exclusively (O_CREAT|O_EXCL|O_NOFOLLOW), mode 0600, read-write.
///
/// # Errors
/// The raw I/O error, so the caller can tell "exists" from other failures.
pub fn create_exclusive(path: &Path) -> io::Result<File> {
    let fd = rustix::fs::open(
        path,
        OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::RDWR | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )?;
    let file = File::from(fd);
    // The umask can only narrow 0600; set it explicitly so the mode is exact.
    file.set_permissions(fs::Permissions::from_mode(0o600))?;
    Ok(file)
}

/// Opens an existing file without following a symlink in its last component.
///
/// # Errors
/// The raw I/O error (`ELOOP` for a symlink).
pub fn open_no_follow(path: &Path, writable: bool) -> io::Result<File> {
    let access = if writable { OFlags::RDWR } else { OFlags::RDONLY };
    let fd = rustix::fs::open(path, access | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty())?;
    Ok(File::from(fd))
}

/// Whether an I/O error is the one `O_NOFOLLOW` gives for a symlink.
#[must_use]
pub fn is_symlink_refusal(err: &io::Error) -> bool {
    err.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error())
}

/// Gives `file` its full `size` at once, so a full tmpfs fails now and not later
/// with SIGBUS when a page is first touched.
///
/// # Errors
/// The allocation failed (typically `ENOSPC`).
pub fn allocate(file: &File, size: u64) -> io::Result<()> {
    match rustix::fs::fallocate(file, rustix::fs::FallocateFlags::empty(), 0, size) {
        Ok(()) => Ok(()),
        // Some file systems cannot preallocate; a sized file is the best they offer.
        Err(rustix::io::Errno::OPNOTSUPP) => file.set_len(size),
        Err(err) => Err(err.into()),
    }
}

/// Removes a file, ignoring "already gone".
pub fn remove_if_present(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(err) if err.kind() != io::ErrorKind::NotFound => Err(err),
        _ => Ok(()),
    }
}

/// Identity of a file (device, inode, change time in ns): tells "the socket we bound"
/// from a new file that took its name (inode numbers alone are reused at once).
pub type FileIdentity = (u64, u64, i128);

fn identity_of(meta: &fs::Metadata) -> FileIdentity {
    (meta.dev(), meta.ino(), i128::from(meta.ctime()) * 1_000_000_000 + i128::from(meta.ctime_nsec()))
}

/// Binds a Unix stream socket at `path`, mode 0600, and listens on it.
///
/// Never binds over anything but a stale socket of ours: if `path` exists it must be
/// a socket (not a symlink, which is never followed), owned by this user, that nobody
/// listens on (a connection attempt is refused); it is then removed and replaced.
/// The mode is set on the socket before `bind`, so the file never exists with a
/// wider mode (and the directory is private anyway); it is checked after.
///
/// # Errors
/// [`CreateError::Symlink`], [`CreateError::NotASocket`], [`CreateError::NotOwned`],
/// [`CreateError::SocketInUse`], or an I/O error naming the step.
pub fn bind_private_socket(path: &Path, backlog: i32) -> Result<(UnixListener, FileIdentity), CreateError> {
    remove_stale_socket(path)?;
    let io = |action: &'static str| move |source: io::Error| CreateError::Io { action, path: path.to_owned(), source };
    let fd = rustix::net::socket_with(
        rustix::net::AddressFamily::UNIX,
        rustix::net::SocketType::STREAM,
        rustix::net::SocketFlags::CLOEXEC,
        None,
    )
    .map_err(|e| io("creating socket for")(e.into()))?;
    // Linux gives the socket file the socket inode's mode (minus the umask) at bind.
    rustix::fs::fchmod(&fd, Mode::from_raw_mode(0o600)).map_err(|e| io("setting the mode of socket")(e.into()))?;
    let addr = rustix::net::SocketAddrUnix::new(path).map_err(|e| io("naming socket")(e.into()))?;
    rustix::net::bind(&fd, &addr).map_err(|e| {
        if e == rustix::io::Errno::ADDRINUSE {
            // Something took the name between the check and the bind.
            CreateError::SocketInUse { path: path.to_owned() }
        } else {
            io("binding socket")(e.into())
        }
    })?;
    let bound = (|| {
        let meta = fs::symlink_metadata(path).map_err(io("inspecting bound socket"))?;
        if !meta.file_type().is_socket() {
            return Err(CreateError::NotASocket { path: path.to_owned() });
        }
        if meta.permissions().mode() & 0o777 != 0o600 {
            // A kernel that ignored the socket inode's mode: narrow it now (the
            // directory is private, so nobody else could reach the socket meanwhile).
            fs::set_permissions(path, fs::Permissions::from_mode(0o600)).map_err(io("restricting socket"))?;
        }
        rustix::net::listen(&fd, backlog).map_err(|e| io("listening on")(e.into()))?;
        Ok(identity_of(&meta))
    })();
    match bound {
        Ok(identity) => Ok((UnixListener::from(fd), identity)),
        Err(err) => {
            let _ = remove_if_present(path);
            Err(err)
        }
    }
}

/// Clears the way for a socket at `path`: nothing there, or a stale socket of ours
/// (removed). Anything else is refused.
fn remove_stale_socket(path: &Path) -> Result<(), CreateError> {
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => return Err(CreateError::Io { action: "inspecting", path: path.to_owned(), source }),
    };
    if meta.file_type().is_symlink() {
        return Err(CreateError::Symlink { path: path.to_owned() });
    }
    if !meta.file_type().is_socket() {
        return Err(CreateError::NotASocket { path: path.to_owned() });
    }
    let me = rustix::process::geteuid().as_raw();
    if meta.uid() != me {
        return Err(CreateError::NotOwned { path: path.to_owned(), uid: meta.uid(), me });
    }
    match UnixStream::connect(path) {
        Ok(_) => Err(CreateError::SocketInUse { path: path.to_owned() }),
        Err(err) if err.kind() == io::ErrorKind::ConnectionRefused || err.kind() == io::ErrorKind::NotFound => {
            remove_if_present(path).map_err(|source| CreateError::Io {
                action: "removing stale socket",
                path: path.to_owned(),
                source,
            })
        }
        Err(source) => Err(CreateError::Io { action: "probing socket", path: path.to_owned(), source }),
    }
}

/// Removes the socket at `path` if it is still the one with `identity` (a socket
/// another process bound since is left alone).
pub fn remove_socket_if_ours(path: &Path, identity: FileIdentity) {
    if let Ok(meta) = fs::symlink_metadata(path) {
        if identity_of(&meta) == identity {
            let _ = remove_if_present(path);
        }
    }
}

/// The path of channel `name` in `dir`.
#[must_use]
pub fn channel_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(crate::channel_file_name(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_restricted() {
        assert!(is_valid_channel_name("users-1_a"));
        for bad in ["", "../x", "a/b", "a b", ".hidden", &"x".repeat(65)] {
            assert!(!is_valid_channel_name(bad), "{bad:?} must be refused");
        }
    }

    #[test]
    fn world_writable_and_symlinked_dirs_are_refused() {
        let root = tempfile::tempdir().unwrap();
        let open = root.path().join("open");
        fs::create_dir(&open).unwrap();
        fs::set_permissions(&open, fs::Permissions::from_mode(0o1777)).unwrap();
        let err = ensure_private_dir(&open).unwrap_err().to_string();
        assert!(err.contains("world-writable"), "{err}");

        let link = root.path().join("link");
        std::os::unix::fs::symlink(root.path(), &link).unwrap();
        let err = ensure_private_dir(&link).unwrap_err().to_string();
        assert!(err.contains("symbolic link"), "{err}");

        let fresh = root.path().join("a/b");
        ensure_private_dir(&fresh).unwrap();
        assert_eq!(fs::metadata(&fresh).unwrap().permissions().mode() & 0o777, 0o700);
    }

    #[test]
    fn exclusive_creation_refuses_existing_files_and_symlinks() {
        let root = tempfile::tempdir().unwrap();
        let path = root.path().join("c.shm");
        let file = create_exclusive(&path).unwrap();
        assert_eq!(file.metadata().unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(create_exclusive(&path).unwrap_err().kind(), io::ErrorKind::AlreadyExists);

        let link = root.path().join("l.shm");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        assert!(create_exclusive(&link).is_err());
        assert!(is_symlink_refusal(&open_no_follow(&link, false).unwrap_err()));
    }

    #[test]
    fn sockets_are_private_and_replace_only_stale_sockets_of_ours() {
        let root = tempfile::tempdir().unwrap();
        let path = root.path().join("c.sock");
        let (listener, identity) = bind_private_socket(&path, 8).unwrap();
        let meta = fs::symlink_metadata(&path).unwrap();
        assert!(meta.file_type().is_socket());
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        // Someone listens: refused.
        assert!(matches!(bind_private_socket(&path, 8), Err(CreateError::SocketInUse { .. })));
        drop(listener);
        // Stale (nobody listens): replaced by a new socket.
        let (_again, second) = bind_private_socket(&path, 8).unwrap();
        let (dev, ino, _) = identity;
        remove_socket_if_ours(&path, (dev, ino + 1, 0)); // another file's identity: left alone
        assert!(path.exists());
        remove_socket_if_ours(&path, second);
        assert!(!path.exists());
    }

    #[test]
    fn sockets_never_replace_files_or_follow_symlinks() {
        let root = tempfile::tempdir().unwrap();
        let file = root.path().join("file.sock");
        fs::write(&file, b"keep me").unwrap();
        let err = bind_private_socket(&file, 8).unwrap_err();
        assert!(matches!(err, CreateError::NotASocket { .. }), "{err}");
        assert_eq!(fs::read(&file).unwrap(), b"keep me");

        let target = root.path().join("target.sock");
        let (_listener, _) = bind_private_socket(&target, 8).unwrap();
        let link = root.path().join("link.sock");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let err = bind_private_socket(&link, 8).unwrap_err();
        assert!(matches!(err, CreateError::Symlink { .. }), "{err}");
        let dangling = root.path().join("dangling.sock");
        std::os::unix::fs::symlink(root.path().join("nowhere"), &dangling).unwrap();
        assert!(matches!(bind_private_socket(&dangling, 8), Err(CreateError::Symlink { .. })));
        assert!(!root.path().join("nowhere").exists());
    }
}
