//! The client that forwards to the provider: hyper's pooled HTTP/1.1 client, one per server
//! worker thread (docs/ARCHITECTURE.md, "The proxy's hot path"). A pool shared by every worker
//! hands connections between threads, so each request and answer crosses threads twice; with
//! one pool per worker a connection is used only by the thread that drives it. Measured with
//! `bench/run.sh` (target 1): reqwest shared 0.52×, reqwest per worker 0.64×, hyper per worker
//! 0.81× of nginx.

use actix_web::web::Bytes;
use futures_util::Stream;
use http_body_util::{BodyDataStream, BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::cell::OnceCell;
use std::time::Duration;

/// The most a whole (not streamed) upstream answer may be.
const ANSWER_MAX_BYTES: usize = 64 * 1024 * 1024;
/// Idle connections kept per upstream host, per worker.
const IDLE_PER_HOST: usize = 256;
/// How long establishing a connection (TCP and TLS) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

type Connector = hyper_rustls::HttpsConnector<HttpConnector>;

thread_local! {
    static CLIENT: OnceCell<Client<Connector, Full<Bytes>>> = const { OnceCell::new() };
}

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("the upstream URL is not valid: {0}")]
    Url(String),
    #[error("could not connect to the upstream: {0}")]
    Connect(String),
    #[error("the upstream request failed: {0}")]
    Request(String),
    #[error("the upstream answer could not be read: {0}")]
    Body(String),
}

fn build() -> Client<Connector, Full<Bytes>> {
    let mut http = HttpConnector::new();
    http.set_connect_timeout(Some(CONNECT_TIMEOUT));
    http.set_nodelay(true);
    // `https://` for the real provider; plain `http://` for a local one (tests, the sandbox).
    http.enforce_http(false);
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_webpki_roots()
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(IDLE_PER_HOST)
        .build(connector)
}

/// An answer whose head has arrived; its body is read whole or as a stream.
pub struct Answer {
    pub status: u16,
    body: Incoming,
}

impl Answer {
    /// The whole body, up to [`ANSWER_MAX_BYTES`].
    pub async fn bytes(self) -> Result<Bytes, UpstreamError> {
        Limited::new(self.body, ANSWER_MAX_BYTES)
            .collect()
            .await
            .map(|c| c.to_bytes())
            .map_err(|e| UpstreamError::Body(e.to_string()))
    }

    /// The body as it arrives.
    pub fn stream(self) -> impl Stream<Item = Result<Bytes, hyper::Error>> + Unpin {
        BodyDataStream::new(self.body)
    }
}

/// POSTs `body` (JSON) to `url` on this worker's client.
pub async fn post(url: &str, bearer: Option<&str>, body: Bytes) -> Result<Answer, UpstreamError> {
    let uri: hyper::Uri = url
        .parse()
        .map_err(|e| UpstreamError::Url(format!("{e}")))?;
    let mut req = hyper::Request::post(uri).header(hyper::header::CONTENT_TYPE, "application/json");
    if let Some(k) = bearer {
        req = req.header(hyper::header::AUTHORIZATION, format!("Bearer {k}"));
    }
    let req = req
        .body(Full::new(body))
        .map_err(|e| UpstreamError::Url(e.to_string()))?;
    let sent = CLIENT.with(|c| c.get_or_init(build).request(req));
    let resp = sent.await.map_err(|e| {
        if e.is_connect() {
            UpstreamError::Connect(e.to_string())
        } else {
            UpstreamError::Request(e.to_string())
        }
    })?;
    Ok(Answer {
        status: resp.status().as_u16(),
        body: resp.into_body(),
    })
}
