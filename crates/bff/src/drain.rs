//! Graceful shutdown of a listener's connections: each one is told to finish the request in flight and
//! close, and the drain waits until all have.
//!
//! hyper-util's `GracefulShutdown` does this with a `watch` channel whose change future every connection
//! polls on each wake-up, which takes the lock of the channel's waiter list a few times a request. Here a
//! connection checks a flag and registers its task's waker again only when it changed (a tokio task keeps
//! one waker), so that the common poll is one load and one pointer comparison.

use hyper_util::server::graceful::GracefulConnection;
use std::{
    collections::HashMap,
    future::Future,
    pin::Pin,
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    task::{Context, Poll, Waker},
};
use tokio::sync::Notify;

#[derive(Default)]
struct Shared {
    closing: AtomicBool,
    /// Every live connection by id, with the waker of its task once it has been polled.
    live: Mutex<HashMap<u64, Option<Waker>>>,
    next: AtomicU64,
    /// Told when the last connection ends during a drain.
    idle: Notify,
}

impl Shared {
    fn live(&self) -> MutexGuard<'_, HashMap<u64, Option<Waker>>> {
        self.live.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The connections of one listener.
#[derive(Clone, Default)]
pub(crate) struct Drain(Arc<Shared>);

/// One connection, counted by its drain from its accept (a TLS handshake included) to its end.
pub(crate) struct Ticket {
    shared: Arc<Shared>,
    id: u64,
}

impl Drain {
    /// Counts a connection just accepted.
    pub(crate) fn enter(&self) -> Ticket {
        let id = self.0.next.fetch_add(1, Ordering::Relaxed);
        self.0.live().insert(id, None);
        Ticket {
            shared: self.0.clone(),
            id,
        }
    }

    /// Tells every connection to close once its request in flight is answered (idle keep-alive ones at
    /// once), and waits until all have ended.
    pub(crate) async fn shutdown(&self) {
        self.0.closing.store(true, Ordering::SeqCst);
        let wakers: Vec<Waker> = self.0.live().values().flatten().cloned().collect();
        for w in wakers {
            w.wake();
        }
        loop {
            // Created before the check: `notify_waiters` reaches it even before its first poll.
            let idle = self.0.idle.notified();
            if self.0.live().is_empty() {
                return;
            }
            idle.await;
        }
    }
}

impl Ticket {
    /// The connection, shut down gracefully when the drain starts.
    pub(crate) fn watch<C: GracefulConnection>(self, conn: C) -> Watched<C> {
        Watched {
            conn: Box::pin(conn),
            ticket: self,
            waker: None,
            told: false,
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut live = self.shared.live();
        live.remove(&self.id);
        if live.is_empty() && self.shared.closing.load(Ordering::SeqCst) {
            self.shared.idle.notify_waiters();
        }
    }
}

/// A connection watched by a [`Drain`].
pub(crate) struct Watched<C> {
    conn: Pin<Box<C>>,
    ticket: Ticket,
    /// The waker the drain has for this connection.
    waker: Option<Waker>,
    /// Whether the connection was told to shut down.
    told: bool,
}

impl<C: GracefulConnection> Watched<C> {
    /// Tells the connection to close once its requests in flight are answered, as a drain does.
    pub(crate) fn close(&mut self) {
        if !self.told {
            self.told = true;
            self.conn.as_mut().graceful_shutdown();
        }
    }
}

impl<C: GracefulConnection> Future for Watched<C> {
    type Output = C::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        if !this.told {
            // Registered before the flag is read: a drain that starts after the read wakes this waker.
            if !this.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                let waker = cx.waker().clone();
                this.ticket
                    .shared
                    .live()
                    .insert(this.ticket.id, Some(waker.clone()));
                this.waker = Some(waker);
            }
            if this.ticket.shared.closing.load(Ordering::SeqCst) {
                this.told = true;
                this.conn.as_mut().graceful_shutdown();
            }
        }
        this.conn.as_mut().poll(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper_util::{
        rt::{TokioExecutor, TokioIo},
        server::conn::auto,
    };
    use std::time::Duration;
    use tokio::{
        io::{AsyncReadExt, AsyncWriteExt},
        net::{TcpListener, TcpStream},
    };

    /// Serves one connection with a handler that answers after `delay`.
    async fn serve_one(drain: &Drain, delay: Duration) -> (TcpStream, tokio::task::JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (stream, _) = listener.accept().await.unwrap();
        let ticket = drain.enter();
        let task = tokio::spawn(async move {
            let service = hyper::service::service_fn(move |_req| async move {
                tokio::time::sleep(delay).await;
                Ok::<_, std::convert::Infallible>(http::Response::new(String::from("done")))
            });
            let conn = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .into_owned();
            let _ = ticket.watch(conn).await;
        });
        (client, task)
    }

    /// Everything the client receives until the server closes the connection.
    async fn read_to_close(client: &mut TcpStream) -> String {
        let mut out = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), client.read_to_end(&mut out))
            .await
            .expect("the server closes the connection")
            .unwrap();
        String::from_utf8_lossy(&out).into_owned()
    }

    #[tokio::test]
    async fn an_idle_keep_alive_connection_is_closed_and_the_drain_ends() {
        let drain = Drain::default();
        let (mut client, task) = serve_one(&drain, Duration::ZERO).await;
        client
            .write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 256];
        let n = client.read(&mut buf).await.unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).ends_with("done"));
        // The connection is idle now, waiting for a next request that never comes.
        tokio::time::timeout(Duration::from_secs(10), drain.shutdown())
            .await
            .expect("the drain ends once the idle connection is closed");
        assert_eq!(read_to_close(&mut client).await, "");
        task.await.unwrap();
        assert!(drain.0.live().is_empty());
    }

    #[tokio::test]
    async fn the_request_in_flight_is_answered_before_the_connection_closes() {
        let drain = Drain::default();
        let (mut client, task) = serve_one(&drain, Duration::from_millis(300)).await;
        client
            .write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        // Let the server read the request, then drain while the handler still works on it.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let shutdown = drain.clone();
        let drained = tokio::spawn(async move { shutdown.shutdown().await });
        let answer = read_to_close(&mut client).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.ends_with("done"), "{answer}");
        tokio::time::timeout(Duration::from_secs(10), drained)
            .await
            .expect("the drain ends")
            .unwrap();
        task.await.unwrap();
    }

    #[tokio::test]
    async fn a_drain_without_connections_ends_at_once_and_later_ones_close_at_their_first_poll() {
        let drain = Drain::default();
        tokio::time::timeout(Duration::from_secs(10), drain.shutdown())
            .await
            .expect("nothing to wait for");
        // A connection accepted during the drain (its handshake was under way) is told at once.
        let (mut client, task) = serve_one(&drain, Duration::ZERO).await;
        assert_eq!(read_to_close(&mut client).await, "");
        task.await.unwrap();
    }
}
