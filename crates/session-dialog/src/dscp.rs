//! Per-message DiffServ marks on the driver's shared UDP socket.
//!
//! The socket carries the signalling mark of the layer above (`DriverConfig::dscp`; session-core
//! sets CS3 by default);
//! a session whose priority asks for another mark has its messages sent with an `IP_TOS`
//! (IPv4) or `IPV6_TCLASS` (IPv6) control message, which sets that one datagram's traffic
//! class without touching the socket (Linux `ip(7)`, `ipv6(7)`). Elsewhere the mark is not
//! applied and the datagram goes with the socket's.

use crate::endpoint::Transmit;
use std::io;
use tokio::net::UdpSocket;

/// Sends `transmit` over `socket` without waiting, with its own mark when it has one (0–63;
/// the two ECN bits stay 0). `WouldBlock` when the socket's send buffer is full.
pub(crate) fn try_send(socket: &UdpSocket, transmit: &Transmit) -> io::Result<usize> {
    match transmit.dscp {
        None => socket.try_send_to(&transmit.bytes, transmit.destination),
        Some(dscp) => imp::try_send_marked(socket, &transmit.bytes, transmit.destination, dscp),
    }
}

#[cfg(target_os = "linux")]
mod imp {
    use nix::sys::socket::{ControlMessage, MsgFlags, SockaddrStorage, sendmsg};
    use std::io::{self, IoSlice};
    use std::net::SocketAddr;
    use std::os::fd::AsRawFd;
    use tokio::io::Interest;
    use tokio::net::UdpSocket;

    pub(super) fn try_send_marked(
        socket: &UdpSocket,
        bytes: &[u8],
        destination: SocketAddr,
        dscp: u8,
    ) -> io::Result<usize> {
        let class = (dscp & 0x3f) << 2;
        let address = SockaddrStorage::from(destination);
        // `try_io` clears the socket's write readiness on `WouldBlock`, as `try_send_to` does.
        socket.try_io(Interest::WRITABLE, || {
            let iov = [IoSlice::new(bytes)];
            let sent = match destination {
                SocketAddr::V4(_) => sendmsg(
                    socket.as_raw_fd(),
                    &iov,
                    &[ControlMessage::Ipv4Tos(&class)],
                    MsgFlags::empty(),
                    Some(&address),
                ),
                SocketAddr::V6(_) => sendmsg(
                    socket.as_raw_fd(),
                    &iov,
                    &[ControlMessage::Ipv6TClass(&i32::from(class))],
                    MsgFlags::empty(),
                    Some(&address),
                ),
            };
            sent.map_err(io::Error::from)
        })
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    use std::io;
    use std::net::SocketAddr;
    use tokio::net::UdpSocket;

    pub(super) fn try_send_marked(
        socket: &UdpSocket,
        bytes: &[u8],
        destination: SocketAddr,
        _dscp: u8,
    ) -> io::Result<usize> {
        socket.try_send_to(bytes, destination)
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::try_send;
    use crate::endpoint::{Protocol, Transmit};
    use nix::sys::socket::{
        ControlMessageOwned, MsgFlags, SockaddrStorage, recvmsg, setsockopt, sockopt,
    };
    use std::io::IoSliceMut;
    use std::os::fd::AsRawFd;
    use tokio::io::Interest;
    use tokio::net::UdpSocket;

    /// The TOS byte (IPv4) or traffic class (IPv6) of the next datagram `socket` receives.
    async fn received_tos(socket: &UdpSocket) -> u8 {
        let tos = socket.async_io(Interest::READABLE, || {
            let mut data = [0u8; 64];
            let mut iov = [IoSliceMut::new(&mut data)];
            let mut control = nix::cmsg_space!(i32);
            let message = recvmsg::<SockaddrStorage>(
                socket.as_raw_fd(),
                &mut iov,
                Some(&mut control),
                MsgFlags::empty(),
            )
            .map_err(std::io::Error::from)?;
            Ok(message.cmsgs().ok().and_then(|mut cmsgs| {
                cmsgs.find_map(|cmsg| match cmsg {
                    ControlMessageOwned::Ipv4Tos(tos) => Some(tos),
                    ControlMessageOwned::Ipv6TClass(class) => u8::try_from(class).ok(),
                    _ => None,
                })
            }))
        });
        tos.await
            .unwrap()
            .expect("an IP_TOS or IPV6_TCLASS control message")
    }

    #[tokio::test]
    async fn an_ipv6_datagram_is_marked_by_its_traffic_class() {
        let Ok(receiver) = UdpSocket::bind("[::1]:0").await else {
            eprintln!("skipped: no IPv6 loopback on this host");
            return;
        };
        setsockopt(&receiver, sockopt::Ipv6RecvTClass, &true).unwrap();
        let sender = UdpSocket::bind("[::1]:0").await.unwrap();
        let transmit = Transmit {
            protocol: Protocol::Udp,
            destination: receiver.local_addr().unwrap(),
            bytes: bytes::Bytes::from_static(b"a message"),
            dscp: Some(40),
        };
        sender.writable().await.unwrap();
        try_send(&sender, &transmit).unwrap();
        assert_eq!(received_tos(&receiver).await >> 2, 40);
    }

    #[tokio::test]
    async fn one_datagram_is_marked_and_the_socket_keeps_its_own_mark() {
        let receiver = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        setsockopt(&receiver, sockopt::IpRecvTos, &true).unwrap();
        let sender = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        socket2::SockRef::from(&sender).set_tos_v4(24 << 2).unwrap();
        let to = receiver.local_addr().unwrap();

        let transmit = |dscp| Transmit {
            protocol: Protocol::Udp,
            destination: to,
            bytes: bytes::Bytes::from_static(b"a message"),
            dscp,
        };
        sender.writable().await.unwrap();
        try_send(&sender, &transmit(Some(46))).unwrap();
        assert_eq!(received_tos(&receiver).await >> 2, 46);
        sender.writable().await.unwrap();
        try_send(&sender, &transmit(None)).unwrap();
        assert_eq!(received_tos(&receiver).await >> 2, 24);
    }
}
