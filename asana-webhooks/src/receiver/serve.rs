//! A server loop for the receiver that slow, idle, useless or numerous
//! clients cannot exhaust, and a graceful shutdown that answers every
//! request in flight.
//!
//! # Connection slots
//!
//! At most `max_connections` connections are served at once, and at most
//! `max_connections_per_ip` of them from one peer address. Every
//! connection's life is bounded:
//!
//! - headers must arrive within the header read timeout, and a connection
//!   that sends nothing is closed after the idle timeout;
//! - a response the peer does not drain within the write timeout drops the
//!   connection (hyper stops reading, and so stops its own timers, once its
//!   write buffer is full: the timer lives in the IO wrapper, [`Guarded`]);
//! - past the maximum connection age a connection is closed once its
//!   request in flight is answered (and dropped if that takes longer than
//!   the header, body and write timeouts together, plus 5 s);
//! - every refusal (4xx) is answered `Connection: close` by the handler, so
//!   a client that sends nothing genuine keeps its connection for one
//!   request at most.
//!
//! Those bounds still let a crowd of clients that connect and wait take
//! every slot for seconds at a time, and Asana's deliveries would wait
//! behind them in the kernel's backlog. So slots are taken back: when a
//! client arrives and every slot is taken, the connection that has waited
//! longest for a request (since it opened or was last answered) is closed
//! to make room, gracefully, so that a request that arrives at that instant
//! is still answered. Connections with a request in service or a response
//! being written are never chosen, and neither is one opened less than
//! [`NEW_CONNECTION_GRACE`] ago, time enough for its first request to
//! arrive: a genuine delivery, sent as soon as its connection opens, gets
//! into service before anyone can take its slot. Only when every
//! connection is busy does a new client wait. Asana's deliveries are
//! answered in milliseconds, so a few of its connections are busy at any
//! time; eviction costs it at most an idle keep-alive connection.
//!
//! The per-address limit (IPv6 peers count by /64 network) keeps one
//! address from holding the slots with busy connections (slow bodies) and
//! caps what it can take from others: a client over it takes the place of
//! its own address's longest waiting connection, and is closed at once
//! when all of those are busy. Asana
//! delivers from a few addresses, one delivery at a time per webhook but
//! many webhooks at once; with answers in milliseconds even thousands of
//! webhooks keep far fewer than the default of 128 requests in flight per
//! address, and its idle keep-alive connections over the limit make room.
//! Behind a reverse proxy every connection comes from the proxy: raise the
//! limit to `max_connections` there.

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering, fence};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tokio::time::{Instant, Sleep};

use super::Limits;

/// How long a new connection is safe from eviction: time for its first
/// request to be read (a client sends it right behind the handshake's last
/// packet, so it is there when the connection is accepted). It also bounds
/// how fast clients can make each other leave: at most `max_connections`
/// evictions per grace period.
const NEW_CONNECTION_GRACE: Duration = Duration::from_millis(100);

type Connection = http1::Connection<TokioIo<Guarded<TcpStream>>, Tracked>;

pub(super) async fn serve(
    listener: TcpListener,
    router: axum::Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let slots = Arc::new(Slots::new(&limits));
    let (closing, closing_rx) = watch::channel(false);
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let service = TowerToHyperService::new(router);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of descriptors and the like: pause rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // While every connection is busy the client waits here, and those
        // behind it in the kernel's backlog.
        let slot = tokio::select! {
            slot = slots.admit(peer_address(peer.ip())) => slot,
            () = &mut shutdown => break,
        };
        let Some(slot) = slot else {
            tracing::debug!(%peer, "closed a connection over the per-address limit");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let io = TokioIo::new(Guarded::new(stream, &limits, Arc::clone(&slot.slot)));
        let service = Tracked {
            inner: service.clone(),
            slot: Arc::clone(&slot.slot),
        };
        let connection = builder.serve_connection(io, service);
        tokio::spawn(run(connection, slot, limits, closing_rx.clone()));
    }
    drop(listener);
    // Every request in flight is answered; idle connections close at once.
    let _ = closing.send(true);
    let grace = closing_grace(&limits).saturating_add(Duration::from_secs(1));
    if tokio::time::timeout(grace, slots.all_closed())
        .await
        .is_err()
    {
        tracing::warn!(
            ?grace,
            "connections still open after the shutdown grace period"
        );
    }
    Ok(())
}

/// The address a peer's connections are counted under: IPv6 peers by their
/// /64 network, which one client can hold whole; IPv4 peers, mapped into
/// IPv6 or not, by their address.
fn peer_address(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into()),
        },
    }
}

/// How long a connection asked to close may take to answer its request in
/// flight before it is dropped.
fn closing_grace(limits: &Limits) -> Duration {
    limits
        .header_read_timeout
        .saturating_add(limits.body_read_timeout)
        .saturating_add(limits.write_timeout)
        .saturating_add(Duration::from_secs(5))
}

/// `timeout` from now, or about a century from now if that is later.
fn deadline(timeout: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(timeout)
        .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 86_400))
}

/// Serves one connection until it ends, is evicted, grows too old or the
/// server shuts down; the last three close it gracefully.
async fn run(
    connection: Connection,
    slot: Registered,
    limits: Limits,
    mut closing: watch::Receiver<bool>,
) {
    let mut connection = std::pin::pin!(connection);
    let why = tokio::select! {
        result = connection.as_mut() => {
            log_end(result);
            return;
        }
        () = tokio::time::sleep(limits.max_connection_age) => "reached its maximum age",
        () = slot.slot.evict.notified() => "evicted to make room",
        _ = closing.wait_for(|closing| *closing) => "server shutting down",
    };
    tracing::debug!(peer = %slot.slot.ip, "closing a connection: {why}");
    connection.as_mut().graceful_shutdown();
    match tokio::time::timeout(closing_grace(&limits), connection).await {
        Ok(result) => log_end(result),
        Err(_) => {
            tracing::debug!(peer = %slot.slot.ip, "dropped a connection that did not close in time")
        }
    }
}

fn log_end(result: hyper::Result<()>) {
    if let Err(e) = result {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}

/// What the slot table knows of one open connection.
#[derive(Debug)]
struct Slot {
    id: u64,
    ip: IpAddr,
    opened: Instant,
    /// A request is in the service.
    in_service: AtomicBool,
    /// Bytes were written and not yet flushed to the socket.
    writing: AtomicBool,
    /// When the connection last started waiting for a request (opened, or
    /// its last request left the service), in nanoseconds since `epoch`.
    waiting_since: AtomicU64,
    epoch: Instant,
    /// Chosen for eviction.
    evicted: AtomicBool,
    evict: Notify,
    /// The table's [`Slots::changes`].
    changes: Arc<Changes>,
}

impl Slot {
    fn mark_waiting(&self) {
        let nanos = u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.waiting_since.store(nanos, Ordering::Relaxed);
    }

    /// Whether it may be closed to make room, at `now`.
    fn evictable(&self, now: Instant) -> bool {
        !self.evicted.load(Ordering::Relaxed)
            && !self.in_service.load(Ordering::Relaxed)
            && !self.writing.load(Ordering::Relaxed)
            && now >= self.opened + NEW_CONNECTION_GRACE
    }
}

/// The open connections, for the limits and for eviction.
#[derive(Debug)]
struct Slots {
    table: Mutex<Table>,
    changes: Arc<Changes>,
    max: usize,
    max_per_ip: usize,
    epoch: Instant,
}

#[derive(Debug, Default)]
struct Table {
    next_id: u64,
    open: HashMap<u64, Arc<Slot>>,
    per_ip: HashMap<IpAddr, usize>,
}

/// What to do with a new client.
#[derive(Debug)]
enum Admission {
    Admitted(Registered),
    /// Over the per-address limit with none of its connections evictable.
    Refused,
    /// Until a connection closes or becomes evictable, or until the
    /// instant given, when a connection's grace ends.
    Wait(Option<Instant>),
}

impl Slots {
    fn new(limits: &Limits) -> Self {
        Self {
            table: Mutex::default(),
            changes: Arc::default(),
            max: limits.max_connections,
            max_per_ip: limits.max_connections_per_ip,
            epoch: Instant::now(),
        }
    }

    /// A slot for a client from `ip`, making room if need be; `None` when
    /// its address is over its limit.
    async fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<Registered> {
        self.changes
            .wait_for(|| match self.try_admit(ip, Instant::now()) {
                Admission::Admitted(slot) => Ok(Some(slot)),
                Admission::Refused => Ok(None),
                Admission::Wait(until) => Err(until),
            })
            .await
    }

    fn try_admit(self: &Arc<Self>, ip: IpAddr, now: Instant) -> Admission {
        let mut table = self.table.lock().expect("never poisoned");
        let from_ip = table.per_ip.get(&ip).copied().unwrap_or(0);
        if from_ip >= self.max_per_ip {
            if table.evicting(Some(ip)) >= from_ip + 1 - self.max_per_ip {
                return Admission::Wait(None);
            }
            return match table.victim(Some(ip), now) {
                Some(victim) => {
                    victim.evicted.store(true, Ordering::Relaxed);
                    victim.evict.notify_one();
                    Admission::Wait(None)
                }
                None => Admission::Refused,
            };
        }
        let open = table.open.len();
        if open >= self.max {
            if table.evicting(None) >= open + 1 - self.max {
                return Admission::Wait(None);
            }
            return match table.victim(None, now) {
                Some(victim) => {
                    victim.evicted.store(true, Ordering::Relaxed);
                    victim.evict.notify_one();
                    Admission::Wait(None)
                }
                None => Admission::Wait(table.next_grace_end(now)),
            };
        }
        table.next_id += 1;
        let slot = Arc::new(Slot {
            id: table.next_id,
            ip,
            opened: now,
            in_service: AtomicBool::new(false),
            writing: AtomicBool::new(false),
            waiting_since: AtomicU64::new(0),
            epoch: self.epoch,
            evicted: AtomicBool::new(false),
            evict: Notify::new(),
            changes: Arc::clone(&self.changes),
        });
        slot.mark_waiting();
        table.open.insert(slot.id, Arc::clone(&slot));
        *table.per_ip.entry(ip).or_default() += 1;
        Admission::Admitted(Registered {
            slots: Arc::clone(self),
            slot,
        })
    }

    fn release(&self, slot: &Slot) {
        {
            let mut table = self.table.lock().expect("never poisoned");
            table.open.remove(&slot.id);
            if let Some(count) = table.per_ip.get_mut(&slot.ip) {
                *count -= 1;
                if *count == 0 {
                    table.per_ip.remove(&slot.ip);
                }
            }
        }
        self.changes.notify();
    }

    /// Waits until every connection has closed.
    async fn all_closed(&self) {
        self.changes
            .wait_for(|| {
                let table = self.table.lock().expect("never poisoned");
                if table.open.is_empty() {
                    Ok(())
                } else {
                    Err(None)
                }
            })
            .await;
    }
}

/// Wakes whoever waits for a slot (the accept loop) or for the last
/// connection to close when a connection closes or may have become
/// evictable; a check of a counter per request while nobody waits.
#[derive(Debug, Default)]
struct Changes {
    notify: Notify,
    waiting: AtomicUsize,
}

impl Changes {
    /// Called after a change.
    fn notify(&self) {
        // Orders the change before the look at `waiting`; a waiter counts
        // itself before it looks at the state (`wait_for`).
        fence(Ordering::SeqCst);
        if self.waiting.load(Ordering::Relaxed) > 0 {
            self.notify.notify_waiters();
        }
    }

    /// Tries `check` until it answers `Ok`, waiting for a change between
    /// tries, or at most until the instant it gives.
    async fn wait_for<T>(&self, mut check: impl FnMut() -> Result<T, Option<Instant>>) -> T {
        struct Counted<'a>(&'a AtomicUsize);
        impl Drop for Counted<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::Relaxed);
            }
        }
        self.waiting.fetch_add(1, Ordering::Relaxed);
        let _counted = Counted(&self.waiting);
        fence(Ordering::SeqCst);
        loop {
            let changed = self.notify.notified();
            let mut changed = std::pin::pin!(changed);
            changed.as_mut().enable();
            match check() {
                Ok(answer) => return answer,
                Err(None) => changed.await,
                Err(Some(until)) => {
                    tokio::select! {
                        () = changed => {}
                        () = tokio::time::sleep_until(until) => {}
                    }
                }
            }
        }
    }
}

impl Table {
    /// Connections (of `ip`, or all) chosen for eviction and still open.
    fn evicting(&self, ip: Option<IpAddr>) -> usize {
        self.open
            .values()
            .filter(|slot| ip.is_none_or(|ip| slot.ip == ip))
            .filter(|slot| slot.evicted.load(Ordering::Relaxed))
            .count()
    }

    /// The evictable connection (of `ip`, or of all) that has waited
    /// longest for a request.
    fn victim(&self, ip: Option<IpAddr>, now: Instant) -> Option<&Arc<Slot>> {
        self.open
            .values()
            .filter(|slot| ip.is_none_or(|ip| slot.ip == ip))
            .filter(|slot| slot.evictable(now))
            .min_by_key(|slot| {
                (
                    slot.waiting_since.load(Ordering::Relaxed),
                    slot.opened,
                    slot.id,
                )
            })
    }

    /// When the next connection kept only by its grace period leaves it.
    fn next_grace_end(&self, now: Instant) -> Option<Instant> {
        self.open
            .values()
            .filter(|slot| slot.evictable(now + NEW_CONNECTION_GRACE))
            .map(|slot| slot.opened + NEW_CONNECTION_GRACE)
            .filter(|end| *end > now)
            .min()
    }
}

/// A connection's place in the table, given back when dropped.
#[derive(Debug)]
struct Registered {
    slots: Arc<Slots>,
    slot: Arc<Slot>,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.slots.release(&self.slot);
    }
}

/// The receiver's service, noting when a request is in it.
#[derive(Clone)]
struct Tracked {
    inner: TowerToHyperService<axum::Router>,
    slot: Arc<Slot>,
}

type Response = axum::response::Response;

impl hyper::service::Service<hyper::Request<Incoming>> for Tracked {
    type Response = Response;
    type Error = std::convert::Infallible;
    type Future =
        Pin<Box<dyn Future<Output = Result<Response, std::convert::Infallible>> + Send + 'static>>;

    fn call(&self, request: hyper::Request<Incoming>) -> Self::Future {
        let in_service = InService::enter(Arc::clone(&self.slot));
        let answer = self.inner.call(request);
        Box::pin(async move {
            let answer = answer.await;
            drop(in_service);
            answer
        })
    }
}

/// Marks a request in service until dropped.
struct InService(Arc<Slot>);

impl InService {
    fn enter(slot: Arc<Slot>) -> Self {
        slot.in_service.store(true, Ordering::Relaxed);
        Self(slot)
    }
}

impl Drop for InService {
    fn drop(&mut self) {
        self.0.mark_waiting();
        self.0.in_service.store(false, Ordering::Relaxed);
        self.0.changes.notify();
    }
}

/// The connection's socket with two timers:
///
/// - reading fails once it has waited `idle_timeout` without a byte
///   arriving, so a connection that sends nothing (idle keep-alive, or a
///   stalled client in the middle of a request) is closed; that clock only
///   runs while the server waits to read;
/// - writing fails once output has waited `write_timeout` for the peer to
///   drain it: the clock starts when a write or flush cannot proceed and
///   stops only when everything written has been flushed, so a peer that
///   reads slowly or not at all (say, after pipelining many requests) loses
///   its connection. Its sleep is polled whenever a write is pending, so it
///   fires even when hyper no longer reads.
struct Guarded<T> {
    inner: T,
    slot: Arc<Slot>,
    idle_timeout: Duration,
    read_sleep: Pin<Box<Sleep>>,
    read_armed: bool,
    write_timeout: Duration,
    write_sleep: Pin<Box<Sleep>>,
    write_armed: bool,
}

impl<T> Guarded<T> {
    fn new(inner: T, limits: &Limits, slot: Arc<Slot>) -> Self {
        Self {
            inner,
            slot,
            idle_timeout: limits.idle_timeout,
            read_sleep: Box::pin(tokio::time::sleep(limits.idle_timeout)),
            read_armed: false,
            write_timeout: limits.write_timeout,
            write_sleep: Box::pin(tokio::time::sleep(limits.write_timeout)),
            write_armed: false,
        }
    }

    fn write_expired(&self) -> bool {
        self.write_armed && Instant::now() >= self.write_sleep.deadline()
    }

    /// Starts the write clock if it is not running and polls it; an error
    /// once it has run out.
    fn poll_write_clock(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Error> {
        if !self.write_armed {
            self.write_sleep
                .as_mut()
                .reset(deadline(self.write_timeout));
            self.write_armed = true;
        }
        ready!(self.write_sleep.as_mut().poll(cx));
        Poll::Ready(write_timed_out())
    }

    /// Passes on a write-side result, turning a stall longer than the
    /// write timeout into an error.
    fn on_write<R>(
        &mut self,
        cx: &mut Context<'_>,
        result: Poll<std::io::Result<R>>,
    ) -> Poll<std::io::Result<R>> {
        match result {
            Poll::Ready(Ok(_)) if self.write_expired() => Poll::Ready(Err(write_timed_out())),
            Poll::Ready(result) => Poll::Ready(result),
            Poll::Pending => self.poll_write_clock(cx).map(Err),
        }
    }

    /// Everything written reached the socket: the write clock stops.
    fn drained(&mut self) {
        self.write_armed = false;
        if self.slot.writing.swap(false, Ordering::Relaxed) {
            self.slot.changes.notify();
        }
    }
}

fn write_timed_out() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        "the client did not take the response within the write timeout",
    )
}

impl<T: AsyncRead + Unpin> AsyncRead for Guarded<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        if this.write_expired() {
            return Poll::Ready(Err(write_timed_out()));
        }
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(result) => {
                this.read_armed = false;
                Poll::Ready(result)
            }
            Poll::Pending => {
                if !this.read_armed {
                    this.read_sleep.as_mut().reset(deadline(this.idle_timeout));
                    this.read_armed = true;
                }
                ready!(this.read_sleep.as_mut().poll(cx));
                Poll::Ready(Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "no data from the client within the idle timeout",
                )))
            }
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Guarded<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = &mut *self;
        this.slot.writing.store(true, Ordering::Relaxed);
        let result = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.on_write(cx, result)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        let result = Pin::new(&mut this.inner).poll_flush(cx);
        let result = this.on_write(cx, result);
        if matches!(result, Poll::Ready(Ok(()))) {
            this.drained();
        }
        result
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        let result = Pin::new(&mut this.inner).poll_shutdown(cx);
        this.on_write(cx, result)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = &mut *self;
        this.slot.writing.store(true, Ordering::Relaxed);
        let result = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.on_write(cx, result)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slots(max: usize, max_per_ip: usize) -> Arc<Slots> {
        Arc::new(Slots::new(&Limits {
            body_read_timeout: Duration::from_secs(1),
            header_read_timeout: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(1),
            write_timeout: Duration::from_secs(1),
            max_connection_age: Duration::from_secs(1),
            max_connections: max,
            max_connections_per_ip: max_per_ip,
        }))
    }

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    fn admitted(admission: Admission) -> Registered {
        match admission {
            Admission::Admitted(slot) => slot,
            other => panic!("not admitted: {other:?}"),
        }
    }

    fn evicted(slot: &Registered) -> bool {
        slot.slot.evicted.load(Ordering::Relaxed)
    }

    #[test]
    fn peers_are_counted_by_address_and_ipv6_by_network() {
        let v4: IpAddr = "192.0.2.7".parse().unwrap();
        assert_eq!(peer_address(v4), v4);
        assert_eq!(peer_address("::ffff:192.0.2.7".parse().unwrap()), v4);
        let a = peer_address("2001:db8:1:2:aaaa::1".parse().unwrap());
        let b = peer_address("2001:db8:1:2:bbbb::9".parse().unwrap());
        let c = peer_address("2001:db8:1:3::1".parse().unwrap());
        assert_eq!(a, b);
        assert_eq!(a, "2001:db8:1:2::".parse::<IpAddr>().unwrap());
        assert_ne!(a, c);
    }

    #[test]
    fn the_connection_waiting_longest_for_a_request_makes_room() {
        let slots = slots(2, 10);
        let t0 = Instant::now();
        let a = admitted(slots.try_admit(ip(1), t0));
        let b = admitted(slots.try_admit(ip(2), t0 + Duration::from_millis(10)));
        // `a` opened first but was answered last: `b` has waited longer.
        std::thread::sleep(Duration::from_millis(2));
        drop(InService::enter(Arc::clone(&a.slot)));
        let later = t0 + Duration::from_secs(1);
        assert!(matches!(
            slots.try_admit(ip(3), later),
            Admission::Wait(None)
        ));
        assert!(evicted(&b) && !evicted(&a));
        // One eviction per client: the next check waits for it.
        assert!(matches!(
            slots.try_admit(ip(3), later),
            Admission::Wait(None)
        ));
        assert!(!evicted(&a));
        drop(b);
        let c = admitted(slots.try_admit(ip(3), later));
        assert_eq!(slots.table.lock().unwrap().open.len(), 2);
        drop((a, c));
        assert!(slots.table.lock().unwrap().open.is_empty());
        assert!(slots.table.lock().unwrap().per_ip.is_empty());
    }

    #[test]
    fn busy_and_new_connections_are_not_evicted() {
        let slots = slots(3, 10);
        let t0 = Instant::now();
        let serving = admitted(slots.try_admit(ip(1), t0));
        let _in_service = InService::enter(Arc::clone(&serving.slot));
        let writing = admitted(slots.try_admit(ip(2), t0));
        writing.slot.writing.store(true, Ordering::Relaxed);
        let young = t0 + Duration::from_millis(50);
        let new = admitted(slots.try_admit(ip(3), young));
        // Everything busy or new: wait until the new one's grace ends.
        let soon = young + Duration::from_millis(10);
        assert!(matches!(
            slots.try_admit(ip(4), soon),
            Admission::Wait(Some(end)) if end == young + NEW_CONNECTION_GRACE
        ));
        assert!(!evicted(&serving) && !evicted(&writing) && !evicted(&new));
        assert!(matches!(
            slots.try_admit(ip(4), young + NEW_CONNECTION_GRACE),
            Admission::Wait(None)
        ));
        assert!(evicted(&new) && !evicted(&serving) && !evicted(&writing));
    }

    #[test]
    fn an_address_over_its_limit_gives_up_its_own_connections_or_is_refused() {
        let slots = slots(10, 2);
        let t0 = Instant::now();
        let other = admitted(slots.try_admit(ip(2), t0));
        let a = admitted(slots.try_admit(ip(1), t0 + Duration::from_millis(1)));
        let b = admitted(slots.try_admit(ip(1), t0 + Duration::from_millis(2)));
        let later = t0 + Duration::from_secs(1);
        assert!(matches!(
            slots.try_admit(ip(1), later),
            Admission::Wait(None)
        ));
        assert!(evicted(&a) && !evicted(&b) && !evicted(&other));
        drop(a);
        let c = admitted(slots.try_admit(ip(1), later));
        let _busy = (
            InService::enter(Arc::clone(&b.slot)),
            InService::enter(Arc::clone(&c.slot)),
        );
        assert!(matches!(slots.try_admit(ip(1), later), Admission::Refused));
        // Other addresses are not held back by it.
        admitted(slots.try_admit(ip(3), later));
    }
}
