//! Per-message DiffServ marks on the driver's shared UDP socket.
//!
//! The socket carries the manager's signalling mark (`DriverConfig::dscp`, CS3 by default);
//! a session whose priority asks for another mark has its messages sent with an `IP_TOS`
//! (IPv4) or `IPV6_TCLASS` (IPv6) control message, which sets that one datagram's traffic
//! class without touching the socket (Linux `ip(7)`, `ipv6(7)`). Elsewhere the mark is not
//! applied and the datagram goes with the socket's.

use std::io;
use std::net::SocketAddr;
use tokio::net::UdpSocket;

/// Sends `bytes` to `destination` with traffic class `dscp` (0–63; the two ECN bits stay 0).
pub(crate) async fn send_marked(
    socket: &UdpSocket,
    bytes: &[u8],
    destination: SocketAddr,
    dscp: u8,
) -> io::Result<usize> {
    imp::send_marked(socket, bytes, destination, dscp).await
}

#[cfg(target_os = "linux")]
mod imp {
    use nix::sys::socket::{ControlMessage, MsgFlags, SockaddrStorage, sendmsg};
    use std::io::{self, IoSlice};
    use std::net::SocketAddr;
    use std::os::fd::AsRawFd;
    use tokio::io::Interest;
    use tokio::net::UdpSocket;

    pub(super) async fn send_marked(
        socket: &UdpSocket,
        bytes: &[u8],
        destination: SocketAddr,
        dscp: u8,
    ) -> io::Result<usize> {
        let class = (dscp & 0x3f) << 2;
        let address = SockaddrStorage::from(destination);
        socket
            .async_io(Interest::WRITABLE, || {
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
                // EAGAIN becomes `WouldBlock`, which `async_io` waits out.
                sent.map_err(io::Error::from)
            })
            .await
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    use std::io;
    use std::net::SocketAddr;
    use tokio::net::UdpSocket;

    pub(super) async fn send_marked(
        socket: &UdpSocket,
        bytes: &[u8],
        destination: SocketAddr,
        _dscp: u8,
    ) -> io::Result<usize> {
        socket.send_to(bytes, destination).await
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::send_marked;
    use nix::sys::socket::{
        ControlMessageOwned, MsgFlags, SockaddrStorage, recvmsg, setsockopt, sockopt,
    };
    use std::io::IoSliceMut;
    use std::os::fd::AsRawFd;
    use tokio::io::Interest;
    use tokio::net::UdpSocket;

    /// The TOS byte of the next datagram `socket` receives.
    async fn received_tos(socket: &UdpSocket) -> u8 {
        let tos = socket.async_io(Interest::READABLE, || {
            let mut data = [0u8; 64];
            let mut iov = [IoSliceMut::new(&mut data)];
            let mut control = nix::cmsg_space!(u8);
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
                    _ => None,
                })
            }))
        });
        tos.await.unwrap().expect("an IP_TOS control message")
    }

    #[tokio::test]
    async fn one_datagram_is_marked_and_the_socket_keeps_its_own_mark() {
        let receiver = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        setsockopt(&receiver, sockopt::IpRecvTos, &true).unwrap();
        let sender = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        socket2::SockRef::from(&sender).set_tos_v4(24 << 2).unwrap();
        let to = receiver.local_addr().unwrap();

        send_marked(&sender, b"urgent", to, 46).await.unwrap();
        assert_eq!(received_tos(&receiver).await >> 2, 46);
        sender.send_to(b"routine", to).await.unwrap();
        assert_eq!(received_tos(&receiver).await >> 2, 24);
    }
}
