//! The air-gap discipline check: record every connection a process (and its
//! children: kustomize, git) attempts, and name each one that goes anywhere
//! but the endpoints configured for the run.
//!
//! Why this exists: airgate runs inside a closed network, where an attempt
//! to reach the outside is at best a hang and at worst a leak; the standard
//! proof of air-gap readiness is to watch for any such attempt. Processes run
//! under `strace -f -e trace=connect,sendto,sendmsg`; every `AF_INET` and
//! `AF_INET6` address in those calls is compared with the allowed endpoints,
//! and a UDP or TCP connection to port 53 (a DNS lookup) or an `AF_UNIX`
//! connection to a name service (nscd, systemd-resolved) is a lookup, never
//! allowed. Netlink (glibc asking for the machine's own addresses) and
//! `AF_UNSPEC` (a socket being disconnected) are not connections.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result};

/// One address a traced process tried to reach.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Attempt {
    Inet(SocketAddr),
    Unix(String),
}

impl std::fmt::Display for Attempt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Attempt::Inet(a) => write!(f, "{a}"),
            Attempt::Unix(p) => write!(f, "unix:{p}"),
        }
    }
}

/// `program args...` wrapped so that its (and its children's) connection
/// attempts are written to `trace`.
pub fn traced(program: &Path, trace: &Path) -> Command {
    let mut c = Command::new("strace");
    c.args(["-f", "-qq", "-e", "trace=connect,sendto,sendmsg", "-o"])
        .arg(trace)
        .arg(program);
    c
}

/// Every address in a trace `traced` wrote.
pub fn attempts(trace: &Path) -> Result<Vec<Attempt>> {
    let text = std::fs::read_to_string(trace)
        .with_context(|| format!("reading the connection trace {}", trace.display()))?;
    Ok(text.lines().filter_map(parse_line).collect())
}

fn parse_line(line: &str) -> Option<Attempt> {
    if line.contains("sa_family=AF_UNIX") {
        let path = between(line, "sun_path=\"", "\"")?;
        return Some(Attempt::Unix(path.to_string()));
    }
    let port: u16 = between(line, "_port=htons(", ")")?.parse().ok()?;
    let ip: IpAddr = if line.contains("sa_family=AF_INET6") {
        between(line, "inet_pton(AF_INET6, \"", "\"")?
            .parse()
            .ok()?
    } else if line.contains("sa_family=AF_INET") {
        between(line, "inet_addr(\"", "\"")?.parse().ok()?
    } else {
        return None;
    };
    Some(Attempt::Inet(SocketAddr::new(ip, port)))
}

fn between<'a>(s: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let from = s.find(start)? + start.len();
    let len = s[from..].find(end)?;
    Some(&s[from..from + len])
}

/// The attempts that reach anything but `allowed` (a DNS lookup never is).
pub fn violations(attempts: &[Attempt], allowed: &[SocketAddr]) -> Vec<String> {
    let mut out: Vec<String> = attempts
        .iter()
        .filter_map(|a| match a {
            Attempt::Inet(addr) if addr.port() == 53 => Some(format!("DNS lookup via {addr}")),
            Attempt::Inet(addr) if allowed.contains(addr) => None,
            Attempt::Inet(addr) => Some(format!("connection to {addr}")),
            Attempt::Unix(path)
                if path.contains("nscd") || path.contains("resolve") || path.contains("dbus") =>
            {
                Some(format!("name lookup through {path}"))
            }
            Attempt::Unix(_) => None,
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// `host:port` of a URL such as `https://127.0.0.1:6443/x`, as an address
/// (hosts here are IP literals or `localhost`).
pub fn endpoint(url_or_host: &str) -> Result<SocketAddr> {
    let rest = url_or_host
        .split_once("://")
        .map_or(url_or_host, |(_, r)| r);
    let host_port = rest.split('/').next().unwrap_or(rest);
    let host_port = host_port.replace("localhost", "127.0.0.1");
    host_port
        .parse()
        .with_context(|| format!("'{url_or_host}' is not an IP address and port"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strace_lines_are_read_and_outside_attempts_named() -> Result<()> {
        let trace = "\
101 connect(7, {sa_family=AF_INET, sin_port=htons(6443), sin_addr=inet_addr(\"127.0.0.1\")}, 16) = -1 EINPROGRESS
102 connect(8, {sa_family=AF_INET6, sin6_port=htons(443), sin6_flowinfo=htonl(0), inet_pton(AF_INET6, \"2001:db8::1\", &sin6_addr), sin6_scope_id=0}, 28) = -1 ENETUNREACH
103 sendto(9, \"\\x12\\x34\", 40, MSG_NOSIGNAL, {sa_family=AF_INET, sin_port=htons(53), sin_addr=inet_addr(\"10.0.0.2\")}, 16) = 40
104 connect(3, {sa_family=AF_UNIX, sun_path=\"/var/run/nscd/socket\"}, 110) = -1 ENOENT
105 connect(4, {sa_family=AF_UNSPEC, sa_data=\"\"}, 16) = 0
106 sendto(5, [{nlmsg_len=20, nlmsg_type=RTM_GETADDR}], 20, 0, {sa_family=AF_NETLINK, nl_pid=0, nl_groups=00000000}, 12) = 20
";
        let attempts: Vec<Attempt> = trace.lines().filter_map(parse_line).collect();
        assert_eq!(attempts.len(), 4, "{attempts:?}");
        let allowed = [endpoint("https://127.0.0.1:6443")?];
        assert_eq!(
            violations(&attempts, &allowed),
            [
                "DNS lookup via 10.0.0.2:53",
                "connection to [2001:db8::1]:443",
                "name lookup through /var/run/nscd/socket",
            ]
        );
        Ok(())
    }
}
