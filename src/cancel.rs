//! Cancel requests that wait for the pooler to finish with them.
//!
//! tokio-postgres sends a cancel request and closes its socket at once.
//! PgBouncer forwards the request on a server connection of its own, and
//! 1.18 (the Debian 12 package) exits with `FATAL … disconnect_client():
//! bad client state: 0` when the cancelling client is gone before that
//! forward completes (pgbouncer#801, fixed in 1.20): one dropped call would
//! take the pooler down for everybody. A half-closed socket counts as gone
//! (the driver shuts its write side down after the request). Behind a
//! pooler the crate therefore sends the request on a socket of its own,
//! never half-closes it, and keeps it open until the pooler closes it,
//! which it does once the request went through.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, ReadBuf};
use tokio_postgres::config::Host;
use tokio_postgres::{CancelToken, NoTls};

/// How long a cancel request waits for the pooler to close its socket; then
/// it closes it anyway.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// Sends `token`'s cancel request to the first host of `pg` that accepts a
/// connection (where the pool connects: the pooler), and waits until the
/// pooler closes the socket.
pub(crate) async fn through_pooler(
    token: &CancelToken,
    pg: &tokio_postgres::Config,
) -> std::io::Result<()> {
    let ports = pg.get_ports();
    let timeout = pg.get_connect_timeout().copied().unwrap_or(CLOSE_WAIT);
    let mut last = std::io::Error::other("no host to send the cancel request to");
    for (i, host) in pg.get_hosts().iter().enumerate() {
        let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
        let sent = match host {
            Host::Tcp(name) => {
                match tokio::time::timeout(
                    timeout,
                    tokio::net::TcpStream::connect((name.as_str(), port)),
                )
                .await
                {
                    Ok(Ok(stream)) => send_and_wait(token, stream).await,
                    Ok(Err(e)) => Err(e),
                    Err(_) => Err(std::io::ErrorKind::TimedOut.into()),
                }
            }
            #[cfg(unix)]
            Host::Unix(dir) => {
                let path = dir.join(format!(".s.PGSQL.{port}"));
                match tokio::time::timeout(timeout, tokio::net::UnixStream::connect(path)).await {
                    Ok(Ok(stream)) => send_and_wait(token, stream).await,
                    Ok(Err(e)) => Err(e),
                    Err(_) => Err(std::io::ErrorKind::TimedOut.into()),
                }
            }
        };
        match sent {
            Ok(()) => return Ok(()),
            Err(e) => last = e,
        }
    }
    Err(last)
}

async fn send_and_wait<S>(token: &CancelToken, stream: S) -> std::io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut stream = NoHalfClose(stream);
    token
        .cancel_query_raw(&mut stream, NoTls)
        .await
        .map_err(std::io::Error::other)?;
    // The pooler answers nothing: it closes the socket once the request has
    // been forwarded. Any byte or error ends the wait too.
    let mut byte = [0_u8; 1];
    let _ = tokio::time::timeout(CLOSE_WAIT, stream.read(&mut byte)).await;
    Ok(())
}

/// A stream whose shutdown only flushes: the socket stays open both ways
/// until it is dropped.
struct NoHalfClose<S>(S);

impl<S: AsyncRead + Unpin> AsyncRead for NoHalfClose<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for NoHalfClose<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }
}
