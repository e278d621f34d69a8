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
    match (req.method().as_str(), req.uri().path()) {
        ("GET", "/metrics") => {
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
        ("GET", "/healthz") => healthz(metrics, reply),
        ("GET", "/") => reply(
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
}
