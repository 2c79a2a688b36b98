//! The client side: talking to a key server, and the caching local
//! facility that encrypts and decrypts on the client's machine.
//!
//! [`ClientConfig`] decides how much a client trusts:
//! - `https://` URLs need a trust anchor: a CA file ([`Trust::CaFile`], e.g.
//!   the server's `DIR/tls/ca.pem`) or a pinned SHA-256 fingerprint of the
//!   server certificate ([`Trust::Pin`]). A certificate matching neither is a
//!   handshake failure ([`KmsError::Transport`]).
//! - `http://` URLs are refused unless the host is a loopback address *and*
//!   [`ClientConfig::allow_loopback_http`] is set.
//!
//! Seed flaw fixed here: keas.kmi's local facility built its connection for
//! `/key` with `HTTPConnection` whatever the URL's scheme, so `https://` key
//! requests, KEK included, went out in clear text. Here the scheme decides,
//! the client refuses redirects, and TLS is always verified.

mod answer;
mod cache;
mod local;
mod pin;

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use reqwest::Url;
use rustls::pki_types::{CertificateDer, pem::PemObject};
use seccs_core::SecretKey;
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

pub use cache::{CachedKey, Clock, DekCache, MAX_CACHE_TTL, ManualClock, SystemClock};
pub use local::{LocalFacility, decrypt_file_with, encrypt_file_with};

pub use crate::files::read_token_file;

use crate::KmsError;
use crate::api::*;
use crate::files::{TOKEN_CHARACTERS, read_bounded, token_fits_header};
use crate::lifecycle::{KeyInfo, KeyState};
use answer::{Bound, KEY_INFO_ANSWER, LIST_ANSWER, SHORT_ANSWER};

/// How the client authenticates the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trust {
    /// Trust certificates issued by the CA certificates in this PEM file.
    CaFile(PathBuf),
    /// Trust exactly the certificate with this SHA-256 fingerprint.
    Pin([u8; 32]),
    /// No anchor: only valid for `http://` to loopback.
    None,
}

/// Where the server is and how to trust it. Its `Debug` output leaves the
/// token out.
#[derive(Clone)]
pub struct ClientConfig {
    /// The server URL, `https://host:port`.
    pub url: String,
    /// How to authenticate the server.
    pub trust: Trust,
    /// Permit `http://` when the host is a loopback address.
    pub allow_loopback_http: bool,
    /// How long a fetched DEK stays cached (zero: no caching; at most
    /// [`MAX_CACHE_TTL`], an hour, whatever is set here).
    pub cache_ttl: Duration,
    /// Deadline of each request.
    pub timeout: Duration,
    /// The management bearer token, for named-key calls.
    pub token: Option<String>,
    /// What a connection refused adds after "is `seccs kms serve`
    /// running, and": a question naming where the URL came from (by
    /// default [`DEFAULT_ADDRESS_HINT`], the `seccs kms` commands' options).
    pub address_hint: String,
    /// What a CA file that cannot be read is said to be after "cannot":
    /// by default "read the CA file"; a caller names where it came from
    /// ("read the CA file (--ca)").
    pub ca_file_action: &'static str,
}

/// [`ClientConfig::address_hint`] unless set: where the `seccs kms`
/// commands take the server's URL from.
pub const DEFAULT_ADDRESS_HINT: &str = "do --server or SECCS_KMS_URL name its address?";

/// What `Debug` shows of a bearer token: whether there is one.
fn redacted(token: &Option<String>) -> Option<&'static str> {
    token.as_ref().map(|_| "<redacted>")
}

impl std::fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConfig")
            .field("url", &self.url)
            .field("trust", &self.trust)
            .field("allow_loopback_http", &self.allow_loopback_http)
            .field("cache_ttl", &self.cache_ttl)
            .field("timeout", &self.timeout)
            .field("token", &redacted(&self.token))
            .field("address_hint", &self.address_hint)
            .finish()
    }
}

/// `text` parsed as a URL, or the parser's reason why it is not one, so
/// that a caller can say which option gave it (a URL is checked against
/// the trust rules by [`ClientConfig::validate`]).
pub fn parse_url(text: &str) -> Result<Url, String> {
    Url::parse(text).map_err(|e| e.to_string())
}

impl ClientConfig {
    /// A configuration for `url`, no trust anchor yet, DEKs cached for one
    /// hour (the seed's timeout), 30 s per request.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            trust: Trust::None,
            allow_loopback_http: false,
            cache_ttl: Duration::from_secs(3600),
            timeout: Duration::from_secs(30),
            token: None,
            address_hint: DEFAULT_ADDRESS_HINT.to_owned(),
            ca_file_action: "read the CA file",
        }
    }

    /// Sets what a refused connection asks of the URL's origin (see
    /// [`ClientConfig::address_hint`]), e.g. "does the store's config.toml
    /// name its address?".
    pub fn with_address_hint(mut self, hint: impl Into<String>) -> Self {
        self.address_hint = hint.into();
        self
    }

    /// Trusts the CA certificates in `path`.
    pub fn with_ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.trust = Trust::CaFile(path.into());
        self
    }

    /// Trusts the CA certificates in `path`, which an error that cannot
    /// read it says with `action` ("read the CA file (--ca)").
    pub fn with_ca_file_named(mut self, path: impl Into<PathBuf>, action: &'static str) -> Self {
        self.ca_file_action = action;
        self.with_ca_file(path)
    }

    /// Pins the server certificate by its SHA-256 fingerprint (64 hex
    /// digits; `:` separators allowed).
    pub fn with_pin(mut self, fingerprint: &str) -> Result<Self, KmsError> {
        let clean: String = fingerprint.chars().filter(|c| *c != ':').collect();
        let bytes =
            hex::decode(clean.trim()).map_err(|_| KmsError::Config("pin must be hex".into()))?;
        let pin: [u8; 32] = bytes.try_into().map_err(|_| {
            KmsError::Config("pin must be a SHA-256 fingerprint (64 hex digits)".into())
        })?;
        self.trust = Trust::Pin(pin);
        Ok(self)
    }

    /// Sets the management bearer token.
    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// Sets the DEK cache lifetime: at most an hour ([`MAX_CACHE_TTL`]),
    /// a longer one is taken as an hour (as is one set in the field).
    pub fn with_cache_ttl(mut self, ttl: Duration) -> Self {
        self.cache_ttl = ttl.min(MAX_CACHE_TTL);
        self
    }

    /// Checks the URL against the trust rules; returns it parsed. A URL
    /// is the server's root, `https://HOST:PORT`: one with a user name or
    /// password (which would be sent as Basic auth, and kept wherever the
    /// URL is), a path, a query or a fragment (which the client would
    /// silently drop) is refused. So is a token that cannot go in an HTTP
    /// header, or an empty one (which the server could only refuse).
    pub fn validate(&self) -> Result<Url, KmsError> {
        let url = Url::parse(&self.url).map_err(|e| KmsError::Config(format!("bad URL: {e}")))?;
        check_root_url(&url)?;
        if let Some(token) = &self.token {
            if !token_fits_header(token) {
                return Err(KmsError::Config(format!("the token {TOKEN_CHARACTERS}")));
            }
            if token.is_empty() {
                return Err(KmsError::Config(
                    "the token is empty: give the server's DIR/token".into(),
                ));
            }
        }
        match url.scheme() {
            "https" => {
                if self.trust == Trust::None {
                    return Err(KmsError::Config(
                        "https needs --ca FILE or --pin SHA256 to trust the server".into(),
                    ));
                }
            }
            "http" => {
                let loopback = match url.host() {
                    Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
                    Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
                    Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
                    None => false,
                };
                if !loopback {
                    return Err(KmsError::Config(
                        "plain http is refused: key material would travel in clear text".into(),
                    ));
                }
                if !self.allow_loopback_http {
                    return Err(KmsError::Config(
                        "plain http to loopback is allowed only where asked for explicitly, for \
                         testing (`seccs kms ... --insecure-loopback-http`); use https"
                            .into(),
                    ));
                }
            }
            other => return Err(KmsError::Config(format!("unsupported URL scheme {other}"))),
        }
        Ok(url)
    }

    fn tls(&self) -> Result<rustls::ClientConfig, KmsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(|e| KmsError::Tls(e.to_string()))?;
        let mut config = match &self.trust {
            Trust::CaFile(path) => {
                let mut roots = rustls::RootCertStore::empty();
                let pem = read_bounded(path, MAX_CA_FILE).map_err(|e| match e {
                    KmsError::File { path, source, .. } => KmsError::File {
                        action: self.ca_file_action,
                        path,
                        source,
                    },
                    e => e,
                })?;
                for cert in CertificateDer::pem_slice_iter(&pem) {
                    let cert = cert.map_err(|e| {
                        KmsError::Tls(format!(
                            "{} is not a PEM certificate file ({e})",
                            path.display()
                        ))
                    })?;
                    roots.add(cert).map_err(|e| {
                        KmsError::Tls(format!(
                            "{} holds a certificate that cannot be read as a CA ({e})",
                            path.display()
                        ))
                    })?;
                }
                if roots.is_empty() {
                    return Err(KmsError::Tls(format!(
                        "{} holds no PEM certificate",
                        path.display()
                    )));
                }
                builder.with_root_certificates(roots).with_no_client_auth()
            }
            Trust::Pin(pin) => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(pin::PinVerifier::new(*pin, provider)))
                .with_no_client_auth(),
            Trust::None => builder
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth(),
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(config)
    }
}

/// Refuses a server URL with more than a scheme, host and port: user
/// info, a path other than `/`, a query, a fragment. The message never
/// repeats the URL (it may hold a password).
fn check_root_url(url: &Url) -> Result<(), KmsError> {
    let refuse = |what: &str| {
        Err(KmsError::Config(format!(
            "the key server URL may not hold {what}: give its root, https://HOST:PORT"
        )))
    };
    if !url.username().is_empty() || url.password().is_some() {
        return refuse(
            "a user name or password (the server takes no Basic auth; named-key calls use the \
             management token)",
        );
    }
    if !matches!(url.path(), "" | "/") {
        return refuse("a path (the server's routes are at its root)");
    }
    if url.query().is_some() {
        return refuse("a query");
    }
    if url.fragment().is_some() {
        return refuse("a fragment");
    }
    Ok(())
}

/// The TLS error inside `e`, as it is or inside the I/O errors that carry
/// it (their `source` skips the error they wrap).
fn tls_error_in<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut e = e;
    // Bounded: a handshake error is wrapped a few times at most.
    for _ in 0..8 {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        e = e.downcast_ref::<std::io::Error>()?.get_ref()?;
    }
    None
}

/// What a TLS error means to the user of a key service client, in words
/// (rustls shows several by their `Debug` form), if it is one of the
/// failures a misconfigured client or server meets.
fn tls_words(tls: &rustls::Error) -> Option<String> {
    use rustls::CertificateError as C;
    if let Some(mismatch) = pin::mismatch_of(tls) {
        return Some(mismatch);
    }
    let words = match tls {
        rustls::Error::InvalidCertificate(C::Other(other))
            if format!("{other:?}").contains("CaUsedAsEndEntity") =>
        {
            "the server's certificate is a CA certificate used as its own (a self-signed \
             certificate made as a CA, given as --ca?): a certificate given as --ca must be the \
             CA that issued the server's; trust a self-signed one with --pin and its SHA-256 \
             fingerprint"
        }
        rustls::Error::InvalidCertificate(C::UnknownIssuer) => {
            "the server's certificate was not issued by the CA given as --ca (another server, \
             or a certificate made since: compare with the CA file and fingerprint `seccs kms \
             serve` printed)"
        }
        rustls::Error::InvalidCertificate(
            C::NotValidForName | C::NotValidForNameContext { .. },
        ) => {
            "the server's certificate does not name the host of the URL: connect by a name or \
             address it holds, or trust it with --pin and its SHA-256 fingerprint (a server \
             whose certificate `seccs kms serve` made names localhost, 127.0.0.1, ::1 and the \
             address it first listened on)"
        }
        rustls::Error::InvalidCertificate(C::Expired | C::ExpiredContext { .. }) => {
            "the server's certificate has expired"
        }
        rustls::Error::InvalidCertificate(C::NotValidYet | C::NotValidYetContext { .. }) => {
            "the server's certificate is not valid yet (check the clocks)"
        }
        rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType) => {
            "the server does not speak TLS on that port (plain HTTP?)"
        }
        _ => return None,
    };
    Some(words.to_owned())
}

/// Whether the connection of `e` was refused: nothing listens there.
fn refused(e: &reqwest::Error) -> bool {
    let mut src = std::error::Error::source(e);
    // Bounded: an error chain is a few links long.
    for _ in 0..16 {
        let Some(s) = src else { break };
        if s.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionRefused)
        {
            return true;
        }
        src = s.source();
    }
    false
}

fn transport(e: reqwest::Error) -> KmsError {
    let mut msg = e.to_string();
    let mut src = std::error::Error::source(&e);
    // Bounded: an error chain is a few links long.
    for _ in 0..16 {
        let Some(s) = src else { break };
        msg.push_str(": ");
        match tls_error_in(s).and_then(tls_words) {
            Some(words) => {
                msg.push_str(&words);
                break;
            }
            None => msg.push_str(&s.to_string()),
        }
        src = s.source();
    }
    // What an http:// client reads from a TLS server (hyper's words): the
    // bytes of a TLS alert where a status line was expected.
    if msg.contains("invalid HTTP version") {
        msg.push_str(
            " (does the server speak TLS? `seccs kms serve` serves HTTPS only: use an \
             https:// URL)",
        );
    }
    KmsError::Transport(msg)
}

/// [`transport`] of a request's error: when nothing listens at the
/// address (most often a server not started, or a URL that names the
/// wrong port), it asks `address_hint` of where the URL came from.
fn request_error(e: reqwest::Error, address_hint: &str) -> KmsError {
    let unheard = e.is_connect() && refused(&e);
    match transport(e) {
        KmsError::Transport(mut msg) if unheard => {
            msg.push_str(&format!(
                " (no key server listens there: is `seccs kms serve` running, and \
                 {address_hint})"
            ));
            KmsError::Transport(msg)
        }
        other => other,
    }
}

/// An async client of one key server. Its `Debug` output leaves the token
/// out.
#[derive(Clone)]
pub struct KmsClient {
    http: reqwest::Client,
    base: Url,
    token: Option<String>,
    address_hint: String,
}

impl std::fmt::Debug for KmsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KmsClient")
            .field("base", &self.base.as_str())
            .field("token", &redacted(&self.token))
            .finish_non_exhaustive()
    }
}

impl KmsClient {
    /// A client for `config` (validated: see [`ClientConfig::validate`]).
    pub fn new(config: &ClientConfig) -> Result<Self, KmsError> {
        let base = config.validate()?;
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(config.tls()?)
            .https_only(base.scheme() == "https")
            .redirect(reqwest::redirect::Policy::none())
            .timeout(config.timeout)
            .connect_timeout(config.timeout.min(Duration::from_secs(10)))
            .pool_max_idle_per_host(64)
            .no_proxy()
            .build()
            .map_err(transport)?;
        Ok(Self {
            http,
            base,
            token: config.token.clone(),
            address_hint: config.address_hint.clone(),
        })
    }

    fn url(&self, path: &str) -> Result<Url, KmsError> {
        self.base
            .join(path)
            .map_err(|e| KmsError::Config(format!("bad URL: {e}")))
    }

    /// Sends `req` and reads its answer within `bound` (see [`answer`]).
    async fn send(
        &self,
        req: reqwest::RequestBuilder,
        bound: Bound,
    ) -> Result<(u16, Vec<u8>), KmsError> {
        let resp = req
            .send()
            .await
            .map_err(|e| request_error(e, &self.address_hint))?;
        let status = resp.status().as_u16();
        let body = answer::read_bounded(resp, bound).await?;
        Ok((status, body))
    }

    /// The error of a non-200 answer to a request about the named key
    /// `name`, if any.
    fn server_error(status: u16, body: &[u8], name: Option<&str>) -> KmsError {
        if let Ok(e) = serde_json::from_slice::<ErrorBody>(body) {
            match e.error.as_str() {
                "not-found" => return KmsError::NotFound,
                "tampered" => return KmsError::Tampered,
                "unauthorized" => return KmsError::Unauthorized,
                "exists" => return KmsError::AlreadyExists,
                "too-large" => return KmsError::too_large_from_server(shown(&e.message)),
                crate::server::STORAGE_FULL => return KmsError::ServerStorageFull,
                "corrupt-key" => {
                    return KmsError::CorruptKeyFile {
                        name: name.unwrap_or("?").to_owned(),
                    };
                }
                _ => {}
            }
            return KmsError::Server {
                status,
                body: shown(&format!("{}: {}", e.error, e.message)),
            };
        }
        if status == 401 {
            return KmsError::Unauthorized;
        }
        // The seed's `/new` on a full disk ("Key storage full").
        if status == 507 {
            return KmsError::ServerStorageFull;
        }
        let text = shown(&String::from_utf8_lossy(&body[..body.len().min(SHOWN_MAX)]));
        if status == 413 {
            return KmsError::TooLarge(format!("the body is above the server's limit ({text})"));
        }
        KmsError::Server { status, body: text }
    }

    /// `GET /`: the seed's status line.
    pub async fn status_text(&self) -> Result<String, KmsError> {
        let bound = Bound {
            limit: SHORT_ANSWER,
            route: "GET /",
        };
        let (status, body) = self.send(self.http.get(self.url("/")?), bound).await?;
        if status != 200 {
            return Err(Self::server_error(status, &body, None));
        }
        String::from_utf8(body)
            .map(|text| shown(&text))
            .map_err(|_| KmsError::Malformed("status text"))
    }

    /// `POST /new`: a new KEK. The management token goes with it when the
    /// configuration has one (a server may require it on `/new`).
    pub async fn new_kek(&self) -> Result<SecretKey, KmsError> {
        let mut req = self.http.post(self.url("/new")?);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        let bound = Bound {
            limit: SHORT_ANSWER,
            route: "POST /new",
        };
        let (status, body) = self.send(req, bound).await?;
        // The answer is the KEK itself: wiped when dropped, as the key.
        let body = zeroize::Zeroizing::new(body);
        if status != 200 {
            return Err(Self::server_error(status, &body, None));
        }
        SecretKey::from_slice(&body).map_err(|_| KmsError::Malformed("KEK from server"))
    }

    /// `POST /key`: the DEK of `kek`. Only a `200` answer of exactly 32
    /// bytes is a DEK; `404` is [`KmsError::NotFound`].
    pub async fn dek(&self, kek: &SecretKey) -> Result<SecretKey, KmsError> {
        let req = self
            .http
            .post(self.url("/key")?)
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            // The body is the KEK: its copy is wiped when the request that
            // holds it is done with it (Bytes drops its owner then).
            .body(bytes::Bytes::from_owner(zeroize::Zeroizing::new(
                kek.expose_secret().to_vec(),
            )));
        let bound = Bound {
            limit: SHORT_ANSWER,
            route: "POST /key",
        };
        let (status, body) = self.send(req, bound).await?;
        let body = zeroize::Zeroizing::new(body);
        match status {
            200 => SecretKey::from_slice(&body).map_err(|_| KmsError::Malformed("DEK from server")),
            404 => Err(KmsError::NotFound),
            _ => Err(Self::server_error(status, &body, None)),
        }
    }

    /// A JSON request to `path` and its answer, read within the bound
    /// `answer` gives for the request's length in bytes.
    async fn json<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Req>,
        answer: impl FnOnce(usize) -> Bound,
    ) -> Result<Resp, KmsError> {
        let mut req = self.http.request(method, self.url(path)?);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        let mut request_len = 0;
        if let Some(b) = body {
            let bytes = serde_json::to_vec(b)?;
            request_len = bytes.len();
            req = req
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                // It may carry keys or plaintexts (hex): wiped once sent.
                .body(bytes::Bytes::from_owner(zeroize::Zeroizing::new(bytes)));
        }
        let (status, bytes) = self.send(req, answer(request_len)).await?;
        let bytes = zeroize::Zeroizing::new(bytes);
        if status != 200 {
            let name = path
                .strip_prefix("/v1/keys/")
                .and_then(|rest| rest.split('/').next());
            return Err(Self::server_error(status, &bytes, name));
        }
        // Answers carry keys and plaintexts, which serde_json's message
        // would quote.
        serde_json::from_slice(&bytes).map_err(|e| KmsError::secret_json("the server's answer", &e))
    }

    /// `GET /v1/status`.
    pub async fn status(&self) -> Result<StatusResponse, KmsError> {
        self.json::<(), _>(
            reqwest::Method::GET,
            "/v1/status",
            None,
            fixed(SHORT_ANSWER, "GET /v1/status"),
        )
        .await
    }

    /// `POST /v1/new`: `count` new KEKs in one request.
    pub async fn new_keks(&self, count: usize) -> Result<Vec<SecretKey>, KmsError> {
        let r: NewResponse = self
            .json(
                reqwest::Method::POST,
                "/v1/new",
                Some(&NewRequest { count }),
                batch("POST /v1/new", count),
            )
            .await?;
        let keks = zeroize::Zeroizing::new(r.keks);
        check_count(keks.len(), count)?;
        keks.iter().map(|k| unhex_key(k)).collect()
    }

    /// `POST /v1/key`: the DEKs of many KEKs in one request, each a result.
    pub async fn deks(
        &self,
        keks: &[SecretKey],
    ) -> Result<Vec<Result<SecretKey, KmsError>>, KmsError> {
        let mut req = KeyRequest {
            keks: keks
                .iter()
                .map(|k| hex::encode(k.expose_secret()))
                .collect(),
        };
        let answer = self
            .json(
                reqwest::Method::POST,
                "/v1/key",
                Some(&req),
                batch("POST /v1/key", keks.len()),
            )
            .await;
        zeroize::Zeroize::zeroize(&mut req.keks);
        let r: BatchResponse = answer?;
        check_count(r.results.len(), keks.len())?;
        Ok(r.results
            .into_iter()
            .map(|i| item_value(i, "key").and_then(|v| unhex_key(&zeroize::Zeroizing::new(v))))
            .collect())
    }

    /// Creates a named key (bearer token).
    pub async fn create_key(&self, name: &str, state: KeyState) -> Result<KeyInfo, KmsError> {
        let req = CreateRequest {
            name: name.to_owned(),
            state: Some(state),
        };
        self.json(
            reqwest::Method::POST,
            "/v1/keys",
            Some(&req),
            fixed(KEY_INFO_ANSWER, "POST /v1/keys"),
        )
        .await
    }

    /// Lists named keys (bearer token).
    pub async fn list_keys(&self) -> Result<Vec<String>, KmsError> {
        let r: ListResponse = self
            .json::<(), _>(
                reqwest::Method::GET,
                "/v1/keys",
                None,
                fixed(LIST_ANSWER, "GET /v1/keys"),
            )
            .await?;
        Ok(r.names)
    }

    /// A named key's metadata (bearer token).
    pub async fn key_info(&self, name: &str) -> Result<KeyInfo, KmsError> {
        self.json::<(), _>(
            reqwest::Method::GET,
            &key_path(name, "")?,
            None,
            fixed(KEY_INFO_ANSWER, "GET /v1/keys/NAME"),
        )
        .await
    }

    /// Adds a version to a named key (bearer token).
    pub async fn rotate(&self, name: &str) -> Result<KeyInfo, KmsError> {
        self.json::<(), _>(
            reqwest::Method::POST,
            &key_path(name, "/rotate")?,
            None,
            fixed(KEY_INFO_ANSWER, "POST /v1/keys/NAME/rotate"),
        )
        .await
    }

    /// Changes a named key's state (bearer token).
    pub async fn set_state(&self, name: &str, state: KeyState) -> Result<KeyInfo, KmsError> {
        self.json(
            reqwest::Method::POST,
            &key_path(name, "/state")?,
            Some(&StateRequest { state }),
            fixed(KEY_INFO_ANSWER, "POST /v1/keys/NAME/state"),
        )
        .await
    }

    /// Sets a named key's minimum decryption version (bearer token).
    pub async fn set_min_decrypt_version(&self, name: &str, min: u32) -> Result<KeyInfo, KmsError> {
        let req = ConfigRequest {
            min_decrypt_version: min,
        };
        self.json(
            reqwest::Method::POST,
            &key_path(name, "/config")?,
            Some(&req),
            fixed(KEY_INFO_ANSWER, "POST /v1/keys/NAME/config"),
        )
        .await
    }

    async fn data(
        &self,
        name: &str,
        op: &str,
        items: &[(&[u8], &[u8])],
    ) -> Result<Vec<Result<Vec<u8>, KmsError>>, KmsError> {
        if op == "encrypt"
            && let Some((d, _)) = items.iter().find(|(d, _)| d.len() > MAX_ITEM_PLAINTEXT)
        {
            return Err(KmsError::PlaintextTooLarge {
                len: d.len(),
                max: MAX_ITEM_PLAINTEXT,
            });
        }
        let req = DataRequest {
            items: items
                .iter()
                .map(|(d, c)| DataItem {
                    data: hex::encode(d),
                    context: hex::encode(c),
                })
                .collect(),
        };
        let r: BatchResponse = self
            .json(
                reqwest::Method::POST,
                &key_path(name, &format!("/{op}"))?,
                Some(&req),
                batch(data_route(op), items.len()),
            )
            .await?;
        check_count(r.results.len(), items.len())?;
        Ok(r.results
            .into_iter()
            .zip(items)
            .map(|(i, (data, _))| {
                item_value(i, op)
                    .map_err(|e| version_of_refused(e, op, data))
                    .and_then(|v| hex::decode(v).map_err(|_| KmsError::Malformed("hex")))
            })
            .collect())
    }

    /// Encrypts a batch of `(plaintext, context)` under a named key. A
    /// plaintext above [`MAX_ITEM_PLAINTEXT`] is
    /// [`KmsError::PlaintextTooLarge`], before any request; a batch whose
    /// ciphertexts would not fit one decrypt request is refused by the
    /// server ([`KmsError::TooLarge`]).
    pub async fn encrypt(
        &self,
        name: &str,
        items: &[(&[u8], &[u8])],
    ) -> Result<Vec<Result<Vec<u8>, KmsError>>, KmsError> {
        self.data(name, "encrypt", items).await
    }

    /// Decrypts a batch of `(ciphertext, context)` under a named key.
    pub async fn decrypt(
        &self,
        name: &str,
        items: &[(&[u8], &[u8])],
    ) -> Result<Vec<Result<Vec<u8>, KmsError>>, KmsError> {
        self.data(name, "decrypt", items).await
    }

    /// Re-encrypts a batch of `(ciphertext, context)` to the newest version.
    pub async fn rewrap(
        &self,
        name: &str,
        items: &[(&[u8], &[u8])],
    ) -> Result<Vec<Result<Vec<u8>, KmsError>>, KmsError> {
        self.data(name, "rewrap", items).await
    }

    /// `count` data keys: each the key and its wrapped form. A context so
    /// long that the wrapped form would not fit one decrypt request under
    /// the server's body limit is refused ([`KmsError::TooLarge`]).
    pub async fn datakeys(
        &self,
        name: &str,
        count: usize,
        context: &[u8],
    ) -> Result<Vec<(SecretKey, Vec<u8>)>, KmsError> {
        let req = DataKeyRequest {
            count,
            context: hex::encode(context),
        };
        let r: BatchResponse = self
            .json(
                reqwest::Method::POST,
                &key_path(name, "/datakey")?,
                Some(&req),
                batch("POST /v1/keys/NAME/datakey", count),
            )
            .await?;
        check_count(r.results.len(), count)?;
        r.results
            .into_iter()
            .map(|i| {
                let wrapped = i.wrapped.clone().ok_or(KmsError::Malformed("datakey"))?;
                let key = unhex_key(&zeroize::Zeroizing::new(item_value(i, "datakey")?))?;
                Ok((
                    key,
                    hex::decode(wrapped).map_err(|_| KmsError::Malformed("hex"))?,
                ))
            })
            .collect()
    }
}

/// Refuses a batch answer of `got` results to a request of `asked` items:
/// results are matched to items by their order, so one left out or added
/// would give each later item another's result.
fn check_count(got: usize, asked: usize) -> Result<(), KmsError> {
    if got == asked {
        Ok(())
    } else {
        Err(KmsError::Malformed(
            "batch answer: the server sent another number of results than items asked for",
        ))
    }
}

/// The bound of an answer of at most `limit` bytes to `route`, whatever
/// the request.
fn fixed(limit: u64, route: &'static str) -> impl FnOnce(usize) -> Bound {
    move |_| Bound { limit, route }
}

/// The bound of the answer to a batch of `items` items to `route` (see
/// [`answer::batch_answer`]).
fn batch(route: &'static str, items: usize) -> impl FnOnce(usize) -> Bound {
    move |request_len| Bound {
        limit: answer::batch_answer(request_len, items),
        route,
    }
}

/// The route of the batch operation `op`, as an error names it.
fn data_route(op: &str) -> &'static str {
    match op {
        "encrypt" => "POST /v1/keys/NAME/encrypt",
        "decrypt" => "POST /v1/keys/NAME/decrypt",
        _ => "POST /v1/keys/NAME/rewrap",
    }
}

fn key_path(name: &str, tail: &str) -> Result<String, KmsError> {
    crate::lifecycle::check_name(name)?;
    Ok(format!("/v1/keys/{name}{tail}"))
}

fn unhex_key(text: &str) -> Result<SecretKey, KmsError> {
    SecretKey::try_filled(|raw| {
        hex::decode_to_slice(text, &mut raw[..]).map_err(|_| KmsError::Malformed("key hex"))
    })
}

/// A decrypt or rewrap item the server refused as not a ciphertext it
/// reads ("malformed" from a server before version codes,
/// "unsupported-version" after) whose header names a version this build
/// does not read: that version, as the local parser says it, rather than
/// "not a seccs kms ciphertext".
fn version_of_refused(e: KmsError, op: &str, data: &[u8]) -> KmsError {
    let refused_as_unread = match &e {
        KmsError::NotCiphertext => true,
        KmsError::ItemRefused { code, .. } => code == "unsupported-version",
        _ => false,
    };
    if !(refused_as_unread && (op == "decrypt" || op == "rewrap")) {
        return e;
    }
    match crate::ciphertext::CiphertextHeader::parse(data) {
        Err(version @ KmsError::UnsupportedVersion { .. }) => version,
        _ => e,
    }
}

/// The value of a batch item of operation `op`, or its error: each code
/// of the server's per-item errors as a typed error.
fn item_value(i: Item, op: &str) -> Result<String, KmsError> {
    match (i.value, i.error) {
        (Some(v), None) => Ok(v),
        (_, Some(code)) => Err(match code.as_str() {
            "not-found" => KmsError::NotFound,
            "tampered" => KmsError::Tampered,
            "version" => KmsError::VersionBelowMinimum,
            "malformed" if op == "decrypt" || op == "rewrap" => KmsError::NotCiphertext,
            "malformed" if op == "key" => KmsError::Malformed(crate::server::KEK_FORMS),
            "too-large" => KmsError::too_large_from_server(shown(&i.message.unwrap_or(code))),
            _ => KmsError::ItemRefused {
                message: i
                    .message
                    .map(|m| shown(&m))
                    .unwrap_or_else(|| match code.as_str() {
                        "state" => "the key's state does not allow this operation".to_owned(),
                        "malformed" => "the server could not read the item".to_owned(),
                        _ => format!("error code {}", shown(&code)),
                    }),
                code: shown(&code),
            },
        }),
        _ => Err(KmsError::Malformed("batch item")),
    }
}

/// Fails with [`KmsError::InsideAsyncRuntime`] if the calling thread is
/// inside a tokio runtime: there, blocking on a runtime of our own panics
/// ("Cannot start a runtime from within a runtime") or stalls the caller's.
///
/// tokio gives its `spawn_blocking` threads the runtime's context too and
/// offers no way to tell them from its async workers, so they are refused
/// as well: call the blocking API on a thread of its own.
pub(crate) fn ensure_not_in_runtime(what: &'static str) -> Result<(), KmsError> {
    match tokio::runtime::Handle::try_current() {
        Ok(_) => Err(KmsError::InsideAsyncRuntime(what)),
        Err(_) => Ok(()),
    }
}

/// A blocking client: a [`KmsClient`] on its own single-threaded runtime.
///
/// It may be made anywhere, but [`run`](Self::run) must be called on a
/// thread outside any tokio runtime: inside one (an async task, a
/// `#[tokio::main]` or `#[tokio::test]` body, and also a `spawn_blocking`
/// closure, which tokio gives the runtime's context) it returns
/// [`KmsError::InsideAsyncRuntime`] rather than block. From async code use
/// [`KmsClient`], or run the blocking call on a thread of its own
/// (`std::thread::spawn`). Dropping it inside a runtime is safe.
#[derive(Debug)]
pub struct BlockingClient {
    /// `Some` until dropped.
    rt: Option<tokio::runtime::Runtime>,
    inner: KmsClient,
}

impl BlockingClient {
    /// A blocking client for `config`.
    pub fn new(config: &ClientConfig) -> Result<Self, KmsError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let inner = {
            let _guard = rt.enter();
            KmsClient::new(config)?
        };
        Ok(Self {
            rt: Some(rt),
            inner,
        })
    }

    /// Runs one async call of the inner client to completion; on a thread
    /// inside a tokio runtime, fails with [`KmsError::InsideAsyncRuntime`]
    /// instead.
    pub fn run<'a, T, F>(&'a self, f: impl FnOnce(&'a KmsClient) -> F) -> Result<T, KmsError>
    where
        F: std::future::Future<Output = Result<T, KmsError>> + 'a,
    {
        ensure_not_in_runtime("the blocking KMS client")?;
        let Some(rt) = &self.rt else {
            return Err(KmsError::Io(std::io::Error::other(
                "the blocking KMS client's runtime is gone",
            )));
        };
        rt.block_on(f(&self.inner))
    }

    /// The async client (for calls through [`run`](Self::run)).
    pub fn inner(&self) -> &KmsClient {
        &self.inner
    }
}

impl Drop for BlockingClient {
    /// Dropping a runtime waits for its threads, which tokio forbids (by
    /// panicking) inside another runtime: there it is let go in the
    /// background.
    fn drop(&mut self) {
        if tokio::runtime::Handle::try_current().is_ok()
            && let Some(rt) = self.rt.take()
        {
            rt.shutdown_background();
        }
    }
}

/// Reads a KEK file: 32 raw bytes, or 64 hex digits (surrounding
/// whitespace allowed), as written by `seccs kms new --out FILE`, `wget …
/// /new -O kek.dat` or by hand.
///
/// A KEK file that group or other can read is used, but logged once per
/// process as a warning (`tracing`): the KEK is the credential that fetches
/// its DEK, so the file should be 0600. [`kek_file_mode_exposed`] tells a
/// caller that shows its own warnings.
pub fn load_kek(path: &std::path::Path) -> Result<SecretKey, KmsError> {
    let bytes = zeroize::Zeroizing::new(read_bounded(path, MAX_KEK_FILE)?);
    let kek = crate::server::parse_kek(&bytes)?;
    if let Some(mode) = kek_file_mode_exposed(path) {
        static WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
        if !WARNED.swap(true, std::sync::atomic::Ordering::Relaxed) {
            tracing::warn!(
                path = %path.display(),
                "{}",
                kek_file_warning(path, mode)
            );
        }
    }
    Ok(kek)
}

/// The mode of the KEK file at `path` when group or other may read or
/// write it (it should be 0600), else `None` (also when it cannot be
/// checked).
pub fn kek_file_mode_exposed(path: &std::path::Path) -> Option<u32> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o7777;
        (mode & 0o077 != 0).then_some(mode)
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        None
    }
}

/// The warning about a KEK file of mode `mode` that others can read.
pub fn kek_file_warning(path: &std::path::Path, mode: u32) -> String {
    format!(
        "the KEK file {} can be read by others (mode {mode:o}): make it 0600 (`chmod 600`); \
         whoever holds the KEK can fetch its DEK",
        path.display()
    )
}

/// The most of a server's text shown in an error, in bytes.
const SHOWN_MAX: usize = 300;

/// A server's text as an error shows it: control characters (escape
/// sequences, carriage returns, line breaks) escaped as `\u{1b}`, `\r`,
/// `\n`, so that a server cannot forge lines or send the terminal
/// commands, and cut to [`SHOWN_MAX`] characters.
fn shown(text: &str) -> String {
    let mut out = String::new();
    for (i, c) in text.chars().enumerate() {
        if i == SHOWN_MAX {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// The largest KEK file read: 64 hex digits and a line end, with room.
const MAX_KEK_FILE: u64 = 4096;
/// The largest CA file read: a bundle of many certificates.
const MAX_CA_FILE: u64 = 4 << 20;

/// The directory and file name of a new KEK file at `path`, checked: the
/// path does not end in a directory separator (`kek/` names a directory,
/// not a file), the name is free (no file, directory or link of that
/// name, dangling or not) and the directory exists.
fn kek_destination(path: &std::path::Path) -> Result<(std::path::PathBuf, String), KmsError> {
    let text = path.as_os_str().to_string_lossy();
    if matches!(
        text.rsplit(std::path::is_separator).next(),
        Some("" | "." | "..")
    ) {
        return Err(KmsError::Config(format!(
            "{} names a directory, not a file: give the path of the new KEK file",
            path.display()
        )));
    }
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or(KmsError::Config("KEK path needs a file name".into()))?;
    match std::fs::symlink_metadata(path) {
        Ok(_) => return Err(KmsError::FileExists(path.to_owned())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(KmsError::File {
                action: "check",
                path: path.to_owned(),
                source,
            });
        }
    }
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => Ok((dir.to_owned(), name.to_owned())),
        Ok(_) => Err(KmsError::Config(format!(
            "cannot create {}: {} is not a directory",
            path.display(),
            dir.display()
        ))),
        Err(source) => Err(KmsError::File {
            action: "create a file in",
            path: dir.to_owned(),
            source,
        }),
    }
}

/// The length of a KEK file: the KEK's 32 raw bytes.
const KEK_FILE_LEN: usize = 32;

/// A new KEK file in the making: created by [`KekFile::create`] *before*
/// the server is asked for a KEK, so a destination that cannot be written
/// (a taken name, a missing or read-only directory, a path ending in `/`,
/// a disk without room for its 32 bytes,
/// a file system that can neither link a file nor rename one without
/// replacing another) is refused while no key exists yet; [`KekFile::write`] then fills it.
///
/// It holds a temporary file (mode 0600) of 32 zero bytes beside the destination;
/// dropped without [`write`](KekFile::write), that file is removed.
#[derive(Debug)]
pub struct KekFile {
    path: std::path::PathBuf,
    file: crate::atomic::NewFile,
}

impl KekFile {
    /// Checks `path` (see [`check_kek_destination`]) and creates the
    /// temporary file the KEK will be written to, its 32 bytes reserved
    /// (written and synced): a disk without room for them fails here,
    /// before the server makes a key whose KEK could not be saved.
    pub fn create(path: &std::path::Path) -> Result<Self, KmsError> {
        let (dir, name) = kek_destination(path)?;
        let file = crate::dir::DirFd::open_io(&dir)
            .and_then(|opened| crate::atomic::NewFile::create(&opened, &name))
            .map_err(|source| KmsError::File {
                action: "create a file in",
                path: dir,
                source,
            })
            .and_then(|mut file| {
                file.reserve(KEK_FILE_LEN)
                    .map_err(|source| KmsError::File {
                        action: "write",
                        path: path.to_owned(),
                        source,
                    })
                    .map(|()| file)
            })?;
        Ok(Self {
            path: path.to_owned(),
            file,
        })
    }

    /// The destination.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// The temporary file the KEK is written to before it appears at
    /// [`KekFile::path`] (removed by [`KekFile::write`] or on drop), for a
    /// caller that must remove it itself if the process is interrupted.
    pub fn temporary_path(&self) -> &std::path::Path {
        self.file.temporary_path()
    }

    /// Writes `kek` as 32 raw bytes and makes the file appear at its path,
    /// durably, by a hard link that fails if the name was taken since
    /// [`KekFile::create`] ([`KmsError::FileExists`]), or on a file system
    /// without hard links (vfat, exFAT) a rename that fails alike: nothing
    /// is replaced.
    pub fn write(self, kek: &SecretKey) -> Result<(), KmsError> {
        let Self { path, file } = self;
        file.commit(kek.expose_secret()).map_err(|source| {
            if source.kind() == std::io::ErrorKind::AlreadyExists {
                KmsError::FileExists(path)
            } else {
                KmsError::File {
                    action: "create",
                    path,
                    source,
                }
            }
        })
    }
}

/// The directory and file name of a new KEK file at `path`, checked: the
/// path does not end in `/`, the name is free (no file, directory or link
/// of that name, dangling or not), and a file can be created in the
/// directory (a temporary file is created there and removed). Call it (or
/// better, [`KekFile::create`]) before asking the server for a KEK that
/// [`save_kek`] is to write, so a refusal leaves no orphan key.
pub fn check_kek_destination(
    path: &std::path::Path,
) -> Result<(std::path::PathBuf, String), KmsError> {
    drop(KekFile::create(path)?);
    kek_destination(path)
}

/// Writes `kek` as 32 raw bytes to a new file at `path` (mode 0600,
/// durably); never replaces anything at `path`: the file appears by a hard
/// link of a synced temporary file, which fails if the name is taken, even
/// by a file created since [`check_kek_destination`].
pub fn save_kek(path: &std::path::Path, kek: &SecretKey) -> Result<(), KmsError> {
    KekFile::create(path)?.write(kek)
}

/// The longest a store key stays in [`store_key_cache`], whatever TTL
/// its caller asked for.
const MAX_STORE_KEY_TTL: Duration = MAX_CACHE_TTL;

/// Process-wide cache of store keys, by server and KEK. Shared by callers
/// whose configurations differ, so each entry lives its caller's TTL.
fn store_key_cache() -> &'static DekCache {
    static CACHE: OnceLock<DekCache> = OnceLock::new();
    CACHE.get_or_init(|| DekCache::new(MAX_STORE_KEY_TTL, Arc::new(SystemClock::default())))
}

/// The part of cache ids that names the server.
pub(crate) fn url_digest(url: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"seccs/v1/kms/cache-id\0");
    h.update(url.as_bytes());
    h.finalize().into()
}

/// The cache id of `kek` at the server of `url_digest`: one SHA-256 of
/// 64 bytes, so a cache hit costs little.
pub(crate) fn cache_id(url_digest: &[u8; 32], kek: &SecretKey) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(url_digest);
    h.update(kek.expose_secret());
    h.finalize().into()
}

/// Fetches the content store key held by the key server as the DEK of
/// `kek` (blocking; call it outside any async runtime). Results are cached
/// for the process for `config.cache_ttl` (at most one hour); errors are
/// never cached. A content store created with `seccs init --key-from-kms
/// URL --kek FILE` keeps only the URL and the KEK file's location and calls
/// this on every open.
///
/// On a thread inside a tokio runtime (including `spawn_blocking`) it
/// fails with [`KmsError::InsideAsyncRuntime`], cached key or not.
pub fn fetch_store_key(config: &ClientConfig, kek: &SecretKey) -> Result<SecretKey, KmsError> {
    ensure_not_in_runtime("fetch_store_key")?;
    let id = cache_id(&url_digest(&config.url), kek);
    if !config.cache_ttl.is_zero()
        && let Some(k) = store_key_cache().get(&id)
    {
        return Ok(k.dek().clone());
    }
    let client = BlockingClient::new(config)?;
    let dek = client.run(|c| c.dek(kek))?;
    if !config.cache_ttl.is_zero() {
        store_key_cache().insert_for(id, Arc::new(CachedKey::new(dek.clone())), config.cache_ttl);
    }
    Ok(dek)
}

#[cfg(test)]
mod tests {
    /// A server's full disk is said as the operator's to fix, whether the
    /// seed's plain 507 or a `/v1/` JSON error says it.
    #[test]
    fn a_full_server_disk_is_said_as_such() {
        let plain = KmsClient::server_error(507, b"Key storage full", None);
        assert!(matches!(plain, KmsError::ServerStorageFull), "{plain:?}");
        let json = br#"{"error":"storage-full","message":"the key service's storage is full"}"#;
        let v1 = KmsClient::server_error(507, json, None);
        assert!(matches!(v1, KmsError::ServerStorageFull), "{v1:?}");
        assert_eq!(
            v1.to_string(),
            "the key service's storage is full; tell its operator"
        );
    }

    use super::*;

    #[test]
    fn a_servers_error_text_is_shown_escaped_and_bounded() {
        let body = b"\x1b[31mred\rforged line\nmore\x07";
        let shown = KmsClient::server_error(500, body, None).to_string();
        assert_eq!(
            shown,
            "server answered 500: \\u{1b}[31mred\\rforged line\\nmore\\u{7}"
        );
        let json = br#"{"error":"weird\u001b","message":"a\u001b[2Jb"}"#;
        let shown = KmsClient::server_error(400, json, None).to_string();
        assert!(!shown.chars().any(char::is_control), "{shown:?}");
        assert!(shown.contains("a\\u{1b}[2Jb"), "{shown}");
        let long = "x".repeat(10_000);
        let shown = KmsClient::server_error(500, long.as_bytes(), None).to_string();
        assert!(shown.len() < 400, "{}", shown.len());
        let item = Item {
            value: None,
            wrapped: None,
            error: Some("odd\r".to_owned()),
            message: Some("line\nforged".to_owned()),
        };
        let shown = item_value(item, "encrypt")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(!shown.chars().any(char::is_control), "{shown:?}");
    }

    #[test]
    fn a_malformed_kek_answer_says_what_a_kek_is() {
        let item = Item {
            value: None,
            wrapped: None,
            error: Some("malformed".to_owned()),
            message: None,
        };
        let shown = item_value(item, "key")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert_eq!(shown, "malformed KEK: 32 bytes or 64 hex digits");
    }

    #[test]
    fn debug_output_never_shows_the_token() -> Result<(), KmsError> {
        let config = ClientConfig::new("https://127.0.0.1:1")
            .with_token("SUPER-SECRET-TOKEN")
            .with_pin(&"ab".repeat(32))?;
        let shown = format!("{config:?} {:?}", KmsClient::new(&config)?);
        assert!(!shown.contains("SUPER-SECRET"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
        Ok(())
    }
}
