//! Synthetic media sessions over TCP: a pseudo-TLS ClientHello and server reply, then
//! steady small segments both ways, as screen-sharing traffic looks on the wire. Each
//! endpoint is one thread in its namespace; every thread checks the stop flag at least
//! every 100 ms, so the demo ends promptly.

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

use super::sys;

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
}

/// Bytes per write and writes per second of each side: the screen's updates dominate.
const SERVER_CHUNK: usize = 1000;
const CLIENT_CHUNK: usize = 200;
const EVERY: Duration = Duration::from_millis(20);
const POLL: Duration = Duration::from_millis(10);

/// A TLS 1.2 record header, handshake type, then filler: enough for the monitor's
/// first-bytes check, not a real handshake.
fn hello(kind: u8, len: usize) -> Vec<u8> {
    let body = len - 5;
    let mut v = vec![0x16, 0x03, 0x01, (body >> 8) as u8, body as u8, kind];
    v.resize(len, 0x42);
    v
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

fn stopped(stop: &AtomicBool) -> bool {
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

    /// A server on `addr` in namespace `ns`: every connection gets the reply and a stream.
    pub fn server(&mut self, ns: File, addr: SocketAddr) -> Result<()> {
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
                            s.spawn(move || serve(c, stop, t0));
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
    let sock = socket2_connect(src, dst, plan.small_rcvbuf)?;
    sock.set_write_timeout(Some(Duration::from_millis(100)))?;
    let mut sock = sock;
    sock.write_all(&hello(1, 517))?;
    // The server's reply, or give up (a reset, a stall).
    sock.set_read_timeout(Some(Duration::from_millis(100)))?;
    let mut buf = [0u8; 16384];
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match sock.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(_) => break,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                if stopped(stop) || Instant::now() > deadline {
                    return Ok(());
                }
            }
            Err(e) => return Err(e),
        }
    }
    pump(&mut sock, CLIENT_CHUNK, plan, stop, t0)
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
    let _ = c.set_read_timeout(Some(Duration::from_millis(100)));
    let _ = c.set_write_timeout(Some(Duration::from_millis(100)));
    let mut buf = [0u8; 4096];
    // The ClientHello, then a moment of "processing" before the reply.
    loop {
        match c.read(&mut buf) {
            Ok(0) => return,
            Ok(_) => break,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                if stopped(stop) {
                    return;
                }
            }
            Err(_) => return,
        }
    }
    std::thread::sleep(Duration::from_millis(30));
    if c.write_all(&hello(2, 1200)).is_err() {
        return;
    }
    let plan = ClientPlan {
        start_at: 0.0,
        stop_reading_at: None,
        close_at: None,
        retry_after: None,
        small_rcvbuf: false,
    };
    let _ = pump(&mut c, SERVER_CHUNK, plan, stop, t0);
}

/// Writes `chunk` bytes every 20 ms and reads whatever arrives, until the peer closes, the
/// plan closes, or the demo stops.
fn pump(
    s: &mut TcpStream,
    chunk: usize,
    plan: ClientPlan,
    stop: &AtomicBool,
    t0: Instant,
) -> std::io::Result<()> {
    s.set_read_timeout(Some(POLL))?;
    let data = vec![0x17u8; chunk];
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
            match s.write(&data) {
                Ok(_) => {}
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
