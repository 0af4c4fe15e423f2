//! The plumbing's promises, checked directly (the transports' own tests
//! check them again through `ipc-uds` and `ipc-shm`).

use std::os::fd::AsFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use ipc_core::{Config, ConnectError};
use ipc_sys::{fd_passing, memory, socket_file, unix_socket};

#[test]
fn a_socket_file_is_owner_only_exclusive_and_removed_with_its_listener() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hub.sock");
    let (_fd, file) = socket_file::bind(&path).unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "mode {mode:o}");
    assert!(matches!(
        socket_file::bind(&path),
        Err(ConnectError::AddrInUse(_))
    ));
    // A client reaches it within its deadline.
    let config = Config::default().with_connect_timeout(Some(Duration::from_secs(2)));
    let conn = unix_socket::connect(&path, &config).unwrap();
    let me = unix_socket::peer_credentials(&conn).unwrap();
    assert_eq!(me.pid, Some(std::process::id()));
    drop(file);
    assert!(!path.exists(), "the socket file goes with its listener");
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "and its lock"
    );
}

#[test]
fn a_dead_listeners_file_is_replaced_but_no_other_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stale.sock");
    // A socket file nobody listens on.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let (_fd, _file) = socket_file::bind(&path).unwrap();

    let plain = dir.path().join("plain.sock");
    std::fs::write(&plain, b"keep me").unwrap();
    assert!(matches!(
        socket_file::bind(&plain),
        Err(ConnectError::AddrInUse(_))
    ));
    assert_eq!(std::fs::read(&plain).unwrap(), b"keep me");
}

#[test]
fn connecting_to_nothing_is_not_found_and_a_long_path_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config::default();
    assert!(matches!(
        unix_socket::connect(&dir.path().join("none.sock"), &config),
        Err(ConnectError::NotFound(_))
    ));
    let long = dir.path().join("x".repeat(unix_socket::MAX_PATH_LEN));
    assert!(matches!(
        unix_socket::connect(&long, &config),
        Err(ConnectError::PathTooLong { .. })
    ));
}

#[test]
fn descriptors_beyond_what_was_asked_are_refused() {
    let (a, b) = UnixStream::pair().unwrap();
    let file = memory::sealed_memfd("test", 4096).unwrap();
    fd_passing::send_fds(a.as_fd(), b"two", &[file.as_fd(), file.as_fd()]).unwrap();
    let mut buf = [0u8; 8];
    fd_passing::wait_readable(b.as_fd(), Some(Instant::now() + Duration::from_secs(2))).unwrap();
    let err = fd_passing::recv_fds(b.as_fd(), &mut buf, 1).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);

    fd_passing::send_fd(a.as_fd(), b"one", file.as_fd()).unwrap();
    let (n, got) = fd_passing::recv_fd(b.as_fd(), &mut buf).unwrap();
    assert_eq!((&buf[..n], got.is_some()), (&b"one"[..], true));
    // Nothing to read: the deadline is kept.
    let start = Instant::now();
    let waited = fd_passing::wait_readable(b.as_fd(), Some(start + Duration::from_millis(50)));
    assert!(matches!(waited, Err(ConnectError::Timeout)));
    assert!(start.elapsed() >= Duration::from_millis(50));
}

#[test]
fn only_sealed_memory_files_are_taken_and_their_mappings_are_known() {
    let file = memory::sealed_memfd("test", 8192).unwrap();
    assert_eq!(memory::sealed_len(file.as_fd(), "file").unwrap(), 8192);

    let loose = rustix::fs::memfd_create("loose", rustix::fs::MemfdFlags::CLOEXEC).unwrap();
    assert!(matches!(
        memory::sealed_len(loose.as_fd(), "file"),
        Err(ConnectError::Incompatible(_))
    ));
    let (pipe, _) = rustix::pipe::pipe().unwrap();
    assert!(matches!(
        memory::sealed_len(pipe.as_fd(), "file"),
        Err(ConnectError::Incompatible(_))
    ));

    let map = memory::Mapping::new(file.as_fd(), 8192, true, memory::Populate::No).unwrap();
    // SAFETY: the mapping is 8192 bytes long and lives while the slice does.
    let bytes = unsafe { std::slice::from_raw_parts(map.as_ptr(), map.len()) };
    assert!(memory::is_shared(&bytes[100..200]));
    assert!(!memory::is_shared(&[1u8, 2, 3]));
}
