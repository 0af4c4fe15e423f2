//! The TLS set-up the README documents, run: a hub and an agent with
//! certificates from a CA made here (mutual TLS), frames both ways; an
//! agent without a client certificate is refused. Built only with the
//! `tls` feature: `cargo test -p ipc-zenoh --features tls --test tls`.
//! Needs the `openssl` command to make the certificates (skips, saying
//! so, without it).
#![cfg(feature = "tls")]

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use ipc_core::{Config, ConnectError, Connector, FrameReceiver, FrameSender, Listener};
use ipc_zenoh::{CONFIG_ENV, Zenoh, ZenohListener};

fn openssl(dir: &Path, args: &[&str]) -> bool {
    Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .is_ok_and(|out| out.status.success())
}

fn key_args(name: &str) -> [&str; 7] {
    [
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-out",
        name,
    ]
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate.
fn make_certificates(dir: &Path) -> bool {
    let ext = dir.join("san.ext");
    std::fs::write(&ext, "subjectAltName=IP:127.0.0.1,DNS:localhost\n").expect("write ext");
    openssl(dir, &key_args("ca-key.pem"))
        && openssl(
            dir,
            &[
                "req",
                "-x509",
                "-new",
                "-key",
                "ca-key.pem",
                "-subj",
                "/CN=test-ca",
                "-days",
                "2",
                "-out",
                "ca.pem",
            ],
        )
        && ["hub", "agent"].iter().all(|who| {
            let csr = format!("{who}.csr");
            openssl(dir, &key_args(&format!("{who}-key.pem")))
                && openssl(
                    dir,
                    &[
                        "req",
                        "-new",
                        "-key",
                        &format!("{who}-key.pem"),
                        "-subj",
                        &format!("/CN={who}"),
                        "-out",
                        &csr,
                    ],
                )
                && openssl(
                    dir,
                    &[
                        "x509",
                        "-req",
                        "-in",
                        &csr,
                        "-CA",
                        "ca.pem",
                        "-CAkey",
                        "ca-key.pem",
                        "-CAcreateserial",
                        "-days",
                        "2",
                        "-extfile",
                        "san.ext",
                        "-out",
                        &format!("{who}.pem"),
                    ],
                )
        })
}

fn config_file(dir: &Path, name: &str, client_certificate: bool) -> std::path::PathBuf {
    let p = |f: &str| dir.join(f).display().to_string();
    let client = if client_certificate {
        format!(
            "connect_certificate: {:?}, connect_private_key: {:?},",
            p("agent.pem"),
            p("agent-key.pem")
        )
    } else {
        String::new()
    };
    let text = format!(
        "{{ transport: {{ link: {{ tls: {{ root_ca_certificate: {:?}, listen_certificate: {:?}, \
         listen_private_key: {:?}, {client} enable_mtls: true }} }} }}, \
         scouting: {{ multicast: {{ enabled: false }}, gossip: {{ enabled: false }} }} }}",
        p("ca.pem"),
        p("hub.pem"),
        p("hub-key.pem"),
    );
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write config");
    path
}

#[test]
fn mutual_tls_carries_frames_and_refuses_agents_without_a_certificate() {
    let dir = std::env::temp_dir().join(format!("ipc-zenoh-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let _cleanup = Cleanup(&dir);
    if !make_certificates(&dir) {
        eprintln!("skipped: the openssl command could not make test certificates");
        return;
    }
    let with_cert = config_file(&dir, "mtls.json5", true);
    let without_cert = config_file(&dir, "no-client-cert.json5", false);
    // One test in this binary: the variable is the process's.
    // SAFETY: no other thread reads the environment while this is set
    // (this is the binary's only test, and it sets it before any zenoh
    // session exists).
    unsafe { std::env::set_var(CONFIG_ENV, &with_cert) };
    let config = Config::default().with_recv_timeout(Some(Duration::from_secs(20)));
    let mut listener =
        ZenohListener::bind(&"zenoh:tls@tls/127.0.0.1:0".parse().unwrap(), &config).unwrap();
    let address = listener.address().clone();
    let agent_address = address.clone();
    let agent_config = config.clone();
    let agent = std::thread::spawn(move || Zenoh.connect(&agent_address, &agent_config));
    let mut hub_side = listener.accept_timeout(Duration::from_secs(20)).unwrap();
    let mut agent = agent.join().unwrap().unwrap();
    agent.send(b"over tls").unwrap();
    assert_eq!(&hub_side.recv().unwrap()[..], b"over tls");
    hub_side.send(&vec![9u8; 1 << 20]).unwrap();
    assert_eq!(agent.recv().unwrap().len(), 1 << 20);
    drop((agent, hub_side));

    // SAFETY: as above; the sessions of the first part are closed.
    unsafe { std::env::set_var(CONFIG_ENV, &without_cert) };
    let refused = Zenoh.connect(
        &address,
        &config.with_connect_timeout(Some(Duration::from_secs(5))),
    );
    assert!(
        matches!(
            refused,
            Err(ConnectError::NotFound(_) | ConnectError::Timeout)
        ),
        "an agent without a client certificate got {:?}",
        refused.map(|_| "a connection")
    );
}

struct Cleanup<'a>(&'a Path);

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(self.0);
    }
}
