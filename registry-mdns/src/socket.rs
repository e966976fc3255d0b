//! The multicast socket, joined and sending only on the chosen interfaces.

use std::net::{Ipv4Addr, SocketAddrV4};

use socket2::{Domain, Protocol, SockRef, Socket, Type};
use tokio::net::UdpSocket;
use tokio::sync::Mutex;

/// The mDNS IPv4 group.
pub(crate) const MDNS_GROUP: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 251);

#[derive(Debug)]
pub(crate) struct MulticastSocket {
    socket: UdpSocket,
    interfaces: Vec<Ipv4Addr>,
    port: u16,
    /// Serialises sends: each one picks its outgoing interface on the shared socket first.
    sending: Mutex<()>,
}

impl MulticastSocket {
    /// Binds `port` (shared with other mDNS sockets on the host) and joins the group on each
    /// interface, identified by its IPv4 address. Nothing is sent here.
    pub(crate) fn bind(interfaces: Vec<Ipv4Addr>, port: u16) -> std::io::Result<MulticastSocket> {
        let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
        socket.set_reuse_address(true)?;
        socket.set_reuse_port(true)?;
        socket.bind(&SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port).into())?;
        socket.set_multicast_all_v4(false)?;
        socket.set_multicast_loop_v4(true)?;
        socket.set_multicast_ttl_v4(255)?;
        for interface in &interfaces {
            socket.join_multicast_v4(&MDNS_GROUP, interface)?;
        }
        socket.set_nonblocking(true)?;
        Ok(MulticastSocket { socket: UdpSocket::from_std(socket.into())?, interfaces, port, sending: Mutex::new(()) })
    }

    /// Sends `datagram` to the group out of each chosen interface, and no other.
    pub(crate) async fn send(&self, datagram: &[u8]) {
        let _one_at_a_time = self.sending.lock().await;
        for interface in &self.interfaces {
            let routed = SockRef::from(&self.socket).set_multicast_if_v4(interface);
            let sent = match routed {
                Ok(()) => self.socket.send_to(datagram, SocketAddrV4::new(MDNS_GROUP, self.port)).await.map(|_| ()),
                Err(e) => Err(e),
            };
            if let Err(e) = sent {
                tracing::warn!(%interface, error = %e, "mDNS send failed");
            }
        }
    }

    pub(crate) async fn recv(&self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.socket.recv_from(buf).await.map(|(n, _)| n)
    }
}
