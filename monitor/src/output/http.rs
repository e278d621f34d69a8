//! The metrics endpoint: `/metrics` (Prometheus text, or OpenMetrics when the scraper's
//! Accept header asks for it) and `/healthz`, served by hyper on the monitor's tokio
//! runtime. The families are atomics: a scrape never waits for a tick.

use std::{
    convert::Infallible,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    sync::{Arc, Mutex},
};

use anyhow::Result;
use bytes::Bytes;
use http_body_util::Full;
use hyper::{
    body::Incoming, header, server::conn::http1, service::service_fn, Request, Response, StatusCode,
};
use hyper_util::rt::TokioIo;
use tokio::{net::TcpListener, task::JoinHandle};

use super::metrics::Metrics;
use crate::error::usage;

/// `ADDR:PORT`, `[V6]:PORT`, or a bare port (bound on 127.0.0.1: metrics stay local
/// unless an address is given).
pub fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    if let Ok(port) = s.parse::<u16>() {
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port));
    }
    s.parse::<SocketAddr>().map_err(|_| {
        format!("`{s}` is not ADDR:PORT or a port (e.g. 9464, 0.0.0.0:9464, [::1]:9464)")
    })
}

/// The warning a bound metrics address earns when it is reachable from other hosts: the
/// endpoint has no authentication, so exposing it is allowed but must not go unsaid.
pub fn exposure_warning(bound: SocketAddr) -> Option<String> {
    if bound.ip().is_loopback() {
        return None;
    }
    Some(format!(
        "warning: metrics on {bound} are exposed beyond this host (no authentication); \
         give 127.0.0.1:{} to keep them local",
        bound.port()
    ))
}

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const PROMETHEUS: &str = "text/plain; version=0.0.4; charset=utf-8";

fn respond(metrics: &Mutex<Metrics>, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let reply = |status: StatusCode, ctype: &str, body: String| {
        let mut r = Response::new(Full::new(Bytes::from(body)));
        *r.status_mut() = status;
        if let Ok(v) = header::HeaderValue::from_str(ctype) {
            r.headers_mut().insert(header::CONTENT_TYPE, v);
        }
        r
    };
    // HEAD is answered as GET: hyper sends the headers (Content-Length included) and drops
    // the body, as HTTP requires of HEAD.
    match (req.method().as_str(), req.uri().path()) {
        ("GET" | "HEAD", "/metrics") => {
            let wants_om = req
                .headers()
                .get(header::ACCEPT)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|a| a.contains("application/openmetrics-text"));
            let Ok(m) = metrics.lock() else {
                return reply(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "text/plain",
                    "metrics unavailable\n".into(),
                );
            };
            if wants_om {
                reply(StatusCode::OK, OPENMETRICS, m.openmetrics())
            } else {
                reply(StatusCode::OK, PROMETHEUS, m.prometheus_text())
            }
        }
        ("GET" | "HEAD", "/healthz") => healthz(metrics, reply),
        ("GET" | "HEAD", "/") => reply(
            StatusCode::OK,
            "text/plain",
            "monitor: /metrics (Prometheus or OpenMetrics), /healthz\n".into(),
        ),
        _ => reply(
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found: try /metrics\n".into(),
        ),
    }
}

/// `ok`, or 503 naming the watched interfaces that are gone: a monitor watching nothing
/// is not healthy although it still answers.
fn healthz(
    metrics: &Mutex<Metrics>,
    reply: impl Fn(StatusCode, &str, String) -> Response<Full<Bytes>>,
) -> Response<Full<Bytes>> {
    let gone = metrics
        .lock()
        .map(|m| m.gone().join(", "))
        .unwrap_or_default();
    if gone.is_empty() {
        reply(StatusCode::OK, "text/plain", "ok\n".into())
    } else {
        reply(
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            format!("not ok: interface gone: {gone}\n"),
        )
    }
}

/// Binds `addr` (a usage error if it cannot) and serves until the handle is aborted.
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<Mutex<Metrics>>,
) -> Result<(SocketAddr, JoinHandle<()>)> {
    let listener = TcpListener::bind(addr).await.map_err(|e| {
        usage(
            format!("cannot listen on {addr} for --metrics: {e}"),
            "pick a free port, or an address of this host",
        )
    })?;
    let bound = listener.local_addr()?;
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let m = metrics.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<Incoming>| {
                    let r = respond(&m, &req);
                    async move { Ok::<_, Infallible>(r) }
                });
                // A scraper that disconnects mid-response is its business.
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Ok((bound, task))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses() {
        assert_eq!(
            parse_listen("9464"),
            Ok("127.0.0.1:9464".parse().expect("addr"))
        );
        assert_eq!(
            parse_listen("0.0.0.0:9464"),
            Ok("0.0.0.0:9464".parse().expect("addr"))
        );
        assert_eq!(
            parse_listen("[::1]:80"),
            Ok("[::1]:80".parse().expect("addr"))
        );
        assert!(parse_listen("localhost").is_err());
        assert!(parse_listen("70000").is_err());
    }

    #[test]
    fn only_a_loopback_address_goes_without_a_warning() {
        for local in ["127.0.0.1:9464", "127.9.0.1:1", "[::1]:9464"] {
            assert_eq!(
                exposure_warning(local.parse().expect("addr")),
                None,
                "{local}"
            );
        }
        for open in ["0.0.0.0:9464", "[::]:9464", "10.1.2.3:80"] {
            let w = exposure_warning(open.parse().expect("addr")).expect(open);
            assert!(
                w.starts_with("warning: ") && w.contains("beyond this host") && !w.contains('\n'),
                "{w}"
            );
        }
    }

    /// One request over a fresh connection: the whole response, as sent.
    fn exchange(addr: SocketAddr, request: String) -> String {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(addr).expect("connect");
        s.write_all(request.as_bytes()).expect("request");
        let mut resp = String::new();
        s.read_to_string(&mut resp).expect("response");
        resp
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn head_is_answered_as_get_without_a_body() {
        let metrics = Arc::new(Mutex::new(Metrics::new(0)));
        let (addr, task) = serve("127.0.0.1:0".parse().expect("addr"), metrics)
            .await
            .expect("serve");
        let ask = |method: &str, path: &str| {
            format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")
        };
        let (get, head) = (ask("GET", "/metrics"), ask("HEAD", "/metrics"));
        let (get, head) =
            tokio::task::spawn_blocking(move || (exchange(addr, get), exchange(addr, head)))
                .await
                .expect("client");
        task.abort();
        let split = |r: &str| {
            let (h, b) = r.split_once("\r\n\r\n").expect("a response");
            (h.to_ascii_lowercase(), b.to_string())
        };
        let ((get_head, get_body), (head_head, head_body)) = (split(&get), split(&head));
        assert!(head_head.starts_with("http/1.1 200"), "{head}");
        assert!(
            head_head.contains("content-type: text/plain; version=0.0.4"),
            "{head}"
        );
        assert!(!get_body.is_empty(), "{get}");
        assert!(head_body.is_empty(), "HEAD carries no body: {head}");
        let length = |h: &str| {
            h.lines()
                .find_map(|l| l.strip_prefix("content-length: ").map(String::from))
        };
        assert_eq!(length(&head_head), length(&get_head), "{head}\n{get}");
    }
}
