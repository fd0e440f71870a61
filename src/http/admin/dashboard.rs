//! The dashboard at `/admin`: server-rendered pages (minijinja templates embedded from
//! `templates/`, autoescaped) over the same [`crate::ops`] operations as the JSON API.
//!
//! A login form takes the admin token and sets the session cookie (see [`super::auth`]);
//! every other page needs it (else a redirect to the login), and every form posts the
//! CSRF token in a hidden `csrf` field (else 403). Wrong tokens count towards the same
//! per-address lockout as the API's. Every action is logged with what it touched; the
//! token, the cookie and the CSRF token never are.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::LazyLock;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequest, Path, RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use include_dir::{Dir, include_dir};
use minijinja::{Environment, Value as Jinja, context};
use serde::Serialize;
use serde_json::Value;

use super::auth::{self, ClientOrigin, SESSION_COOKIE};
use super::mappings::{announce_reload, source_for, try_payload};
use super::{AdminError, AdminState};
use crate::domain::{DeliveryId, DeliveryStatus, PlatformKind, WebhookId, WebhookStatus};
use crate::ops::{self, Tried};
use crate::store::{DeliveryFilter, WebhookFilter};

/// The recorded webhooks of `fixtures/`, embedded at build time: the playground offers them
/// wherever the binary runs (a container has no checkout).
static FIXTURES: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/fixtures");

/// Deliveries per page of the dead letters.
const DEAD_PAGE: i64 = 200;
/// Webhooks per page of the list.
const WEBHOOK_PAGE: i64 = 50;

static TEMPLATES: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = Environment::new();
    for (name, source) in [
        ("base.html", include_str!("templates/base.html")),
        ("login.html", include_str!("templates/login.html")),
        ("overview.html", include_str!("templates/overview.html")),
        ("webhooks.html", include_str!("templates/webhooks.html")),
        ("webhook.html", include_str!("templates/webhook.html")),
        ("dead.html", include_str!("templates/dead.html")),
        ("mappings.html", include_str!("templates/mappings.html")),
        ("playground.html", include_str!("templates/playground.html")),
        ("message.html", include_str!("templates/message.html")),
        ("outcomes.html", include_str!("templates/outcomes.html")),
    ] {
        env.add_template(name, source)
            .unwrap_or_else(|error| panic!("template {name}: {error}"));
    }
    env.add_filter("time", |ms: i64| time(ms));
    env.add_filter("age", |ms: i64| age(ms));
    env.add_filter("truncate", |text: String, chars: usize| {
        truncate(&text, chars)
    });
    env
});

/// The dashboard's routes: the login form open, every other page behind the session.
pub(super) fn routes(state: AdminState) -> Router<AdminState> {
    let pages = Router::new()
        .route("/admin", get(overview))
        .route("/admin/", get(overview))
        .route("/admin/logout", post(logout))
        .route("/admin/webhooks", get(webhooks))
        .route("/admin/webhooks/{id}", get(webhook))
        .route("/admin/webhooks/{id}/retranslate", post(retranslate))
        .route("/admin/dead", get(dead))
        .route("/admin/deliveries/replay", post(replay))
        .route("/admin/deliveries/cancel", post(cancel))
        .route("/admin/mappings", get(mappings))
        .route("/admin/mappings/reload", post(reload))
        .route("/admin/playground", get(playground).post(playground_try))
        .route_layer(axum::middleware::from_fn_with_state(state, require_session));
    Router::new()
        .route("/admin/login", get(login_form).post(login))
        .merge(pages)
}

// ---------------------------------------------------------------------------------------
// Sessions, CSRF, rendering

/// Lets a request with the session cookie through; sends any other to the login form.
async fn require_session(
    State(state): State<AdminState>,
    request: Request,
    next: Next,
) -> Response {
    let logged_in = auth::cookie(request.headers(), SESSION_COOKIE)
        .is_some_and(|value| state.gate.is_session(value));
    if logged_in {
        let origin = origin_of(&state, &request);
        let mut request = request;
        request.extensions_mut().insert(origin);
        next.run(request).await
    } else {
        Redirect::to("/admin/login").into_response()
    }
}

fn origin_of(state: &AdminState, request: &Request) -> ClientOrigin {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(SocketAddr::from(([0, 0, 0, 0], 0)), |info| info.0);
    state.gate.origin(peer, request.headers())
}

/// A posted form's fields, in order (a field may repeat: `ids=1&ids=2`), after its `csrf`
/// field was found to be the session's: else the request is refused 403.
struct Form {
    fields: Vec<(String, String)>,
    origin: ClientOrigin,
}

impl Form {
    fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
            .filter(|value| !value.trim().is_empty())
    }

    fn all(&self, name: &str) -> impl Iterator<Item = &str> {
        self.fields
            .iter()
            .filter(move |(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

impl FromRequest<AdminState> for Form {
    type Rejection = Response;

    async fn from_request(request: Request, state: &AdminState) -> Result<Self, Response> {
        let origin = request
            .extensions()
            .get::<ClientOrigin>()
            .copied()
            .unwrap_or_else(|| origin_of(state, &request));
        let path = request.uri().path().to_string();
        let body = Bytes::from_request(request, state)
            .await
            .map_err(IntoResponse::into_response)?;
        let fields: Vec<(String, String)> = form_urlencoded::parse(&body).into_owned().collect();
        let csrf_ok = fields
            .iter()
            .find(|(key, _)| key == "csrf")
            .is_some_and(|(_, value)| state.gate.is_csrf_token(value));
        if !csrf_ok {
            tracing::warn!(client = %origin.address, %path, "dashboard: a form without the session's CSRF token refused");
            return Err(message(
                StatusCode::FORBIDDEN,
                "Refused",
                "This form did not carry this session's CSRF token. Reload the page and try again.",
                None,
            ));
        }
        Ok(Form { fields, origin })
    }
}

/// Renders `template` with `ctx`, plus what every page has: the CSRF token for its forms
/// and the page's name for the menu.
fn render(state: &AdminState, template: &str, page: &str, ctx: Jinja) -> Response {
    let ctx = context! { csrf => state.gate.csrf_token(), page => page, ..ctx };
    render_with(template, ctx)
}

fn render_with(template: &str, ctx: Jinja) -> Response {
    let rendered = TEMPLATES
        .get_template(template)
        .and_then(|template| template.render(ctx));
    match rendered {
        Ok(html) => {
            let mut response = Html(html).into_response();
            // Pages show deliveries' payloads and errors: not for a shared cache.
            response
                .headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        Err(error) => {
            tracing::error!(%error, template, "dashboard: a page did not render");
            (StatusCode::INTERNAL_SERVER_ERROR, "the page did not render").into_response()
        }
    }
}

/// A page with a title and a message, and a link back.
fn message(status: StatusCode, title: &str, text: &str, back: Option<&str>) -> Response {
    let mut response = render_with(
        "message.html",
        context! { title => title, text => text, back => back },
    );
    *response.status_mut() = status;
    response
}

/// An [`AdminError`] as a page.
fn error_page(error: AdminError) -> Response {
    let status = error.status();
    if let AdminError::Store(cause) = &error {
        tracing::error!(error = %cause, "dashboard: the store failed");
    }
    message(status, "Not done", &error.to_string(), Some("/admin"))
}

/// A page, or the page saying why not.
type Page = Result<Response, Refused>;

/// A page saying why a request was not done (boxed: a response is large).
struct Refused(Box<Response>);

impl From<Response> for Refused {
    fn from(response: Response) -> Self {
        Refused(Box::new(response))
    }
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        *self.0
    }
}

fn store_failed(error: crate::store::StoreError) -> Response {
    error_page(AdminError::Store(error))
}

/// A query string's fields (`a=1&b=2`), empty values dropped.
fn query_fields(query: Option<String>) -> BTreeMap<String, String> {
    query
        .map(|q| {
            form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .filter(|(_, value)| !value.trim().is_empty())
                .collect()
        })
        .unwrap_or_default()
}

/// `time` filter: Unix milliseconds as `2026-03-14 03:22:06 UTC`.
fn time(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|ts| ts.strftime("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|_| ms.to_string())
}

/// `age` filter: milliseconds as `4 s`, `12 min`, `3 h`, `2 d`.
fn age(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min", s / 60),
        3600..86_400 => format!("{} h {} min", s / 3600, s % 3600 / 60),
        _ => format!("{} d", s / 86_400),
    }
}

/// `truncate` filter: at most `chars` characters, with `…` when cut.
fn truncate(text: &str, chars: usize) -> String {
    match text.char_indices().nth(chars) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_string(),
    }
}

fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).expect("a JSON value")
}

// ---------------------------------------------------------------------------------------
// Login and logout

async fn login_form(State(state): State<AdminState>, headers: HeaderMap) -> Response {
    if auth::cookie(&headers, SESSION_COOKIE).is_some_and(|value| state.gate.is_session(value)) {
        return Redirect::to("/admin").into_response();
    }
    render_with("login.html", context! { page => "login" })
}

/// Checks the posted token as the API does (constant time, wrong ones counted per address,
/// 429 when locked out) and sets the session cookie. The token is never logged.
async fn login(State(state): State<AdminState>, request: Request) -> Response {
    let origin = origin_of(&state, &request);
    let body = match Bytes::from_request(request, &state).await {
        Ok(body) => body,
        Err(rejection) => return rejection.into_response(),
    };
    let token = form_urlencoded::parse(&body)
        .find(|(key, _)| key == "token")
        .map(|(_, value)| value.trim().to_string())
        .unwrap_or_default();
    let refused = |status: StatusCode, error: String| {
        let mut response = render_with("login.html", context! { page => "login", error => error });
        *response.status_mut() = status;
        response
    };
    match state.gate.judge(origin.address, Some(&token)) {
        auth::Verdict::Allowed => {
            tracing::info!(action = "login", client = %origin.address, "dashboard: logged in");
            let mut response = Redirect::to("/admin").into_response();
            response.headers_mut().insert(
                header::SET_COOKIE,
                HeaderValue::from_str(&state.gate.session_cookie(origin.https))
                    .expect("a cookie of URL-safe characters"),
            );
            response
        }
        auth::Verdict::Refused => {
            tracing::warn!(action = "login", client = %origin.address, "dashboard: login with a wrong token");
            refused(
                StatusCode::UNAUTHORIZED,
                "That is not the admin token.".into(),
            )
        }
        auth::Verdict::Throttled { retry_after } => {
            let secs = retry_after.as_secs().max(1);
            tracing::warn!(action = "login", client = %origin.address, retry_after_s = secs, "dashboard: too many wrong tokens from this address");
            let mut response = refused(
                StatusCode::TOO_MANY_REQUESTS,
                format!("Too many wrong tokens from this address: try again in {secs} s."),
            );
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
            response
        }
    }
}

async fn logout(form: Form) -> Response {
    tracing::info!(action = "logout", client = %form.origin.address, "dashboard: logged out");
    let mut response = Redirect::to("/admin/login").into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&format!(
            "{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"
        ))
        .expect("a plain cookie"),
    );
    response
}

// ---------------------------------------------------------------------------------------
// Overview

#[derive(Serialize)]
struct Bar {
    x: usize,
    y: f64,
    height: f64,
    kind: &'static str,
    title: String,
}

#[derive(Serialize)]
struct Health {
    destination: String,
    counts: BTreeMap<String, u64>,
    oldest_pending_age_ms: Option<i64>,
    circuit: Option<crate::delivery::CircuitState>,
    last_error: Option<String>,
    last_error_delivery: Option<DeliveryId>,
}

const CHART_HEIGHT: f64 = 60.0;
const BAR_WIDTH: usize = 10;

async fn overview(State(state): State<AdminState>) -> Page {
    let stats = ops::stats(state.store.as_ref(), &state.circuits)
        .await
        .map_err(store_failed)?;
    let peak = stats
        .per_minute
        .iter()
        .map(|m| m.delivered + m.failed)
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let mut bars = Vec::new();
    for (i, minute) in stats.per_minute.iter().enumerate() {
        let x = i * BAR_WIDTH;
        let delivered = minute.delivered as f64 / peak * CHART_HEIGHT;
        let failed = minute.failed as f64 / peak * CHART_HEIGHT;
        let when = time(minute.minute);
        if minute.delivered > 0 {
            bars.push(Bar {
                x,
                y: CHART_HEIGHT - delivered,
                height: delivered,
                kind: "delivered",
                title: format!("{when}: {} delivered", minute.delivered),
            });
        }
        if minute.failed > 0 {
            bars.push(Bar {
                x,
                y: CHART_HEIGHT - delivered - failed,
                height: failed,
                kind: "failed",
                title: format!("{when}: {} failed", minute.failed),
            });
        }
    }
    let mut health = Vec::new();
    for destination in &stats.destinations {
        // The newest failure still standing: a dead delivery, or one waiting for a retry.
        let mut last: Option<(DeliveryId, String)> = None;
        for status in [DeliveryStatus::Dead, DeliveryStatus::Pending] {
            let newest = ops::list_deliveries(
                state.store.as_ref(),
                &DeliveryFilter {
                    destination: Some(destination.destination.clone()),
                    status: Some(status),
                    limit: Some(20),
                    ..DeliveryFilter::default()
                },
            )
            .await
            .map_err(store_failed)?
            .into_iter()
            .find_map(|d| d.last_error.map(|error| (d.id, error)));
            if let Some((id, error)) = newest
                && last.as_ref().is_none_or(|(seen, _)| seen.0 < id.0)
            {
                last = Some((id, error));
            }
        }
        health.push(Health {
            destination: destination.destination.clone(),
            counts: destination.counts.clone(),
            oldest_pending_age_ms: destination.oldest_pending_age_ms,
            circuit: destination.circuit,
            last_error_delivery: last.as_ref().map(|(id, _)| *id),
            last_error: last.map(|(_, error)| error),
        });
    }
    let totals: Vec<(String, u64)> = DeliveryStatus::ALL
        .iter()
        .map(|s| {
            let word = s.as_str();
            (
                word.to_string(),
                stats.totals.get(word).copied().unwrap_or(0),
            )
        })
        .collect();
    let chart_delivered: u64 = stats.per_minute.iter().map(|m| m.delivered).sum();
    let chart_failed: u64 = stats.per_minute.iter().map(|m| m.failed).sum();
    Ok(render(
        &state,
        "overview.html",
        "overview",
        context! {
            at => stats.at,
            totals => totals,
            health => health,
            bars => bars,
            chart_width => stats.per_minute.len() * BAR_WIDTH,
            chart_height => CHART_HEIGHT,
            peak => peak as u64,
            chart_delivered => chart_delivered,
            chart_failed => chart_failed,
            first_minute => stats.per_minute.first().map(|m| m.minute),
        },
    ))
}

// ---------------------------------------------------------------------------------------
// Webhooks

async fn webhooks(State(state): State<AdminState>, RawQuery(query): RawQuery) -> Page {
    let fields = query_fields(query);
    let status =
        match fields.get("status") {
            None => None,
            Some(word) => Some(word.parse::<WebhookStatus>().map_err(|unknown| {
                error_page(AdminError::BadRequest(format!("status: {unknown}")))
            })?),
        };
    let cursor = match fields.get("cursor") {
        None => None,
        Some(text) => Some(text.parse::<i64>().map_err(|_| {
            error_page(AdminError::BadRequest(format!(
                "cursor: `{text}` is not a webhook id"
            )))
        })?),
    };
    let filter = WebhookFilter {
        status,
        source: fields.get("source").cloned(),
        topic: fields.get("topic").cloned(),
        order_id: fields.get("order_id").cloned(),
        before_id: cursor.map(WebhookId),
        limit: Some(WEBHOOK_PAGE),
        ..WebhookFilter::default()
    };
    let items = ops::list_webhooks(state.store.as_ref(), &filter)
        .await
        .map_err(store_failed)?;
    let next_cursor = (items.len() as i64 == WEBHOOK_PAGE)
        .then(|| items.last().map(|w| w.id.0))
        .flatten();
    let mut next_query = fields.clone();
    next_query.remove("cursor");
    let next = next_cursor.map(|cursor| {
        let mut query = form_urlencoded::Serializer::new(String::new());
        query.extend_pairs(next_query.iter());
        query.append_pair("cursor", &cursor.to_string());
        format!("/admin/webhooks?{}", query.finish())
    });
    Ok(render(
        &state,
        "webhooks.html",
        "webhooks",
        context! {
            items => items,
            filter => fields,
            next => next,
            sources => state.sources.keys().collect::<Vec<_>>(),
            statuses => WebhookStatus::ALL.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
        },
    ))
}

#[derive(Serialize)]
struct DeliveryShown {
    #[serde(flatten)]
    summary: crate::store::DeliverySummary,
    /// The stored payload, pretty-printed.
    payload: Option<String>,
    /// Every attempt, oldest first.
    attempt_log: Vec<crate::store::AttemptRecord>,
    replayable: bool,
    cancellable: bool,
}

#[derive(Serialize)]
struct Outcome {
    mapping: String,
    destination: String,
    operation: String,
    outcome: &'static str,
    key: Option<String>,
    payload: Option<String>,
    needs: Option<String>,
    reason: Option<String>,
    field: Option<String>,
    expression: Option<String>,
    message: Option<String>,
    schema_errors: Vec<String>,
}

fn outcomes(translation: &ops::Translation) -> Vec<Outcome> {
    translation
        .mappings
        .iter()
        .map(|tried| {
            let mut outcome = Outcome {
                mapping: tried.mapping.clone(),
                destination: tried.destination.clone(),
                operation: tried.operation.to_string(),
                outcome: "not_applied",
                key: None,
                payload: None,
                needs: None,
                reason: None,
                field: None,
                expression: None,
                message: None,
                schema_errors: Vec::new(),
            };
            match &tried.tried {
                Tried::Plan {
                    key,
                    payload,
                    needs,
                } => {
                    outcome.outcome = "plan";
                    outcome.key = Some(key.clone());
                    outcome.payload = Some(pretty(payload));
                    outcome.needs = needs.as_ref().map(|(m, k)| format!("{m} {k}"));
                }
                Tried::Skip { key, reason } => {
                    outcome.outcome = "skip";
                    outcome.key = Some(key.clone());
                    outcome.reason = Some(reason.clone());
                }
                Tried::Error {
                    field,
                    expression,
                    message,
                    schema_errors,
                } => {
                    outcome.outcome = "error";
                    outcome.field = Some(field.clone());
                    outcome.expression = Some(expression.clone());
                    outcome.message = Some(message.clone());
                    outcome.schema_errors = schema_errors.clone();
                }
                Tried::NotApplied => {}
            }
            outcome
        })
        .collect()
}

fn webhook_id(text: &str) -> Result<WebhookId, Refused> {
    text.parse().map_err(|_| {
        Refused::from(error_page(AdminError::BadRequest(format!(
            "`{text}` is not a webhook id"
        ))))
    })
}

async fn webhook(
    State(state): State<AdminState>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Page {
    let id = webhook_id(&id)?;
    let view = super::webhooks::view(&state, id)
        .await
        .map_err(store_failed)?
        .ok_or_else(|| error_page(AdminError::NotFound(format!("no webhook {id}"))))?;
    let mut deliveries = Vec::new();
    for entry in &view.webhook.delivery_log {
        let detail = ops::delivery(state.store.as_ref(), &state.destinations, entry.delivery.id)
            .await
            .map_err(store_failed)?;
        let status = entry.delivery.status;
        deliveries.push(DeliveryShown {
            payload: detail
                .map(|d| d.payload)
                .filter(|p| !p.is_null())
                .map(|p| pretty(&p)),
            attempt_log: entry.attempt_log.clone(),
            replayable: DeliveryStatus::REPLAYABLE.contains(&status)
                || status == DeliveryStatus::Cancelled,
            cancellable: DeliveryStatus::CANCELLABLE.contains(&status),
            summary: entry.delivery.clone(),
        });
    }
    let body = match &view.webhook.body {
        ops::Body::Json(json) => Some(pretty(json)),
        ops::Body::Text(text) => Some(text.clone()),
        ops::Body::Purged => None,
    };
    let fields = query_fields(query);
    Ok(render(
        &state,
        "webhook.html",
        "webhooks",
        context! {
            webhook => view.webhook.summary,
            headers => view.webhook.headers,
            body => body,
            deliveries => deliveries,
            outcomes => view.mappings.as_ref().map(outcomes),
            translation_error => view.mappings.as_ref().and_then(|t| t.error.clone()),
            done => fields,
        },
    ))
}

async fn retranslate(State(state): State<AdminState>, Path(id): Path<String>, form: Form) -> Page {
    let id = webhook_id(&id)?;
    let catalog = state.mappings.live().load_full();
    let filter = DeliveryFilter {
        webhook_id: Some(id),
        ..DeliveryFilter::default()
    };
    let done = ops::retranslate(state.store.as_ref(), &catalog, &filter, None, |_, _, _| {})
        .await
        .map_err(|error| match error {
            ops::RetranslateError::Store(error) => store_failed(error),
            other => error_page(AdminError::Unprocessable(other.to_string())),
        })?;
    state.wake_workers();
    tracing::info!(
        action = "retranslate",
        client = %form.origin.address,
        webhook = %id,
        added = done.added,
        replaced = done.replaced,
        failed = done.failed.len(),
        "dashboard: webhook re-translated"
    );
    let failed = if done.failed.is_empty() {
        ""
    } else {
        "&failed=1"
    };
    Ok(Redirect::to(&format!(
        "/admin/webhooks/{id}?retranslated=1&added={}&replaced={}{failed}",
        done.added, done.replaced
    ))
    .into_response())
}

// ---------------------------------------------------------------------------------------
// Dead letters, replay, cancel

async fn dead(State(state): State<AdminState>, RawQuery(query): RawQuery) -> Page {
    let fields = query_fields(query);
    let filter = DeliveryFilter {
        status: Some(DeliveryStatus::Dead),
        destination: fields.get("destination").cloned(),
        mapping: fields.get("mapping").cloned(),
        limit: Some(DEAD_PAGE),
        ..DeliveryFilter::default()
    };
    let items = ops::list_deliveries(state.store.as_ref(), &filter)
        .await
        .map_err(store_failed)?;
    let catalog = state.mappings.live().load_full();
    let mappings: Vec<&str> = catalog.mappings().iter().map(|m| m.id.as_str()).collect();
    Ok(render(
        &state,
        "dead.html",
        "dead",
        context! {
            items => items,
            filter => fields,
            more => items.len() as i64 == DEAD_PAGE,
            destinations => state.destinations.keys().collect::<Vec<_>>(),
            mappings => mappings,
        },
    ))
}

/// The delivery ids a form selected (`ids`, repeated); none is a 400.
fn selected_ids(form: &Form) -> Result<Vec<DeliveryId>, Refused> {
    let ids = form
        .all("ids")
        .map(|text| {
            text.parse::<i64>().map(DeliveryId).map_err(|_| {
                Refused::from(error_page(AdminError::BadRequest(format!(
                    "ids: `{text}` is not a delivery id"
                ))))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    if ids.is_empty() {
        return Err(message(
            StatusCode::BAD_REQUEST,
            "Nothing selected",
            "Select at least one delivery.",
            Some(&back(form, "/admin/dead")),
        )
        .into());
    }
    Ok(ids)
}

/// Where a form goes back to: a page of the dashboard only.
fn back(form: &Form, default: &str) -> String {
    form.get("back")
        .filter(|path| path.starts_with("/admin") && !path.starts_with("//"))
        .unwrap_or(default)
        .to_string()
}

fn with_query(path: &str, query: &str) -> String {
    let joiner = if path.contains('?') { '&' } else { '?' };
    format!("{path}{joiner}{query}")
}

async fn replay(State(state): State<AdminState>, form: Form) -> Page {
    let ids = selected_ids(&form)?;
    let (done, touched) = ops::replay_each(
        state.store.as_ref(),
        ids.iter().copied().map(DeliveryFilter::one),
    )
    .await
    .map_err(store_failed)?;
    state.wake_workers();
    tracing::info!(
        action = "replay",
        client = %form.origin.address,
        ids = ?ids.iter().map(|id| id.0).collect::<Vec<_>>(),
        deliveries = %touched.ids_shown(),
        mappings = ?touched.mappings,
        destinations = ?touched.destinations,
        requeued = done.requeued,
        waiting = done.waiting,
        rearmed = done.rearmed,
        purged = done.purged,
        "dashboard: deliveries replayed"
    );
    let back = back(&form, "/admin/dead");
    Ok(Redirect::to(&with_query(
        &back,
        &format!(
            "replayed={}&requeued={}&waiting={}&purged={}",
            ids.len(),
            done.requeued,
            done.waiting,
            done.purged
        ),
    ))
    .into_response())
}

async fn cancel(State(state): State<AdminState>, form: Form) -> Page {
    let ids = selected_ids(&form)?;
    let (done, touched) = ops::cancel_each(
        state.store.as_ref(),
        ids.iter().copied().map(DeliveryFilter::one),
    )
    .await
    .map_err(store_failed)?;
    tracing::info!(
        action = "cancel",
        client = %form.origin.address,
        ids = ?ids.iter().map(|id| id.0).collect::<Vec<_>>(),
        deliveries = %touched.ids_shown(),
        mappings = ?touched.mappings,
        destinations = ?touched.destinations,
        cancelled = done.cancelled,
        skipped = done.skipped,
        "dashboard: deliveries cancelled"
    );
    let back = back(&form, "/admin/dead");
    Ok(Redirect::to(&with_query(
        &back,
        &format!(
            "cancelled_selected={}&cancelled={}&skipped={}",
            ids.len(),
            done.cancelled,
            done.skipped
        ),
    ))
    .into_response())
}

// ---------------------------------------------------------------------------------------
// Mappings

async fn mappings(State(state): State<AdminState>, RawQuery(query): RawQuery) -> Page {
    let mappings = state.mappings.clone();
    let listed = tokio::task::spawn_blocking(move || mappings.list())
        .await
        .expect("listing the mappings does not panic");
    Ok(render(
        &state,
        "mappings.html",
        "mappings",
        context! { listed => listed, done => query_fields(query) },
    ))
}

async fn reload(State(state): State<AdminState>, form: Form) -> Page {
    let mappings = state.mappings.clone();
    let reloaded = tokio::task::spawn_blocking(move || mappings.reload())
        .await
        .expect("a reload does not panic");
    let dir = state.mappings.dir();
    let client = form.origin.address.to_string();
    let announced = announce_reload(&state, "dashboard", &client).await;
    let to = match reloaded {
        Ok(count) => {
            tracing::info!(action = "reload", client = %client, mappings = %dir, count, announced, "dashboard: mappings reloaded; {count} live");
            format!("/admin/mappings?reloaded={count}")
        }
        Err(error) => {
            let live = state.mappings.count();
            tracing::error!(
                action = "reload",
                client = %client,
                mappings = %dir,
                count = live,
                announced,
                error = %error.replace('\n', "; "),
                "dashboard: mappings not reloaded; the ones in force stay live"
            );
            format!("/admin/mappings?failed={live}")
        }
    };
    let to = if announced {
        format!("{to}&announced=1")
    } else {
        to
    };
    Ok(Redirect::to(&to).into_response())
}

// ---------------------------------------------------------------------------------------
// Playground

/// What the playground's form holds.
#[derive(Debug, Default, Serialize)]
struct Tryout {
    platform: String,
    topic: String,
    source: String,
    headers: String,
    body: String,
    fixture: String,
    webhook: String,
}

/// The embedded fixtures, as `platform/name` (without `.json`).
fn fixture_names() -> Vec<String> {
    let mut names: Vec<String> = FIXTURES
        .dirs()
        .flat_map(|dir| dir.files())
        .filter(|file| file.path().extension().is_some_and(|e| e == "json"))
        .map(|file| file.path().with_extension("").display().to_string())
        .collect();
    names.sort();
    names
}

/// The form filled from the fixture `name` (`platform/name`): its body, its topic and other
/// headers (without its signature), its source.
fn from_fixture(name: &str) -> Result<Tryout, String> {
    let known = || format!("no fixture `{name}`: pick one of the list");
    if name.contains("..") {
        return Err(known());
    }
    let body = FIXTURES
        .get_file(format!("{name}.json"))
        .and_then(|file| file.contents_utf8())
        .ok_or_else(known)?;
    let (platform_word, _) = name.split_once('/').ok_or_else(known)?;
    let platform: PlatformKind = platform_word.parse().map_err(|_| known())?;
    let code = crate::source::platform(platform);
    let headers = FIXTURES
        .get_file(format!("{name}.headers"))
        .and_then(|file| file.contents_utf8())
        .map(crate::fixture::parse_headers)
        .transpose()
        .map_err(|error| format!("fixture `{name}`: {error}"))?
        .unwrap_or_default();
    let topic = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(code.topic_header()))
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    let kept: Vec<String> = headers
        .iter()
        .filter(|(n, _)| {
            !code
                .signature_headers()
                .iter()
                .any(|s| s.eq_ignore_ascii_case(n))
                && !n.eq_ignore_ascii_case(code.topic_header())
        })
        .map(|(n, v)| format!("{n}: {v}"))
        .collect();
    let source = FIXTURES
        .get_file(format!("{name}.source"))
        .and_then(|file| file.contents_utf8())
        .map(|text| text.trim().to_string())
        .unwrap_or_default();
    Ok(Tryout {
        platform: platform.as_str().to_string(),
        topic,
        source,
        headers: kept.join("\n"),
        body: body.to_string(),
        fixture: name.to_string(),
        webhook: String::new(),
    })
}

/// The form filled from a stored webhook: its body (pretty), topic, source and the headers
/// kept (signatures left out).
async fn from_webhook(state: &AdminState, text: &str) -> Result<Tryout, Refused> {
    let id = webhook_id(text)?;
    let detail = ops::webhook(state.store.as_ref(), id)
        .await
        .map_err(store_failed)?
        .ok_or_else(|| error_page(AdminError::NotFound(format!("no webhook {id}"))))?;
    let body = match &detail.body {
        ops::Body::Json(json) => pretty(json),
        ops::Body::Text(text) => text.clone(),
        ops::Body::Purged => {
            return Err(error_page(AdminError::Unprocessable(format!(
                "webhook {id}: its body was purged by the retention"
            )))
            .into());
        }
    };
    let headers: Vec<String> = detail
        .headers
        .iter()
        .filter(|(_, v)| v.as_str() != ops::REDACTED)
        .map(|(n, v)| format!("{n}: {v}"))
        .collect();
    let source = if detail.summary.source == detail.summary.platform.as_str() {
        String::new()
    } else {
        detail.summary.source.clone()
    };
    Ok(Tryout {
        platform: detail.summary.platform.as_str().to_string(),
        topic: detail.summary.topic.clone(),
        source,
        headers: headers.join("\n"),
        body,
        fixture: String::new(),
        webhook: id.to_string(),
    })
}

fn playground_page(
    state: &AdminState,
    tryout: &Tryout,
    result: Option<Jinja>,
    problem: Option<String>,
) -> Response {
    let topics: BTreeMap<&str, &[&str]> = PlatformKind::ALL
        .iter()
        .map(|p| (p.as_str(), crate::source::platform(*p).known_topics()))
        .collect();
    let sources: Vec<(&String, &str)> = state
        .sources
        .iter()
        .map(|(id, s)| (id, s.platform.as_str()))
        .collect();
    let refused = problem.is_some();
    let mut response = render(
        state,
        "playground.html",
        "playground",
        context! {
            form => tryout,
            fixtures => fixture_names(),
            platforms => PlatformKind::ALL.iter().map(|p| p.as_str()).collect::<Vec<_>>(),
            topics => topics,
            sources => sources,
            result => result,
            problem => problem,
        },
    );
    if refused {
        *response.status_mut() = StatusCode::BAD_REQUEST;
    }
    response
}

async fn playground(State(state): State<AdminState>, RawQuery(query): RawQuery) -> Page {
    let fields = query_fields(query);
    let tryout = if let Some(name) = fields.get("fixture") {
        match from_fixture(name) {
            Ok(tryout) => tryout,
            Err(problem) => {
                return Ok(playground_page(
                    &state,
                    &Tryout::default(),
                    None,
                    Some(problem),
                ));
            }
        }
    } else if let Some(id) = fields.get("webhook") {
        from_webhook(&state, id).await?
    } else {
        Tryout {
            platform: PlatformKind::ALL[0].as_str().to_string(),
            ..Tryout::default()
        }
    };
    Ok(playground_page(&state, &tryout, None, None))
}

/// Runs the live mappings over the posted payload: nothing is stored or sent.
async fn playground_try(State(state): State<AdminState>, form: Form) -> Page {
    let field = |name: &str| form.get(name).unwrap_or_default().to_string();
    let tryout = Tryout {
        platform: field("platform"),
        topic: field("topic").trim().to_string(),
        source: field("source").trim().to_string(),
        headers: field("headers"),
        body: field("body"),
        fixture: field("fixture"),
        webhook: field("webhook"),
    };
    let problem = |text: String| Ok(playground_page(&state, &tryout, None, Some(text)));
    let platform: PlatformKind = match tryout.platform.parse() {
        Ok(platform) => platform,
        Err(unknown) => return problem(format!("platform: {unknown}")),
    };
    if tryout.topic.is_empty() {
        return problem("topic: name the webhook's topic (e.g. orders/paid)".into());
    }
    if tryout.body.trim().is_empty() {
        return problem(
            "payload: paste a webhook's body, or pick a fixture or a stored webhook".into(),
        );
    }
    let source = match source_for(
        &state,
        platform,
        Some(tryout.source.as_str()).filter(|s| !s.is_empty()),
    ) {
        Ok(source) => source,
        Err(error) => return problem(error.to_string()),
    };
    let mut headers = BTreeMap::new();
    for (n, line) in tryout.headers.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let Some((name, value)) = line.split_once(':') else {
            return problem(format!("headers, line {}: `Name: value` expected", n + 1));
        };
        headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_string());
    }
    let body = tryout.body.replace("\r\n", "\n");
    let not_json = serde_json::from_str::<Value>(&body)
        .err()
        .map(|error| format!("the payload is not JSON: {error}"));
    let translation = try_payload(
        &state,
        platform,
        &tryout.topic,
        &source,
        &headers,
        body.as_bytes(),
    );
    tracing::info!(
        client = %form.origin.address,
        platform = platform.as_str(),
        topic = %tryout.topic,
        mappings = translation.mappings.len(),
        "dashboard: playground tried the live mappings (nothing stored or sent)"
    );
    let result = context! {
        outcomes => outcomes(&translation),
        error => translation.error,
        not_json => not_json,
    };
    Ok(playground_page(&state, &tryout, Some(result), None))
}
