//! Ports on 127.0.0.1 that refuse for as long as the test holds them: TCP bound and never
//! listening, UDP bound and connected elsewhere. (A socket bound and dropped frees its port,
//! which a test running at the same time may then be given: a "refused" target would start
//! accepting.)

use std::os::fd::OwnedFd;

use nix::sys::socket::{bind, getsockname, socket, AddressFamily, SockFlag, SockType, SockaddrIn};

pub struct RefusingPort {
    _socket: OwnedFd,
    pub port: u16,
}

impl RefusingPort {
    pub fn new() -> RefusingPort {
        let fd = socket(
            AddressFamily::Inet,
            SockType::Stream,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .expect("socket");
        let any = SockaddrIn::new(127, 0, 0, 1, 0);
        bind(std::os::fd::AsRawFd::as_raw_fd(&fd), &any).expect("bind");
        let addr: SockaddrIn =
            getsockname(std::os::fd::AsRawFd::as_raw_fd(&fd)).expect("getsockname");
        RefusingPort {
            _socket: fd,
            port: addr.port(),
        }
    }
}

/// A UDP port on 127.0.0.1 that answers every datagram with "port unreachable" while the test
/// holds it: a socket bound to it and connected elsewhere takes no datagram from anyone else,
/// and no other test can be given the port.
pub struct RefusingUdpPort {
    _socket: std::net::UdpSocket,
    pub port: u16,
}

impl RefusingUdpPort {
    pub fn new() -> RefusingUdpPort {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        // Port 9 (discard): any peer but the senders of the test.
        s.connect("127.0.0.1:9").expect("connect");
        let port = s.local_addr().expect("addr").port();
        RefusingUdpPort { _socket: s, port }
    }
}
