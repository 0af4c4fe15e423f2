//! Strangers on the hub's port: a default hub admits only agents holding
//! its key (another user, or anyone who learned only the port, is refused),
//! and a flood of silent TCP connections from one process does not keep a
//! good agent out.
//!
//! `harness = false`: this binary re-runs itself as the stranger, the
//! flooder and the good agent (the role in `ROLE_ENV`).

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ipc_core::conformance::OtherUser;
use ipc_core::{ADDRESS_ENV, Address, Config, ConnectError, Connector, Listener, NetworkAccess};
use ipc_core::{FrameReceiver, FrameSender};
use ipc_zenoh::{Zenoh, ZenohListener};
use libtest_mimic::{Arguments, Failed, Trial};
use zenoh::Wait;

const ROLE_ENV: &str = "IPC_ZENOH_HOSTILE_ROLE";

/// Silent TCP connections the flooder holds (the attack run held 1 000).
const FLOOD: usize = 1000;

/// Exit codes of the stranger.
const REFUSED: i32 = 0;
const JOINED: i32 = 2;

fn ensure(ok: bool, what: impl FnOnce() -> String) -> Result<(), Failed> {
    if ok { Ok(()) } else { Err(what().into()) }
}

fn config() -> Config {
    Config::default().with_connect_timeout(Some(Duration::from_secs(5)))
}

fn hub(config: &Config) -> Result<ZenohListener, Failed> {
    let address: Address =
        format!("zenoh:hostile-{}@tcp/127.0.0.1:0", std::process::id()).parse()?;
    Ok(ZenohListener::bind(&address, config)?)
}

/// The hub's address with `key` instead of its own (`None`: as someone
/// who knows only its port has it).
fn with_key(address: &Address, key: Option<&str>) -> Address {
    let Address::Zenoh {
        name, endpoints, ..
    } = address.clone()
    else {
        unreachable!()
    };
    Address::Zenoh {
        name,
        key: key.map(str::to_owned),
        endpoints,
    }
}

/// A zenoh session of the stranger's own at the hub's endpoints, without
/// any key: true if zenoh let it in.
fn raw_session_opens(address: &Address) -> bool {
    let Address::Zenoh { endpoints, .. } = address else {
        return false;
    };
    let mut z = zenoh::Config::default();
    let list = format!(
        "[{}]",
        endpoints
            .iter()
            .map(|e| format!("{e:?}"))
            .collect::<Vec<_>>()
            .join(",")
    );
    for (name, value) in [
        ("mode", "\"client\"".to_owned()),
        ("connect/endpoints", list),
        ("scouting/multicast/enabled", "false".to_owned()),
    ] {
        if z.insert_json5(name, &value).is_err() {
            return false;
        }
    }
    zenoh::open(z).wait().is_ok()
}

struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(role: &str, address: &Address) -> Result<Command, Failed> {
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.env(ROLE_ENV, role)
        .env(ADDRESS_ENV, address.to_string())
        .stdin(Stdio::null());
    Ok(cmd)
}

// ---- the tests ----

/// Without the key (an address with the port only), with a wrong key, or
/// with a raw zenoh session, nobody gets in; with the key the hub reports,
/// the agent joins and the hub says it proved the key. An open hub
/// (`NetworkAccess::Open`) is an explicit choice.
fn strangers_without_the_key_are_refused() -> Result<(), Failed> {
    let mut listener = hub(&config())?;
    let address = listener.address().clone();
    let Address::Zenoh { key: Some(_), .. } = &address else {
        return Err(format!("a default hub reports no key: {address}").into());
    };
    for (what, target) in [
        ("no key", with_key(&address, None)),
        (
            "a wrong key",
            with_key(&address, Some("0123456789abcdef0123456789abcdef")),
        ),
    ] {
        let started = Instant::now();
        let patience = config().with_connect_timeout(Some(Duration::from_millis(500)));
        let got = Zenoh.connect(&target, &patience);
        ensure(got.is_err(), || format!("{what}: joined"))?;
        eprintln!("{what}: {:?} after {:?}", got.err(), started.elapsed());
    }
    ensure(!raw_session_opens(&address), || {
        "a zenoh session without the key was let in".into()
    })?;
    let mut agent = Zenoh.connect(&address, &config())?;
    let mut conn = listener.accept_timeout(Duration::from_secs(10))?;
    ensure(conn.holds_key(), || {
        "the hub does not say the agent holds the key".into()
    })?;
    agent.send(b"in")?;
    ensure(&conn.recv()?[..] == b"in", || "no frame".into())?;

    let open = hub(&config().with_network_access(NetworkAccess::Open))?;
    let Address::Zenoh { key: None, .. } = open.address() else {
        return Err(format!("an open hub reports a key: {}", open.address()).into());
    };
    Zenoh.connect(open.address(), &config())?;
    Ok(())
}

/// Another local user, who can reach the loopback port but was never
/// given the hub's address, can neither join nor open a zenoh session.
/// Needs root (creates the user, removes it afterwards).
fn another_user_cannot_join_a_default_hub() -> Result<(), Failed> {
    use std::os::unix::process::CommandExt;
    if !rustix::process::geteuid().is_root() {
        println!("    skipped: creating a second user needs root");
        return Ok(());
    }
    let user = OtherUser::create(OTHER_USER)?;
    let listener = hub(&config())?;
    let status = spawn("stranger", &with_key(listener.address(), None))?
        .uid(user.uid)
        .gid(user.gid)
        .status()?;
    match status.code() {
        Some(REFUSED) => Ok(()),
        Some(JOINED) => Err(format!("another user joined {}", listener.address()).into()),
        Some(126 | 127) | None => {
            println!("    skipped: the test binary is not executable by another user ({status})");
            Ok(())
        }
        _ => Err(format!("the other user's attempt failed oddly ({status})").into()),
    }
}

/// One process holds 1 000 silent TCP connections to the hub's port,
/// opening new ones as zenoh drops them; good agents started meanwhile
/// join within a second (before: not within 20 s).
fn a_flood_does_not_keep_agents_out() -> Result<(), Failed> {
    let mut listener = hub(&config())?;
    let address = listener.address().clone();
    let before = rss_mib();
    let _flood = Reaped(spawn("flood", &address)?.spawn()?);
    std::thread::sleep(Duration::from_millis(1500));
    let flooded = rss_mib();
    let mut took = Vec::new();
    for _ in 0..3 {
        let started = Instant::now();
        let _agent = Reaped(spawn("good", &address)?.stdout(Stdio::null()).spawn()?);
        let mut conn = listener
            .accept_timeout(Duration::from_secs(20))
            .map_err(|e| format!("a good agent did not join within 20 s under the flood: {e}"))?;
        conn.send(b"ping")?;
        ensure(&conn.recv()?[..] == b"ping", || "no echo".into())?;
        took.push(started.elapsed());
    }
    took.sort();
    eprintln!(
        "good agents answered after {took:?} under a flood of {FLOOD} connections \
         (the hub's RSS {before:.0} -> {flooded:.0} MiB)"
    );
    ensure(took[1] < Duration::from_secs(1), || {
        format!("good agents took {took:?} while one process flooded")
    })
}

fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

// ---- the other processes ----

const OTHER_USER: &str = "ipc-test-zenoh";

/// Tries to join with the port alone, then to open a bare session.
fn stranger() -> i32 {
    let Ok(address) = Address::from_env() else {
        return 1;
    };
    let patience = config().with_connect_timeout(Some(Duration::from_millis(500)));
    match Zenoh.connect(&address, &patience) {
        Ok(_) => JOINED,
        Err(ConnectError::InvalidConfig(_)) => 1,
        Err(_) if raw_session_opens(&address) => JOINED,
        Err(_) => REFUSED,
    }
}

/// Keeps [`FLOOD`] silent TCP connections open to the hub's port,
/// replacing those the hub closes.
fn flood() -> ! {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    limit.current = limit.maximum;
    let _ = setrlimit(Resource::Nofile, limit);
    let Ok(Address::Zenoh { endpoints, .. }) = Address::from_env() else {
        std::process::exit(1)
    };
    let port = endpoints[0].trim_start_matches("tcp/").to_owned();
    let mut held: Vec<TcpStream> = Vec::new();
    loop {
        // Drop what the hub closed (a read of 0 bytes).
        held.retain(|s| {
            let _ = s.set_nonblocking(true);
            let mut byte = [0u8; 1];
            !matches!(s.peek(&mut byte), Ok(0))
        });
        while held.len() < FLOOD {
            match TcpStream::connect(&port) {
                Ok(s) => held.push(s),
                Err(_) => break,
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Joins and echoes one frame.
fn good() -> Result<(), Box<dyn std::error::Error>> {
    let mut conn = Zenoh.connect(&Address::from_env()?, &config())?;
    let frame = conn.recv_timeout(Duration::from_secs(30))?;
    conn.send(&frame)?;
    let _ = conn.recv_timeout(Duration::from_secs(30));
    Ok(())
}

fn main() {
    match std::env::var(ROLE_ENV).as_deref() {
        Ok("stranger") => std::process::exit(stranger()),
        Ok("flood") => flood(),
        Ok("good") => {
            if let Err(e) = good() {
                eprintln!("good agent: {e}");
                std::process::exit(1);
            }
            return;
        }
        _ => {}
    }
    let trials = vec![
        Trial::test(
            "strangers_without_the_key_are_refused",
            strangers_without_the_key_are_refused,
        ),
        Trial::test(
            "another_user_cannot_join_a_default_hub",
            another_user_cannot_join_a_default_hub,
        ),
        Trial::test(
            "a_flood_does_not_keep_agents_out",
            a_flood_does_not_keep_agents_out,
        ),
    ];
    let mut args = Arguments::from_args();
    // The flood shares the machine with nothing else.
    args.test_threads = Some(1);
    libtest_mimic::run(&args, trials).exit();
}
