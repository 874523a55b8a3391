//! The HTTP listeners `seam serve` opens: intake, the one that faces the
//! internet, and the admin listener (API, dashboard, `/metrics`), on loopback
//! unless configured otherwise.
//!
//! Both serve TLS when given a certificate and key, close connections past a
//! cap as they arrive, and give each client a deadline for a request's headers
//! and one for its whole body, so a slow or abusive client cannot hold the
//! process: a slowloris that trickles bytes in runs out of time, not memory.

use crate::config::limits::Limits;
use anyhow::{Context, Result};
use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// A PEM certificate chain and its private key: the listener serves HTTPS with them.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// `https://address` when the listener serves TLS, else `http://address`.
pub fn url(tls: bool, address: impl std::fmt::Display) -> String {
    format!("{}://{address}", if tls { "https" } else { "http" })
}

/// `tls_cert` and `tls_key` as a configuration holds them: both or neither.
pub fn tls_files(cert: &Option<PathBuf>, key: &Option<PathBuf>, setting: &str) -> Result<Option<TlsFiles>> {
    match (cert, key) {
        (Some(cert), Some(key)) => Ok(Some(TlsFiles { cert: cert.clone(), key: key.clone() })),
        (None, None) => Ok(None),
        _ => anyhow::bail!("{setting}tls_cert and {setting}tls_key go together: set both (a PEM certificate chain and its key) or neither"),
    }
}

/// A listener bound, not yet serving: binding first lets the caller report its address and
/// fail before anything else starts.
pub struct Bound {
    what: &'static str,
    listener: std::net::TcpListener,
    tls: Option<axum_server::tls_rustls::RustlsConfig>,
    pub addr: SocketAddr,
}

impl Bound {
    pub async fn bind(what: &'static str, listen: &str, tls: Option<&TlsFiles>) -> Result<Bound> {
        let listener =
            std::net::TcpListener::bind(listen).with_context(|| format!("binding the {what} listener to {listen}"))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let tls = match tls {
            Some(files) => {
                let _ = rustls::crypto::ring::default_provider().install_default();
                Some(axum_server::tls_rustls::RustlsConfig::from_pem_file(&files.cert, &files.key).await.with_context(
                    || {
                        format!(
                            "reading the {what} listener's TLS certificate {} and key {}",
                            files.cert.display(),
                            files.key.display()
                        )
                    },
                )?)
            }
            None => None,
        };
        Ok(Bound { what, listener, tls, addr })
    }

    /// `https://` or `http://` and the address.
    pub fn url(&self) -> String {
        url(self.tls.is_some(), self.addr)
    }

    /// Serve `router` until `handle` is told to shut down. Its routes read bodies through
    /// [`bodies_within`], after whatever must come first (a token, a rate limit).
    pub fn serve(self, router: Router, limits: &Limits, handle: axum_server::Handle) {
        let capped = Capped { open: Arc::new(Semaphore::new(limits.max_connections)), what: self.what };
        let header_timeout = Duration::from_secs(limits.header_timeout_seconds);
        let what = self.what;
        let service = router.into_make_service();
        macro_rules! run {
            ($server:expr) => {{
                let mut server = $server.handle(handle);
                server
                    .http_builder()
                    .http1()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(header_timeout);
                tokio::spawn(async move {
                    if let Err(e) = server.serve(service).await {
                        tracing::error!("the {what} listener stopped: {e}");
                    }
                });
            }};
        }
        match self.tls {
            Some(tls) => run!(axum_server::from_tcp(self.listener)
                .acceptor(axum_server::tls_rustls::RustlsAcceptor::new(tls).acceptor(capped))),
            None => run!(axum_server::from_tcp(self.listener).acceptor(capped)),
        }
    }
}

/// Have `router`'s routes read each body whole, at most `max_bytes`, within `seconds` of its
/// start, before their handlers run. Layers added after this run before it: authenticate
/// there, and an unauthenticated caller's body is never read.
pub fn bodies_within<S: Clone + Send + Sync + 'static>(router: Router<S>, seconds: u64, max_bytes: usize) -> Router<S> {
    let deadline = Duration::from_secs(seconds);
    router.route_layer(axum::middleware::from_fn(move |request: Request, next: Next| {
        body_within(deadline, max_bytes, request, next)
    }))
}

/// A client that has not sent its whole body by the deadline gets 408, and its connection is
/// closed; one that announces or sends more than `max_bytes` gets 413.
async fn body_within(deadline: Duration, max_bytes: usize, request: Request, next: Next) -> Response {
    let too_large = || {
        (StatusCode::PAYLOAD_TOO_LARGE, format!("the request body is over the {max_bytes}-byte limit")).into_response()
    };
    let announced =
        request.headers().get("content-length").and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > max_bytes as u64) {
        return too_large();
    }
    let (parts, body) = request.into_parts();
    match tokio::time::timeout(deadline, axum::body::to_bytes(body, max_bytes)).await {
        Ok(Ok(bytes)) => next.run(Request::from_parts(parts, axum::body::Body::from(bytes))).await,
        Ok(Err(_)) => too_large(),
        Err(_) => {
            tracing::warn!(path = %parts.uri.path(), "a request's body did not arrive within {} s", deadline.as_secs());
            (
                StatusCode::REQUEST_TIMEOUT,
                [("Connection", "close")],
                format!("the request body did not arrive within {} s", deadline.as_secs()),
            )
                .into_response()
        }
    }
}

/// Holds one of a listener's connection slots for as long as the connection is open; past the
/// cap a new connection is closed at once, so open connections, and what they hold, stay bounded.
#[derive(Clone)]
struct Capped {
    open: Arc<Semaphore>,
    what: &'static str,
}

impl<S: Send + 'static> axum_server::accept::Accept<tokio::net::TcpStream, S> for Capped {
    type Stream = Counted<tokio::net::TcpStream>;
    type Service = S;
    type Future = std::future::Ready<std::io::Result<(Self::Stream, S)>>;

    fn accept(&self, stream: tokio::net::TcpStream, service: S) -> Self::Future {
        std::future::ready(match self.open.clone().try_acquire_owned() {
            Ok(slot) => Ok((Counted { inner: stream, _slot: slot }, service)),
            Err(_) => {
                tracing::warn!("the {} listener is at its connection cap; a new connection was closed", self.what);
                Err(std::io::Error::other("connection cap reached"))
            }
        })
    }
}

/// A connection and the slot it holds.
pub struct Counted<S> {
    inner: S,
    _slot: OwnedSemaphorePermit,
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// A token bucket per key (a tenant): `rate` per second on average, `burst` at once.
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    buckets: std::sync::Mutex<std::collections::HashMap<String, (f64, std::time::Instant)>>,
}

impl RateLimiter {
    pub fn new(rate: f64, burst: u32) -> RateLimiter {
        RateLimiter { rate, burst: f64::from(burst), buckets: Default::default() }
    }

    /// Take one request for `key`: Ok, or how long until one would be taken.
    pub fn take(&self, key: &str) -> Result<(), Duration> {
        self.take_at(key, std::time::Instant::now())
    }

    fn take_at(&self, key: &str, now: std::time::Instant) -> Result<(), Duration> {
        let mut buckets = self.buckets.lock().unwrap();
        let (tokens, at) = buckets.entry(key.to_string()).or_insert((self.burst, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * self.rate).min(self.burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - *tokens) / self.rate))
        }
    }
}

/// Tell both listeners to stop when `shutdown` resolves, letting requests in flight finish.
pub fn stop_on(shutdown: impl Future<Output = ()> + Send + 'static, handles: Vec<axum_server::Handle>) {
    tokio::spawn(async move {
        shutdown.await;
        for handle in handles {
            handle.graceful_shutdown(Some(Duration::from_secs(10)));
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenant_past_its_burst_waits_and_others_do_not() {
        let limiter = RateLimiter::new(2.0, 3);
        let start = std::time::Instant::now();
        for _ in 0..3 {
            limiter.take_at("acme", start).unwrap();
        }
        let wait = limiter.take_at("acme", start).unwrap_err();
        assert_eq!(wait, Duration::from_millis(500));
        limiter.take_at("globex", start).expect("another tenant has its own bucket");
        let later = start + Duration::from_millis(500);
        limiter.take_at("acme", later).expect("refilled at 2 per second");
        assert!(limiter.take_at("acme", later).is_err());
        assert!(limiter.take_at("acme", later + Duration::from_secs(60)).is_ok());
    }
}
