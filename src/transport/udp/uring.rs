//! The io_uring backend (being written).
#![allow(unsafe_code)]

use std::net::SocketAddr;

use socket2::Socket;

use crate::transport::udp::{UdpConfig, UdpSocketInfo};
use crate::transport::TransportError;

/// The io_uring UDP backend.
#[derive(Debug)]
pub struct UringUdp {
    _local: SocketAddr,
}

impl UringUdp {
    /// Whether the kernel supports what this backend needs.
    pub(crate) fn supported() -> bool {
        false
    }

    pub(crate) fn new(
        _config: &UdpConfig,
        _info: &UdpSocketInfo,
        _socket: Socket,
    ) -> Result<Self, TransportError> {
        Err(TransportError::io(
            "io_uring",
            std::io::Error::from(std::io::ErrorKind::Unsupported),
        ))
    }
}

impl crate::transport::Transport for UringUdp {
    fn kind(&self) -> &'static str {
        "udp/io_uring"
    }
    fn local_addr(&self) -> SocketAddr {
        self._local
    }
    fn max_datagram_size(&self) -> Option<usize> {
        None
    }
    fn register(&mut self, _: &mio::Registry, _: mio::Token) -> std::io::Result<()> {
        Err(std::io::ErrorKind::Unsupported.into())
    }
    fn deregister(&mut self, _: &mio::Registry) -> std::io::Result<()> {
        Err(std::io::ErrorKind::Unsupported.into())
    }
    fn recv(&mut self, _: &mut dyn FnMut(SocketAddr, &mut [u8])) -> std::io::Result<usize> {
        Err(std::io::ErrorKind::Unsupported.into())
    }
    fn send(&mut self, _: SocketAddr, _: &[u8]) -> Result<(), TransportError> {
        Err(TransportError::io(
            "io_uring",
            std::io::ErrorKind::Unsupported.into(),
        ))
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Err(std::io::ErrorKind::Unsupported.into())
    }
    fn counters(&self) -> &std::sync::Arc<crate::transport::TransportCounters> {
        unimplemented!("placeholder until the io_uring backend lands")
    }
}
