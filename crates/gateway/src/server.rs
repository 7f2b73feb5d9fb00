//! The gateway itself: the axum router, the request path (authenticate, route, check budgets,
//! forward with retries, meter the answer) and the listeners.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Path as UrlPath, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Uri, header};
use axum::response::Response;
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::config::{ApiKey, Limits, ModelRoute, Options, ProviderKind, RetryPolicy, Throttle};
use crate::meter::Meter;
use crate::notice::{Fallback, Notice, ProviderPaused, ProviderThrottled, Waiting};
use crate::provider::{Place, ProviderState};
use crate::registry::{Admission, Estimate, Identity, ModelUsage, Registry, Reservation};
use crate::retry;
use crate::translate::{Answer, Plan};
use crate::wire::{
    Api, ENDPOINTS, OutputCap, Refusal, Request, Shape, estimate_input_tokens, stream_error,
};
use crate::{Error, Provider};

/// The Anthropic API version sent when the agent names none.
const DEFAULT_ANTHROPIC_VERSION: &str = "2023-06-01";

/// Request headers passed on to the provider. Everything else, the agent's credentials first
/// of all, stays behind.
const FORWARDED: &[&str] = &[
    "accept",
    "anthropic-version",
    "anthropic-beta",
    "openai-beta",
    "user-agent",
];

/// Response headers not passed back: they describe the connection to the provider, not the
/// answer, or the body is re-framed on the way.
const NOT_RETURNED: &[&str] = &[
    "connection",
    "keep-alive",
    "transfer-encoding",
    "content-length",
    "upgrade",
    "proxy-authenticate",
    "trailer",
    "te",
    "set-cookie",
];

/// Longest upstream error body the gateway reads to scrub it.
const MAX_ERROR_BODY: usize = 1024 * 1024;

/// A provider with everything needed to call it.
struct Upstream {
    name: String,
    kind: ProviderKind,
    /// An OpenAI-compatible server that serves the Responses API too.
    responses: bool,
    base_url: String,
    key: Option<ApiKey>,
    quota_pause: domain::Duration,
    /// Its pause and its limit on requests under way, shared by every request.
    state: Arc<ProviderState>,
}

/// What every request handler shares.
pub(crate) struct Shared {
    pub(crate) registry: Registry,
    notices: mpsc::UnboundedSender<Notice>,
    notices_lost: AtomicBool,
    client: reqwest::Client,
    providers: Vec<Upstream>,
    /// Alias → (route, index into `providers`).
    models: HashMap<String, (ModelRoute, usize)>,
    /// The alias a model name that matches none is mapped to, for executions that name no
    /// alias of their own: the alias `default`, or the only alias there is.
    default_alias: Option<String>,
    retry: RetryPolicy,
    throttle: Throttle,
    max_request_bytes: usize,
    limits: Limits,
    /// Places for requests under way, per execution: see [`Limits::concurrent_requests`].
    slots: std::sync::Mutex<HashMap<domain::ExecutionId, Arc<tokio::sync::Semaphore>>>,
}

impl Shared {
    /// The semaphore that bounds the execution's requests under way. Entries of executions no
    /// longer registered are dropped once nothing holds them.
    fn slot(&self, identity: &Identity) -> Arc<tokio::sync::Semaphore> {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(slot) = slots.get(&identity.execution) {
            return Arc::clone(slot);
        }
        if slots.len() >= 64 {
            slots.retain(|_, s| Arc::strong_count(s) > 1);
        }
        let slot = Arc::new(tokio::sync::Semaphore::new(self.limits.concurrent_requests));
        slots.insert(identity.execution, Arc::clone(&slot));
        slot
    }

    /// The route a request for `route` goes to instead when its provider is out of quota: its
    /// fallback, or the fallback's, the first whose provider is not paused and that this
    /// execution may use over this API.
    fn fallback_for(
        &self,
        route: &ModelRoute,
        identity: &Identity,
        api: Api,
    ) -> Option<(&ModelRoute, usize)> {
        let now = self.registry.now();
        let mut next = route.fallback.as_deref();
        // Bounded, in case the configuration has a cycle the manifest did not catch.
        for _ in 0..self.models.len() {
            let (candidate, index) = self.models.get(next?)?;
            let upstream = &self.providers[*index];
            if identity.allows(&candidate.alias)
                && Plan::new(upstream.kind, upstream.responses, api, false).is_some()
                && upstream.state.paused(now).is_none()
            {
                return Some((candidate, *index));
            }
            next = candidate.fallback.as_deref();
        }
        None
    }

    /// The alias a request whose model matches no alias goes to: the execution's own (the
    /// first it may use), else the node's default. `None` when there is none it may use.
    fn mapped_alias(&self, identity: &Identity) -> Option<&str> {
        let own = identity.models.as_ref().and_then(|list| list.first());
        let alias = own.or(self.default_alias.as_ref())?;
        let (alias, _) = self.models.get_key_value(alias)?;
        identity.allows(alias).then_some(alias.as_str())
    }

    pub(crate) fn notify(&self, notice: Notice) {
        if self.notices.send(notice).is_err() && !self.notices_lost.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                "the model gateway's notice channel is closed; usage is no longer recorded"
            );
        }
    }
}

/// The model gateway. Cheap to clone; clones share everything.
#[derive(Clone)]
pub struct Gateway {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut aliases: Vec<&String> = self.shared.models.keys().collect();
        aliases.sort();
        f.debug_struct("Gateway")
            .field("models", &aliases)
            .finish_non_exhaustive()
    }
}

fn check_options(options: &Options) -> Result<(), Error> {
    let config = |msg: String| Err(Error::Config(msg));
    let mut names = std::collections::HashSet::new();
    for p in &options.providers {
        if p.name.trim().is_empty() {
            return config("a provider has an empty name; give every provider a name".into());
        }
        if !names.insert(p.name.as_str()) {
            return config(format!(
                "the provider name `{}` is used twice; provider names must be unique",
                p.name
            ));
        }
        match reqwest::Url::parse(&p.base_url) {
            Ok(url) if matches!(url.scheme(), "http" | "https") => {}
            _ => {
                return config(format!(
                    "provider `{}` has the base URL `{}`, which is not an http or https URL; \
                     write it with its version prefix, such as https://api.openai.com/v1",
                    p.name, p.base_url
                ));
            }
        }
        if p.kind != ProviderKind::OpenAiCompatible && p.api_key.is_none() {
            return config(format!(
                "provider `{}` ({}) has no API key; only openai_compatible providers may go \
                 without one",
                p.name,
                p.kind.as_str()
            ));
        }
    }
    let mut aliases = std::collections::HashSet::new();
    for m in &options.models {
        if m.alias.trim().is_empty() || m.upstream_model.trim().is_empty() {
            return config(format!(
                "the model route `{}` → `{}` needs both an alias and an upstream model name",
                m.alias, m.upstream_model
            ));
        }
        if !aliases.insert(m.alias.as_str()) {
            return config(format!(
                "the model alias `{}` is defined twice; aliases must be unique",
                m.alias
            ));
        }
        if !names.contains(m.provider.as_str()) {
            let mut known: Vec<&str> = names.iter().copied().collect();
            known.sort();
            return config(format!(
                "the model alias `{}` names the provider `{}`, which is not configured; the \
                 providers are: {}",
                m.alias,
                m.provider,
                if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                }
            ));
        }
    }
    for m in &options.models {
        if let Some(fallback) = &m.fallback
            && !aliases.contains(fallback.as_str())
        {
            return config(format!(
                "the model alias `{}` falls back to `{fallback}`, which is not a configured alias",
                m.alias
            ));
        }
    }
    if options.retry.max_attempts == 0 {
        return config("the retry policy needs at least 1 attempt".into());
    }
    if options.limits.concurrent_requests == 0 {
        return config("an execution needs room for at least 1 model request at once".into());
    }
    Ok(())
}

impl Gateway {
    /// Checks the configuration and builds the HTTP client. Usage, waits and budget refusals
    /// are sent on `notices`; the engine must keep reading it.
    pub fn new(
        options: Options,
        registry: Registry,
        notices: mpsc::UnboundedSender<Notice>,
    ) -> Result<Gateway, Error> {
        check_options(&options)?;
        // reqwest is built without a default TLS provider so that exactly one, ring, is
        // compiled in. Installing it fails harmlessly when this process already chose one.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .connect_timeout(options.connect_timeout.as_std())
            .tcp_nodelay(true)
            .pool_idle_timeout(std::time::Duration::from_secs(60))
            .build()
            .map_err(|e| Error::Client(e.to_string()))?;
        let providers: Vec<Upstream> = options
            .providers
            .into_iter()
            .map(|p: Provider| Upstream {
                name: p.name,
                kind: p.kind,
                responses: p.responses,
                base_url: p.base_url.trim_end_matches('/').to_owned(),
                key: p.api_key,
                quota_pause: p.quota_pause,
                state: Arc::new(ProviderState::new()),
            })
            .collect();
        let default_alias = match options.models.as_slice() {
            [only] => Some(only.alias.clone()),
            many => many
                .iter()
                .find(|m| m.alias == "default")
                .map(|m| m.alias.clone()),
        };
        let models = options
            .models
            .into_iter()
            .map(|m| {
                let index = providers
                    .iter()
                    .position(|p| p.name == m.provider)
                    .unwrap_or_default();
                (m.alias.clone(), (m, index))
            })
            .collect();
        Ok(Gateway {
            shared: Arc::new(Shared {
                registry,
                notices,
                notices_lost: AtomicBool::new(false),
                client,
                providers,
                models,
                default_alias,
                retry: options.retry,
                throttle: options.throttle,
                max_request_bytes: options.max_request_bytes,
                limits: options.limits,
                slots: std::sync::Mutex::new(HashMap::new()),
            }),
        })
    }

    /// Pauses `provider` until `until`, as after a used-up quota: how the engine restores a
    /// pause it recorded before it restarted. False when no provider has that name.
    pub fn pause_provider(&self, provider: &str, until: domain::Timestamp, reason: &str) -> bool {
        let Some(upstream) = self.shared.providers.iter().find(|p| p.name == provider) else {
            return false;
        };
        upstream
            .state
            .pause(self.shared.registry.now(), until, reason);
        true
    }

    /// The registry this gateway authenticates against.
    pub fn registry(&self) -> &Registry {
        &self.shared.registry
    }

    /// The HTTP routes, for serving or for calling in tests with `tower::ServiceExt::oneshot`.
    pub fn router(&self) -> Router {
        app(self.clone())
    }

    /// Starts serving on a loopback TCP address or a Unix socket. Call it twice to serve on
    /// both; the servers share everything.
    pub async fn serve(&self, listen: Listen) -> Result<Server, Error> {
        let (shutdown, stop) = oneshot::channel::<()>();
        let stop = async move {
            let _ = stop.await;
        };
        let app = self.router();
        match listen {
            Listen::Tcp(addr) => {
                if !addr.ip().is_loopback() {
                    return Err(Error::NotLoopback { addr });
                }
                let bind = |source| Error::BindTcp { addr, source };
                let listener = tokio::net::TcpListener::bind(addr).await.map_err(bind)?;
                let local = listener.local_addr().map_err(bind)?;
                // Stream events are small; Nagle's algorithm would hold them back.
                let listener = listener.tap_io(|tcp| {
                    let _ = tcp.set_nodelay(true);
                });
                let task = tokio::spawn(async move {
                    if let Err(e) = axum::serve(listener, app)
                        .with_graceful_shutdown(stop)
                        .await
                    {
                        tracing::error!("the model gateway on {local} stopped: {e}");
                    }
                });
                Ok(Server::new(Local::Tcp(local), shutdown, task))
            }
            Listen::Unix(path) => {
                let bind = |source| Error::BindUnix {
                    path: path.clone(),
                    source,
                };
                remove_stale_socket(&path).map_err(bind)?;
                let listener = tokio::net::UnixListener::bind(&path).map_err(bind)?;
                let shown = path.display().to_string();
                let task = tokio::spawn(async move {
                    if let Err(e) = axum::serve(listener, app)
                        .with_graceful_shutdown(stop)
                        .await
                    {
                        tracing::error!("the model gateway on {shown} stopped: {e}");
                    }
                });
                Ok(Server::new(Local::Unix(path), shutdown, task))
            }
        }
    }
}

/// A socket left by an earlier run is removed; any other file is left alone and reported.
fn remove_stale_socket(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::FileTypeExt;
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => std::fs::remove_file(path),
        Ok(_) => Err(std::io::Error::new(
            std::io::ErrorKind::AlreadyExists,
            "a file that is not a socket is in the way",
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Where to listen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listen {
    /// A loopback address; port 0 picks a free port.
    Tcp(SocketAddr),
    /// A Unix socket at this path; a stale socket there is replaced.
    Unix(PathBuf),
}

/// Where a [`Server`] listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Local {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

/// A running listener. Dropping it stops it at once; [`Server::shutdown`] lets requests under
/// way finish first.
#[derive(Debug)]
pub struct Server {
    local: Local,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Server {
    fn new(local: Local, shutdown: oneshot::Sender<()>, task: JoinHandle<()>) -> Server {
        Server {
            local,
            shutdown: Some(shutdown),
            task: Some(task),
        }
    }

    pub fn local(&self) -> &Local {
        &self.local
    }

    /// For a TCP listener, the base URL to give agents, such as `http://127.0.0.1:4100/v1`.
    /// Anthropic clients want it without the `/v1` ([`Server::origin`]).
    pub fn base_url(&self) -> Option<String> {
        self.origin().map(|o| format!("{o}/v1"))
    }

    /// For a TCP listener, `http://host:port`.
    pub fn origin(&self) -> Option<String> {
        match &self.local {
            Local::Tcp(addr) => Some(format!("http://{addr}")),
            Local::Unix(_) => None,
        }
    }

    /// Stops accepting connections and waits for the requests under way to finish.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        self.remove_socket();
    }

    fn remove_socket(&self) {
        if let Local::Unix(path) = &self.local {
            let _ = std::fs::remove_file(path);
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            self.remove_socket();
        }
    }
}

/// The gateway's HTTP routes.
pub fn app(gateway: Gateway) -> Router {
    Router::new()
        .route(
            "/v1/chat/completions",
            post(|s: State<Arc<Shared>>, h: HeaderMap, b: Body| call(s.0, Api::Chat, h, b)),
        )
        .route(
            "/v1/responses",
            post(|s: State<Arc<Shared>>, h: HeaderMap, b: Body| call(s.0, Api::Responses, h, b)),
        )
        .route(
            "/v1/messages",
            post(|s: State<Arc<Shared>>, h: HeaderMap, b: Body| call(s.0, Api::Messages, h, b)),
        )
        .route(
            "/v1/messages/count_tokens",
            post(|s: State<Arc<Shared>>, h: HeaderMap, b: Body| call(s.0, Api::CountTokens, h, b)),
        )
        .route("/v1/models", get(list_models))
        .route("/v1beta/models", get(list_models))
        .route(
            "/v1beta/models/{target}",
            post(
                |s: State<Arc<Shared>>, t: UrlPath<String>, u: Uri, h: HeaderMap, b: Body| {
                    gemini_call(s.0, t.0, u, h, b)
                },
            ),
        )
        .fallback(not_found)
        // The body is read with its own limit below, to answer in the provider's shape.
        .layer(DefaultBodyLimit::disable())
        .with_state(Arc::clone(&gateway.shared))
}

fn json_response(status: u16, body: &Value) -> Response {
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn refuse(shape: Shape, refusal: Refusal, message: &str) -> Response {
    json_response(refusal.status(shape), &refusal.body(shape, message))
}

/// The token an agent presents: `Authorization: Bearer …` (OpenAI clients), `x-api-key`
/// (Anthropic clients) or `x-goog-api-key` (Gemini clients; the `key=` query parameter is
/// read by [`gemini_call`]).
fn token_of(headers: &HeaderMap) -> Option<&str> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    bearer
        .or_else(|| headers.get("x-api-key").and_then(|v| v.to_str().ok()))
        .or_else(|| headers.get("x-goog-api-key").and_then(|v| v.to_str().ok()))
        .filter(|t| !t.is_empty())
}

/// The `key` parameter of a query string, as Gemini clients may send their key.
fn query_key(uri: &Uri) -> Option<String> {
    let query = uri.query()?;
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(name, _)| *name == "key")
        .map(|(_, value)| percent_decode(value))
        .filter(|v| !v.is_empty())
}

/// Decodes `%XX` escapes and `+`; a malformed escape is kept as it is.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = bytes
            .get(i + 1..i + 3)
            .filter(|_| bytes[i] == b'%')
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match (escaped, bytes[i]) {
            (Some(byte), _) => {
                out.push(byte);
                i += 3;
                continue;
            }
            (None, b'+') => out.push(b' '),
            (None, byte) => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The identity behind the request's token, or why there is none.
fn authenticate(shared: &Shared, headers: &HeaderMap) -> Result<Arc<Identity>, &'static str> {
    let Some(token) = token_of(headers) else {
        return Err(
            "no API key was given: send the execution's token as `Authorization: Bearer …`, \
             `x-api-key` or `x-goog-api-key`",
        );
    };
    shared.registry.identity(token).ok_or(
        "the API key is not valid here: it belongs to no running execution (it may have ended)",
    )
}

async fn read_body(body: Body, limit: usize, shape: Shape) -> Result<Bytes, Response> {
    axum::body::to_bytes(body, limit).await.map_err(|_| {
        refuse(
            shape,
            Refusal::TooLarge,
            &format!("the request body is larger than the gateway's limit of {limit} bytes"),
        )
    })
}

/// A Gemini call: `/v1beta/models/{model}:{method}`, the key in `x-goog-api-key` or `key=`.
async fn gemini_call(
    shared: Arc<Shared>,
    target: String,
    uri: Uri,
    mut headers: HeaderMap,
    body: Body,
) -> Response {
    let shape = Shape::Gemini;
    let Some((model, api)) = target
        .split_once(':')
        .and_then(|(model, method)| Some((model, Api::gemini_method(method)?)))
    else {
        return refuse(
            shape,
            Refusal::NoSuchPath,
            &format!(
                "the model gateway does not serve POST {}; it serves {ENDPOINTS}",
                uri.path()
            ),
        );
    };
    if token_of(&headers).is_none()
        && let Some(key) = query_key(&uri).and_then(|k| HeaderValue::from_str(&k).ok())
    {
        headers.insert("x-goog-api-key", key);
    }
    let model = model.strip_prefix("models/").unwrap_or(model).to_owned();
    call_model(shared, api, Some(model), headers, body).await
}

async fn call(shared: Arc<Shared>, api: Api, headers: HeaderMap, body: Body) -> Response {
    call_model(shared, api, None, headers, body).await
}

/// One model request. `path_model` is the model a Gemini path names; the other APIs name it
/// in the body.
async fn call_model(
    shared: Arc<Shared>,
    api: Api,
    path_model: Option<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let shape = api.shape();
    let identity = match authenticate(&shared, &headers) {
        Ok(identity) => identity,
        Err(message) => return refuse(shape, Refusal::Unauthenticated, message),
    };
    let body = match read_body(body, shared.max_request_bytes, shape).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    let parsed = match path_model {
        Some(model) => Request::parse_gemini(&body, model, api == Api::StreamGenerate),
        None => Request::parse(&body),
    };
    let request = match parsed {
        Ok(request) => request,
        Err(message) => return refuse(shape, Refusal::BadRequest, &message),
    };
    let mut route = shared
        .models
        .get(&request.model)
        .filter(|_| identity.allows(&request.model));
    if !shared.models.contains_key(&request.model)
        && let Some(alias) = shared.mapped_alias(&identity)
    {
        // Agent CLIs ask for their own vendor's model names (`gemini-2.5-pro`,
        // `claude-opus-…`) unless told otherwise: those go to the execution's alias, and the
        // mapping is recorded like a fallback.
        let reason = format!(
            "the model `{}` matches no alias; it was mapped to the execution's alias `{alias}`",
            request.model
        );
        tracing::info!(execution = %identity.execution, "{reason}");
        if !api.is_free() {
            shared.notify(Notice::Fallback(Fallback {
                execution: identity.execution,
                model: request.model.clone(),
                fallback: alias.to_owned(),
                reason,
            }));
        }
        route = shared.models.get(alias);
    }
    let Some((route, provider_index)) = route else {
        let mut visible: Vec<&str> = shared
            .models
            .keys()
            .map(String::as_str)
            .filter(|alias| identity.allows(alias))
            .collect();
        visible.sort_unstable();
        return refuse(
            shape,
            Refusal::UnknownModel,
            &format!(
                "the model `{}` is not available through this gateway; the models are: {}",
                request.model,
                visible.join(", ")
            ),
        );
    };
    let (mut route, mut provider_index) = (route, *provider_index);
    let upstream = &shared.providers[provider_index];
    let Some(plan) = Plan::new(upstream.kind, upstream.responses, api, request.stream) else {
        return refuse(
            shape,
            Refusal::BadRequest,
            &format!(
                "the model `{}` is served by the {} provider `{}`, which does not speak the {}; \
                 call it through {}",
                route.alias,
                upstream.kind.as_str(),
                upstream.name,
                api.describe(),
                match upstream.kind {
                    ProviderKind::Anthropic => "/v1/messages",
                    ProviderKind::Gemini => "/v1beta/models/{model}:streamGenerateContent",
                    _ => "/v1/chat/completions or /v1/responses",
                }
            ),
        );
    };
    if api.is_free() && !plan.passes_through() {
        // A provider of another API has no token counting of this one: the gateway's own
        // estimate answers.
        let tokens = estimate_input_tokens(body.len());
        return json_response(200, &crate::translate::estimated_count(api, tokens));
    }
    let ask_usage = api == Api::Chat && request.stream;
    if api.is_free() {
        let outgoing = upstream_headers(upstream, &headers);
        let url = format!(
            "{}{}",
            upstream.base_url,
            api.upstream_path(&route.upstream_model)
        );
        // Free: neither reserved nor metered.
        let body = Bytes::from(match shape {
            Shape::Gemini => request.rewrite_gemini(None),
            _ => request.rewrite(&route.upstream_model, false, None),
        });
        let response = match forward(
            &shared,
            &identity,
            provider_index,
            &route.alias,
            &url,
            outgoing,
            body,
            None,
        )
        .await
        {
            Ok(sent) => sent.response,
            Err(message) => return unreachable_provider(shape, upstream, &message),
        };
        let (mut out, response) = match answer_head(shape, upstream, response, None).await {
            Ok(head) => head,
            Err(refused) => return refused,
        };
        *out.body_mut() = Body::from_stream(response.bytes_stream());
        return out;
    }

    // A paused provider gets no request: its fallback takes it, or the agent is told at once.
    if let Some(pause) = upstream.state.paused(shared.registry.now()) {
        let paused = ProviderPaused {
            execution: identity.execution,
            provider: upstream.name.clone(),
            until: pause.until,
            reason: pause.reason,
        };
        match shared.fallback_for(route, &identity, api) {
            Some((next, index)) => {
                shared.notify(Notice::Fallback(Fallback {
                    execution: identity.execution,
                    model: route.alias.clone(),
                    fallback: next.alias.clone(),
                    reason: paused.describe(),
                }));
                (route, provider_index) = (next, index);
            }
            None => {
                let message = paused.describe();
                shared.notify(Notice::PausedRefusal(paused));
                return quota_refusal(shape, &message);
            }
        }
    }

    let deadline = tokio::time::Instant::now() + shared.limits.total_timeout.as_std();
    // A place among the execution's requests under way first, then the reservation, so that
    // the reservation sees what the requests before it really used.
    let slot = shared.slot(&identity);
    let mut permit = match tokio::time::timeout_at(deadline, slot.acquire_owned()).await {
        Ok(Ok(permit)) => permit,
        _ => {
            return refuse(
                shape,
                Refusal::Busy,
                &format!(
                    "this execution already has {} model requests under way and no place came \
                     free in time; send fewer requests at once",
                    shared.limits.concurrent_requests
                ),
            );
        }
    };
    loop {
        let upstream = &shared.providers[provider_index];
        // A fallback's provider may speak another API: the way there is planned anew.
        let Some(plan) = Plan::new(upstream.kind, upstream.responses, api, request.stream) else {
            return refuse(
                shape,
                Refusal::BadRequest,
                &format!(
                    "the provider `{}` cannot be reached over the {}",
                    upstream.name,
                    api.describe()
                ),
            );
        };
        let estimate = Estimate {
            input_tokens: estimate_input_tokens(body.len()),
            requested_output: request.output_cap_for(api),
            default_output: shared.limits.max_output_tokens,
            prices: route.prices,
        };
        let reservation = loop {
            let settled = shared.registry.next_settlement();
            tokio::pin!(settled);
            settled.as_mut().enable();
            match shared.registry.admit(&identity, &estimate) {
                Admission::Granted(reservation) => break reservation,
                Admission::Wait => {
                    if tokio::time::timeout_at(deadline, settled).await.is_err() {
                        return refuse(
                            shape,
                            Refusal::Busy,
                            "the budget's remaining room is held by requests still under way; \
                             try again when they end",
                        );
                    }
                }
                Admission::Refused(over, first) => {
                    let message = format!(
                        "{}; this execution may make no more model requests",
                        over.reason
                    );
                    if first {
                        shared.notify(Notice::BudgetExceeded(over));
                    }
                    return refuse(shape, Refusal::Budget, &message);
                }
            }
        };
        let cap = reservation.set_cap.map(|tokens| OutputCap {
            tokens,
            fields: api.cap_fields(),
            add_as: match (api, upstream.kind) {
                (Api::Chat, ProviderKind::OpenAi) => "max_completion_tokens",
                (Api::Responses, _) => "max_output_tokens",
                _ => "max_tokens",
            },
        });
        let upstream_body = match shape {
            _ if !plan.passes_through() => match plan.request(
                &body,
                &route.upstream_model,
                request.stream,
                cap.map(|c| c.tokens),
                upstream.kind == ProviderKind::OpenAi,
                shared.limits.max_output_tokens,
            ) {
                Ok(translated) => Bytes::from(translated),
                Err(message) => {
                    shared
                        .registry
                        .settle(&mut { reservation }, &ModelUsage::default());
                    return refuse(shape, Refusal::BadRequest, &message);
                }
            },
            Shape::Gemini => Bytes::from(request.rewrite_gemini(cap.map(|c| c.tokens))),
            _ => Bytes::from(request.rewrite(&route.upstream_model, ask_usage, cap)),
        };
        let job = Job {
            shared: Arc::clone(&shared),
            identity: Arc::clone(&identity),
            plan,
            shape,
            provider: provider_index,
            alias: route.alias.clone(),
            prices: route.prices,
            url: format!(
                "{}{}",
                upstream.base_url,
                plan.provider.upstream_path(&route.upstream_model)
            ),
            headers: planned_headers(&plan, upstream, &headers),
            body: upstream_body,
            reservation,
            deadline,
            fallback: shared.fallback_for(route, &identity, api).is_some(),
        };
        // The upstream side runs on its own, so that an agent hanging up does not stop it: the
        // gateway reads the answer to its end to learn what it cost.
        let (head_tx, head_rx) = oneshot::channel();
        tokio::spawn(job.run(head_tx, permit));
        match head_rx.await {
            Ok(JobEnd::Answer(response)) => return response,
            Ok(JobEnd::OutOfQuota {
                permit: back,
                reason,
            }) => {
                // Not retried on the same provider: its fallback takes it at once, re-admitted
                // at the fallback's prices.
                let Some((next, index)) = shared.fallback_for(route, &identity, api) else {
                    return quota_refusal(shape, &reason);
                };
                shared.notify(Notice::Fallback(Fallback {
                    execution: identity.execution,
                    model: route.alias.clone(),
                    fallback: next.alias.clone(),
                    reason,
                }));
                (route, provider_index, permit) = (next, index, back);
            }
            Err(_) => {
                return refuse(
                    shape,
                    Refusal::Upstream,
                    "the model gateway lost this request; try again",
                );
            }
        }
    }
}

/// What a used-up quota looks like to the agent when no fallback takes the request: the
/// provider's own quota error, marked for SDKs not to retry it.
fn quota_refusal(shape: Shape, message: &str) -> Response {
    let mut response = refuse(shape, Refusal::Paused, message);
    response
        .headers_mut()
        .insert("x-should-retry", HeaderValue::from_static("false"));
    response
}

/// A refusal for a provider that could not be reached.
fn unreachable_provider(shape: Shape, upstream: &Upstream, message: &str) -> Response {
    refuse(
        shape,
        Refusal::Upstream,
        &format!(
            "the provider `{}` could not be reached: {message}",
            upstream.name
        ),
    )
}

/// The answer's status and headers, or the whole answer when it is an error: a refused node
/// key is reported without the provider's words, other errors are passed on scrubbed.
async fn answer_head(
    shape: Shape,
    upstream: &Upstream,
    response: reqwest::Response,
    plan: Option<&Plan>,
) -> Result<(Response, reqwest::Response), Response> {
    let status = response.status();
    if matches!(status.as_u16(), 401 | 403) {
        // The provider refused the node's own key. That is the operator's problem, and the
        // provider's message may quote part of the key, so it is not passed on.
        tracing::error!(
            provider = %upstream.name,
            status = status.as_u16(),
            "the provider refused the node's API key; fix the key in the node configuration"
        );
        return Err(refuse(
            shape,
            Refusal::Upstream,
            &format!(
                "the provider `{}` refused the node's API key (HTTP {}); this is a problem of \
                 the node's configuration, not of the request",
                upstream.name,
                status.as_u16()
            ),
        ));
    }
    let mut out = Response::new(Body::empty());
    *out.status_mut() = status;
    for (name, value) in response.headers() {
        if !NOT_RETURNED.contains(&name.as_str()) {
            out.headers_mut().append(name.clone(), value.clone());
        }
    }
    if !status.is_success() {
        let scrubbed = scrub(response, upstream.key.as_ref()).await;
        *out.body_mut() = Body::from(match plan.filter(|p| !p.passes_through()) {
            Some(plan) => {
                // The caller gets the provider's error in its own API's shape.
                out.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                Bytes::from(plan.body(status.as_u16(), &scrubbed, ""))
            }
            None => scrubbed,
        });
        return Err(out);
    }
    Ok((out, response))
}

/// One admitted request on its way upstream and back.
struct Job {
    shared: Arc<Shared>,
    identity: Arc<Identity>,
    /// The way between the agent's API, whose shape the answer takes, and the provider's,
    /// which the meter reads.
    plan: Plan,
    shape: Shape,
    provider: usize,
    alias: String,
    prices: crate::config::Prices,
    url: String,
    headers: HeaderMap,
    body: Bytes,
    reservation: Reservation,
    deadline: tokio::time::Instant,
    /// The alias has a fallback to go to when the provider says its quota is used up.
    fallback: bool,
}

/// What a job hands back to the agent's side.
enum JobEnd {
    /// The answer, or the error, for the agent.
    Answer(Response),
    /// The provider's quota is used up and the alias has a fallback: the request, refused and
    /// not charged, goes there with the execution's place.
    OutOfQuota {
        permit: tokio::sync::OwnedSemaphorePermit,
        reason: String,
    },
}

type Chunk = Result<Bytes, std::io::Error>;

impl Job {
    /// Sends the request, hands the answer's head to the agent's side through `head`, then
    /// passes the body on while metering it, under the idle and total timeouts. The place among
    /// the execution's requests is held until the reservation is settled.
    async fn run(
        mut self,
        head: oneshot::Sender<JobEnd>,
        permit: tokio::sync::OwnedSemaphorePermit,
    ) {
        let shared = Arc::clone(&self.shared);
        let upstream = &shared.providers[self.provider];
        let sent = tokio::time::timeout_at(
            self.deadline,
            forward(
                &shared,
                &self.identity,
                self.provider,
                &self.alias,
                &self.url,
                std::mem::take(&mut self.headers),
                std::mem::take(&mut self.body),
                Some(&head),
            ),
        )
        .await;
        let answer = |response| JobEnd::Answer(response);
        let (response, place) = match sent {
            Ok(Ok(Forwarded {
                quota: Some(paused),
                ..
            })) if self.fallback => {
                // Providers do not bill refused requests.
                shared
                    .registry
                    .settle(&mut self.reservation, &ModelUsage::default());
                let reason = paused.describe();
                let _ = head.send(JobEnd::OutOfQuota { permit, reason });
                return;
            }
            Ok(Ok(sent)) => {
                if let Some(paused) = sent.quota {
                    let refused_key = matches!(sent.response.status().as_u16(), 401 | 403);
                    let message = paused.describe();
                    // The agent gets the provider's error: the engine must know why.
                    shared.notify(Notice::PausedRefusal(paused));
                    if refused_key {
                        // A 403 body is never passed on (it may quote the key), and the
                        // generic refused-key answer would mislead: the pause is named instead.
                        shared
                            .registry
                            .settle(&mut self.reservation, &ModelUsage::default());
                        let _ = head.send(answer(quota_refusal(self.shape, &message)));
                        return;
                    }
                }
                (sent.response, sent.place)
            }
            Ok(Err(message)) => {
                // Nothing reached the provider, or it answered nothing: nothing to charge.
                shared
                    .registry
                    .settle(&mut self.reservation, &ModelUsage::default());
                let _ = head.send(answer(unreachable_provider(self.shape, upstream, &message)));
                return;
            }
            Err(_) => {
                // The provider may be working on it: charged as reserved.
                let input = self.reservation.input_tokens;
                let output = self.reservation.output_tokens.unwrap_or(0);
                self.charge_unread(input, output);
                let _ = head.send(answer(refuse(
                    self.shape,
                    Refusal::Upstream,
                    &format!(
                        "the provider `{}` did not answer within the gateway's total timeout \
                         of {}",
                        upstream.name, shared.limits.total_timeout
                    ),
                )));
                return;
            }
        };
        let (mut out, response) =
            match answer_head(self.shape, upstream, response, Some(&self.plan)).await {
                Ok(head) => head,
                Err(refused) => {
                    // Providers do not bill refused requests.
                    shared
                        .registry
                        .settle(&mut self.reservation, &ModelUsage::default());
                    let _ = head.send(answer(refused));
                    return;
                }
            };
        let events = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        let meter = Meter::new(
            self.plan.provider,
            events,
            Arc::clone(&shared),
            Arc::clone(&self.identity),
            self.alias.clone(),
            self.prices,
            self.reservation,
        );
        let translator =
            (!self.plan.passes_through()).then(|| self.plan.answer(events, &self.alias));
        let relay = Relay {
            body: Box::pin(response.bytes_stream()),
            meter: Some(meter),
            permit: Some(permit),
            place,
            api: self.plan.caller,
            translator,
            events,
            limits: shared.limits,
            deadline: self.deadline,
            last_piece: tokio::time::Instant::now(),
            timer: Box::pin(tokio::time::sleep_until(
                self.deadline
                    .min(tokio::time::Instant::now() + shared.limits.idle_timeout.as_std()),
            )),
            held: None,
            done: false,
        };
        *out.body_mut() = Body::from_stream(relay);
        // An agent gone before the head arrived drops the relay here, which reads on.
        let _ = head.send(answer(out));
    }

    /// Settles a reservation whose answer was never read, at these counts.
    fn charge_unread(&mut self, input: u64, output: u64) {
        let tokens = domain::Tokens {
            input,
            output,
            cached: 0,
        };
        let cost_micros = self.prices.cost_micros(input, output, 0);
        let totals = ModelUsage::of_request(tokens, cost_micros);
        // Heard before the settlement wakes a waiter, as in the meter.
        self.shared
            .notify(Notice::Usage(crate::notice::UsageRecord {
                execution: self.identity.execution,
                task: self.identity.task,
                root: self.identity.root,
                agent: self.identity.agent.clone(),
                model: self.alias.clone(),
                tokens,
                cost_micros,
                complete: false,
            }));
        self.shared.registry.settle(&mut self.reservation, &totals);
    }
}

type UpstreamBody = std::pin::Pin<Box<dyn futures::Stream<Item = reqwest::Result<Bytes>> + Send>>;

/// The answer's body on its way to the agent, metered as it passes, polled by the agent's
/// connection itself so that a piece costs no hop between tasks. A stream's reservation is
/// settled the moment its final usage is read, before that event goes on, and a JSON body's
/// last piece is held back until the body is complete and settled: so by the time the agent has
/// its answer, the budget counts it. Idle and total timeouts cut the answer with an error event
/// in the API's shape. When the agent hangs up (the relay is dropped unfinished), a task reads
/// on for at most the drain timeout, to learn the real figure.
struct Relay {
    body: UpstreamBody,
    meter: Option<Meter>,
    /// The execution's place, held until the answer has been read to its end.
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
    /// The place among the provider's requests under way, held as long.
    place: Option<Place>,
    /// The agent's API: a cut answer ends with an error in its shape.
    api: Api,
    /// Set when the answer is translated into the agent's API on its way.
    translator: Option<Answer>,
    events: bool,
    limits: Limits,
    deadline: tokio::time::Instant,
    last_piece: tokio::time::Instant,
    /// Fires at the idle or total deadline; moved on lazily when pieces came meanwhile.
    timer: std::pin::Pin<Box<tokio::time::Sleep>>,
    held: Option<Bytes>,
    done: bool,
}

impl Relay {
    /// Ends the answer early: settles conservatively and gives the agent the reason.
    fn cut(&mut self, why: String) -> Option<Chunk> {
        self.done = true;
        self.permit = None;
        self.place = None;
        if let Some(mut meter) = self.meter.take() {
            meter.finish(Some(&why));
        }
        let message = format!("the model gateway cut this response: {why}");
        Some(if self.events {
            Ok(Bytes::from(stream_error(self.api, "timeout", &message)))
        } else {
            Err(std::io::Error::other(message))
        })
    }
}

impl futures::Stream for Relay {
    type Item = Chunk;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Chunk>> {
        use std::task::Poll;
        let this = &mut *self;
        loop {
            if this.done {
                return Poll::Ready(this.held.take().map(Ok));
            }
            match this.body.as_mut().poll_next(cx) {
                Poll::Ready(Some(Ok(chunk))) => {
                    this.last_piece = tokio::time::Instant::now();
                    if let Some(meter) = this.meter.as_mut() {
                        meter.feed(&chunk);
                        if this.events && meter.complete() {
                            meter.finish(None);
                        }
                    }
                    if let Some(answer) = this.translator.as_mut() {
                        let out = answer.push(&chunk);
                        if out.is_empty() {
                            continue;
                        }
                        return Poll::Ready(Some(Ok(Bytes::from(out))));
                    }
                    if this.events {
                        return Poll::Ready(Some(Ok(chunk)));
                    }
                    if let Some(previous) = this.held.replace(chunk) {
                        return Poll::Ready(Some(Ok(previous)));
                    }
                }
                Poll::Ready(None) => {
                    this.done = true;
                    this.permit = None;
                    this.place = None;
                    if let Some(mut meter) = this.meter.take() {
                        meter.finish(None);
                    }
                    let rest = this
                        .translator
                        .take()
                        .map(|mut answer| answer.finish())
                        .unwrap_or_default();
                    if !rest.is_empty() {
                        this.held = Some(Bytes::from(rest));
                    }
                }
                Poll::Ready(Some(Err(e))) => {
                    this.held = None;
                    return Poll::Ready(this.cut(format!("the provider's answer broke off ({e})")));
                }
                Poll::Pending => {
                    if this.timer.as_mut().poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                    let now = tokio::time::Instant::now();
                    let idle_at = this.last_piece + this.limits.idle_timeout.as_std();
                    if now >= this.deadline {
                        this.held = None;
                        let why = format!(
                            "the answer took longer than the gateway's total timeout of {}",
                            this.limits.total_timeout
                        );
                        return Poll::Ready(this.cut(why));
                    }
                    if now >= idle_at {
                        this.held = None;
                        let why = format!(
                            "the provider sent nothing for {}, the gateway's idle timeout",
                            this.limits.idle_timeout
                        );
                        return Poll::Ready(this.cut(why));
                    }
                    // Pieces came since the timer was set: move it on and wait again.
                    this.timer.as_mut().reset(idle_at.min(this.deadline));
                }
            }
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let Some(mut meter) = self.meter.take().filter(|m| !m.settled()) else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        // The agent hung up: read on, to settle at the provider's own figures.
        let mut body = std::mem::replace(&mut self.body, Box::pin(futures::stream::empty()));
        let permit = self.permit.take();
        let place = self.place.take();
        let events = self.events;
        let until = self
            .deadline
            .min(tokio::time::Instant::now() + self.limits.drain_timeout.as_std());
        runtime.spawn(async move {
            use futures::StreamExt;
            let _held = (permit, place);
            loop {
                match tokio::time::timeout_at(until, body.next()).await {
                    Ok(Some(Ok(chunk))) => {
                        meter.feed(&chunk);
                        if events && meter.complete() {
                            meter.finish(None);
                            return;
                        }
                    }
                    Ok(None) => return meter.finish(None),
                    Ok(Some(Err(_))) => {
                        return meter.finish(Some("the provider's answer broke off"));
                    }
                    Err(_) => {
                        return meter.finish(Some(
                            "the agent hung up and the provider's answer did not end in time",
                        ));
                    }
                }
            }
        });
    }
}

/// The provider's request headers for a request on `plan`. A translated request carries none
/// of the caller's API headers (`anthropic-version`, `anthropic-beta`, `openai-beta`, `accept`):
/// they were meant for the caller's API, and a beta the caller asked for could change the
/// answer into a shape the translation does not know.
fn planned_headers(plan: &Plan, upstream: &Upstream, incoming: &HeaderMap) -> HeaderMap {
    if plan.passes_through() {
        return upstream_headers(upstream, incoming);
    }
    let mut kept = HeaderMap::new();
    if let Some(agent) = incoming.get(header::USER_AGENT) {
        kept.insert(header::USER_AGENT, agent.clone());
    }
    upstream_headers(upstream, &kept)
}

fn upstream_headers(upstream: &Upstream, incoming: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::new();
    for name in FORWARDED {
        if let Some(value) = incoming.get(*name) {
            out.insert(HeaderName::from_static(name), value.clone());
        }
    }
    out.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let key = upstream
        .key
        .as_ref()
        .and_then(|k| HeaderValue::from_str(k.expose()).ok());
    match upstream.kind {
        ProviderKind::Anthropic => {
            if !out.contains_key("anthropic-version") {
                out.insert(
                    "anthropic-version",
                    HeaderValue::from_static(DEFAULT_ANTHROPIC_VERSION),
                );
            }
            if let Some(mut key) = key {
                // Marked sensitive so that no Debug output of the request ever shows it.
                key.set_sensitive(true);
                out.insert("x-api-key", key);
            }
        }
        ProviderKind::Gemini => {
            if let Some(mut key) = key {
                key.set_sensitive(true);
                out.insert("x-goog-api-key", key);
            }
        }
        ProviderKind::OpenAi | ProviderKind::OpenAiCompatible => {
            let bearer = upstream
                .key
                .as_ref()
                .and_then(|k| HeaderValue::from_str(&format!("Bearer {}", k.expose())).ok());
            if let Some(mut bearer) = bearer {
                bearer.set_sensitive(true);
                out.insert(header::AUTHORIZATION, bearer);
            }
        }
    }
    out
}

/// What came back from the provider, with the place among its requests under way that the
/// answer holds while it is read.
struct Forwarded {
    response: reqwest::Response,
    place: Option<Place>,
    /// Set when the provider said the account's quota is used up: the pause it started.
    quota: Option<ProviderPaused>,
}

/// Sends the request, waiting and retrying while the provider answers 429, 503 or 529, each
/// attempt within the provider's limit on requests under way. A used-up quota is never
/// retried: the provider is paused until its reset. The error is a sentence about the
/// connection; it never holds a header.
#[allow(clippy::too_many_arguments)]
async fn forward(
    shared: &Shared,
    identity: &Identity,
    provider: usize,
    alias: &str,
    url: &str,
    headers: HeaderMap,
    body: Bytes,
    head: Option<&oneshot::Sender<JobEnd>>,
) -> Result<Forwarded, String> {
    let upstream = &shared.providers[provider];
    let mut attempt = 1u32;
    loop {
        let place = upstream.state.acquire().await;
        let response = shared
            .client
            .post(url)
            .headers(headers.clone())
            .body(body.clone())
            .send()
            .await
            .map_err(|e| describe_send_error(&e))?;
        let status = response.status().as_u16();
        if response.status().is_success() {
            if let Some(limit) = upstream
                .state
                .succeeded(shared.registry.now(), &shared.throttle)
            {
                notify_throttled(shared, identity, upstream, limit);
            }
            return Ok(Forwarded {
                response,
                place: Some(place),
                quota: None,
            });
        }
        if !matches!(status, 400 | 402 | 403 | 429 | 503 | 529) {
            return Ok(Forwarded {
                response,
                place: Some(place),
                quota: None,
            });
        }
        // Reading the short error body tells a used-up quota from a passing limit, and lets
        // the connection go back to the pool.
        let status_code = response.status();
        let mut response_headers = response.headers().clone();
        let error_body = read_capped(response).await;
        let again = |headers: HeaderMap| {
            let mut again = axum::http::Response::new(error_body.clone());
            *again.status_mut() = status_code;
            *again.headers_mut() = headers;
            reqwest::Response::from(again)
        };
        match retry::classify(status, &response_headers, &error_body) {
            retry::Refused::Quota { reason, reset } => {
                let now = shared.registry.now();
                let until = now.plus(reset.unwrap_or(upstream.quota_pause));
                let paused = ProviderPaused {
                    execution: identity.execution,
                    provider: upstream.name.clone(),
                    until,
                    reason,
                };
                tracing::warn!(
                    execution = %identity.execution,
                    model = alias,
                    status,
                    "{}; not retrying",
                    paused.describe()
                );
                if upstream.state.pause(now, until, &paused.reason) {
                    shared.notify(Notice::ProviderPaused(paused.clone()));
                }
                // SDKs retry 429s by themselves unless told not to.
                response_headers.insert("x-should-retry", HeaderValue::from_static("false"));
                return Ok(Forwarded {
                    response: again(response_headers),
                    place: None,
                    quota: Some(paused),
                });
            }
            retry::Refused::Other => {
                return Ok(Forwarded {
                    response: again(response_headers),
                    place: None,
                    quota: None,
                });
            }
            retry::Refused::Busy => {}
        }
        if status == 429
            && let Some(limit) = upstream
                .state
                .rate_limited(shared.registry.now(), &shared.throttle)
        {
            notify_throttled(shared, identity, upstream, Some(limit));
        }
        // Given back during the wait, so that others may go while this one waits.
        drop(place);
        // An agent that hung up during a wait needs no more attempts.
        let agent_left = head.is_some_and(|h| h.is_closed());
        if attempt >= shared.retry.max_attempts || agent_left {
            return Ok(Forwarded {
                response: again(response_headers),
                place: None,
                quota: None,
            });
        }
        let delay = retry::delay(&response_headers, attempt, &shared.retry);
        shared.notify(Notice::Waiting(Waiting {
            execution: identity.execution,
            model: alias.to_owned(),
            attempt,
            delay,
            status,
        }));
        tracing::info!(
            execution = %identity.execution,
            model = alias,
            status,
            attempt,
            delay = %delay,
            "the provider is busy; waiting before retrying"
        );
        tokio::time::sleep(delay.as_std()).await;
        attempt += 1;
    }
}

fn notify_throttled(
    shared: &Shared,
    identity: &Identity,
    upstream: &Upstream,
    limit: Option<usize>,
) {
    tracing::info!(
        provider = %upstream.name,
        limit = ?limit,
        "the provider's limit on requests under way changed"
    );
    shared.notify(Notice::ProviderThrottled(ProviderThrottled {
        execution: identity.execution,
        provider: upstream.name.clone(),
        limit: limit.map(|l| u32::try_from(l).unwrap_or(u32::MAX)),
    }));
}

/// An error body, read up to [`MAX_ERROR_BODY`].
async fn read_capped(response: reqwest::Response) -> Bytes {
    use futures::StreamExt;
    let mut body = Vec::new();
    let mut stream = response.bytes_stream();
    while let Some(Ok(chunk)) = stream.next().await {
        if body.len() + chunk.len() > MAX_ERROR_BODY {
            break;
        }
        body.extend_from_slice(&chunk);
    }
    Bytes::from(body)
}

fn describe_send_error(e: &reqwest::Error) -> String {
    let what = if e.is_connect() {
        "the connection failed"
    } else if e.is_timeout() {
        "it timed out"
    } else {
        "the request failed"
    };
    // reqwest's message names the URL and the cause, never the headers.
    let mut text = format!("{what} ({e}");
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text.push(')');
    text
}

/// An upstream error body with every occurrence of the key replaced, in case a provider
/// echoes it.
async fn scrub(response: reqwest::Response, key: Option<&ApiKey>) -> Bytes {
    let mut body = Vec::new();
    let mut stream = response.bytes_stream();
    use futures::StreamExt;
    while let Some(Ok(chunk)) = stream.next().await {
        if body.len() + chunk.len() > MAX_ERROR_BODY {
            break;
        }
        body.extend_from_slice(&chunk);
    }
    let Some(key) = key.map(ApiKey::expose).filter(|k| !k.is_empty()) else {
        return Bytes::from(body);
    };
    let text = String::from_utf8_lossy(&body);
    if !text.contains(key) {
        return Bytes::from(body);
    }
    Bytes::from(text.replace(key, "<redacted>"))
}

/// Whose wire format a request that reached no model route speaks, from what its client sends:
/// Anthropic clients send `anthropic-version`, Gemini clients `x-goog-api-key` or `key=` and
/// use `/v1beta` paths.
fn caller_shape(uri: &Uri, headers: &HeaderMap) -> Shape {
    if headers.contains_key("anthropic-version") {
        Shape::Anthropic
    } else if headers.contains_key("x-goog-api-key")
        || query_key(uri).is_some()
        || uri.path().starts_with("/v1beta/")
    {
        Shape::Gemini
    } else {
        Shape::OpenAi
    }
}

async fn list_models(
    State(shared): State<Arc<Shared>>,
    uri: Uri,
    mut headers: HeaderMap,
) -> Response {
    let shape = caller_shape(&uri, &headers);
    if token_of(&headers).is_none()
        && let Some(key) = query_key(&uri).and_then(|k| HeaderValue::from_str(&k).ok())
    {
        headers.insert("x-goog-api-key", key);
    }
    let identity = match authenticate(&shared, &headers) {
        Ok(identity) => identity,
        Err(message) => return refuse(shape, Refusal::Unauthenticated, message),
    };
    let mut aliases: Vec<&String> = shared
        .models
        .keys()
        .filter(|alias| identity.allows(alias))
        .collect();
    aliases.sort();
    let body = match shape {
        Shape::OpenAi => json!({
            "object": "list",
            "data": aliases.iter().map(|a| json!({
                "id": a, "object": "model", "created": 0, "owned_by": "agentgrid"
            })).collect::<Vec<_>>()
        }),
        Shape::Anthropic => json!({
            "data": aliases.iter().map(|a| json!({
                "type": "model", "id": a, "display_name": a,
                "created_at": "1970-01-01T00:00:00Z"
            })).collect::<Vec<_>>(),
            "has_more": false,
            "first_id": aliases.first(),
            "last_id": aliases.last()
        }),
        Shape::Gemini => json!({
            "models": aliases.iter().map(|a| json!({
                "name": format!("models/{a}"), "displayName": a,
                "supportedGenerationMethods": [
                    "generateContent", "streamGenerateContent", "countTokens"
                ]
            })).collect::<Vec<_>>()
        }),
    };
    json_response(200, &body)
}

async fn not_found(method: axum::http::Method, uri: Uri, headers: HeaderMap) -> Response {
    refuse(
        caller_shape(&uri, &headers),
        Refusal::NoSuchPath,
        &format!(
            "the model gateway does not serve {method} {}; it serves {ENDPOINTS}",
            uri.path()
        ),
    )
}
