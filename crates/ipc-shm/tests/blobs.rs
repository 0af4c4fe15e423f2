//! Blobs: large messages handed over by reference. What a hostile peer
//! can send instead of a proper blob (refused clearly, recoverably where
//! the stream is intact, no descriptor kept), the in-flight budget, and
//! agents killed mid-blob across processes.

mod common;

use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use ipc_core::{Config, Connector, FrameReceiver, FrameSender, Listener, RecvError, SendError};
use ipc_shm::{BlobBuf, Shm, ShmConnection, ShmListener};
use rustix::fs::{MemfdFlags, SealFlags};

const ROLE_ENV: &str = "IPC_SHM_BLOB_ROLE";
const ADDRESS: &str = "IPC_SHM_BLOB_ADDRESS";

fn name() -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!(
        "blob-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").expect("/proc").count()
}

/// Descriptors and mappings of this process that hold the segments of
/// listener `name`, or blob memory of exactly `blob_len` bytes.
fn held_memory(name: &str, blob_len: usize) -> Vec<String> {
    let segment = format!("memfd:ipc-shm:{name} ");
    let mut held: Vec<String> = std::fs::read_dir("/proc/self/fd")
        .expect("/proc")
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .map(|target| target.to_string_lossy().into_owned() + " ")
        .filter(|target| target.starts_with(&segment))
        .collect();
    let maps = std::fs::read_to_string("/proc/self/maps").expect("maps");
    held.extend(maps.lines().filter_map(|line| {
        let range = line.split_whitespace().next()?;
        let (lo, hi) = range.split_once('-')?;
        let len = usize::from_str_radix(hi, 16).ok()? - usize::from_str_radix(lo, 16).ok()?;
        let blob = line.contains("memfd:ipc-shm blob") && len == blob_len;
        (blob || line.contains(segment.trim_end())).then(|| line.to_owned())
    }));
    held
}

fn leftovers(name: &str) -> Vec<String> {
    std::fs::read_dir("/dev/shm")
        .expect("/dev/shm")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(name))
        .collect()
}

/// A peer written by hand: it attaches to a listener's segment and then
/// writes ring records and passes descriptors as it likes.
struct RawPeer {
    sock: UnixStream,
    seg: std::fs::File,
    cap: u64,
    head: u64,
}

/// Offsets of the segment (segment.rs): ring 1 (peer to owner).
const RINGS: u64 = 3 * 4096;

fn start_time() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("stat");
    let rest = &stat[stat.rfind(')').expect(")") + 1..];
    rest.split_ascii_whitespace()
        .nth(19)
        .expect("starttime")
        .parse()
        .expect("number")
}

impl RawPeer {
    fn join(listener: &mut ShmListener) -> (RawPeer, ShmConnection) {
        let ipc_core::Address::Shm(name) = listener.address().clone() else {
            unreachable!()
        };
        let sock = common::ask(format!("/dev/shm/ipc-{name}"));
        let mut hello = [0u8; 8];
        let (_, fd) = common::recv_with_fd(sock.as_fd(), &mut hello);
        let seg = std::fs::File::from(fd.expect("a segment"));
        let mut cap = [0u8; 8];
        seg.read_exact_at(&mut cap, 16).expect("ring size");
        // Attach as segment.rs does: pid, start time, attached.
        seg.write_at(&std::process::id().to_le_bytes(), 40)
            .expect("pid");
        seg.write_at(&start_time().to_le_bytes(), 48)
            .expect("start");
        seg.write_at(&1u32.to_le_bytes(), 44).expect("attached");
        (&sock).write_all(b"A").expect("answer");
        let conn = listener
            .accept_timeout(Duration::from_secs(5))
            .expect("accepted");
        let peer = RawPeer {
            sock,
            seg,
            cap: u64::from_le_bytes(cap),
            head: 0,
        };
        (peer, conn)
    }

    /// Publishes one record on the ring to the owner as the protocol
    /// does: the payload, an empty header after it, then its header (the
    /// word the owner polls).
    fn record(&mut self, kind: u32, payload: &[u8]) {
        let offset = self.head & (self.cap - 1);
        let at = RINGS + self.cap + offset;
        self.seg.write_at(payload, at + 8).expect("payload");
        self.head += 8 + (payload.len() as u64).next_multiple_of(8);
        let next = RINGS + self.cap + (self.head & (self.cap - 1));
        self.seg.write_at(&[0; 8], next).expect("next header");
        let mut header = (payload.len() as u32).to_le_bytes().to_vec();
        header.extend_from_slice(&kind.to_le_bytes());
        self.seg.write_at(&header, at).expect("header");
    }

    fn blob_record(&mut self, len: u64) {
        self.record(6, &len.to_le_bytes());
    }

    fn pass(&self, fds: &[BorrowedFd<'_>]) {
        common::send_with_fds(self.sock.as_fd(), b"B", fds);
    }

    /// Passes a slot's memory (marker `S`).
    fn pass_slot(&self, fd: BorrowedFd<'_>) {
        common::send_with_fds(self.sock.as_fd(), b"S", &[fd]);
    }

    /// A slot record: slot `id` holds a message of `len` bytes.
    fn slot_record(&mut self, id: u32, len: u64) {
        let mut payload = id.to_le_bytes().to_vec();
        payload.extend_from_slice(&[0; 4]);
        payload.extend_from_slice(&len.to_le_bytes());
        self.record(7, &payload);
    }
}

fn memfd(len: u64, seals: SealFlags) -> OwnedFd {
    let fd = rustix::fs::memfd_create("forged", MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING)
        .expect("memfd");
    rustix::fs::ftruncate(&fd, len).expect("size");
    rustix::io::pwrite(&fd, b"forged", 0).expect("write");
    if !seals.is_empty() {
        rustix::fs::fcntl_add_seals(&fd, seals).expect("seal");
    }
    fd
}

const SEALED: SealFlags = SealFlags::WRITE
    .union(SealFlags::SHRINK)
    .union(SealFlags::GROW);

#[test]
fn forged_blobs_are_refused_and_nothing_is_kept() {
    let config = Config::default()
        .with_max_message_size(1 << 20)
        .with_recv_timeout(Some(Duration::from_secs(5)));
    let mut listener = ShmListener::bind_name(&name(), &config).expect("bind");
    let fds_before = open_fds();
    type Forge = fn(&mut RawPeer);
    let corrupt: [(&str, Forge, &str); 11] = [
        (
            "a slot without memory",
            |p| p.slot_record(0, 4096),
            "without its memory",
        ),
        (
            "a slot that can be truncated",
            |p| {
                let fd = memfd(8192, SealFlags::empty());
                p.pass_slot(fd.as_fd());
                p.slot_record(0, 100);
            },
            "not sealed against resizing",
        ),
        (
            "a message beyond its slot",
            |p| {
                let fd = memfd(8192, SealFlags::SHRINK | SealFlags::GROW);
                p.pass_slot(fd.as_fd());
                p.slot_record(0, 4097);
            },
            "4097 bytes in slot",
        ),
        (
            "a blob's memory for a slot",
            |p| {
                let fd = memfd(8192, SEALED);
                p.pass(&[fd.as_fd()]);
                p.slot_record(0, 100);
            },
            "without its memory",
        ),
        (
            "no descriptor",
            |p| p.blob_record(4096),
            "without its memory",
        ),
        (
            "a pipe",
            |p| {
                let (read, _write) = rustix::pipe::pipe().expect("pipe");
                p.pass(&[read.as_fd()]);
                p.blob_record(4096);
            },
            "not a memory file",
        ),
        (
            "unsealed memory",
            |p| {
                let fd = memfd(4096, SealFlags::empty());
                p.pass(&[fd.as_fd()]);
                p.blob_record(4096);
            },
            "not sealed",
        ),
        (
            "memory the peer can still write",
            |p| {
                let fd = memfd(4096, SealFlags::SHRINK | SealFlags::GROW);
                p.pass(&[fd.as_fd()]);
                p.blob_record(4096);
            },
            "not sealed",
        ),
        (
            "a size other than the record's",
            |p| {
                let fd = memfd(4096, SEALED);
                p.pass(&[fd.as_fd()]);
                p.blob_record(8192);
            },
            "record says",
        ),
        (
            "a short record",
            |p| {
                let fd = memfd(4096, SEALED);
                p.pass(&[fd.as_fd()]);
                p.record(6, &[1, 2, 3, 4]);
            },
            "4-byte record",
        ),
        (
            "two descriptors",
            |p| {
                let fd = memfd(4096, SEALED);
                p.pass(&[fd.as_fd(), fd.as_fd()]);
                p.blob_record(4096);
            },
            "more descriptors",
        ),
    ];
    for (what, forge, says) in corrupt {
        let (mut peer, mut conn) = RawPeer::join(&mut listener);
        forge(&mut peer);
        let start = Instant::now();
        let got = conn.recv();
        assert!(
            matches!(&got, Err(RecvError::Corrupted(m)) if m.contains(says)),
            "{what}: {:?}",
            got.map(|b| b.len())
        );
        assert!(start.elapsed() < Duration::from_secs(4), "{what}: slow");
        // Corruption is final.
        assert!(
            matches!(conn.recv(), Err(RecvError::Corrupted(_))),
            "{what}"
        );
    }

    // A slot, reused: each message is read in place, and dropping it
    // clears the slot's busy word for the sender.
    let (mut peer, mut conn) = RawPeer::join(&mut listener);
    let slot = memfd(4096 + 8192, SealFlags::SHRINK | SealFlags::GROW);
    let slot_file = std::fs::File::from(slot.try_clone().expect("dup"));
    peer.pass_slot(slot.as_fd());
    for round in 0..3u8 {
        slot_file.write_at(&1u32.to_le_bytes(), 0).expect("busy");
        slot_file.write_at(&[round; 8192], 4096).expect("fill");
        peer.slot_record(0, 8192);
        let got = conn.recv().expect("a slot message");
        assert!(got.len() == 8192 && got.iter().all(|&b| b == round));
        let mut busy = [0u8; 4];
        slot_file.read_exact_at(&mut busy, 0).expect("busy");
        assert_eq!(busy, 1u32.to_le_bytes(), "released while held");
        drop(got);
        slot_file.read_exact_at(&mut busy, 0).expect("busy");
        assert_eq!(busy, 0u32.to_le_bytes(), "not released on drop");
    }
    drop((slot, slot_file, conn, peer));

    // Too large for this side: refused, and the stream goes on.
    let (mut peer, mut conn) = RawPeer::join(&mut listener);
    let big = memfd(2 << 20, SEALED);
    peer.pass(&[big.as_fd()]);
    peer.blob_record(2 << 20);
    drop(big);
    let fine = memfd(4096, SEALED);
    peer.pass(&[fine.as_fd()]);
    peer.blob_record(4096);
    drop(fine);
    peer.record(1, b"after");
    let got = conn.recv();
    assert!(
        matches!(got, Err(RecvError::FrameTooLarge { len, .. }) if len == 2 << 20),
        "{:?}",
        got.map(|b| b.len())
    );
    let blob = conn.recv().expect("a proper blob after the refused one");
    assert_eq!(blob.len(), 4096);
    assert_eq!(&blob[..6], b"forged");
    assert_eq!(&conn.recv().expect("the next frame")[..], b"after");
    drop((blob, conn, peer));
    assert_eq!(open_fds(), fds_before, "descriptors were kept");
}

#[test]
fn blobs_in_flight_are_bounded() {
    let config = Config::default()
        .with_max_message_size(1 << 20)
        .with_send_timeout(Some(Duration::from_millis(300)));
    let mut listener = ShmListener::bind_name(&name(), &config).expect("bind");
    let mut agent = Shm.connect(listener.address(), &config).expect("connect");
    let mut hub = listener.accept().expect("accept");
    let blob = |n: u8| {
        let mut b = BlobBuf::new(1 << 20).expect("blob");
        b.fill(n);
        b
    };
    agent.send_blob(blob(1)).expect("first");
    agent.send_blob(blob(2)).expect("second");
    // Twice the largest message is in flight and unread: the third waits,
    // then times out.
    let third = agent.send_blob(blob(3));
    assert!(matches!(third, Err(SendError::Timeout)), "{third:?}");
    let first = hub.recv().expect("first");
    assert!(first.len() == 1 << 20 && first.iter().all(|&b| b == 1));
    agent.send_blob(blob(4)).expect("room after one was taken");
    // Larger than the limit: refused at once.
    let huge = BlobBuf::new(2 << 20).expect("blob");
    assert!(matches!(
        agent.send_blob(huge),
        Err(SendError::FrameTooLarge { .. })
    ));
    assert!(BlobBuf::new(0).is_err(), "an empty blob");
    for n in [2, 4] {
        let got = hub.recv().expect("blob");
        assert!(got.iter().all(|&b| b == n), "blob {n}");
    }
}

/// `send` of a large frame goes as a blob; with the threshold off it is
/// chunked through the ring; both arrive whole.
#[test]
fn large_frames_go_as_blobs_or_chunks() {
    let config = Config::default();
    let mut listener = ShmListener::bind_name(&name(), &config).expect("bind");
    let mut agent = Shm.connect(listener.address(), &config).expect("connect");
    let mut hub = listener.accept().expect("accept");
    let frame: Vec<u8> = (0..(3 << 20) + 5).map(|i| (i * 7 % 251) as u8).collect();
    let sent = frame.clone();
    let agent = std::thread::spawn(move || {
        agent.send(&sent).expect("as a blob");
        agent.set_blob_threshold(None);
        agent.send(&sent).expect("chunked");
        agent
    });
    let by_blob = hub.recv().expect("blob");
    let by_ring = hub.recv().expect("chunks");
    assert!(by_blob == frame && by_ring == frame);
    // Read in place, or copied: the transport can tell which.
    assert!(ipc_shm::is_shared(&by_blob), "a blob was copied");
    assert!(
        !ipc_shm::is_shared(&by_ring),
        "chunks are reassembled in a copy"
    );
    assert!(!ipc_shm::is_shared(&frame) && !ipc_shm::is_shared(&[]));
    drop(agent.join().expect("agent"));
}

/// An async agent connected to a blocking hub side, and a runtime for it.
fn async_agent(
    config: &Config,
) -> (
    tokio::runtime::Runtime,
    ipc_shm::AsyncShmConnection,
    ShmConnection,
) {
    let mut listener = ShmListener::bind_name(&name(), config).expect("bind");
    let agent = Shm.connect(listener.address(), config).expect("connect");
    let hub = listener.accept().expect("accept");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let agent = ipc_shm::AsyncShmConnection::new(agent).expect("async");
    (runtime, agent, hub)
}

/// `try_send` sends what the ring or a slot takes at once, and leaves a
/// frame that would be copied into a blob of its own to `send` (which
/// copies it outside the half's lock): `Full`, nothing of it sent.
#[test]
fn try_send_leaves_a_copy_into_a_blob_to_send() {
    use ipc_core::AsyncFrameSender;
    let (runtime, mut agent, mut hub) =
        async_agent(&Config::default().with_max_message_size(64 << 20));
    agent
        .try_send(b"small")
        .expect("a small frame goes at once");
    assert_eq!(&hub.recv().expect("small")[..], b"small");
    let big: Vec<u8> = (0..(33 << 20) + 3).map(|i| (i % 251) as u8).collect();
    let tried = agent.try_send(&big);
    assert!(matches!(tried, Err(SendError::Full)), "{tried:?}");
    assert!(matches!(hub.try_recv(), Err(RecvError::Empty)));
    runtime
        .block_on(agent.send(&big))
        .expect("send copies it and sends it");
    assert!(hub.recv().expect("big") == big);
}

/// An async send of a frame over the sender's own limit is refused, as a
/// blocking one is, whichever way it would go (it went out as a blob and
/// the receiver dropped it).
#[test]
fn an_async_send_over_the_limit_is_refused_on_every_path() {
    use ipc_core::AsyncFrameSender;
    let max = 4 << 20;
    let (runtime, mut agent, _hub) = async_agent(&Config::default().with_max_message_size(max));
    let (slot_sized, own_blob) = (vec![1u8; max + 1], vec![2u8; 33 << 20]);
    for frame in [&slot_sized, &own_blob] {
        let sent = runtime.block_on(agent.send(frame));
        assert!(
            matches!(sent, Err(SendError::FrameTooLarge { len, max: m }) if len == frame.len() && m == max),
            "{} bytes: {sent:?}",
            frame.len()
        );
    }
}

/// An agent that is killed while it writes and sends 64 MiB blobs: the
/// hub gets whole blobs or `Disconnected`, keeps serving another agent,
/// and nothing stays behind (no file in /dev/shm, no descriptor).
#[test]
fn agent_killed_mid_blob() {
    if let Ok(role) = std::env::var(ROLE_ENV) {
        return agent(&role);
    }
    const BIG: usize = 64 << 20;
    let name = name();
    let config = Config::default()
        .with_max_message_size(BIG + 4096)
        .with_recv_timeout(Some(Duration::from_secs(30)));
    let mut listener = ShmListener::bind_name(&name, &config).expect("bind");
    let spawn = |role: &str| {
        Command::new(std::env::current_exe().expect("exe"))
            .args(["agent_killed_mid_blob", "--exact", "--nocapture"])
            .env(ROLE_ENV, role)
            .env(ADDRESS, listener.address().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn")
    };
    let mut doomed = spawn("blobs");
    let mut steady = spawn("echo");
    let mut a = listener.accept_timeout(Duration::from_secs(30)).expect("a");
    let mut b = listener.accept_timeout(Duration::from_secs(30)).expect("b");
    // Which is which: the doomed agent speaks first.
    a.send(b"who").expect("ask");
    b.send(b"who").expect("ask");
    let said_a = a.recv().expect("a says");
    let said_b = b.recv().expect("b says");
    let (mut blobs, mut echo) = match (&said_a[..], &said_b[..]) {
        (b"blobs", b"echo") => (a, b),
        (b"echo", b"blobs") => (b, a),
        other => panic!("the agents said {other:?}"),
    };
    for _ in 0..2 {
        let blob = blobs.recv().expect("a whole blob");
        assert_eq!(blob.len(), BIG);
        assert!(blob[..4096].iter().all(|&x| x == 0x42) && blob[BIG - 1] == 0x42);
    }
    let _ = doomed.kill();
    let _ = doomed.wait();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match blobs.recv() {
            Ok(blob) => assert_eq!(blob.len(), BIG, "a torn blob"),
            Err(RecvError::Disconnected) => break,
            Err(e) => panic!("after the kill: {e:?}"),
        }
        assert!(Instant::now() < deadline, "never noticed the death");
    }
    // The other agent is served as before.
    for i in 0..100u32 {
        echo.send(&i.to_le_bytes()).expect("send");
        assert_eq!(&echo.recv().expect("echo")[..], &i.to_le_bytes());
    }
    let mut blob = BlobBuf::new(1 << 20).expect("blob");
    blob.fill(7);
    echo.send_blob(blob).expect("blob to the steady agent");
    let back = echo.recv().expect("its echo");
    assert!(back.len() == 1 << 20 && back.iter().all(|&x| x == 7));
    // The check below sees live connections' memory (so it can fail).
    assert!(
        !held_memory(&name, BIG).is_empty(),
        "live segments not seen"
    );
    drop((blobs, echo, back));
    let _ = steady.kill();
    let _ = steady.wait();
    drop(listener);
    assert_eq!(leftovers(&name), Vec::<String>::new(), "left in /dev/shm");
    assert_eq!(
        held_memory(&name, BIG),
        Vec::<String>::new(),
        "memory kept after the agents went"
    );
}

/// A sender in another process passes 64 blobs of 16 MiB it never wrote
/// and keeps their descriptors; the receiving application drops each at
/// once. Memory backed for them: what the receiver read (nothing), not
/// 1 GiB (before: the receiver mapped them with `MAP_POPULATE`, backing
/// every page for as long as the sender kept them). A receiver that holds
/// such messages is refused more unwritten bytes than its budget.
#[test]
fn sparse_blobs_cost_what_is_read() {
    if let Ok(role) = std::env::var(ROLE_ENV) {
        return agent(&role);
    }
    let name = name();
    let config = Config::default().with_recv_timeout(Some(Duration::from_secs(30)));
    let mut listener = ShmListener::bind_name(&name, &config).expect("bind");
    let mut sender = Command::new(std::env::current_exe().expect("exe"))
        .args(["sparse_blobs_cost_what_is_read", "--exact", "--nocapture"])
        .env(ROLE_ENV, "sparse")
        .env(ADDRESS, listener.address().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn");
    let mut conn = listener
        .accept_timeout(Duration::from_secs(30))
        .expect("accept");
    conn.send(b"go").expect("go");
    for i in 0..SPARSE_BLOBS {
        let blob = conn.recv().expect("a blob");
        assert_eq!(blob.len(), SPARSE_LEN, "blob {i}");
        drop(blob);
    }
    // The sender says how much of its blobs the kernel backs now.
    conn.send(b"how much?").expect("ask");
    let said = conn.recv().expect("the sender's count");
    let backed = u64::from_le_bytes(said[..8].try_into().expect("a u64"));
    eprintln!(
        "64 sparse 16 MiB blobs received and dropped: {} KiB backed",
        backed >> 10
    );
    assert!(
        backed <= 1 << 20,
        "{backed} bytes of blobs nobody wrote or read were backed"
    );
    // Holding them is another matter: unwritten bytes beyond twice the
    // maximum message size are refused.
    conn.send(b"again").expect("again");
    let mut held = Vec::new();
    let refused = loop {
        match conn.recv() {
            Ok(blob) => held.push(blob),
            Err(e) => break e,
        }
        assert!(held.len() <= 3, "held {} sparse blobs", held.len());
    };
    assert_eq!(held.len(), 2, "{refused:?}");
    assert!(
        matches!(&refused, RecvError::Corrupted(why) if why.contains("never written")),
        "{refused:?}"
    );
    drop((held, conn));
    let _ = sender.kill();
    let _ = sender.wait();
}

const SPARSE_BLOBS: usize = 64;
const SPARSE_LEN: usize = 16 << 20;

/// Sends blobs it never wrote, keeping a descriptor of each (found in
/// /proc/self/fd: the public API hands its own over).
fn sparse_sender(conn: &mut ShmConnection) {
    let mut kept = Vec::new();
    let send_sparse = |conn: &mut ShmConnection, kept: &mut Vec<std::fs::File>| {
        let blob = BlobBuf::new(SPARSE_LEN).expect("blob");
        let newest = std::fs::read_dir("/proc/self/fd")
            .expect("fds")
            .filter_map(|e| e.ok())
            .filter(|e| {
                std::fs::read_link(e.path())
                    .is_ok_and(|l| l.to_string_lossy().contains("ipc-shm blob"))
            })
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .max()
            .expect("the blob's descriptor");
        kept.push(std::fs::File::open(format!("/proc/self/fd/{newest}")).expect("keep"));
        conn.send_blob(blob)
    };
    for _ in 0..SPARSE_BLOBS {
        send_sparse(conn, &mut kept).expect("send");
    }
    let _ = conn.recv();
    let backed: u64 = kept
        .iter()
        .map(|f| {
            use std::os::unix::fs::MetadataExt;
            f.metadata().expect("stat").blocks() * 512
        })
        .sum();
    conn.send(&backed.to_le_bytes()).expect("tell");
    let _ = conn.recv();
    while send_sparse(conn, &mut kept).is_ok() {}
}

fn agent(role: &str) {
    let address = std::env::var(ADDRESS)
        .expect("address")
        .parse()
        .expect("address");
    let config = Config::default()
        .with_max_message_size((64 << 20) + 4096)
        .with_recv_timeout(Some(Duration::from_secs(60)));
    let mut conn = Shm.connect(&address, &config).expect("connect");
    let _ = conn.recv();
    if role == "sparse" {
        return sparse_sender(&mut conn);
    }
    conn.send(role.as_bytes()).expect("say");
    match role {
        "blobs" => loop {
            let mut blob = BlobBuf::new(64 << 20).expect("blob");
            blob.fill(0x42);
            if conn.send_blob(blob).is_err() {
                return;
            }
        },
        _ => {
            while let Ok(frame) = conn.recv() {
                if conn.send(&frame).is_err() {
                    return;
                }
            }
        }
    }
}

/// A side that waits for data longer than `IDLE_RELEASE` gives back its
/// send ring's pages and its free slots' pages, blocking and async, and
/// the connection works as before afterwards.
#[test]
fn idle_connections_give_memory_back() {
    let config = Config::default();
    let mut listener = ShmListener::bind_name(&name(), &config).expect("bind");
    let mut agent = Shm.connect(listener.address(), &config).expect("connect");
    let mut hub = listener.accept().expect("accept");
    let busy = |agent: &mut ShmConnection, hub: &mut ShmConnection| {
        let big = vec![3u8; 1 << 20];
        for i in 0..200u32 {
            agent.send(&[i as u8; 4096]).expect("send");
            assert_eq!(hub.recv().expect("recv")[0], i as u8);
        }
        agent.send(&big).expect("large");
        assert!(hub.recv().expect("large").iter().all(|&b| b == 3));
    };
    busy(&mut agent, &mut hub);
    let before = agent.shared_memory_bytes();
    assert!(
        before > 1 << 20,
        "only {before} bytes after 1.8 MiB of traffic"
    );
    // Blocking: a receive that waits past IDLE_RELEASE.
    let waited = agent.recv_timeout(ipc_shm::IDLE_RELEASE + Duration::from_millis(500));
    assert!(matches!(waited, Err(RecvError::Timeout)));
    let after = agent.shared_memory_bytes();
    assert!(
        after < 64 << 10,
        "{after} bytes held after idling (from {before})"
    );
    busy(&mut agent, &mut hub);

    // Async: the same, on a current-thread runtime.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut agent = ipc_shm::AsyncShmConnection::new(agent).expect("async");
    let before = agent.get_mut().shared_memory_bytes();
    assert!(before > 1 << 20, "only {before} bytes after traffic");
    runtime.block_on(async {
        let wait = ipc_shm::IDLE_RELEASE + Duration::from_millis(500);
        let waited = ipc_core::AsyncFrameReceiver::recv_timeout(&mut agent, wait).await;
        assert!(matches!(waited, Err(RecvError::Timeout)));
    });
    let after = agent.get_mut().shared_memory_bytes();
    assert!(after < 64 << 10, "async: {after} bytes held after idling");
}

/// The first message backs the sender's whole ring at once (no page fault
/// every 4 KiB through the first lap), and only that ring: a direction
/// never used holds no memory.
#[test]
fn the_first_send_backs_its_ring_and_only_it() {
    let config = Config::default();
    let mut listener = ShmListener::bind_name(&name(), &config).expect("bind");
    let mut agent = Shm.connect(listener.address(), &config).expect("connect");
    let mut hub = listener.accept().expect("accept");
    let ring = agent.ring_capacity() as u64;
    let fresh = agent.shared_memory_bytes();
    assert!(fresh < ring / 4, "{fresh} bytes backed before any message");
    agent.send(b"x").expect("send");
    assert_eq!(&hub.recv().expect("recv")[..], b"x");
    let used = agent.shared_memory_bytes();
    assert!(
        used >= ring && used < 2 * ring,
        "{used} bytes backed after one message one way (ring {ring})"
    );
}

/// A receiver that keeps many large messages at once: the sender's slots
/// run out (they are bounded) and further messages get blobs of their
/// own; every message arrives whole (before, the sender made more slots
/// than a receiver maps, and the stream broke).
#[test]
fn a_receiver_holding_many_large_messages() {
    let config = Config::default();
    let mut listener = ShmListener::bind_name(&name(), &config).expect("bind");
    let mut agent = Shm.connect(listener.address(), &config).expect("connect");
    let mut hub = listener.accept().expect("accept");
    let sender = std::thread::spawn(move || {
        for i in 0..100u32 {
            let mut msg = vec![(i % 251) as u8; 256 << 10];
            msg[..4].copy_from_slice(&i.to_le_bytes());
            agent.send(&msg).expect("send");
        }
        agent
    });
    let mut kept = Vec::new();
    for i in 0..100u32 {
        let msg = hub.recv().expect("a whole message");
        assert_eq!(&msg[..4], &i.to_le_bytes());
        assert!(
            msg[4..].iter().all(|&b| b == (i % 251) as u8),
            "message {i}"
        );
        kept.push(msg);
    }
    for (i, msg) in kept.iter().enumerate() {
        assert_eq!(
            &msg[..4],
            &(i as u32).to_le_bytes(),
            "a kept message changed"
        );
    }
    drop(sender.join().expect("sender"));
}

/// The inode of the file mapped at `ptr` in this process (from
/// /proc/self/maps), if it is a mapped file.
fn inode_at(ptr: *const u8) -> Option<u64> {
    let at = ptr as usize;
    let maps = std::fs::read_to_string("/proc/self/maps").expect("maps");
    maps.lines().find_map(|line| {
        let mut fields = line.split_whitespace();
        let (lo, hi) = fields.next()?.split_once('-')?;
        let (lo, hi) = (
            usize::from_str_radix(lo, 16).ok()?,
            usize::from_str_radix(hi, 16).ok()?,
        );
        let inode: u64 = fields.nth(3)?.parse().ok()?;
        (lo <= at && at < hi && inode != 0).then_some(inode)
    })
}

/// A frozen loan goes by reference: every receiver maps the very file the
/// sender wrote (one copy of the bytes in all, however many peers), while
/// the same bytes from the heap are copied into the connection's slot.
#[test]
fn loans_are_passed_not_copied() {
    let config = Config::default();
    let mut listener = ShmListener::bind_name(&name(), &config).expect("bind");
    let mut agents = Vec::new();
    let mut hub_side = Vec::new();
    for _ in 0..3 {
        agents.push(Shm.connect(listener.address(), &config).expect("connect"));
        hub_side.push(listener.accept().expect("accept"));
    }
    let len = 2 << 20;
    let mut loan = hub_side[0].lender().loan(len).expect("loan");
    assert!(loan.is_lent(), "{len} bytes are lent shared memory");
    ipc_core::payload::fill(1, &mut loan);
    let frame = loan.freeze().expect("freeze");
    let written = inode_at(frame.as_ptr()).expect("the frame is a mapped file");
    for conn in &mut hub_side {
        conn.send(&frame).expect("send");
    }
    for agent in &mut agents {
        let got = agent.recv().expect("recv");
        assert_eq!(ipc_core::payload::verify(1, &got), Ok(()));
        assert_eq!(inode_at(got.as_ptr()), Some(written), "a loan was copied");
    }
    // The control: the same bytes from the heap are copied (into a slot).
    let heap_copy: Vec<u8> = frame.to_vec();
    hub_side[0].send(&heap_copy).expect("send a copy");
    let copied = agents[0].recv().expect("recv");
    assert!(copied == frame && inode_at(copied.as_ptr()) != Some(written));

    // A loan cut short is sent at its new length, still by reference.
    let mut loan = hub_side[1].lender().loan(len).expect("loan");
    loan.truncate((1 << 20) + 3);
    ipc_core::payload::fill(2, &mut loan);
    let frame = loan.freeze().expect("freeze");
    hub_side[1].send(&frame).expect("send");
    let got = agents[1].recv().expect("recv");
    assert_eq!(got.len(), (1 << 20) + 3);
    assert_eq!(ipc_core::payload::verify(2, &got), Ok(()));
    assert_eq!(inode_at(got.as_ptr()), inode_at(frame.as_ptr()));

    // Small loans are heap memory (a copy costs less than a file).
    assert!(!hub_side[2].lender().loan(4096).expect("loan").is_lent());
}

/// A frozen loan larger than the connection's `max_message_size` is
/// refused like any frame, and the connection goes on.
#[test]
fn a_loan_over_the_size_limit_is_refused() {
    let config = Config::default().with_max_message_size(1 << 20);
    let mut listener = ShmListener::bind_name(&name(), &config).expect("bind");
    let mut agent = Shm.connect(listener.address(), &config).expect("connect");
    let mut hub = listener.accept().expect("accept");
    let frame = hub
        .lender()
        .loan(2 << 20)
        .expect("loan")
        .freeze()
        .expect("freeze");
    assert!(matches!(
        hub.send(&frame),
        Err(SendError::FrameTooLarge { len, max }) if len == 2 << 20 && max == 1 << 20
    ));
    hub.send(b"next").expect("send");
    assert_eq!(&agent.recv().expect("recv")[..], b"next");
}

/// A loan written only in part (here one byte of each 4 MiB) is sent
/// whole, not as a sparse blob: the receiver would count its unwritten
/// bytes against the sender and refuse the third it holds (the limit is
/// twice `max_message_size`).
#[test]
fn a_loan_written_in_part_is_not_a_sparse_blob() {
    let len = 4 << 20;
    let config = Config::default().with_max_message_size(len);
    let mut listener = ShmListener::bind_name(&name(), &config).expect("bind");
    let mut agent = Shm.connect(listener.address(), &config).expect("connect");
    let mut hub = listener.accept().expect("accept");
    let mut held = Vec::new();
    for i in 0..3u8 {
        let mut loan = agent.lender().loan(len).expect("loan");
        loan[0] = i;
        agent.send(&loan.freeze().expect("freeze")).expect("send");
        let got = hub
            .recv()
            .expect("a loan written in part is a whole message");
        assert!(got.len() == len && got[0] == i && got[1..].iter().all(|&b| b == 0));
        held.push(got);
    }
}
