//! Request bodies: JSON objects read into their structs, with errors that name the field.
//!
//! Every struct body goes through [`Object`], so a body must be a JSON object (RFC 8259
//! section 4). Without it, serde would also read a struct from a JSON array of its fields in
//! order (`[null, null]` as `{"four_eyes": null, "approval_timeout_seconds": null}`), which the
//! OpenAPI document calls invalid and which would let a wrongly shaped body pass as an empty
//! one.

use std::fmt;
use std::marker::PhantomData;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, JsonRejection};
use axum::http::{header, HeaderMap, StatusCode};
use axum::Json;
use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};

use crate::app::AppState;
use crate::error::ApiError;

/// A `T` read from a JSON object only: any other JSON value (an array, a string, `null`)
/// is the data error `invalid type: ..., expected a JSON object` (400).
#[derive(Debug, Clone)]
pub struct Object<T>(pub T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Object<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectVisitor<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjectVisitor<T> {
            type Value = T;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(serde::de::value::MapAccessDeserializer::new(map))
            }
        }
        deserializer
            .deserialize_map(ObjectVisitor(PhantomData))
            .map(Object)
    }
}

/// The struct of a JSON object body, or the API error its rejection maps to.
///
/// # Errors
///
/// [`AppState::json_rejection`]: 400 (syntax, a wrong type, naming the field), 413, 415.
pub(crate) fn json_body<T>(
    state: &AppState,
    body: Result<Json<Object<T>>, JsonRejection>,
) -> Result<T, ApiError> {
    body.map(|Json(Object(b))| b)
        .map_err(|r| state.json_rejection(r))
}

/// A JSON object body that may be left out entirely (no bytes at all: then `T::default()`); a
/// body that is present, even only whitespace, must be a JSON object (RFC 8259: whitespace
/// alone is not a JSON text) with `content-type: application/json`.
///
/// # Errors
///
/// As [`json_body`].
pub(crate) fn optional_json<T: serde::de::DeserializeOwned + Default>(
    state: &AppState,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<T, ApiError> {
    let bytes = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge(state.config.limits.max_body_bytes)
        } else {
            ApiError::BadRequest {
                field: None,
                message: format!("could not read request body: {}", e.body_text()),
            }
        }
    })?;
    if bytes.is_empty() {
        return Ok(T::default());
    }
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim()
                .to_ascii_lowercase()
                .starts_with("application/json")
        });
    if !is_json {
        return Err(ApiError::UnsupportedMediaType(
            "request body must be JSON with content-type: application/json".into(),
        ));
    }
    Json::<Object<T>>::from_bytes(&bytes)
        .map(|Json(Object(b))| b)
        .map_err(|r| state.json_rejection(r))
}
