//! An external classifier (issue 17; docs/detection.md, "External classifier"): an HTTP
//! endpoint the operator runs (a prompt-injection model, a DLP service) that AAF asks about
//! an action's params and context, within a time limit, when the organisation's policies use
//! `input.detections`. Its findings join the built-in detectors' in `input.detections`.
//!
//! AAF `POST`s `{"action_id", "tool", "operation", "params", "context"}` (JSON) and expects
//! `200` with `{"detections": [{"detector", "kind", "path", "confidence"}]}`: `detector` and
//! `kind` strings of 1 to 64 characters of `a-z`, `0-9`, `_`; `path` an RFC 6901 pointer
//! from the action starting `/params` or `/context`; `confidence` a number in [0, 1]; at
//! most 1,000 of them. Anything else (another status, a malformed answer, no answer within
//! `detection.classifier.timeout_ms`) is an error, and `detection.classifier.on_error` says
//! what it means: `deny` (the default: the action is denied, reason `classifier: ...`) or
//! `allow` (the action is decided without the classifier; `input.detections` then holds
//! `{"detector": "classifier_unavailable", "kind": "limit", "path": "", "confidence": 1}`).
//!
//! The endpoint is the operator's own service: it is not subject to the HTTP connector's
//! SSRF guard (it may be on a private address); redirects are not followed and proxies from
//! the environment are not used.

use std::time::Duration;

use aaf_core::action::ActionRequest;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// `[detection.classifier]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClassifierConfig {
    /// The endpoint (`http` or `https`); unset: no classifier. Default unset.
    #[serde(default)]
    pub url: Option<String>,
    /// How long AAF waits for its answer, in milliseconds, 1 to 10000. Default 200.
    pub timeout_ms: u64,
    /// What an error or timeout means: `deny` (default) or `allow`.
    pub on_error: OnError,
}

impl Default for ClassifierConfig {
    fn default() -> Self {
        ClassifierConfig {
            url: None,
            timeout_ms: 200,
            on_error: OnError::Deny,
        }
    }
}

/// What a classifier that fails or does not answer in time means for the action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnError {
    /// The action is denied (`classifier: ...`): fail closed.
    Deny,
    /// The action is decided without the classifier's findings.
    Allow,
}

impl ClassifierConfig {
    /// Checks the section.
    ///
    /// # Errors
    ///
    /// `(key, message)` for the first key out of range.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if let Some(url) = &self.url {
            let ok = url::Url::parse(url)
                .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some());
            if !ok {
                return Err(("url", format!("must be an http or https URL, not {url:?}")));
            }
        }
        if !(1..=10_000).contains(&self.timeout_ms) {
            return Err(("timeout_ms", "must be from 1 to 10000".into()));
        }
        Ok(())
    }
}

/// The most detections one answer may hold.
const MAX_DETECTIONS: usize = 1000;

/// The configured classifier.
#[derive(Debug)]
pub struct Classifier {
    url: String,
    timeout: Duration,
    on_error: OnError,
    client: reqwest::Client,
}

/// What asking the classifier gave.
#[derive(Debug, Clone, PartialEq)]
pub enum Classified {
    /// Its detections (already in the shape of `input.detections`).
    Found(Vec<Value>),
    /// It failed and `on_error` is `deny`: the action is denied with this reason.
    Deny(String),
}

impl Classifier {
    /// The classifier of `config`, or `None` when no URL is set.
    ///
    /// # Errors
    ///
    /// When the HTTP client cannot be built (TLS set-up).
    pub fn new(config: &ClassifierConfig) -> Result<Option<Classifier>, String> {
        let Some(url) = &config.url else {
            return Ok(None);
        };
        let timeout = Duration::from_millis(config.timeout_ms);
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(timeout)
            .build()
            .map_err(|e| format!("detection.classifier: the HTTP client cannot be built: {e}"))?;
        Ok(Some(Classifier {
            url: url.clone(),
            timeout,
            on_error: config.on_error,
            client,
        }))
    }

    /// Asks the classifier about the action `action_id`.
    pub async fn classify(&self, action_id: &str, request: &ActionRequest) -> Classified {
        match self.ask(action_id, request).await {
            Ok(found) => Classified::Found(found),
            Err(e) => match self.on_error {
                OnError::Deny => Classified::Deny(format!("classifier: {e}")),
                OnError::Allow => {
                    tracing::warn!(error = %e, "detection.classifier failed; deciding without it (on_error = allow)");
                    Classified::Found(vec![json!({
                        "detector": "classifier_unavailable",
                        "kind": "limit",
                        "path": "",
                        "confidence": 1.0,
                    })])
                }
            },
        }
    }

    fn too_late(&self) -> String {
        format!("no answer within {} ms", self.timeout.as_millis())
    }

    async fn ask(&self, action_id: &str, request: &ActionRequest) -> Result<Vec<Value>, String> {
        let body = json!({
            "action_id": action_id,
            "tool": request.tool,
            "operation": request.operation,
            "params": request.params,
            "context": request.context,
        });
        let sent = self.client.post(&self.url).json(&body).send();
        let response = tokio::time::timeout(self.timeout, sent)
            .await
            .map_err(|_| self.too_late())?
            .map_err(|e| {
                if e.is_timeout() {
                    self.too_late()
                } else {
                    let chain = crate::connectors::http::error_chain(&e);
                    format!("the request failed: {chain}")
                }
            })?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!("it answered {status}"));
        }
        let answer: Value = tokio::time::timeout(self.timeout, response.json())
            .await
            .map_err(|_| self.too_late())?
            .map_err(|e| {
                if e.is_timeout() {
                    self.too_late()
                } else {
                    format!("its answer is not JSON: {e}")
                }
            })?;
        parse(&answer)
    }
}

/// The detections of an answer, checked (see the module documentation).
fn parse(answer: &Value) -> Result<Vec<Value>, String> {
    let list = answer
        .get("detections")
        .and_then(Value::as_array)
        .ok_or("its answer has no `detections` array")?;
    if list.len() > MAX_DETECTIONS {
        return Err(format!(
            "its answer has more than {MAX_DETECTIONS} detections"
        ));
    }
    let name_ok = |v: &Value| {
        v.as_str().is_some_and(|s| {
            (1..=64).contains(&s.len())
                && s.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        })
    };
    list.iter()
        .enumerate()
        .map(|(i, d)| {
            let path = d.get("path").and_then(Value::as_str).unwrap_or_default();
            let confidence = d.get("confidence").and_then(Value::as_f64);
            let ok = name_ok(&d["detector"])
                && name_ok(&d["kind"])
                && (path.starts_with("/params") || path.starts_with("/context"))
                && confidence.is_some_and(|c| (0.0..=1.0).contains(&c));
            if !ok {
                return Err(format!(
                    "detections[{i}] is not {{detector, kind, path (/params... or /context...), confidence in [0, 1]}}"
                ));
            }
            Ok(json!({
                "detector": d["detector"],
                "kind": d["kind"],
                "path": path,
                "confidence": confidence,
                "source": "classifier",
            }))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_checked() {
        let good = json!({"detections": [{"detector": "ml_injection", "kind": "prompt_injection",
            "path": "/params/text", "confidence": 0.97}]});
        let found = parse(&good).unwrap();
        assert_eq!(found[0]["source"], "classifier");
        for bad in [
            json!({}),
            json!({"detections": [{"detector": "X", "kind": "k", "path": "/params", "confidence": 0.5}]}),
            json!({"detections": [{"detector": "x", "kind": "k", "path": "/elsewhere", "confidence": 0.5}]}),
            json!({"detections": [{"detector": "x", "kind": "k", "path": "/params", "confidence": 1.5}]}),
        ] {
            assert!(parse(&bad).is_err(), "{bad}");
        }
        assert!(ClassifierConfig {
            url: Some("ftp://x".into()),
            ..ClassifierConfig::default()
        }
        .validate()
        .is_err());
    }
}
