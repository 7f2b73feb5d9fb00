//! The fixture's HTTP server: routes, the script cursor, recorded requests and the gate.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::Response;
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use serde_json::{Value, json};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::wire::{self, Api, Reply};
use crate::{Error, Script, Step};

/// Requests larger than this are refused; agents with big contexts send a few megabytes.
const MAX_BODY: usize = 64 * 1024 * 1024;

/// How a fixture listens and whom it lets in.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct FixtureOptions {
    /// When set, every request must carry this key as `Authorization: Bearer …`, `x-api-key`
    /// or (Gemini) `x-goog-api-key` or `key=`, like a real provider; others get 401 in the
    /// route's error shape.
    pub api_key: Option<String>,
    /// The port on 127.0.0.1; 0 picks a free one.
    pub port: u16,
}

impl std::fmt::Debug for FixtureOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FixtureOptions")
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("port", &self.port)
            .finish()
    }
}

/// One request the fixture received, whatever it answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    /// Header names in lower case, in the order received.
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

impl Recorded {
    /// The first value of the header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body parsed as JSON, or `None` when it is not JSON.
    pub fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }

    /// Whether `needle` appears anywhere in the request: a header name or value or the body.
    pub fn contains(&self, needle: &str) -> bool {
        let in_headers = self
            .headers
            .iter()
            .any(|(n, v)| n.contains(needle) || v.contains(needle));
        let in_body = !needle.is_empty()
            && self
                .body
                .windows(needle.len())
                .any(|w| w == needle.as_bytes());
        in_headers || in_body
    }
}

struct Cursor {
    steps: Vec<Step>,
    next: usize,
    repeat: bool,
}

struct Shared {
    cursor: Mutex<Cursor>,
    requests: Mutex<Vec<Recorded>>,
    gate: Semaphore,
    api_key: Option<String>,
    replies: AtomicU64,
    /// Model calls being answered now, and the most there ever were at once.
    under_way: AtomicU64,
    most_under_way: AtomicU64,
}

/// Counts a model call as under way from its arrival until its answer has been sent whole or
/// abandoned.
struct UnderWay(Arc<Shared>);

impl UnderWay {
    fn new(shared: &Arc<Shared>) -> UnderWay {
        let now = shared.under_way.fetch_add(1, Ordering::SeqCst) + 1;
        shared.most_under_way.fetch_max(now, Ordering::SeqCst);
        UnderWay(Arc::clone(shared))
    }
}

impl Drop for UnderWay {
    fn drop(&mut self) {
        self.0.under_way.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Locks a mutex, ignoring poison: the data behind these locks stays consistent between
/// statements, so a panicking test thread cannot leave it half-written.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A running fixture. Dropping it stops the server.
pub struct Fixture {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Fixture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fixture")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

/// Starts a fixture on a free port of 127.0.0.1 answering from `script`, without an API key.
pub async fn spawn(script: Script) -> Result<Fixture, Error> {
    spawn_with(script, FixtureOptions::default()).await
}

/// Starts a fixture with explicit options.
pub async fn spawn_with(script: Script, options: FixtureOptions) -> Result<Fixture, Error> {
    let bind = |source| Error::Bind {
        port: options.port,
        source,
    };
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", options.port))
        .await
        .map_err(bind)?;
    let addr = listener.local_addr().map_err(bind)?;
    // Small stream events must leave at once; Nagle's algorithm would hold them back.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let shared = Arc::new(Shared {
        cursor: Mutex::new(Cursor {
            steps: script.steps,
            next: 0,
            repeat: script.repeat,
        }),
        requests: Mutex::new(Vec::new()),
        gate: Semaphore::new(0),
        api_key: options.api_key,
        replies: AtomicU64::new(0),
        under_way: AtomicU64::new(0),
        most_under_way: AtomicU64::new(0),
    });
    let (shutdown, stop) = oneshot::channel::<()>();
    let app = router(shared.clone());
    let task = tokio::spawn(async move {
        let serve = axum::serve(listener, app).with_graceful_shutdown(async {
            let _ = stop.await;
        });
        if let Err(e) = serve.await {
            eprintln!("model fixture on {addr} stopped: {e}");
        }
    });
    Ok(Fixture {
        addr,
        shared,
        shutdown: Some(shutdown),
        task: Some(task),
    })
}

impl Fixture {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The base URL a provider configuration points at, with the `/v1` prefix.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<Recorded> {
        lock(&self.shared.requests).clone()
    }

    /// How many script steps have been used so far.
    pub fn steps_used(&self) -> u64 {
        self.shared.replies.load(Ordering::SeqCst)
    }

    /// The most model calls that were being answered at the same moment (a stream counts until
    /// its last event is sent).
    pub fn most_under_way(&self) -> u64 {
        self.shared.most_under_way.load(Ordering::SeqCst)
    }

    /// Lets one stream held by a `gate` step continue.
    pub fn open_gate(&self) {
        self.shared.gate.add_permits(1);
    }

    /// Stops accepting requests and waits for open connections to finish (a stream held by a
    /// closed gate keeps it waiting; drop the fixture instead to stop at once).
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route(
            "/v1/chat/completions",
            post(
                |s: State<Arc<Shared>>, m: Method, u: Uri, h: HeaderMap, b: Bytes| {
                    model_call(s.0, Api::Chat, m, u, h, b)
                },
            ),
        )
        .route(
            "/v1/responses",
            post(
                |s: State<Arc<Shared>>, m: Method, u: Uri, h: HeaderMap, b: Bytes| {
                    model_call(s.0, Api::Responses, m, u, h, b)
                },
            ),
        )
        .route(
            "/v1/messages",
            post(
                |s: State<Arc<Shared>>, m: Method, u: Uri, h: HeaderMap, b: Bytes| {
                    model_call(s.0, Api::Messages, m, u, h, b)
                },
            ),
        )
        .route("/v1/messages/count_tokens", post(count_tokens))
        .route("/v1beta/models/{target}", post(gemini))
        .route("/v1/models", get(models))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(shared)
}

fn record(shared: &Shared, method: &Method, uri: &Uri, headers: &HeaderMap, body: &Bytes) {
    let headers = headers
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    lock(&shared.requests).push(Recorded {
        method: method.to_string(),
        path: uri.path().to_owned(),
        headers,
        body: body.clone(),
    });
}

fn authorized(shared: &Shared, headers: &HeaderMap, uri: &Uri) -> bool {
    let Some(key) = &shared.api_key else {
        return true;
    };
    let google = headers.get("x-goog-api-key").and_then(|v| v.to_str().ok());
    let in_query = uri
        .query()
        .unwrap_or("")
        .split('&')
        .any(|pair| pair.strip_prefix("key=") == Some(key.as_str()));
    if google == Some(key.as_str()) || in_query {
        return true;
    }
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let x_api_key = headers.get("x-api-key").and_then(|v| v.to_str().ok());
    bearer == Some(key.as_str()) || x_api_key == Some(key.as_str())
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn error(api: Api, status: u16, message: &str) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json_response(code, &wire::error_body(api, status, message))
}

fn next_step(shared: &Shared) -> Option<(u64, Step)> {
    let mut cursor = lock(&shared.cursor);
    if cursor.next >= cursor.steps.len() {
        if !cursor.repeat || cursor.steps.is_empty() {
            return None;
        }
        cursor.next = 0;
    }
    let step = cursor.steps[cursor.next].clone();
    cursor.next += 1;
    let id = shared.replies.fetch_add(1, Ordering::SeqCst) + 1;
    Some((id, step))
}

/// A Gemini call, `/v1beta/models/{model}:{method}`: the model and whether to stream are in
/// the path.
async fn gemini(
    State(shared): State<Arc<Shared>>,
    Path(target): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (model, call) = target.split_once(':').unwrap_or((&target, ""));
    let model = Some(model.to_owned());
    match call {
        "generateContent" => {
            model_call_as(shared, Api::Generate, model, method, uri, headers, body).await
        }
        "streamGenerateContent" => {
            model_call_as(
                shared,
                Api::StreamGenerate,
                model,
                method,
                uri,
                headers,
                body,
            )
            .await
        }
        "countTokens" => {
            record(&shared, &method, &uri, &headers, &body);
            if !authorized(&shared, &headers, &uri) {
                return error(Api::Generate, 401, "API key not valid");
            }
            if serde_json::from_slice::<Value>(&body).is_err() {
                return error(Api::Generate, 400, "the body is not JSON");
            }
            let tokens = (body.len() as u64 / 4).max(1);
            json_response(StatusCode::OK, &json!({ "totalTokens": tokens }))
        }
        other => {
            record(&shared, &method, &uri, &headers, &body);
            error(
                Api::Generate,
                404,
                &format!("the fixture has no Gemini method `{other}`"),
            )
        }
    }
}

async fn model_call(
    shared: Arc<Shared>,
    api: Api,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    model_call_as(shared, api, None, method, uri, headers, body).await
}

/// One model call; `path_model` is the model a Gemini path names.
async fn model_call_as(
    shared: Arc<Shared>,
    api: Api,
    path_model: Option<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    record(&shared, &method, &uri, &headers, &body);
    let under_way = UnderWay::new(&shared);
    if !authorized(&shared, &headers, &uri) {
        return error(api, 401, "invalid api key");
    }
    let request: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return error(api, 400, &format!("the body is not JSON: {e}")),
    };
    let model = path_model.unwrap_or_else(|| {
        request["model"]
            .as_str()
            .unwrap_or("fixture-model")
            .to_owned()
    });
    let stream = match api {
        Api::StreamGenerate => true,
        Api::Generate => false,
        _ => request["stream"].as_bool().unwrap_or(false),
    };
    let include_usage = request["stream_options"]["include_usage"]
        .as_bool()
        .unwrap_or(false);
    // Like a provider, the fixture never reports more output than the request allowed.
    let cap = ["max_tokens", "max_completion_tokens", "max_output_tokens"]
        .iter()
        .filter_map(|field| request[field].as_u64())
        .chain(request["generationConfig"]["maxOutputTokens"].as_u64())
        .min();
    let Some((id, mut step)) = next_step(&shared) else {
        let count = lock(&shared.requests).len();
        return error(
            api,
            500,
            &format!("the fixture's script has no step left for request {count}"),
        );
    };
    if let Some(cap) = cap {
        step.output_tokens = step.output_tokens.min(cap);
    }
    if step.delay_ms > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(step.delay_ms)).await;
    }
    if step.is_error() {
        let status = step.status.unwrap_or(500);
        let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let message = step
            .error_message
            .clone()
            .unwrap_or_else(|| format!("scripted error {status}"));
        let body = wire::error_body_with(api, status, &message, step.error_code.as_deref());
        let mut response = json_response(code, &body);
        let headers = response.headers_mut();
        for (name, value) in &step.headers {
            // Checked when the script was read; a step built in code is trusted the same way.
            if let (Ok(name), Ok(value)) = (
                axum::http::HeaderName::try_from(name.as_str()),
                HeaderValue::try_from(value.as_str()),
            ) {
                headers.insert(name, value);
            }
        }
        if let Some(ms) = step.retry_after_ms {
            headers.insert("retry-after-ms", HeaderValue::from(ms));
            headers.insert("retry-after", HeaderValue::from(ms.div_ceil(1000)));
        }
        if let Some(secs) = step.retry_after_secs {
            headers.insert("retry-after", HeaderValue::from(secs));
        }
        return response;
    }
    let reply = Reply {
        id,
        model: &model,
        step: &step,
    };
    if !stream {
        return json_response(StatusCode::OK, &reply.body(api));
    }
    let parts = reply.stream(api, include_usage);
    let (tx, rx) = mpsc::channel::<Bytes>(16);
    let gated = step.gate;
    let pause = std::time::Duration::from_millis(step.pause_ms);
    let gate_owner = shared.clone();
    tokio::spawn(async move {
        let _under_way = under_way;
        let mut deltas = parts.deltas.into_iter();
        let mut first: Vec<Bytes> = parts.head;
        first.extend(deltas.next());
        for chunk in first {
            if tx.send(chunk).await.is_err() {
                return;
            }
        }
        if gated {
            match gate_owner.gate.acquire().await {
                Ok(permit) => permit.forget(),
                Err(_) => return,
            }
        }
        if !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
        for chunk in deltas.chain(parts.tail) {
            if tx.send(chunk).await.is_err() {
                return;
            }
        }
    });
    let body = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<Bytes, Infallible>(b), rx))
    });
    let mut response = Response::new(Body::from_stream(body));
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

async fn count_tokens(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    record(&shared, &method, &uri, &headers, &body);
    if !authorized(&shared, &headers, &uri) {
        return error(Api::Messages, 401, "invalid x-api-key");
    }
    if serde_json::from_slice::<Value>(&body).is_err() {
        return error(Api::Messages, 400, "the body is not JSON");
    }
    // A stable estimate: a token per four bytes of request.
    let tokens = (body.len() as u64 / 4).max(1);
    json_response(StatusCode::OK, &json!({ "input_tokens": tokens }))
}

async fn models(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    record(&shared, &method, &uri, &headers, &Bytes::new());
    if !authorized(&shared, &headers, &uri) {
        return error(Api::Chat, 401, "invalid api key");
    }
    json_response(
        StatusCode::OK,
        &json!({
            "object": "list",
            "data": [{
                "id": "fixture-model",
                "object": "model",
                "type": "model",
                "created": 1_700_000_000,
                "owned_by": "modelfixture",
                "display_name": "Fixture model"
            }],
            "has_more": false
        }),
    )
}
