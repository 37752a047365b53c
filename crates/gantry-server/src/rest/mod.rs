//! The native JSON REST API under `/api/v1`, over the same service
//! functions the AWS JSON API calls (`codepipeline::executions`,
//! `codepipeline::pipelines`, `codebuild::builds`), so the two cannot
//! disagree about what a pipeline or a run is.
//!
//! Every route but `/api/v1/openapi.json` is SigV4-signed with a Gantry
//! access key, scoped to the service name [`SIGNING_NAME`]. Errors have
//! one shape, [`RestError`]. The routes are one table ([`endpoints`]),
//! which the router mounts and the OpenAPI test compares with the
//! document. See docs/rest-api.md.

mod body;
mod builds;
mod error;
mod executions;
mod logs;
pub(crate) mod openapi;
mod pipelines;

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::handler::Handler;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, on};
use gantry_aws::{Verifier, VerifyOptions};
use gantry_store::Store;

pub(crate) use error::RestError;

use crate::router::AppState;

/// The service name in the credential scope of a signed REST request
/// (`.../<region>/gantry/aws4_request`).
pub(crate) const SIGNING_NAME: &str = "gantry";

/// Where the API is mounted.
pub(crate) const PREFIX: &str = "/api/v1";

/// The largest request body read (they are small JSON objects).
const MAX_BODY: usize = 1024 * 1024;

/// An HTTP method the API uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Verb {
    Get,
    Post,
    Delete,
}

impl Verb {
    /// Its OpenAPI spelling (the document's check reads it).
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Verb::Get => "get",
            Verb::Post => "post",
            Verb::Delete => "delete",
        }
    }
}

/// One route: its method, its path under [`PREFIX`] and its handler.
pub(crate) struct Endpoint<S: Store> {
    /// Also in `handler`; kept so the OpenAPI check can read it.
    #[cfg_attr(not(test), allow(dead_code))]
    pub verb: Verb,
    pub path: &'static str,
    handler: MethodRouter<AppState<S>>,
}

impl<S: Store> Endpoint<S> {
    fn new<H, T>(verb: Verb, path: &'static str, handler: H) -> Endpoint<S>
    where
        H: Handler<T, AppState<S>>,
        T: 'static,
    {
        let filter = match verb {
            Verb::Get => axum::routing::MethodFilter::GET,
            Verb::Post => axum::routing::MethodFilter::POST,
            Verb::Delete => axum::routing::MethodFilter::DELETE,
        };
        Endpoint {
            verb,
            path,
            handler: on(filter, handler),
        }
    }
}

/// Every signed route of the API. The OpenAPI document must describe
/// exactly these (a test checks it).
pub(crate) fn endpoints<S: Store>() -> Vec<Endpoint<S>> {
    use Verb::{Delete, Get, Post};
    vec![
        Endpoint::new(Get, "/pipelines", pipelines::list::<S>),
        Endpoint::new(Get, "/pipelines/{name}", pipelines::show::<S>),
        Endpoint::new(Get, "/pipelines/{name}/executions", executions::list::<S>),
        Endpoint::new(Post, "/pipelines/{name}/executions", executions::start::<S>),
        Endpoint::new(
            Get,
            "/pipelines/{name}/executions/{id}",
            executions::show::<S>,
        ),
        Endpoint::new(
            Post,
            "/pipelines/{name}/executions/{id}/stop",
            executions::stop::<S>,
        ),
        Endpoint::new(
            Post,
            "/pipelines/{name}/executions/{id}/stages/{stage}/retry",
            executions::retry::<S>,
        ),
        Endpoint::new(
            Post,
            "/pipelines/{name}/executions/{id}/approvals/{stage}/{action}",
            executions::approve::<S>,
        ),
        Endpoint::new(Get, "/builds/{id}", builds::show::<S>),
        Endpoint::new(Get, "/builds/{id}/logs", logs::get::<S>),
        Endpoint::new(Get, "/builds/{id}/artifacts", builds::artifacts::<S>),
        Endpoint::new(Get, "/agent-tokens", crate::agents::tokens::list::<S>),
        Endpoint::new(Post, "/agent-tokens", crate::agents::tokens::create::<S>),
        Endpoint::new(
            Delete,
            "/agent-tokens/{id}",
            crate::agents::tokens::revoke::<S>,
        ),
    ]
}

/// The public route (no signature needed): the API's description.
pub(crate) const OPENAPI_PATH: &str = "/openapi.json";

/// The API's routes under [`PREFIX`]: the signed ones behind the
/// authentication layer, and the OpenAPI document. Mounted with their full
/// paths (not nested) so the layer sees the path the client signed.
pub(crate) fn router<S: Store>(state: AppState<S>) -> Router<AppState<S>> {
    let mut signed = Router::new();
    for endpoint in endpoints::<S>() {
        signed = signed.route(&format!("{PREFIX}{}", endpoint.path), endpoint.handler);
    }
    let verifier = Arc::new(Verifier::new(VerifyOptions {
        services: vec![SIGNING_NAME.to_owned()],
        // Build ids hold ':', which curl < 8 signs unencoded.
        accept_literal_path: true,
        ..VerifyOptions::default()
    }));
    let signed = signed.route_layer(middleware::from_fn_with_state(
        (state, verifier),
        authenticate::<S>,
    ));
    Router::new()
        .route(
            &format!("{PREFIX}{OPENAPI_PATH}"),
            get(|| async { openapi::response() }),
        )
        .route(
            &format!("{PREFIX}/{{*rest}}"),
            axum::routing::any(|| async {
                RestError::not_found("No such route in the API; see /api/v1/openapi.json")
                    .into_response()
            }),
        )
        .merge(signed)
}

/// Path parameters, like axum's `Path`, but a bad one (e.g. an escape
/// that is not UTF-8) is answered in the API's error shape.
pub(crate) struct RestPath<T>(pub T);

impl<T, St> axum::extract::FromRequestParts<St> for RestPath<T>
where
    T: serde::de::DeserializeOwned + Send,
    St: Send + Sync,
{
    type Rejection = RestError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &St,
    ) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(RestPath(value)),
            Err(rejection) => Err(RestError::invalid_input(format!(
                "Bad path parameter: {}",
                rejection.body_text()
            ))),
        }
    }
}

/// Who signed a request, for the handlers (audit and `actor`).
#[derive(Clone)]
pub(crate) struct Caller(pub String);

/// Reads the body (to check its hash), verifies the signature, and hands
/// the request on with the body restored and the [`Caller`] attached.
async fn authenticate<S: Store>(
    State((state, verifier)): State<(AppState<S>, Arc<Verifier>)>,
    request: Request,
    next: Next,
) -> Response {
    let (mut parts, body) = request.into_parts();
    let bytes = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(_) => {
            return RestError::invalid_input(format!(
                "The request body must be at most {MAX_BODY} bytes"
            ))
            .into_response();
        }
    };
    let method = parts.method.as_str().to_owned();
    let caller = match crate::auth::authenticate(
        state.store.as_ref(),
        &state.keys,
        &verifier,
        &method,
        &parts.uri,
        &parts.headers,
        &bytes,
    )
    .await
    {
        Ok(c) => c,
        Err(e) => return RestError::from(e).into_response(),
    };
    parts.extensions.insert(Caller(caller.access_key_id));
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

/// A JSON response with `status`.
pub(crate) fn json_response(status: axum::http::StatusCode, value: &serde_json::Value) -> Response {
    (
        status,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        value.to_string(),
    )
        .into_response()
}

/// `200 OK` with a JSON body.
pub(crate) fn ok(value: &serde_json::Value) -> Response {
    json_response(axum::http::StatusCode::OK, value)
}

/// A query parameter, percent-decoded; `None` when absent.
pub(crate) fn query_param(uri: &axum::http::Uri, name: &str) -> Option<String> {
    uri.query()?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then(|| percent_decode(v))
    })
}

/// `%XX` and `+` decoding of a query value; malformed escapes stay as
/// they are (the value is then checked by whoever reads it).
fn percent_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = |b: u8| (b as char).to_digit(16);
                match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 3;
                        continue;
                    }
                    _ => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_decoded() {
        let uri: axum::http::Uri = "/x?a=1&next=ab%2Fc+d&bad=%zz&end=%4&u=%C3%A9%"
            .parse()
            .expect("uri");
        assert_eq!(query_param(&uri, "a").as_deref(), Some("1"));
        assert_eq!(query_param(&uri, "next").as_deref(), Some("ab/c d"));
        assert_eq!(query_param(&uri, "bad").as_deref(), Some("%zz"));
        assert_eq!(query_param(&uri, "end").as_deref(), Some("%4"));
        assert_eq!(query_param(&uri, "u").as_deref(), Some("é%"));
        assert_eq!(query_param(&uri, "none"), None);
    }
}
