//! How an async connection sits in tokio's reactor: registered for
//! reading only, and watched for room only while a write waits for it.
//! (Registered for writability too, edge-triggered, every read by the
//! peer woke an idle worker of a multi-thread runtime waiting in
//! `epoll_wait`: a stream of small messages from `block_on` went out at
//! about half the blocking rate.) Read from the kernel's own account of
//! the runtime's epoll set, `/proc/self/fdinfo`.

use std::collections::BTreeSet;
use std::os::fd::{AsFd, AsRawFd};
use std::path::PathBuf;
use std::time::Duration;

use ipc_core::{AsyncConnector, AsyncFrameReceiver, AsyncFrameSender, AsyncListener, Config};
use ipc_uds::{AsyncUds, AsyncUdsListener};

const EPOLLIN: u32 = 0x1;
const EPOLLOUT: u32 = 0x4;

/// A registration in one of this process's epoll sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Registered {
    /// The descriptor registered.
    fd: i32,
    /// The inode of the file it names (a duplicate names the same).
    inode: u64,
    /// What it is registered for (`EPOLL*` bits).
    events: u32,
}

/// Every registration in this process's epoll sets (each set once, however
/// many descriptors name it).
fn registered() -> BTreeSet<Registered> {
    let mut out = BTreeSet::new();
    for entry in std::fs::read_dir("/proc/self/fd").expect("procfs") {
        let entry = entry.expect("fd entry");
        let is_epoll = std::fs::read_link(entry.path())
            .is_ok_and(|target| target.to_string_lossy() == "anon_inode:[eventpoll]");
        if !is_epoll {
            continue;
        }
        let fdinfo = PathBuf::from("/proc/self/fdinfo").join(entry.file_name());
        let Ok(info) = std::fs::read_to_string(fdinfo) else {
            continue;
        };
        // "tfd:  7 events: 80002019 data: 7f..  pos:0 ino:4e273e sdev:9"
        for line in info.lines().filter(|l| l.starts_with("tfd:")) {
            let field = |name: &str| {
                let words: Vec<&str> = line.split_whitespace().collect();
                let at = words.iter().position(|w| w.starts_with(name)).expect(name);
                match words[at].split_once(':') {
                    Some((_, v)) if !v.is_empty() => v.to_owned(),
                    _ => words[at + 1].to_owned(),
                }
            };
            out.insert(Registered {
                fd: field("tfd:").parse().expect("tfd"),
                inode: u64::from_str_radix(&field("ino:"), 16).expect("ino"),
                events: u32::from_str_radix(&field("events:"), 16).expect("events"),
            });
        }
    }
    out
}

/// The inode of the socket `conn` reads from.
fn inode(fd: std::os::fd::BorrowedFd<'_>) -> u64 {
    rustix::fs::fstat(fd).expect("fstat").st_ino
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn socket_path(tag: &str) -> PathBuf {
    std::env::temp_dir().join(format!("ipc-uds-{tag}-{}.sock", std::process::id()))
}

#[test]
fn a_connection_is_registered_for_reading_only() {
    let path = socket_path("reactor-read-only");
    runtime().block_on(async {
        let config = Config::default();
        let mut listener = AsyncUdsListener::bind_path(&path, &config).expect("bind");
        let address = listener.address().clone();
        let (ours, theirs) = tokio::join!(AsyncUds.connect(&address, &config), listener.accept());
        let (mut ours, mut theirs) = (ours.expect("connect"), theirs.expect("accept"));
        // Traffic both ways first: registrations made on a wait stay.
        ours.send(b"ping").await.expect("send");
        assert_eq!(&theirs.recv().await.expect("recv")[..], b"ping");
        theirs.send(b"pong").await.expect("send");
        assert_eq!(&ours.recv().await.expect("recv")[..], b"pong");
        for conn in [&ours, &theirs] {
            let fd = conn.get_ref().0.as_fd();
            let events: Vec<u32> = registered()
                .into_iter()
                .filter(|r| r.fd == fd.as_raw_fd() && r.inode == inode(fd))
                .map(|r| r.events)
                .collect();
            assert_eq!(
                events.len(),
                1,
                "the socket is registered once: {events:x?}"
            );
            assert!(events[0] & EPOLLIN != 0, "for reading: {:x}", events[0]);
            assert!(
                events[0] & EPOLLOUT == 0,
                "and not for writing: {:x}",
                events[0]
            );
        }
    });
    let _ = std::fs::remove_file(&path);
}

#[test]
fn a_write_waiting_for_room_is_watched_until_it_goes_out() {
    let path = socket_path("reactor-room");
    runtime().block_on(async {
        let config = Config::default().with_buffer_size(Some(16 << 10));
        let mut listener = AsyncUdsListener::bind_path(&path, &config).expect("bind");
        let address = listener.address().clone();
        let (ours, theirs) = tokio::join!(AsyncUds.connect(&address, &config), listener.accept());
        let (mut ours, mut theirs) = (ours.expect("connect"), theirs.expect("accept"));
        // Registrations for room of our socket (its own descriptor or a
        // duplicate: the same inode).
        let socket = inode(ours.get_ref().1.as_fd());
        let watching = || {
            registered()
                .iter()
                .filter(|r| r.inode == socket && r.events & EPOLLOUT != 0)
                .count()
        };
        assert_eq!(
            watching(),
            0,
            "nothing watched for room before a write waits"
        );
        // Fill the socket until a send has to wait.
        let frame = vec![7u8; 4096];
        for sent in 0.. {
            match tokio::time::timeout(Duration::from_millis(50), ours.send(&frame)).await {
                Ok(result) => result.expect("send"),
                Err(_) => break,
            }
            assert!(sent < 10_000, "the socket never filled");
        }
        // (A send cut off by the timeout either left nothing or its
        // frame's tail, which the next send writes first: cancel-safe.)
        let last = vec![9u8; 4096];
        let waiting = ours.send(&last);
        tokio::pin!(waiting);
        assert!(
            tokio::time::timeout(Duration::from_millis(50), waiting.as_mut())
                .await
                .is_err(),
            "the socket is full"
        );
        assert_eq!(watching(), 1, "watched for room while a write waits");
        // The peer reads everything: the write goes out, and the watch ends.
        let reading = async { while theirs.recv().await.expect("recv")[..] != last[..] {} };
        let (written, ()) = tokio::join!(waiting, reading);
        written.expect("the waiting write went out");
        assert_eq!(watching(), 0, "no watch once the write went out");
    });
    let _ = std::fs::remove_file(&path);
}
