//! Who is on the other end of a loopback connection to a browser's egress proxy:
//! its socket in /proc/net/tcp, then the processes of the browser's process group
//! that hold it. Chromium cannot send proxy credentials it is given on its command
//! line, so this is what keeps other local users from using the proxy as a relay.
//! Linux only, like the rest of the browser's process handling.

use std::net::{IpAddr, SocketAddr};

/// True when the connection from `peer` to `local` belongs to a process in the
/// process group `group` (the browser and its helpers).
pub(crate) fn is_browser_socket(peer: SocketAddr, local: SocketAddr, group: u32) -> bool {
    if group <= 1 {
        return false;
    }
    let Some(inode) = socket_inode(peer, local) else {
        return false;
    };
    let wanted = format!("socket:[{inode}]");
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return false;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if process_group(pid) != Some(group) {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if std::fs::read_link(fd.path())
                .is_ok_and(|target| target.as_os_str() == wanted.as_str())
            {
                return true;
            }
        }
    }
    false
}

/// The process group of `pid`, from /proc/PID/stat.
pub(crate) fn process_group(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesized name: state, ppid, pgrp.
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(2)?.parse().ok()
}

/// The inode of the socket whose local end is `peer` and remote end `local`.
fn socket_inode(peer: SocketAddr, local: SocketAddr) -> Option<u64> {
    let table = match peer.ip() {
        IpAddr::V4(_) => "/proc/net/tcp",
        IpAddr::V6(_) => "/proc/net/tcp6",
    };
    let text = std::fs::read_to_string(table).ok()?;
    let (want_local, want_remote) = (proc_address(peer), proc_address(local));
    text.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // sl local rem st queues timer retransmits uid timeout inode
        (fields.len() > 9
            && fields[1].eq_ignore_ascii_case(&want_local)
            && fields[2].eq_ignore_ascii_case(&want_remote))
        .then(|| fields[9].parse().ok())
        .flatten()
    })
}

/// An address as /proc/net/tcp writes it: the address's 32-bit words in host byte
/// order, in hex, then the port in hex.
pub(crate) fn proc_address(addr: SocketAddr) -> String {
    let ip = match addr.ip() {
        IpAddr::V4(v4) => format!("{:08X}", u32::from_ne_bytes(v4.octets())),
        IpAddr::V6(v6) => v6
            .octets()
            .chunks(4)
            .map(|w| format!("{:08X}", u32::from_ne_bytes([w[0], w[1], w[2], w[3]])))
            .collect(),
    };
    format!("{ip}:{:04X}", addr.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_of_this_process_is_found_in_its_group_only() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let local = listener.local_addr().unwrap();
        let client = std::net::TcpStream::connect(local).unwrap();
        let peer = client.local_addr().unwrap();
        let own_group = process_group(std::process::id()).unwrap();
        assert!(is_browser_socket(peer, local, own_group));
        // Another group, or the listener's end instead of the client's: not ours.
        assert!(!is_browser_socket(peer, local, own_group + 1));
        assert!(!is_browser_socket(local, peer, own_group + 1));
        assert!(!is_browser_socket(peer, local, 1));
    }
}
