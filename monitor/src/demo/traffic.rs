//! Synthetic media sessions over TCP, as screen-sharing traffic through a media edge looks on
//! the wire: MS-TURN (the pseudo-TLS hello and its genuine answer, an Allocate, then data
//! frames both ways, `media/pseudo_tls.rs`, `media/turn.rs`), or ICE checks over TCP (STUN
//! Binding in RFC 4571 framing, `ice.rs`). Each endpoint is one thread in its namespace;
//! every thread checks the stop flag at least every 100 ms, so the demo ends promptly.

use std::{
    fs::File,
    io::{ErrorKind, Read, Write},
    net::{Shutdown, SocketAddr, TcpListener, TcpStream},
    os::fd::AsRawFd,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};

use super::{ice, sys};
use crate::media::{pseudo_tls, stun, turn};

/// What a session speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Speaks {
    /// MS-TURN over TCP: pseudo-TLS hello, Allocate, data frames.
    MsTurn,
    /// ICE connectivity checks over TCP: STUN Binding both ways, RFC 4571 framing.
    IceTcp,
}

/// What a client does, and when (seconds from the demo's start).
#[derive(Clone, Copy, Debug)]
pub struct ClientPlan {
    pub start_at: f64,
    /// Stop reading at this time: the receive buffer fills, the window closes.
    pub stop_reading_at: Option<f64>,
    /// Close cleanly (FIN both ways) at this time.
    pub close_at: Option<f64>,
    /// Connect again this long after a failed or reset attempt.
    pub retry_after: Option<f64>,
    /// A small receive buffer, so a stalled reader's window closes quickly.
    pub small_rcvbuf: bool,
    pub speaks: Speaks,
}

impl ClientPlan {
    /// Starts at once, reads to the end, never closes or retries.
    pub fn steady(speaks: Speaks) -> Self {
        ClientPlan {
            start_at: 0.0,
            stop_reading_at: None,
            close_at: None,
            retry_after: None,
            small_rcvbuf: false,
            speaks,
        }
    }
}

/// Bytes per write and writes per second of each side: the screen's updates dominate.
const SERVER_CHUNK: usize = 1000;
const CLIENT_CHUNK: usize = 200;
const EVERY: Duration = Duration::from_millis(20);
const POLL: Duration = Duration::from_millis(10);

/// MS-TURN's Allocate request and its success response ([MS-TURN] 2.2.1).
const ALLOCATE: u16 = 0x0003;
const ALLOCATE_OK: u16 = 0x0103;

/// Bytes that differ per connection (hello randoms, transaction IDs); not for secrets.
pub(super) fn fresh<const N: usize>() -> [u8; N] {
    use std::sync::atomic::AtomicU64;
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut x = nanos ^ COUNTER.fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed) | 1;
    std::array::from_fn(|_| {
        // xorshift64
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x as u8
    })
}

pub struct Traffic {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    t0: Instant,
}

fn join_ns(ns: &File) -> std::io::Result<()> {
    // SAFETY: setns on a namespace fd; affects the calling thread only.
    if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

pub(super) fn stopped(stop: &AtomicBool) -> bool {
    stop.load(Ordering::Relaxed)
}

impl Default for Traffic {
    fn default() -> Self {
        Self::new()
    }
}

impl Traffic {
    pub fn new() -> Self {
        Self {
            stop: Arc::new(AtomicBool::new(false)),
            threads: Vec::new(),
            t0: Instant::now(),
        }
    }

    fn spawn(
        &mut self,
        name: &str,
        ns: File,
        f: impl FnOnce(&AtomicBool, Instant) + Send + 'static,
    ) -> Result<()> {
        let stop = self.stop.clone();
        let t0 = self.t0;
        let t = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                if join_ns(&ns).is_ok() {
                    f(&stop, t0)
                }
            })
            .context("starting a traffic thread")?;
        self.threads.push(t);
        Ok(())
    }

    /// Starts the demo's clock: client plans count from here.
    pub fn begin(&mut self) {
        self.t0 = Instant::now();
    }

    /// A server on `addr` in namespace `ns`: every connection gets the genuine answer and
    /// a stream (MS-TURN), or answers and checks of its own (ICE).
    pub fn server(&mut self, ns: File, addr: SocketAddr, speaks: Speaks) -> Result<()> {
        // Bind in the namespace before returning, so clients never race the listener.
        let (tx, rx) = std::sync::mpsc::channel();
        self.spawn(&format!("demo-srv-{}", addr.port()), ns, move |stop, t0| {
            let l = match TcpListener::bind(addr).and_then(|l| l.set_nonblocking(true).map(|_| l)) {
                Ok(l) => l,
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            };
            let _ = tx.send(Ok(()));
            std::thread::scope(|s| {
                while !stopped(stop) {
                    match l.accept() {
                        Ok((c, _)) => {
                            s.spawn(move || match speaks {
                                Speaks::MsTurn => serve(c, stop, t0),
                                Speaks::IceTcp => ice::serve(c, stop),
                            });
                        }
                        Err(_) => std::thread::sleep(POLL * 5),
                    }
                }
            });
        })?;
        rx.recv()
            .context("the server thread ended early")?
            .with_context(|| format!("listening on {addr}"))
    }

    /// A client from `src` to `dst` following `plan`.
    pub fn client(
        &mut self,
        ns: File,
        src: SocketAddr,
        dst: SocketAddr,
        plan: ClientPlan,
    ) -> Result<()> {
        self.spawn(
            &format!("demo-cli-{}", src.ip()),
            ns,
            move |stop, t0| loop {
                wait_until(stop, t0, plan.start_at);
                let began = Instant::now();
                let _ = client_once(src, dst, plan, stop, t0);
                match plan.retry_after {
                    Some(r) if !stopped(stop) => {
                        let next = t0
                            .elapsed()
                            .as_secs_f64()
                            .max(began.duration_since(t0).as_secs_f64() + r);
                        wait_until(stop, t0, next);
                    }
                    _ => return,
                }
                if stopped(stop) {
                    return;
                }
            },
        )
    }

    /// Ends every session (sockets close as their threads end) and waits for the threads.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        self.stop();
    }
}

fn wait_until(stop: &AtomicBool, t0: Instant, at: f64) {
    while !stopped(stop) && t0.elapsed().as_secs_f64() < at {
        std::thread::sleep(POLL * 5);
    }
}

fn client_once(
    src: SocketAddr,
    dst: SocketAddr,
    plan: ClientPlan,
    stop: &AtomicBool,
    t0: Instant,
) -> std::io::Result<()> {
    let mut sock = socket2_connect(src, dst, plan.small_rcvbuf)?;
    sock.set_write_timeout(Some(Duration::from_millis(100)))?;
    if plan.speaks == Speaks::IceTcp {
        return ice::check(sock, stop);
    }
    sock.write_all(&pseudo_tls::client_hello(&fresh()))?;
    // The server's answer, or give up: a reset, a stall, or an answer the genuine server
    // never sends (a device in the path answered instead).
    let answer = read_at_least(&mut sock, pseudo_tls::SERVER_HELLO_LEN, stop)?;
    if pseudo_tls::check_server_hello(&answer).is_err() {
        return Ok(());
    }
    let allocate = stun::ms_turn(ALLOCATE, fresh(), &[]);
    sock.write_all(&turn::ms_frame(turn::CONTROL, &allocate))?;
    pump(&mut sock, CLIENT_CHUNK, plan, stop, t0)
}

/// Reads until `n` bytes came, for up to 5 s; what came (empty: nothing, or the peer closed
/// first, or the demo stops).
fn read_at_least(sock: &mut TcpStream, n: usize, stop: &AtomicBool) -> std::io::Result<Vec<u8>> {
    sock.set_read_timeout(Some(Duration::from_millis(100)))?;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(5);
    while got.len() < n {
        match sock.read(&mut buf) {
            Ok(0) => return Ok(Vec::new()),
            Ok(k) => got.extend_from_slice(&buf[..k]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                if stopped(stop) || Instant::now() > deadline {
                    return Ok(Vec::new());
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// Connects from a chosen source address (the demo's clients share one namespace), with
/// the receive buffer set before the handshake so the window scale matches it.
fn socket2_connect(
    src: SocketAddr,
    dst: SocketAddr,
    small_rcvbuf: bool,
) -> std::io::Result<TcpStream> {
    use std::os::fd::FromRawFd;
    let (SocketAddr::V4(src), SocketAddr::V4(dst)) = (src, dst) else {
        return Err(std::io::Error::other("the demo is IPv4"));
    };
    // SAFETY: a new descriptor, owned by the stream right away.
    let stream = unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        TcpStream::from_raw_fd(fd)
    };
    let fd = stream.as_raw_fd();
    if small_rcvbuf {
        sys::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            &(4096 as libc::c_int),
        )?;
    }
    // Blocking connect: the kernel's own SYN retries (1 s, 3 s, 7 s, ...) are what a
    // blackholed handshake looks like; the send timeout ends it.
    stream.set_write_timeout(Some(Duration::from_secs(10)))?;
    let (s, d) = (
        sys::sockaddr_in(*src.ip(), src.port()),
        sys::sockaddr_in(*dst.ip(), dst.port()),
    );
    let ((sp, sl), (dp, dl)) = (sys::raw(&s), sys::raw(&d));
    // SAFETY: valid address structures of the given lengths.
    sys::check(unsafe { libc::bind(fd, sp, sl) })?;
    sys::check(unsafe { libc::connect(fd, dp, dl) })?;
    Ok(stream)
}

fn serve(mut c: TcpStream, stop: &AtomicBool, t0: Instant) {
    let _ = c.set_nonblocking(false);
    let _ = c.set_write_timeout(Some(Duration::from_millis(100)));
    // The pseudo-TLS ClientHello, then a moment of "processing" before the answer.
    match read_at_least(&mut c, pseudo_tls::CLIENT_HELLO_LEN, stop) {
        Ok(b) if pseudo_tls::is_client_hello(&b) => {}
        _ => return,
    }
    std::thread::sleep(Duration::from_millis(30));
    if c.write_all(&pseudo_tls::server_hello(&fresh(), &fresh()))
        .is_err()
    {
        return;
    }
    // The Allocate request, answered with its transaction ID.
    let Ok(b) = read_at_least(&mut c, 4 + stun::HEADER, stop) else {
        return;
    };
    let asked = turn::frames(&b, turn::Framing::MsTurn)
        .into_iter()
        .next()
        .and_then(|f| f.stun);
    let Some(req) = asked else {
        return;
    };
    let mut id = [0; 16];
    id.copy_from_slice(req.id());
    let answer = stun::ms_turn(ALLOCATE_OK, id, &[]);
    if c.write_all(&turn::ms_frame(turn::CONTROL, &answer))
        .is_err()
    {
        return;
    }
    let _ = pump(
        &mut c,
        SERVER_CHUNK,
        ClientPlan::steady(Speaks::MsTurn),
        stop,
        t0,
    );
}

/// Writes an MS-TURN data frame of `chunk` bytes every 20 ms (what a partial write left
/// goes first, so the frames stay whole) and reads whatever arrives, until the peer closes,
/// the plan closes, or the demo stops.
fn pump(
    s: &mut TcpStream,
    chunk: usize,
    plan: ClientPlan,
    stop: &AtomicBool,
    t0: Instant,
) -> std::io::Result<()> {
    s.set_read_timeout(Some(POLL))?;
    let data = turn::ms_frame(turn::DATA, &vec![0x17u8; chunk - 4]);
    let mut unsent: &[u8] = &[];
    let mut buf = vec![0u8; 65536];
    let mut next = Instant::now();
    while !stopped(stop) {
        let now = t0.elapsed().as_secs_f64();
        if plan.close_at.is_some_and(|t| now >= t) {
            // A clean close: FIN, then read until the peer's FIN.
            s.shutdown(Shutdown::Write)?;
            let end = Instant::now() + Duration::from_secs(3);
            while Instant::now() < end && !stopped(stop) {
                match s.read(&mut buf) {
                    Ok(0) => return Ok(()),
                    Ok(_) => {}
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                    Err(e) => return Err(e),
                }
            }
            return Ok(());
        }
        if Instant::now() >= next {
            if unsent.is_empty() {
                unsent = &data;
            }
            match s.write(unsent) {
                Ok(n) => unsent = &unsent[n..],
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) => return Err(e),
            }
            next += EVERY;
        }
        if plan.stop_reading_at.is_some_and(|t| now >= t) {
            std::thread::sleep(POLL);
            continue;
        }
        match s.read(&mut buf) {
            Ok(0) => {
                // The peer closed: finish our side cleanly.
                let _ = s.shutdown(Shutdown::Write);
                return Ok(());
            }
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
