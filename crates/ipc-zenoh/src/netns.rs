//! A network namespace joined to this one by a veth pair, for tests,
//! examples and benchmarks whose traffic must cross a real interface
//! rather than loopback. Needs root and iproute2 (`ip`); everything it
//! creates is named after the process and removed on drop.

use std::io;
use std::path::Path;
use std::process::{Command, Stdio};

/// Why a namespace cannot be made here, if it cannot.
pub fn unavailable() -> Option<String> {
    if rustix::process::geteuid().as_raw() != 0 {
        return Some("needs root to create a network namespace".into());
    }
    match Command::new("ip").arg("-V").output() {
        Ok(out) if out.status.success() => None,
        _ => Some("needs iproute2 (`ip`)".into()),
    }
}

fn ip(args: &[&str]) -> io::Result<()> {
    let out = Command::new("ip").args(args).output()?;
    if out.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// A namespace joined to this one by a veth pair: [`host_ip`](Self::host_ip)
/// on this side, `.2` of the same /24 inside. Removed on drop.
#[derive(Debug)]
pub struct Namespace {
    name: String,
    host_link: String,
    host_ip: String,
}

impl Namespace {
    /// Creates `ipcz-TAG-PID`. `tag` (one lowercase letter) tells apart
    /// the namespaces one process has at once; each gets its own /24 in
    /// 10.200.0.0/13.
    pub fn create(tag: &str) -> io::Result<Namespace> {
        let pid = std::process::id();
        let name = format!("ipcz-{tag}-{pid}");
        // Interface names are at most 15 bytes.
        let host_link = format!("vz{tag}{}", pid % 1_000_000);
        let inner_link = format!("{host_link}n");
        let index = u32::from(tag.bytes().next().unwrap_or(b'a')) % 3;
        let subnet = format!("10.{}.{}", 200 + (pid % 50), (pid / 50) % 80 * 3 + index);
        let ns = Namespace {
            name: name.clone(),
            host_link: host_link.clone(),
            host_ip: format!("{subnet}.1"),
        };
        ip(&["netns", "add", &name])?;
        ip(&[
            "link",
            "add",
            &host_link,
            "type",
            "veth",
            "peer",
            "name",
            &inner_link,
        ])?;
        ip(&["link", "set", &inner_link, "netns", &name])?;
        ip(&["addr", "add", &format!("{subnet}.1/24"), "dev", &host_link])?;
        ip(&["link", "set", &host_link, "up"])?;
        ip(&[
            "-n",
            &name,
            "addr",
            "add",
            &format!("{subnet}.2/24"),
            "dev",
            &inner_link,
        ])?;
        ip(&["-n", &name, "link", "set", &inner_link, "up"])?;
        ip(&["-n", &name, "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// The namespace's name (`ip netns exec NAME ...`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// This side's address on the veth pair.
    pub fn host_ip(&self) -> &str {
        &self.host_ip
    }

    /// `program`, to be run inside the namespace (stdin closed).
    pub fn command(&self, program: &Path) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name])
            .arg(program)
            .stdin(Stdio::null());
        cmd
    }

    /// Cuts the wire: the far side vanishes without closing anything.
    pub fn unplug(&self) -> io::Result<()> {
        ip(&["link", "del", &self.host_link])
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = ip(&["link", "del", &self.host_link]);
        let _ = ip(&["netns", "del", &self.name]);
    }
}
