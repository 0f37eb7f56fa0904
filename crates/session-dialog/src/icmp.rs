//! ICMP errors on the driver's unconnected UDP socket, so that a request to a closed port or
//! an unreachable host fails at once as a transport error (RFC 3261 §18.4: an ICMP "port
//! unreachable" or "host unreachable" is one) instead of after 32 s of Timer B or F.
//!
//! Linux drops ICMP errors for unconnected UDP sockets unless `IP_RECVERR` is on. With it on,
//! each error sets the socket's pending error (the next `recv_from` or `send_to` fails with
//! it, whatever address it is about) and queues a message on the socket's error queue whose
//! address is the destination of the datagram that failed. [`take_unreachable`] drains that
//! queue, so the driver learns *which* destination to fail. On other systems both functions do
//! nothing and the timers decide, as before.

use std::io;
use std::net::SocketAddr;
use tokio::net::UdpSocket;

/// At most this many queued errors are read at a time; more wait for the next read.
const MAX_PER_DRAIN: usize = 256;

/// Asks the kernel to report ICMP errors of `socket`'s datagrams (`IP_RECVERR` or
/// `IPV6_RECVERR`).
pub(crate) fn enable(socket: &UdpSocket, address: SocketAddr) -> io::Result<()> {
    imp::enable(socket, address)
}

/// The destinations whose datagrams the network refused (ICMP port or host unreachable,
/// network unreachable …) since the last call, each with the error it got; empty when
/// nothing is queued. Never blocks.
pub(crate) fn take_unreachable(socket: &UdpSocket) -> Vec<(SocketAddr, io::Error)> {
    imp::take_unreachable(socket)
}

#[cfg(target_os = "linux")]
mod imp {
    use super::MAX_PER_DRAIN;
    use nix::sys::socket::{
        ControlMessageOwned, MsgFlags, SockaddrStorage, recvmsg, setsockopt, sockopt,
    };
    use std::io::{self, IoSliceMut};
    use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6};
    use std::os::fd::AsRawFd;
    use tokio::net::UdpSocket;

    pub(super) fn enable(socket: &UdpSocket, address: SocketAddr) -> io::Result<()> {
        match address {
            SocketAddr::V4(_) => setsockopt(socket, sockopt::Ipv4RecvErr, &true)?,
            SocketAddr::V6(_) => setsockopt(socket, sockopt::Ipv6RecvErr, &true)?,
        }
        Ok(())
    }

    pub(super) fn take_unreachable(socket: &UdpSocket) -> Vec<(SocketAddr, io::Error)> {
        let mut found = Vec::new();
        // The failed datagram's first bytes come back as the data; we need none of them.
        let mut data = [0u8; 64];
        let mut control = nix::cmsg_space!(nix::libc::sock_extended_err, nix::libc::sockaddr_in6);
        for _ in 0..MAX_PER_DRAIN {
            let mut iov = [IoSliceMut::new(&mut data)];
            let received = recvmsg::<SockaddrStorage>(
                socket.as_raw_fd(),
                &mut iov,
                Some(&mut control),
                MsgFlags::MSG_ERRQUEUE | MsgFlags::MSG_DONTWAIT,
            );
            // EAGAIN: the queue is empty. Anything else: nothing more to learn from it.
            let Ok(message) = received else { break };
            let errno = message.cmsgs().ok().and_then(|mut cmsgs| {
                cmsgs.find_map(|cmsg| match cmsg {
                    ControlMessageOwned::Ipv4RecvErr(error, _)
                    | ControlMessageOwned::Ipv6RecvErr(error, _) => Some(error.ee_errno),
                    _ => None,
                })
            });
            let destination = message.address.as_ref().and_then(to_std);
            if let (Some(destination), Some(errno)) = (destination, errno) {
                let code = i32::try_from(errno).unwrap_or(nix::libc::EHOSTUNREACH);
                found.push((destination, io::Error::from_raw_os_error(code)));
            }
        }
        found
    }

    /// The standard library's form of an IPv4 or IPv6 socket address; `None` for another
    /// family, or for the unspecified address a truncated message could leave.
    fn to_std(address: &SockaddrStorage) -> Option<SocketAddr> {
        let address = match address.as_sockaddr_in() {
            Some(v4) => SocketAddr::V4(SocketAddrV4::from(*v4)),
            None => SocketAddr::V6(SocketAddrV6::from(*address.as_sockaddr_in6()?)),
        };
        (!address.ip().is_unspecified() && address.port() != 0).then_some(address)
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    use std::io;
    use std::net::SocketAddr;
    use tokio::net::UdpSocket;

    pub(super) fn enable(_socket: &UdpSocket, _address: SocketAddr) -> io::Result<()> {
        Ok(())
    }

    pub(super) fn take_unreachable(_socket: &UdpSocket) -> Vec<(SocketAddr, io::Error)> {
        Vec::new()
    }
}
