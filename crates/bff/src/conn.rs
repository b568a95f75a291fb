//! The time limits of one connection, beyond what hyper enforces by itself:
//!
//! - from its accept to its first complete request head: `edge.header_timeout`, whatever the client sends
//!   (nothing, part of an HTTP/2 preface, an HTTP/2 connection without a request): hyper-util's protocol
//!   sniffing and HTTP/2 have no such limit, HTTP/1's `header_read_timeout` starts only once sniffing is over;
//! - with no request in flight: `edge.idle_timeout`, then the connection is closed gracefully (an HTTP/2
//!   one with no open stream included, which pings alone would keep open);
//! - writes that make no progress (a client that does not read its response): `edge.write_timeout`, then
//!   the connection fails, which drops the response and what it holds.
//!
//! The per-request cost is one atomic add and one subtract on a counter of the connection; the timers are
//! per connection.

use crate::drain::Watched;
use axum::body::Body;
use bytes::Bytes;
use hyper_util::server::graceful::GracefulConnection;
use std::{
    future::Future,
    io,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    time::{Instant, Sleep},
};

/// An I/O stream whose writes fail with `TimedOut` after `timeout` without progress.
pub(crate) struct TimedIo<T> {
    io: T,
    timeout: Duration,
    /// Allocated at the first stall of the connection, reset at the later ones.
    timer: Option<Pin<Box<Sleep>>>,
    stalled: bool,
}

impl<T> TimedIo<T> {
    pub(crate) fn new(io: T, timeout: Duration) -> Self {
        Self {
            io,
            timeout,
            timer: None,
            stalled: false,
        }
    }

    fn check<R>(&mut self, r: Poll<io::Result<R>>, cx: &mut Context<'_>) -> Poll<io::Result<R>> {
        if r.is_ready() {
            self.stalled = false;
            return r;
        }
        if !self.stalled {
            self.stalled = true;
            let deadline = Instant::now() + self.timeout;
            match &mut self.timer {
                Some(t) => t.as_mut().reset(deadline),
                None => self.timer = Some(Box::pin(tokio::time::sleep_until(deadline))),
            }
        }
        let expired = self
            .timer
            .as_mut()
            .is_some_and(|t| t.as_mut().poll(cx).is_ready());
        if expired {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "write timeout: the client does not read its response",
            )));
        }
        Poll::Pending
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for TimedIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for TimedIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write(cx, buf);
        self.check(r, cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.check(r, cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.io).poll_flush(cx);
        self.check(r, cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.io).poll_shutdown(cx);
        self.check(r, cx)
    }
}

/// The requests of one connection: how many started (high 32 bits, wrapping) and how many are open (low 32
/// bits: their response not written out yet), in one word.
#[derive(Default)]
pub(crate) struct Activity(AtomicU64);

const STARTED: u64 = 1 << 32;
const OPEN: u64 = STARTED - 1;

impl Activity {
    /// A request starts; it is open until the returned guard drops (with its response body).
    pub(crate) fn start(self: &Arc<Self>) -> Open {
        self.0.fetch_add(STARTED | 1, Ordering::Relaxed);
        Open(self.clone())
    }

    fn load(&self) -> (u64, u64) {
        let v = self.0.load(Ordering::Relaxed);
        (v >> 32, v & OPEN)
    }
}

/// One open request of a connection.
pub(crate) struct Open(Arc<Activity>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A response body that keeps its request open until it is written out or dropped.
pub(crate) struct ConnBody {
    body: Body,
    _open: Open,
}

impl ConnBody {
    pub(crate) fn new(body: Body, open: Open) -> Self {
        Self { body, _open: open }
    }
}

impl http_body::Body for ConnBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// Serves a connection within its limits; `head_deadline` is when its first request head must have
/// arrived (the accept plus `header_timeout`, a TLS handshake included).
pub(crate) async fn drive<C: GracefulConnection>(
    conn: Watched<C>,
    activity: Arc<Activity>,
    head_deadline: Instant,
    header_timeout: Duration,
    idle_timeout: Duration,
) -> Option<C::Output> {
    let mut conn = std::pin::pin!(conn);
    // The first check comes at the head deadline or after an idle period, whichever is first.
    let timer = tokio::time::sleep_until(head_deadline.min(Instant::now() + idle_timeout));
    let mut timer = std::pin::pin!(timer);
    // Requests started when the timer was last set; `None` until the first one.
    let mut seen: Option<u64> = None;
    let mut closing = false;
    loop {
        tokio::select! {
            biased;
            out = conn.as_mut() => return Some(out),
            () = timer.as_mut() => {
                let (started, open) = activity.load();
                if closing {
                    // Told to close and still not done: cut it.
                    return None;
                }
                match seen {
                    // No complete request head since the accept.
                    None if started == 0 => {
                        if Instant::now() >= head_deadline {
                            return None;
                        }
                        timer.as_mut().reset(head_deadline);
                    }
                    Some(before) if before == started && open == 0 => {
                        // Idle for a whole period: close gracefully (HTTP/2 gets GOAWAY).
                        conn.as_mut().get_mut().close();
                        closing = true;
                        timer.as_mut().reset(Instant::now() + header_timeout);
                    }
                    _ => {
                        seen = Some(started);
                        timer.as_mut().reset(Instant::now() + idle_timeout);
                    }
                }
            }
        }
    }
}
