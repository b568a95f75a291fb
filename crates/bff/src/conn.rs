//! The time limits of one connection, beyond what hyper enforces by itself:
//!
//! - from its accept to its first complete request head: `edge.header_timeout`, whatever the client sends
//!   (nothing, part of an HTTP/2 preface, an HTTP/2 connection without a request): hyper-util's protocol
//!   sniffing and HTTP/2 have no such limit, HTTP/1's `header_read_timeout` starts only once sniffing is over;
//! - with no request in flight: `edge.idle_timeout`, then the connection is closed gracefully (an HTTP/2
//!   one with no open stream included, which pings alone would keep open);
//! - writes that make no progress (a client that does not read its response): `edge.write_timeout`, then
//!   the connection fails, which drops the response and what it holds; over HTTP/2, where a client stalls
//!   a stream by keeping its flow-control window closed while the socket stays writable, a response body
//!   that waits for the client and is not asked for more during a whole `write_timeout` period (between
//!   once and twice the timeout) cuts the connection too.
//!
//! The per-request cost is a few atomic adds on counters of the connection, and two a frame of the
//! response body; the timers are per connection.

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

/// The requests of one connection: how many started (high 32 bits of `requests`, wrapping) and how many
/// are open (low 32 bits: their response not written out yet); how often its response bodies were polled,
/// and how many of them wait for the client (they gave a frame and were not asked for the next one yet).
#[derive(Default)]
pub(crate) struct Activity {
    requests: AtomicU64,
    polls: AtomicU64,
    waiting: AtomicU64,
}

const STARTED: u64 = 1 << 32;
const OPEN: u64 = STARTED - 1;

/// The largest frame an HTTP/2 response body gives at once: larger ones are cut (without copying), so
/// that the server polls the body again after each piece went out and a stalled stream is seen even when
/// the body is one big buffer.
const PIECE: usize = 64 * 1024;

impl Activity {
    /// A request starts; it is open until the returned guard drops (with its response body).
    pub(crate) fn start(self: &Arc<Self>) -> Open {
        self.requests.fetch_add(STARTED | 1, Ordering::Relaxed);
        Open(self.clone())
    }

    fn requests(&self) -> (u64, u64) {
        let v = self.requests.load(Ordering::Relaxed);
        (v >> 32, v & OPEN)
    }
}

/// One open request of a connection.
pub(crate) struct Open(Arc<Activity>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.requests.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A response body that keeps its request open until it is written out or dropped, and tells the
/// connection when it waits for the client.
pub(crate) struct ConnBody {
    body: Body,
    /// What is left of a frame larger than `piece`.
    rest: Bytes,
    /// The largest frame given at once: [`PIECE`] over HTTP/2, unlimited over HTTP/1 (where a stalled
    /// client stalls the socket, which `TimedIo` sees, and larger writes are cheaper).
    piece: usize,
    waiting: bool,
    open: Open,
}

impl ConnBody {
    pub(crate) fn new(body: Body, open: Open, http2: bool) -> Self {
        Self {
            body,
            rest: Bytes::new(),
            piece: if http2 { PIECE } else { usize::MAX },
            waiting: false,
            open,
        }
    }
}

/// The first `size` bytes of `data`; what is left goes to `rest`.
fn piece(rest: &mut Bytes, mut data: Bytes, size: usize) -> Bytes {
    if data.len() > size {
        *rest = data.split_off(size);
    }
    data
}

impl Drop for ConnBody {
    fn drop(&mut self) {
        if self.waiting {
            self.open.0.waiting.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl http_body::Body for ConnBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        let activity = &this.open.0;
        activity.polls.fetch_add(1, Ordering::Relaxed);
        let frame = if this.rest.is_empty() {
            match Pin::new(&mut this.body).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => Some(Ok(http_body::Frame::data(piece(
                        &mut this.rest,
                        data,
                        this.piece,
                    )))),
                    Err(frame) => Some(Ok(frame)),
                },
                Poll::Ready(other) => other,
                // The body's producer is slow, not the client.
                Poll::Pending => {
                    if std::mem::take(&mut this.waiting) {
                        activity.waiting.fetch_sub(1, Ordering::Relaxed);
                    }
                    return Poll::Pending;
                }
            }
        } else {
            let rest = std::mem::take(&mut this.rest);
            Some(Ok(http_body::Frame::data(piece(
                &mut this.rest,
                rest,
                this.piece,
            ))))
        };
        let waiting = matches!(frame, Some(Ok(_)));
        if waiting != this.waiting {
            this.waiting = waiting;
            if waiting {
                activity.waiting.fetch_add(1, Ordering::Relaxed);
            } else {
                activity.waiting.fetch_sub(1, Ordering::Relaxed);
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.rest.is_empty() && self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        let mut hint = self.body.size_hint();
        let rest = self.rest.len() as u64;
        hint.set_lower(hint.lower().saturating_add(rest));
        if let Some(upper) = hint.upper() {
            hint.set_upper(upper.saturating_add(rest));
        }
        hint
    }
}

/// The time limits of a connection.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Timeouts {
    /// When its first request head must have arrived: the accept plus `header_timeout` (a TLS handshake
    /// included).
    pub(crate) head_deadline: Instant,
    pub(crate) header: Duration,
    pub(crate) idle: Duration,
    pub(crate) write: Duration,
}

/// Serves a connection within its limits. `None` when the connection was cut: no complete request head
/// in time, a response waiting on a client that took nothing for a whole `write` period, or a graceful
/// close after idleness that did not finish.
pub(crate) async fn drive<C: GracefulConnection>(
    conn: Watched<C>,
    activity: Arc<Activity>,
    t: Timeouts,
) -> Option<C::Output> {
    let mut conn = std::pin::pin!(conn);
    // The first check comes at the head deadline or after an idle period, whichever is first.
    let idle = tokio::time::sleep_until(t.head_deadline.min(Instant::now() + t.idle));
    let mut idle = std::pin::pin!(idle);
    let stall = tokio::time::sleep(t.write);
    let mut stall = std::pin::pin!(stall);
    // Requests started when the idle timer was last set; `None` until the first one.
    let mut seen: Option<u64> = None;
    let mut polls = activity.polls.load(Ordering::Relaxed);
    let mut closing = false;
    loop {
        tokio::select! {
            biased;
            out = conn.as_mut() => return Some(out),
            () = idle.as_mut() => {
                let (started, open) = activity.requests();
                if closing {
                    // Told to close and still not done: cut it.
                    return None;
                }
                match seen {
                    // No complete request head since the accept.
                    None if started == 0 => {
                        let now = Instant::now();
                        if now >= t.head_deadline {
                            return None;
                        }
                        idle.as_mut().reset(t.head_deadline.min(now + t.idle));
                    }
                    Some(before) if before == started && open == 0 => {
                        // Idle for a whole period: close gracefully (HTTP/2 gets GOAWAY).
                        conn.as_mut().get_mut().close();
                        closing = true;
                        idle.as_mut().reset(Instant::now() + t.header);
                    }
                    _ => {
                        seen = Some(started);
                        idle.as_mut().reset(Instant::now() + t.idle);
                    }
                }
            }
            () = stall.as_mut() => {
                let now = activity.polls.load(Ordering::Relaxed);
                if now == polls && activity.waiting.load(Ordering::Relaxed) > 0 {
                    // A response went out to the client and it took nothing more for a whole period (an
                    // HTTP/2 stream whose window stays closed; HTTP/1 is cut by `TimedIo` first).
                    return None;
                }
                polls = now;
                stall.as_mut().reset(Instant::now() + t.write);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drain::Drain;
    use hyper_util::{
        rt::{TokioExecutor, TokioIo},
        server::conn::auto,
    };
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

    const HEADER: Duration = Duration::from_secs(10);
    const IDLE: Duration = Duration::from_secs(60);
    const WRITE: Duration = Duration::from_secs(30);

    #[tokio::test(start_paused = true)]
    async fn a_write_that_makes_no_progress_times_out() {
        let (server, _client) = tokio::io::duplex(1024);
        let mut io = TimedIo::new(server, WRITE);
        let start = Instant::now();
        let err = io.write_all(&[0u8; 4096]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(start.elapsed(), WRITE);
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_but_steady_reader_is_never_cut() {
        let (server, mut client) = tokio::io::duplex(1024);
        let reader = tokio::spawn(async move {
            let mut buf = [0u8; 1024];
            let mut total = 0;
            while total < 8192 {
                // Slower than the whole body would take, each read within the timeout.
                tokio::time::sleep(WRITE - Duration::from_secs(1)).await;
                total += client.read(&mut buf).await.unwrap();
            }
            total
        });
        let mut io = TimedIo::new(server, WRITE);
        io.write_all(&[0u8; 8192]).await.unwrap();
        assert_eq!(reader.await.unwrap(), 8192);
    }

    /// A connection served by hyper on an in-memory stream, driven with the limits above.
    fn serve(
        server: DuplexStream,
        idle: Duration,
    ) -> tokio::task::JoinHandle<Option<Result<(), Box<dyn std::error::Error + Send + Sync>>>> {
        let activity = Arc::new(Activity::default());
        let service = {
            let activity = activity.clone();
            hyper::service::service_fn(move |_req| {
                let open = activity.start();
                async move {
                    let res = http::Response::new(ConnBody::new(Body::from("done"), open, false));
                    Ok::<_, std::convert::Infallible>(res)
                }
            })
        };
        let conn = auto::Builder::new(TokioExecutor::new())
            .serve_connection_with_upgrades(TokioIo::new(server), service)
            .into_owned();
        let timeouts = Timeouts {
            head_deadline: Instant::now() + HEADER,
            header: HEADER,
            idle,
            write: WRITE,
        };
        let ticket = Drain::default().enter();
        tokio::spawn(async move { drive(ticket.watch(conn), activity, timeouts).await })
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_without_a_request_head_is_cut_at_the_head_deadline() {
        for sent in [&b""[..], b"PRI * HTTP/2.0\r\n", b"GET / HTTP/1.1\r\nhost"] {
            let (server, mut client) = tokio::io::duplex(4096);
            let start = Instant::now();
            let served = serve(server, IDLE);
            client.write_all(sent).await.unwrap();
            let out = served.await.unwrap();
            assert!(
                !matches!(out, Some(Ok(()))),
                "{sent:?}: cut, not served: {out:?}"
            );
            assert_eq!(start.elapsed(), HEADER, "{sent:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_first_request_after_an_idle_period_is_followed_by_the_idle_close() {
        let idle = Duration::from_secs(1);
        let (server, mut client) = tokio::io::duplex(4096);
        let served = serve(server, idle);
        // Later than one idle period, within the header timeout.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        client
            .write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 256];
        let n = client.read(&mut buf).await.unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).ends_with("done"));
        let answered = Instant::now();
        let out = served.await.unwrap();
        assert!(matches!(out, Some(Ok(()))), "{out:?}");
        assert!(answered.elapsed() <= 2 * idle, "{:?}", answered.elapsed());
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_connection_is_closed_after_one_to_two_idle_periods() {
        let (server, mut client) = tokio::io::duplex(4096);
        let served = serve(server, IDLE);
        client
            .write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 256];
        let n = client.read(&mut buf).await.unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).ends_with("done"));
        let answered = Instant::now();
        // This hyper has no timer, so no header timeout of its own: only the idle check closes it.
        let out = served.await.unwrap();
        let idle_for = answered.elapsed();
        assert!(
            matches!(out, Some(Ok(()))),
            "closed gracefully, not cut: {out:?}"
        );
        assert!(IDLE <= idle_for && idle_for <= 2 * IDLE, "{idle_for:?}");
        assert_eq!(client.read(&mut buf).await.unwrap(), 0, "closed");
    }
}
