//! The rendezvous: many agents under one name, and what a hostile agent
//! or a hostile listener can do to it (refused clearly; never a hang, a
//! panic, or a stalled accept for the others).

mod common;

use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use ipc_core::{
    AsyncConnector, AsyncFrameReceiver, AsyncFrameSender, AsyncListener, Config, ConnectError,
    Connector, FrameReceiver, FrameSender, Listener,
};
use ipc_shm::{AsyncShm, AsyncShmListener, Shm, ShmListener};

fn name() -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!(
        "rv-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

fn socket_path(name: &str) -> String {
    format!("/dev/shm/ipc-{name}")
}

/// Files in /dev/shm whose name starts with `ipc-NAME`.
fn files_of(name: &str) -> Vec<String> {
    let prefix = format!("ipc-{name}");
    let mut found: Vec<String> = std::fs::read_dir("/dev/shm")
        .expect("/dev/shm")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n == &prefix || n.starts_with(&format!("{prefix}.")))
        .collect();
    found.sort();
    found
}

#[test]
fn sixteen_agents_share_one_name_and_leave_nothing_in_dev_shm() {
    const AGENTS: usize = 16;
    let name = name();
    let config = Config::default().with_recv_timeout(Some(Duration::from_secs(30)));
    let mut listener = ShmListener::bind_name(&name, &config).expect("bind");
    let address = listener.address().clone();
    let agents: Vec<_> = (0..AGENTS)
        .map(|i| {
            let (address, config) = (address.clone(), config.clone());
            std::thread::spawn(move || {
                let mut conn = Shm.connect(&address, &config).expect("connect");
                conn.send(format!("agent {i}").as_bytes()).expect("send");
                let reply = conn.recv().expect("reply");
                assert_eq!(
                    reply,
                    format!("for agent {i}"),
                    "agent {i} got another's reply"
                );
                // Hold the connection until the hub is done with everyone.
                let _ = conn.recv();
            })
        })
        .collect();
    let mut conns = Vec::new();
    for _ in 0..AGENTS {
        let mut conn = listener
            .accept_timeout(Duration::from_secs(30))
            .expect("accept");
        let hello = String::from_utf8(conn.recv().expect("hello").to_vec()).expect("utf-8");
        conn.send(format!("for {hello}").as_bytes()).expect("reply");
        let bytes = conn.shared_memory_bytes();
        assert!(
            bytes > 0 && bytes <= (3 << 12) + 2 * conn.ring_capacity() as u64,
            "a connection reports {bytes} bytes of shared memory"
        );
        conns.push(conn);
    }
    // Only the rendezvous socket and its lock are in /dev/shm: the
    // sixteen segments are anonymous.
    let name_files = files_of(&name);
    assert_eq!(
        name_files,
        [format!("ipc-{name}"), format!("ipc-{name}.lock")],
        "while 16 agents are connected"
    );
    drop(conns);
    for agent in agents {
        agent.join().expect("agent thread");
    }
    drop(listener);
    assert_eq!(files_of(&name), Vec::<String>::new(), "after the listener");
}

#[test]
fn async_listener_on_a_current_thread_runtime() {
    const AGENTS: usize = 16;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let name = name();
        let mut listener = AsyncShmListener::bind_name(&name, &Config::default()).expect("bind");
        let address = listener.address().clone();
        let agents = tokio::spawn(async move {
            let mut conns = Vec::new();
            for i in 0..AGENTS {
                let mut conn = AsyncShm
                    .connect(&address, &Config::default())
                    .await
                    .expect("connect");
                conn.send(&[i as u8]).await.expect("send");
                conns.push(conn);
            }
            for (i, conn) in conns.iter_mut().enumerate() {
                assert_eq!(&conn.recv().await.expect("echo")[..], &[i as u8, 0xee]);
            }
        });
        for _ in 0..AGENTS {
            let mut conn = tokio::time::timeout(Duration::from_secs(30), listener.accept())
                .await
                .expect("accept in time")
                .expect("accept");
            let mut msg = conn.recv().await.expect("recv").to_vec();
            msg.push(0xee);
            conn.send(&msg).await.expect("echo");
            // Kept until the agents have read their echo.
            tokio::spawn(async move {
                let _ = conn.recv().await;
            });
        }
        agents.await.expect("agents");
        // Cancelled accepts lose nothing: a connection that finishes its
        // handshake while no accept runs is there for the next one.
        let cancelled = tokio::time::timeout(Duration::from_millis(50), listener.accept()).await;
        assert!(cancelled.is_err(), "an accept with no agent returned");
        let address = listener.address().clone();
        let late = tokio::spawn(async move {
            let mut conn = AsyncShm
                .connect(&address, &Config::default())
                .await
                .expect("late connect");
            conn.send(b"late").await.expect("send");
            conn
        });
        let _agent = late.await.expect("late agent");
        let mut conn = listener.accept().await.expect("accept late agent");
        assert_eq!(&conn.recv().await.expect("recv")[..], b"late");
        drop(listener);
        assert_eq!(files_of(&name), Vec::<String>::new(), "after the listener");
    });
}

/// Agents that connect and then stay silent, hang up, answer garbage, or
/// attach claiming another pid never produce a connection and never delay
/// a good agent behind them.
#[test]
fn bad_agents_do_not_stall_accept() {
    let name = name();
    let mut listener = ShmListener::bind_name(&name, &Config::default()).expect("bind");
    let path = socket_path(&name);
    let mut hello = [0u8; 8];

    let silent: Vec<UnixStream> = (0..8)
        .map(|_| UnixStream::connect(&path).expect("connect"))
        .collect();

    // Half a hello, then nothing.
    let mut half = UnixStream::connect(&path).expect("connect");
    half.write_all(&common::hello()[..3]).expect("write");

    let hangs_up = common::ask(&path);
    let (_, fd) = common::recv_with_fd(hangs_up.as_fd(), &mut hello);
    assert!(fd.is_some(), "the listener sent no segment");
    hangs_up
        .shutdown(std::net::Shutdown::Both)
        .expect("shutdown");

    let mut garbage = common::ask(&path);
    common::recv_with_fd(garbage.as_fd(), &mut hello);
    garbage.write_all(b"?").expect("write");

    let mut liar = common::ask(&path);
    let (_, fd) = common::recv_with_fd(liar.as_fd(), &mut hello);
    let segment = std::fs::File::from(fd.expect("a segment"));
    // SegmentHeader: peer_pid at 40, peer_attached at 44.
    segment.write_at(&1u32.to_le_bytes(), 40).expect("pid");
    segment.write_at(&1u32.to_le_bytes(), 44).expect("attached");
    liar.write_all(b"A").expect("write");

    let start = Instant::now();
    let mut good = Shm
        .connect(listener.address(), &Config::default())
        .expect("good agent");
    good.send(b"good").expect("send");
    let mut conn = listener
        .accept_timeout(Duration::from_secs(4))
        .expect("the good agent is accepted");
    assert_eq!(&conn.recv().expect("recv")[..], b"good");
    let took = start.elapsed();
    assert!(
        took < ipc_shm::HANDSHAKE_LIMIT,
        "the good agent waited {took:?} behind the bad ones"
    );
    let nothing = listener.accept_timeout(Duration::from_millis(300));
    assert!(
        matches!(nothing, Err(ConnectError::Timeout)),
        "a bad agent got a connection: {:?}",
        nothing.map(|_| ())
    );
    // The liar and the garbage agent were hung up on.
    for (what, mut sock) in [("garbage", garbage), ("liar", liar)] {
        sock.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let mut byte = [0u8; 1];
        assert_eq!(
            sock.read(&mut byte).expect(what),
            0,
            "{what} was not hung up on"
        );
    }
    drop((silent, half));
}

/// What a fake listener hands the agent, and what the agent must say.
struct Forgery {
    what: &'static str,
    expect: fn(&ConnectError) -> bool,
    says: &'static str,
}

/// A fake listener at a name hands the agent forged segments: each is
/// refused with a clear error (and a listener that never answers is a
/// timeout), never a panic, a hang or a mapping the peer can truncate.
#[test]
fn forged_segments_are_refused_clearly() {
    // Genuine segments come from a real listener this process runs (so its
    // pid is the owner's, as the fake listener's pid is).
    let real_name = name();
    let real = ShmListener::bind_name(&real_name, &Config::default()).expect("real listener");
    let real_path = socket_path(&real_name);
    let genuine = move || {
        let sock = common::ask(&real_path);
        let mut hello = [0u8; 8];
        let (n, fds) = common::recv_with_fds(sock.as_fd(), &mut hello);
        assert_eq!(n, 8);
        let [fd, bell0, bell1] = <[OwnedFd; 3]>::try_from(fds).expect("memory and two doorbells");
        // Keep the real socket open so the real listener keeps waiting.
        (sock, hello, fd, [bell0, bell1])
    };

    let fake_name = name();
    let fake = UnixListener::bind(socket_path(&fake_name)).expect("fake listener");
    let address: ipc_core::Address = format!("shm:{fake_name}").parse().expect("address");
    let config = Config::default().with_connect_timeout(Some(Duration::from_millis(500)));

    type Forge<'a> = Box<dyn Fn(&UnixStream) + 'a>;
    let genuine = &genuine;
    let scribbled = |offset: u64, bytes: Vec<u8>| -> Forge<'_> {
        Box::new(move |agent: &UnixStream| {
            let (_keep, hello, fd, [b0, b1]) = genuine();
            std::fs::File::from(fd.try_clone().expect("dup"))
                .write_at(&bytes, offset)
                .expect("scribble");
            common::send_with_fds(agent.as_fd(), &hello, &[fd.as_fd(), b0.as_fd(), b1.as_fd()]);
        })
    };
    let unsealed = move |agent: &UnixStream| {
        let (_keep, hello, _, [b0, b1]) = genuine();
        let fd =
            rustix::fs::memfd_create("forged", rustix::fs::MemfdFlags::CLOEXEC).expect("memfd");
        rustix::fs::ftruncate(&fd, 3 * 4096 + 2 * (256 << 10)).expect("size");
        common::send_with_fds(agent.as_fd(), &hello, &[fd.as_fd(), b0.as_fd(), b1.as_fd()]);
    };
    let cases: Vec<(Forgery, Forge<'_>)> = vec![
        (
            Forgery {
                what: "wrong hello",
                expect: |e| matches!(e, ConnectError::Incompatible(_)),
                says: "does not speak",
            },
            Box::new(|agent: &UnixStream| {
                let (_keep, _, fd, [b0, b1]) = genuine();
                let fds = [fd.as_fd(), b0.as_fd(), b1.as_fd()];
                common::send_with_fds(agent.as_fd(), b"HTTP/1.1", &fds);
            }),
        ),
        (
            Forgery {
                what: "hello without memory",
                expect: |e| matches!(e, ConnectError::Incompatible(_)),
                says: "no memory came",
            },
            Box::new(|agent: &UnixStream| {
                let (_keep, hello, _, _) = genuine();
                common::send_with_fds(agent.as_fd(), &hello, &[]);
            }),
        ),
        (
            Forgery {
                what: "only the memory",
                expect: |e| matches!(e, ConnectError::Incompatible(_)),
                says: "two doorbells",
            },
            Box::new(|agent: &UnixStream| {
                let (_keep, hello, fd, _) = genuine();
                common::send_with_fds(agent.as_fd(), &hello, &[fd.as_fd()]);
            }),
        ),
        (
            Forgery {
                what: "four descriptors",
                expect: |e| matches!(e, ConnectError::Incompatible(_)),
                says: "more descriptors",
            },
            Box::new(|agent: &UnixStream| {
                let (_keep, hello, fd, [b0, b1]) = genuine();
                let fds = [fd.as_fd(), b0.as_fd(), b1.as_fd(), fd.as_fd()];
                common::send_with_fds(agent.as_fd(), &hello, &fds);
            }),
        ),
        (
            Forgery {
                what: "a pipe instead of memory",
                expect: |e| matches!(e, ConnectError::Incompatible(_)),
                says: "not a memory file",
            },
            Box::new(|agent: &UnixStream| {
                let (_keep, hello, _, [b0, b1]) = genuine();
                let (read, _write) = rustix::pipe::pipe().expect("pipe");
                let fds = [read.as_fd(), b0.as_fd(), b1.as_fd()];
                common::send_with_fds(agent.as_fd(), &hello, &fds);
            }),
        ),
        (
            // A pipe the listener keeps full would block a ring; a file
            // would be always "readable" and spin a park.
            Forgery {
                what: "a pipe instead of a doorbell",
                expect: |e| matches!(e, ConnectError::Incompatible(_)),
                says: "not a socket",
            },
            Box::new(|agent: &UnixStream| {
                let (_keep, hello, fd, [_, b1]) = genuine();
                let (read, _write) = rustix::pipe::pipe().expect("pipe");
                let fds = [fd.as_fd(), read.as_fd(), b1.as_fd()];
                common::send_with_fds(agent.as_fd(), &hello, &fds);
            }),
        ),
        (
            Forgery {
                what: "a datagram socket as a doorbell",
                expect: |e| matches!(e, ConnectError::Incompatible(_)),
                says: "not a Unix stream socket",
            },
            Box::new(|agent: &UnixStream| {
                let (_keep, hello, fd, [b0, _]) = genuine();
                let (dgram, _other) = std::os::unix::net::UnixDatagram::pair().expect("pair");
                let fds = [fd.as_fd(), b0.as_fd(), dgram.as_fd()];
                common::send_with_fds(agent.as_fd(), &hello, &fds);
            }),
        ),
        (
            Forgery {
                what: "memory that can be truncated",
                expect: |e| matches!(e, ConnectError::Incompatible(_)),
                says: "not sealed",
            },
            Box::new(unsealed),
        ),
        (
            Forgery {
                what: "bad magic",
                expect: |e| matches!(e, ConnectError::Incompatible(_)),
                says: "bad magic",
            },
            scribbled(0, b"NOTOURS!".to_vec()),
        ),
        (
            Forgery {
                what: "another layout version",
                expect: |e| matches!(e, ConnectError::Incompatible(_)),
                says: "layout version",
            },
            scribbled(8, 99u32.to_le_bytes().to_vec()),
        ),
        (
            Forgery {
                what: "ring size against file size",
                expect: |e| matches!(e, ConnectError::Corrupted(_)),
                says: "does not match",
            },
            scribbled(16, (1u64 << 20).to_le_bytes().to_vec()),
        ),
        (
            Forgery {
                what: "an owner that is not the listener",
                expect: |e| matches!(e, ConnectError::Corrupted(_)),
                says: "names pid",
            },
            scribbled(24, 1u32.to_le_bytes().to_vec()),
        ),
        (
            Forgery {
                what: "a peer already attached",
                expect: |e| matches!(e, ConnectError::Corrupted(_)),
                says: "already names a peer",
            },
            scribbled(40, 1u32.to_le_bytes().to_vec()),
        ),
        (
            Forgery {
                what: "hung up before the hello",
                expect: |e| matches!(e, ConnectError::Io(_)),
                says: "closed the connection",
            },
            Box::new(|agent: &UnixStream| {
                agent.shutdown(std::net::Shutdown::Both).expect("shutdown");
            }),
        ),
        (
            Forgery {
                what: "never answers",
                expect: |e| matches!(e, ConnectError::Timeout),
                says: "",
            },
            Box::new(|_: &UnixStream| {}),
        ),
    ];
    for (forgery, forge) in cases {
        let agent = {
            let (address, config) = (address.clone(), config.clone());
            std::thread::spawn(move || Shm.connect(&address, &config).map(|_| ()))
        };
        let (sock, _) = fake.accept().expect("fake accept");
        forge(&sock);
        let started = Instant::now();
        let got = agent.join().expect("the agent panicked");
        let err = match got {
            Ok(()) => panic!("{}: the agent accepted a forged segment", forgery.what),
            Err(e) => e,
        };
        assert!(
            (forgery.expect)(&err) && err.to_string().contains(forgery.says),
            "{}: {err:?}",
            forgery.what
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{}: took {:?}",
            forgery.what,
            started.elapsed()
        );
        drop(sock);
    }
    drop(fake);
    let _ = std::fs::remove_file(socket_path(&fake_name));
    drop(real);
}
