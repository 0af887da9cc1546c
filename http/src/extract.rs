//! Extractors that answer our JSON errors on rejection.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::{header, request::Parts};
use bytes::Bytes;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// The error a request body gives when it did not arrive within the server's body read
/// timeout (the accept loop wraps every body with that deadline); extractors answer it
/// with 408 [`ApiError::BodyTimeout`] instead of an unreadable body.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within the body read timeout")]
pub struct BodyReadTimeout;

/// The answer to a body that could not be read: 413 over the limit, 408 past the
/// body read timeout, else 400.
pub(crate) fn unreadable_body(
    status: axum::http::StatusCode,
    rejection: &(dyn std::error::Error + 'static),
) -> ApiError {
    if status == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        return ApiError::PayloadTooLarge;
    }
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(rejection);
    while let Some(error) = cause {
        if error.is::<BodyReadTimeout>() {
            return ApiError::BodyTimeout;
        }
        cause = error.source();
    }
    ApiError::BadRequest {
        code: "unreadable_body",
        message: "the request body could not be read".to_owned(),
    }
}

/// A JSON body. Malformed JSON or a wrong field answers 400 naming the field; a body
/// over the limit answers 413; a non-JSON content type answers 415.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

/// Like [`ApiJson`], but an empty body or `null` means `T::default()`.
#[derive(Debug)]
pub struct OptionalJson<T>(pub T);

async fn read_json<T: DeserializeOwned, S: Send + Sync>(
    req: Request,
    state: &S,
    empty: Option<fn() -> T>,
) -> Result<T, ApiError> {
    let is_json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| {
            let v = v.trim();
            v.eq_ignore_ascii_case("application/json")
                || (v.starts_with("application/") && v.ends_with("+json"))
        });
    let bytes = Bytes::from_request(req, state)
        .await
        .map_err(|rejection| unreadable_body(rejection.status(), &rejection))?;
    if bytes.iter().all(u8::is_ascii_whitespace)
        && let Some(default) = empty
    {
        return Ok(default());
    }
    if is_json != Some(true) {
        return Err(ApiError::UnsupportedMediaType);
    }
    // Every body of this API is an object (or `null` where the body is optional);
    // serde would otherwise read a struct from an array.
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    let allowed = match first {
        Some(b'{') => true,
        Some(b'n') => empty.is_some(),
        _ => false,
    };
    if !allowed && serde_json::from_slice::<serde_json::Value>(&bytes).is_ok() {
        return Err(ApiError::BadRequest {
            code: "invalid_json",
            message: "invalid JSON body: expected a JSON object".to_owned(),
        });
    }
    let de = &mut serde_json::Deserializer::from_slice(&bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let message = if path.is_empty() || path == "." {
            format!("invalid JSON body: {inner}")
        } else {
            format!("invalid field `{path}`: {inner}")
        };
        ApiError::BadRequest {
            code: "invalid_json",
            message,
        }
    })
}

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        read_json(req, state, None).await.map(ApiJson)
    }
}

impl<T: DeserializeOwned + Default, S: Send + Sync> FromRequest<S> for OptionalJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        read_json::<Option<T>, S>(req, state, Some(|| None))
            .await
            .map(|value| OptionalJson(value.unwrap_or_default()))
    }
}

/// Query parameters; a malformed query answers 400.
#[derive(Debug)]
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| ApiQuery(q.0))
            .map_err(|e| ApiError::BadRequest {
                code: "invalid_query",
                message: e.body_text(),
            })
    }
}

/// Path parameters; a malformed path answers 400.
#[derive(Debug)]
pub struct ApiPath<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| ApiPath(p.0))
            .map_err(|e| ApiError::BadRequest {
                code: "invalid_path",
                message: e.body_text(),
            })
    }
}
