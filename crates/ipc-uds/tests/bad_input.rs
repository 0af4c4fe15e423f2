//! Socket-file rules and bad input on the wire: each gets a specific error,
//! never a panic, hang or unbounded allocation.

use std::io::Write;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::UnixStream as StdStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use ipc_core::frame::encode_header;
use ipc_core::{Config, ConnectError, Connector, FrameReceiver, FrameSender, Listener, RecvError};
use ipc_uds::{MAX_PATH_LEN, Uds, UdsListener};

/// A fresh socket path; each test removes what it creates.
fn path(tag: &str) -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!("ipc-uds-{tag}-{}-{n}.sock", std::process::id()))
}

/// Leaves at `p` the socket file of a listener that died: bound, never
/// listening. (A listener bound and dropped is not enough: a child that
/// another test forks meanwhile holds its descriptor until it execs, and
/// a connect in that window succeeds.)
fn dead_listener_file(p: &std::path::Path) {
    use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};
    let fd = rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::CLOEXEC,
        None,
    )
    .unwrap();
    rustix::net::bind(&fd, &SocketAddrUnix::new(p).unwrap()).unwrap();
}

fn config() -> Config {
    Config::default().with_recv_timeout(Some(Duration::from_secs(10)))
}

#[test]
fn socket_file_is_owner_only_and_removed_on_drop() {
    let p = path("mode");
    let listener = UdsListener::bind_path(&p, &config()).unwrap();
    let meta = std::fs::symlink_metadata(&p).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    drop(listener);
    assert!(!p.exists());
    assert!(!lock_path(&p).exists());
}

fn lock_path(p: &std::path::Path) -> PathBuf {
    let mut s = p.as_os_str().to_owned();
    s.push(".lock");
    PathBuf::from(s)
}

#[test]
fn stale_socket_file_is_replaced() {
    let p = path("stale");
    // A listener that died without cleaning up leaves its file behind.
    dead_listener_file(&p);
    assert!(p.exists());
    let mut listener = UdsListener::bind_path(&p, &config()).unwrap();
    let mut agent = Uds.connect(listener.address(), &config()).unwrap();
    let mut server = listener.accept().unwrap();
    agent.send(b"fresh").unwrap();
    assert_eq!(&server.recv().unwrap()[..], b"fresh");
}

#[test]
fn files_left_by_a_killed_listener_are_reclaimed() {
    let p = path("killed");
    dead_listener_file(&p);
    std::fs::write(lock_path(&p), b"").unwrap();
    let listener = UdsListener::bind_path(&p, &config()).unwrap();
    drop(listener);
    assert!(!p.exists() && !lock_path(&p).exists());
}

#[test]
fn live_listener_is_never_stolen() {
    let p = path("live");
    let mut first = UdsListener::bind_path(&p, &config()).unwrap();
    let err = UdsListener::bind_path(&p, &config()).unwrap_err();
    assert!(matches!(err, ConnectError::AddrInUse(_)), "{err:?}");
    // The first listener still owns the path and works.
    let mut agent = Uds.connect(first.address(), &config()).unwrap();
    // No phantom connection was left in its queue by the second bind.
    let mut server = first.accept().unwrap();
    server.send(b"still mine").unwrap();
    assert_eq!(&agent.recv().unwrap()[..], b"still mine");
}

#[test]
fn other_files_are_never_replaced() {
    let p = path("regular");
    std::fs::write(&p, b"precious").unwrap();
    let err = UdsListener::bind_path(&p, &config()).unwrap_err();
    assert!(err.to_string().contains("not a socket"), "{err}");
    assert_eq!(std::fs::read(&p).unwrap(), b"precious");
    std::fs::remove_file(&p).unwrap();
}

#[test]
fn bad_paths_and_addresses_get_specific_errors() {
    let long = std::env::temp_dir().join("x".repeat(MAX_PATH_LEN));
    let err = UdsListener::bind_path(&long, &config()).unwrap_err();
    assert!(matches!(err, ConnectError::PathTooLong { .. }), "{err:?}");
    let err = Uds
        .connect(&ipc_core::Address::Uds(long), &config())
        .unwrap_err();
    assert!(matches!(err, ConnectError::PathTooLong { .. }), "{err:?}");

    let missing_dir = std::env::temp_dir().join("ipc-no-such-dir/a.sock");
    let err = UdsListener::bind_path(&missing_dir, &config()).unwrap_err();
    assert!(
        matches!(err, ConnectError::NotFound(ref m) if m.contains("directory")),
        "{err:?}"
    );

    let err = Uds
        .connect(&"uds:/nonexistent/x.sock".parse().unwrap(), &config())
        .unwrap_err();
    assert!(matches!(err, ConnectError::NotFound(_)), "{err:?}");

    let stale = path("refused");
    dead_listener_file(&stale);
    let err = Uds
        .connect(&ipc_core::Address::Uds(stale.clone()), &config())
        .unwrap_err();
    assert!(
        matches!(err, ConnectError::NotFound(ref m) if m.contains("dead listener")),
        "{err:?}"
    );
    std::fs::remove_file(&stale).unwrap();

    let err = Uds
        .connect(&"shm:agent".parse().unwrap(), &config())
        .unwrap_err();
    assert!(
        matches!(err, ConnectError::WrongTransport { .. }),
        "{err:?}"
    );

    let too_big = Config::default().with_max_message_size(usize::MAX);
    let err = UdsListener::bind_path(path("cfg"), &too_big).unwrap_err();
    assert!(matches!(err, ConnectError::InvalidConfig(_)), "{err:?}");
}

/// A listener and a raw client socket that writes whatever a test wants.
fn raw_client(tag: &str, max: usize) -> (ipc_uds::UdsConnection, StdStream, UdsListener) {
    let p = path(tag);
    let mut listener = UdsListener::bind_path(&p, &config().with_max_message_size(max)).unwrap();
    let raw = StdStream::connect(&p).unwrap();
    let server = listener.accept().unwrap();
    (server, raw, listener)
}

#[test]
fn garbage_on_the_socket_is_corrupted_for_good() {
    let (mut server, mut raw, _l) = raw_client("garbage", 1 << 20);
    raw.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert!(matches!(server.recv(), Err(RecvError::Corrupted(_))));
    assert!(matches!(server.recv(), Err(RecvError::Corrupted(_))));
}

#[test]
fn frame_cut_short_by_peer_exit_is_corrupted_not_disconnected() {
    let (mut server, mut raw, _l) = raw_client("trunc", 1 << 20);
    raw.write_all(&encode_header(100)).unwrap();
    raw.write_all(&[1; 10]).unwrap();
    drop(raw);
    let err = server.recv().unwrap_err();
    assert!(
        matches!(err, RecvError::Corrupted(ref m) if m.contains("inside a frame")),
        "{err:?}"
    );
}

#[test]
fn clean_close_between_frames_is_disconnected() {
    let (mut server, mut raw, _l) = raw_client("clean", 1 << 20);
    raw.write_all(&encode_header(3)).unwrap();
    raw.write_all(b"abc").unwrap();
    drop(raw);
    assert_eq!(&server.recv().unwrap()[..], b"abc");
    assert!(matches!(server.recv(), Err(RecvError::Disconnected)));
}

#[test]
fn huge_length_prefix_is_rejected_before_any_body_arrives() {
    let (mut server, mut raw, _l) = raw_client("huge", 1 << 20);
    // Announce 4 GiB - 1 and send nothing more: the error must come now,
    // not after buffering (or waiting for) the body.
    raw.write_all(&encode_header(u32::MAX as usize)).unwrap();
    let err = server.recv_timeout(Duration::from_secs(10)).unwrap_err();
    assert!(
        matches!(err, RecvError::FrameTooLarge { len, max } if len == u32::MAX as usize && max == 1 << 20),
        "{err:?}"
    );
}

#[test]
fn one_listener_serves_many_agents() {
    let p = path("many");
    let mut listener = UdsListener::bind_path(&p, &config()).unwrap();
    let mut agents: Vec<_> = (0..8)
        .map(|_| Uds.connect(listener.address(), &config()).unwrap())
        .collect();
    let mut servers: Vec<_> = (0..8).map(|_| listener.accept().unwrap()).collect();
    for (i, agent) in agents.iter_mut().enumerate() {
        agent.send(&[i as u8; 3]).unwrap();
    }
    for (i, server) in servers.iter_mut().enumerate() {
        assert_eq!(&server.recv().unwrap()[..], &[i as u8; 3]);
    }
    assert!(matches!(
        listener.accept_timeout(Duration::from_millis(20)),
        Err(ConnectError::Timeout)
    ));
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

/// A peer alternating 8 MiB and 1-byte frames: keeping only the small
/// ones must not keep the large read buffers alive (it held 184 MiB for
/// 24 kept bytes when every frame was split off the shared buffer).
#[test]
fn kept_small_frames_do_not_pin_large_buffers() {
    const PAIRS: usize = 24;
    const BIG: usize = 8 << 20;
    let p = path("retain");
    let mut listener = UdsListener::bind_path(&p, &config()).unwrap();
    let mut big = encode_header(BIG).to_vec();
    big.resize(8 + BIG, 7);
    let mut small = encode_header(1).to_vec();
    small.push(1);
    let mut peer = StdStream::connect(&p).unwrap();
    let mut server = listener.accept().unwrap();
    let writer = std::thread::spawn(move || {
        for _ in 0..PAIRS {
            peer.write_all(&big).unwrap();
            peer.write_all(&small).unwrap();
        }
        peer
    });
    let before = rss_kib();
    let mut kept = Vec::new();
    for _ in 0..PAIRS {
        assert_eq!(server.recv().unwrap().len(), BIG);
        let frame = server.recv().unwrap();
        assert_eq!(&frame[..], &[1]);
        kept.push(frame);
    }
    let grown_mib = rss_kib().saturating_sub(before) / 1024;
    println!("{PAIRS} kept 1-byte frames: resident memory grew {grown_mib} MiB");
    drop(writer.join().unwrap());
    assert!(
        grown_mib < 64,
        "{PAIRS} kept 1-byte frames hold {grown_mib} MiB"
    );
    assert_eq!(kept.len(), PAIRS);
}

/// A live listener whose accept queue is full (it never accepts): both
/// connects honour `Config::connect_timeout` and agree on `Timeout`.
#[test]
fn connect_to_a_full_listener_times_out() {
    use ipc_core::AsyncConnector;
    use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};
    let p = path("full");
    let listener = UdsListener::bind_path(&p, &config()).unwrap();
    // Fill the queue with idle connections until the kernel refuses one.
    let addr = SocketAddrUnix::new(&p).unwrap();
    let mut queued = Vec::new();
    loop {
        let fd = rustix::net::socket_with(
            AddressFamily::UNIX,
            SocketType::STREAM,
            SocketFlags::NONBLOCK | SocketFlags::CLOEXEC,
            None,
        )
        .unwrap();
        match rustix::net::connect(&fd, &addr) {
            Ok(()) => queued.push(fd),
            Err(rustix::io::Errno::AGAIN) => break,
            Err(e) => panic!("filling the queue: {e}"),
        }
        assert!(queued.len() < 100_000, "the queue never filled");
    }
    let wait = Duration::from_millis(300);
    let cfg = config().with_connect_timeout(Some(wait));
    let address = listener.address().clone();
    let (done, outcome) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let start = std::time::Instant::now();
        let blocking = Uds.connect(&address, &cfg).err();
        let blocking_took = start.elapsed();
        let start = std::time::Instant::now();
        let asynchronous = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(ipc_uds::AsyncUds.connect(&address, &cfg))
            .err();
        let _ = done.send((blocking, blocking_took, asynchronous, start.elapsed()));
    });
    let (blocking, blocking_took, asynchronous, async_took) = outcome
        .recv_timeout(Duration::from_secs(20))
        .expect("connect to a full listener hung");
    assert!(
        matches!(blocking, Some(ConnectError::Timeout)),
        "blocking: {blocking:?}"
    );
    assert!(
        matches!(asynchronous, Some(ConnectError::Timeout)),
        "async: {asynchronous:?}"
    );
    println!(
        "full listener: blocking connect gave up after {blocking_took:?}, async after {async_took:?}"
    );
    for took in [blocking_took, async_took] {
        assert!(
            took >= wait && took < wait + Duration::from_secs(3),
            "{took:?}"
        );
    }
    drop(queued);
}

/// A loop that retries `accept_timeout` at once while the process has no
/// descriptor left sleeps instead of spinning: each failed accept pauses
/// (10 ms, doubling to 1 s) before it reports `EMFILE`. Run in a child
/// process, whose descriptor limit it lowers.
#[test]
fn accept_at_the_descriptor_limit_backs_off() {
    const ROLE: &str = "IPC_UDS_TEST_EMFILE";
    if std::env::var_os(ROLE).is_some() {
        return emfile_child();
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "accept_at_the_descriptor_limit_backs_off",
            "--exact",
            "--nocapture",
        ])
        .env(ROLE, "1")
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    eprintln!(
        "{}",
        said.lines()
            .find(|l| l.contains("EMFILE seen"))
            .unwrap_or("")
    );
    assert!(out.status.success(), "{said}");
    assert!(said.contains("EMFILE seen"), "{said}");
}

fn emfile_child() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let p = path("emfile");
    let mut listener = UdsListener::bind_path(&p, &config()).unwrap();
    // A peer waiting in the queue, so the listener is readable throughout.
    let _peer = StdStream::connect(&p).unwrap();
    let schedstat = std::fs::File::open("/proc/thread-self/schedstat").unwrap();
    // The limit bounds descriptor numbers: the lowest free one is the
    // next a new descriptor would take.
    let lowest_free = {
        use std::os::fd::AsRawFd;
        std::fs::File::open("/dev/null").unwrap().as_raw_fd() as u64
    };
    let mut limit = getrlimit(Resource::Nofile);
    let saved = limit;
    limit.current = Some(lowest_free);
    setrlimit(Resource::Nofile, limit).unwrap();
    // Time this thread ran on a CPU (the first field, in ns), read
    // through a descriptor opened before the limit.
    let cpu = |file: &std::fs::File| {
        use std::os::unix::fs::FileExt;
        let mut buf = [0u8; 128];
        let n = file.read_at(&mut buf, 0).unwrap();
        let text = std::str::from_utf8(&buf[..n]).unwrap();
        Duration::from_nanos(text.split_whitespace().next().unwrap().parse().unwrap())
    };
    let (started, cpu_before) = (std::time::Instant::now(), cpu(&schedstat));
    let mut emfile = 0;
    while started.elapsed() < Duration::from_secs(1) {
        match listener.accept_timeout(Duration::from_millis(200)) {
            Err(ConnectError::Io(e)) if e.raw_os_error() == Some(24) => emfile += 1,
            other => panic!("at the limit: {:?}", other.map(|_| ())),
        }
    }
    let used = cpu(&schedstat) - cpu_before;
    setrlimit(Resource::Nofile, saved).unwrap();
    eprintln!("EMFILE seen {emfile} times in 1 s, {used:?} of CPU");
    assert!(emfile > 0 && emfile < 50, "{emfile} failed accepts in 1 s");
    assert!(used < Duration::from_millis(300), "{used:?} of CPU in 1 s");
    drop(listener);
}
