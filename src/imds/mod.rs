//! The instance metadata service (IMDSv1 and v2) that answers at 169.254.169.254 in an instance.
//!
//! The daemon hands [`serve`] a listener created inside the instance's network namespace and a
//! [`MetadataSource`]; every request asks the source for a fresh [`Metadata`] snapshot (so new
//! tags or a new public IP show at once). Per request, in order: instance gone → 404; endpoint
//! disabled → 403; `/latest/api/token` (PUT only, else 405; `X-Forwarded-For` → 403; TTL
//! 1..=21600 else 400) issues a token ([`token`]); other methods → 405; a token header that is
//! not valid → 401, no token while tokens are required → 401; then the tree ([`tree`]) answers
//! or 404. Every response carries `Server: EC2ws`; errors use AWS's small XHTML page.

pub mod token;
pub mod tree;

#[cfg(test)]
mod tests;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::imds::token::TokenStore;

/// Most simultaneous connections per instance.
pub const MAX_CONNECTIONS: usize = 64;
/// The token request path.
pub const TOKEN_PATH: &str = "/latest/api/token";
/// Header carrying the requested TTL (and echoed on the token reply).
pub const TTL_HEADER: &str = "x-aws-ec2-metadata-token-ttl-seconds";
/// Header carrying the token on GETs.
pub const TOKEN_HEADER: &str = "x-aws-ec2-metadata-token";

/// A snapshot of what IMDS shows for one instance. Cheap to rebuild; built by the daemon.
/// `Default` gives empty strings with the endpoint enabled, tokens optional, `x86_64` and
/// `/dev/xvda`, so a builder can start from `..Metadata::default()`.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Metadata {
    pub instance_id: String,
    pub ami_id: String,
    pub ami_launch_index: u32,
    pub instance_type: String,
    pub reservation_id: String,
    pub account_id: String,
    /// `x86_64`, `arm64` or `i386`.
    pub architecture: String,
    pub region: String,
    pub availability_zone: String,
    pub availability_zone_id: String,
    /// Launch time, `YYYY-MM-DDTHH:MM:SSZ`.
    pub pending_time: String,
    pub local_ipv4: String,
    pub public_ipv4: Option<String>,
    /// e.g. `ip-172-31-1-5.ap-northeast-2.compute.internal` (also served as `hostname`).
    pub local_hostname: String,
    pub public_hostname: Option<String>,
    pub mac: String,
    /// `eni-…`
    pub interface_id: String,
    /// Group names.
    pub security_groups: Vec<String>,
    pub security_group_ids: Vec<String>,
    pub subnet_id: String,
    pub subnet_ipv4_cidr_block: String,
    pub vpc_id: String,
    pub vpc_ipv4_cidr_block: String,
    /// e.g. `/dev/xvda`.
    pub root_device_name: String,
    /// (key name, OpenSSH public key line).
    pub public_keys: Vec<(String, String)>,
    pub user_data: Option<Vec<u8>>,
    pub tags: Vec<(String, String)>,
    pub instance_tags_enabled: bool,
    pub http_tokens_required: bool,
    pub http_endpoint_enabled: bool,
}

impl Default for Metadata {
    fn default() -> Self {
        Metadata {
            instance_id: String::new(),
            ami_id: String::new(),
            ami_launch_index: 0,
            instance_type: String::new(),
            reservation_id: String::new(),
            account_id: String::new(),
            architecture: "x86_64".into(),
            region: String::new(),
            availability_zone: String::new(),
            availability_zone_id: String::new(),
            pending_time: String::new(),
            local_ipv4: String::new(),
            public_ipv4: None,
            local_hostname: String::new(),
            public_hostname: None,
            mac: String::new(),
            interface_id: String::new(),
            security_groups: Vec::new(),
            security_group_ids: Vec::new(),
            subnet_id: String::new(),
            subnet_ipv4_cidr_block: String::new(),
            vpc_id: String::new(),
            vpc_ipv4_cidr_block: String::new(),
            root_device_name: "/dev/xvda".into(),
            public_keys: Vec::new(),
            user_data: None,
            tags: Vec::new(),
            instance_tags_enabled: false,
            http_tokens_required: false,
            http_endpoint_enabled: true,
        }
    }
}

impl std::fmt::Debug for Metadata {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metadata")
            .field("instance_id", &self.instance_id)
            .field("local_ipv4", &self.local_ipv4)
            .field("public_ipv4", &self.public_ipv4)
            .field("user_data", &self.user_data.as_ref().map(|_| "***"))
            .field("http_tokens_required", &self.http_tokens_required)
            .field("http_endpoint_enabled", &self.http_endpoint_enabled)
            .finish_non_exhaustive()
    }
}

/// Where IMDS gets its snapshot; `None` means the instance is gone.
pub trait MetadataSource: Send + Sync + 'static {
    fn metadata(&self) -> Option<Metadata>;
}

impl<F> MetadataSource for F
where
    F: Fn() -> Option<Metadata> + Send + Sync + 'static,
{
    fn metadata(&self) -> Option<Metadata> {
        self()
    }
}

/// Serves IMDS on `listener` until `shutdown` completes (then drains open requests).
pub async fn serve(
    listener: tokio::net::TcpListener,
    source: Arc<dyn MetadataSource>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener = CappedListener {
        inner: listener,
        permits: Arc::new(Semaphore::new(MAX_CONNECTIONS)),
    };
    axum::serve(listener, router(source))
        .with_graceful_shutdown(shutdown)
        .await
}

/// Finds the instance behind a client address (its private IP), for the shared service.
pub trait Resolver: Send + Sync + 'static {
    fn resolve(&self, peer: std::net::IpAddr) -> Option<Arc<dyn MetadataSource>>;
}

/// Most connections the shared service (all instances together) holds open at once.
pub const MAX_SHARED_CONNECTIONS: usize = 1024;

/// Serves IMDS for every instance on one listener (in the lab's router namespace): each request
/// is answered for the instance whose private IP it comes from; tokens are per instance.
pub async fn serve_shared(
    listener: tokio::net::TcpListener,
    resolver: Arc<dyn Resolver>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener = CappedListener {
        inner: listener,
        permits: Arc::new(Semaphore::new(MAX_SHARED_CONNECTIONS)),
    };
    let state = Shared {
        resolver,
        tokens: Arc::new(std::sync::Mutex::new(std::collections::HashMap::new())),
    };
    let app = Router::new().fallback(handle_shared).with_state(state);
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<PeerAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

/// The client address of a connection on a [`CappedListener`].
#[derive(Clone, Copy, Debug)]
struct PeerAddr(std::net::SocketAddr);

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, CappedListener>>
    for PeerAddr
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, CappedListener>) -> Self {
        PeerAddr(*stream.remote_addr())
    }
}

#[derive(Clone)]
struct Shared {
    resolver: Arc<dyn Resolver>,
    /// Token store per client address; an entry goes when its instance is gone.
    tokens: Arc<std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, Arc<TokenStore>>>>,
}

async fn handle_shared(
    State(shared): State<Shared>,
    axum::extract::ConnectInfo(PeerAddr(peer)): axum::extract::ConnectInfo<PeerAddr>,
    req: Request,
) -> Response {
    let ip = peer.ip();
    let Some(source) = shared.resolver.resolve(ip) else {
        shared
            .tokens
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&ip);
        return error(StatusCode::NOT_FOUND);
    };
    let tokens = shared
        .tokens
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .entry(ip)
        .or_default()
        .clone();
    handle(State(Imds { source, tokens }), req).await
}

#[derive(Clone)]
struct Imds {
    source: Arc<dyn MetadataSource>,
    tokens: Arc<TokenStore>,
}

/// The IMDS HTTP app for one instance (its own token store).
pub fn router(source: Arc<dyn MetadataSource>) -> Router {
    let state = Imds {
        source,
        tokens: Arc::new(TokenStore::default()),
    };
    Router::new().fallback(handle).with_state(state)
}

async fn handle(State(imds): State<Imds>, req: Request) -> Response {
    let (parts, _body) = req.into_parts();
    let mut resp = imds.answer(&parts.method, parts.uri.path(), &parts.headers);
    resp.headers_mut()
        .insert(header::SERVER, HeaderValue::from_static("EC2ws"));
    tracing::debug!(method = %parts.method, path = parts.uri.path(), status = resp.status().as_u16(), "imds request");
    resp
}

impl Imds {
    fn answer(&self, method: &Method, path: &str, headers: &HeaderMap) -> Response {
        let Some(md) = self.source.metadata() else {
            return error(StatusCode::NOT_FOUND);
        };
        if !md.http_endpoint_enabled {
            return error(StatusCode::FORBIDDEN);
        }
        if path.trim_end_matches('/') == TOKEN_PATH {
            return self.token(method, headers);
        }
        if method != Method::GET && method != Method::HEAD {
            return error(StatusCode::METHOD_NOT_ALLOWED);
        }
        match headers.get(TOKEN_HEADER) {
            Some(t) if !t.to_str().is_ok_and(|t| self.tokens.valid(t)) => {
                return error(StatusCode::UNAUTHORIZED);
            }
            None if md.http_tokens_required => return error(StatusCode::UNAUTHORIZED),
            _ => {}
        }
        match tree::resolve(&md, path) {
            Some(answer) => Response::builder()
                .status(StatusCode::OK)
                .header(header::CONTENT_TYPE, answer.content_type)
                .body(Body::from(answer.body))
                .unwrap_or_else(|_| error(StatusCode::INTERNAL_SERVER_ERROR)),
            None => error(StatusCode::NOT_FOUND),
        }
    }

    fn token(&self, method: &Method, headers: &HeaderMap) -> Response {
        if method != Method::PUT {
            let mut resp = error(StatusCode::METHOD_NOT_ALLOWED);
            resp.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("PUT"));
            return resp;
        }
        if headers.contains_key("x-forwarded-for") {
            return error(StatusCode::FORBIDDEN);
        }
        let ttl = headers.get(TTL_HEADER).and_then(|v| v.to_str().ok());
        let Some(ttl) = token::parse_ttl(ttl) else {
            return error(StatusCode::BAD_REQUEST);
        };
        let token = self.tokens.issue(Duration::from_secs(ttl));
        Response::builder()
            .status(StatusCode::OK)
            .header(header::CONTENT_TYPE, "text/plain")
            .header(TTL_HEADER, ttl)
            .body(Body::from(token))
            .unwrap_or_else(|_| error(StatusCode::INTERNAL_SERVER_ERROR))
    }
}

/// AWS's error page for a status.
fn error(status: StatusCode) -> Response {
    let title = format!(
        "{} - {}",
        status.as_u16(),
        status.canonical_reason().unwrap_or("Error")
    );
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"iso-8859-1\"?>\n\
         <!DOCTYPE html PUBLIC \"-//W3C//DTD XHTML 1.0 Transitional//EN\"\n\
         \t\t\"http://www.w3.org/TR/xhtml1/DTD/xhtml1-transitional.dtd\">\n\
         <html xmlns=\"http://www.w3.org/1999/xhtml\" xml:lang=\"en\" lang=\"en\">\n \
         <head>\n  <title>{title}</title>\n </head>\n <body>\n  <h1>{title}</h1>\n </body>\n</html>\n"
    );
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
    resp
}

/// A listener that holds at most [`MAX_CONNECTIONS`] connections open at once.
struct CappedListener {
    inner: tokio::net::TcpListener,
    permits: Arc<Semaphore>,
}

impl axum::serve::Listener for CappedListener {
    type Io = CappedStream;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let permit = loop {
            match self.permits.clone().acquire_owned().await {
                Ok(p) => break p,
                Err(_) => std::future::pending::<()>().await,
            }
        };
        let (stream, addr) = axum::serve::Listener::accept(&mut self.inner).await;
        let _ = stream.set_nodelay(true);
        (
            CappedStream {
                stream,
                _permit: permit,
            },
            addr,
        )
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// A connection that gives its permit back when dropped.
struct CappedStream {
    stream: tokio::net::TcpStream,
    _permit: OwnedSemaphorePermit,
}

impl AsyncRead for CappedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for CappedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}
