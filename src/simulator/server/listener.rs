//! The listener that can be switched off and on: [`SimListener`] obeys [`ListenCmd`]s, and
//! every connection it accepts is a [`SimConn`] that breaks when its epoch is cancelled.

use super::Shared;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

/// Pause before accepting again after an accept error (e.g. out of file descriptors).
const ACCEPT_RETRY_MS: u64 = 50;
/// Orders for the listener.
pub(crate) enum ListenCmd {
    /// Close the listening socket, cut every connection, then acknowledge.
    Down(oneshot::Sender<()>),
    /// Listen on this socket again, then acknowledge.
    Up(TcpListener, oneshot::Sender<()>),
}

/// An axum listener that can stop listening and start again on command.
pub(crate) struct SimListener {
    listener: Option<TcpListener>,
    addr: SocketAddr,
    cmds: mpsc::UnboundedReceiver<ListenCmd>,
    cmds_open: bool,
    shared: Arc<Shared>,
}

impl SimListener {
    pub fn new(
        listener: TcpListener,
        cmds: mpsc::UnboundedReceiver<ListenCmd>,
        shared: Arc<Shared>,
    ) -> io::Result<Self> {
        Ok(Self {
            addr: listener.local_addr()?,
            listener: Some(listener),
            cmds,
            cmds_open: true,
            shared,
        })
    }

    fn apply(&mut self, cmd: ListenCmd) {
        match cmd {
            ListenCmd::Down(ack) => {
                self.listener = None;
                self.shared.cut_connections();
                tracing::info!(addr = %self.addr, "simulator down: refusing connections");
                // The caller may have given up waiting; nothing to do then.
                let _ = ack.send(());
            }
            ListenCmd::Up(listener, ack) => {
                self.listener = Some(listener);
                tracing::info!(addr = %self.addr, "simulator up again");
                let _ = ack.send(());
            }
        }
    }
}

/// The next order, or never once every handle is gone.
async fn next_cmd(cmds: &mut mpsc::UnboundedReceiver<ListenCmd>, open: bool) -> Option<ListenCmd> {
    if open {
        cmds.recv().await
    } else {
        std::future::pending().await
    }
}

impl axum::serve::Listener for SimListener {
    type Io = SimConn;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (SimConn, SocketAddr) {
        loop {
            let cmd = match &self.listener {
                Some(listener) => tokio::select! {
                    cmd = next_cmd(&mut self.cmds, self.cmds_open) => cmd,
                    accepted = listener.accept() => match accepted {
                        Ok((stream, peer)) => {
                            return (SimConn::new(stream, self.shared.current_epoch()), peer)
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "simulator accept failed; retrying");
                            tokio::time::sleep(Duration::from_millis(ACCEPT_RETRY_MS)).await;
                            continue;
                        }
                    },
                },
                None => next_cmd(&mut self.cmds, self.cmds_open).await,
            };
            match cmd {
                Some(cmd) => self.apply(cmd),
                None => self.cmds_open = false,
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.addr)
    }
}

/// A TCP connection that breaks when its epoch is cancelled.
pub(crate) struct SimConn {
    stream: TcpStream,
    cut: Pin<Box<WaitForCancellationFutureOwned>>,
    broken: bool,
}

impl SimConn {
    fn new(stream: TcpStream, epoch: CancellationToken) -> Self {
        Self {
            stream,
            cut: Box::pin(epoch.cancelled_owned()),
            broken: false,
        }
    }

    /// Fails once the epoch is over; registers the waker so an idle connection notices.
    fn check(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        if !self.broken && self.cut.as_mut().poll(cx).is_ready() {
            self.broken = true;
        }
        if self.broken {
            Err(io::Error::new(
                io::ErrorKind::ConnectionReset,
                "the simulator went down",
            ))
        } else {
            Ok(())
        }
    }
}

impl AsyncRead for SimConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if let Err(e) = self.check(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for SimConn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if let Err(e) = self.check(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Err(e) = self.check(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
