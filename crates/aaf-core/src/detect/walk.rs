//! Iterative walks over JSON values: scanning with JSON pointers, applying masks, and the
//! whole-value predicates of the `has_*` built-ins. No recursion, so nesting depth is
//! bounded only by memory (a 10,000-deep value is fine).

use serde_json::{Map, Value};

use super::{mask_text, scan_into, Detection, Finding, ScanOptions, ScanReport, Sink};

/// One path segment.
enum Segment<'v> {
    Root,
    Key(&'v str),
    Index(usize),
}

/// A node of the path tree: its parent (an index into the arena) and its segment.
struct PathNode<'v> {
    parent: usize,
    segment: Segment<'v>,
}

/// The RFC 6901 pointer of node `index`.
fn pointer(arena: &[PathNode<'_>], mut index: usize) -> String {
    let mut segments: Vec<String> = Vec::new();
    while let Some(node) = arena.get(index) {
        match node.segment {
            Segment::Root => break,
            Segment::Key(key) => segments.push(key.replace('~', "~0").replace('/', "~1")),
            Segment::Index(i) => segments.push(i.to_string()),
        }
        index = node.parent;
    }
    let mut out = String::new();
    for segment in segments.iter().rev() {
        out.push('/');
        out.push_str(segment);
    }
    out
}

/// [`super::scan_value`].
pub(crate) fn scan(value: &Value, opts: &ScanOptions) -> ScanReport {
    let limits = &opts.limits;
    let mut report = ScanReport::default();
    if opts.detectors.is_empty() {
        return report;
    }
    let mut arena: Vec<PathNode<'_>> = vec![PathNode {
        parent: 0,
        segment: Segment::Root,
    }];
    // (value, its path node, the key of the member it is the value of)
    let mut stack: Vec<(&Value, usize, Option<&str>)> = vec![(value, 0, None)];
    let mut scanned = 0usize;
    let mut nodes = 0usize;
    while let Some((value, node, member_key)) = stack.pop() {
        nodes += 1;
        if nodes > limits.max_nodes {
            report.truncated = true;
            break;
        }
        let number_text: String;
        let text: Option<&str> = match value {
            Value::Null | Value::Bool(_) => None,
            Value::Number(number) => {
                number_text = number.to_string();
                Some(number_text.as_str())
            }
            Value::String(text) => Some(text.as_str()),
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate().rev() {
                    arena.push(PathNode {
                        parent: node,
                        segment: Segment::Index(i),
                    });
                    stack.push((item, arena.len() - 1, None));
                }
                None
            }
            Value::Object(map) => {
                let first_child = arena.len();
                for (key, _) in map.iter() {
                    arena.push(PathNode {
                        parent: node,
                        segment: Segment::Key(key),
                    });
                }
                // Keys, in order, before the values.
                for (offset, (key, _)) in map.iter().enumerate() {
                    if !scan_one(
                        key,
                        None,
                        true,
                        first_child + offset,
                        opts,
                        &arena,
                        &mut scanned,
                        &mut report,
                    ) {
                        return report;
                    }
                }
                for (offset, (key, item)) in map.iter().enumerate().rev() {
                    stack.push((item, first_child + offset, Some(key.as_str())));
                }
                None
            }
        };
        if let Some(text) = text {
            let key = if value.is_string() { member_key } else { None };
            if !scan_one(
                text,
                key,
                false,
                node,
                opts,
                &arena,
                &mut scanned,
                &mut report,
            ) {
                return report;
            }
        }
    }
    report
}

/// Scans one key or value text into `report`. Returns false when a limit ends the scan.
#[allow(clippy::too_many_arguments)]
fn scan_one(
    text: &str,
    member_key: Option<&str>,
    in_key: bool,
    node: usize,
    opts: &ScanOptions,
    arena: &[PathNode<'_>],
    scanned: &mut usize,
    report: &mut ScanReport,
) -> bool {
    let limits = &opts.limits;
    let budget = limits.max_total_bytes.saturating_sub(*scanned);
    if budget == 0 && !text.is_empty() {
        report.truncated = true;
        return false;
    }
    let remaining = limits.max_findings.saturating_sub(report.detections.len());
    if remaining == 0 && !text.is_empty() {
        // The findings cap is reached: this and later strings are not scanned.
        report.truncated = true;
        return false;
    }
    let string_limit = limits.max_string_bytes.min(budget);
    let mut sink = Sink::new(remaining);
    let local = ScanOptions {
        detectors: opts.detectors,
        limits: super::DetectorLimits {
            max_string_bytes: string_limit,
            ..*limits
        },
    };
    let cut = scan_into(text, &local, &mut sink, member_key);
    *scanned = scanned.saturating_add(text.len().min(string_limit));
    if cut || sink.overflowed() {
        report.truncated = true;
    }
    let findings = sink.finish();
    if !findings.is_empty() {
        let path = pointer(arena, node);
        report
            .detections
            .extend(findings.into_iter().map(|f| Detection {
                detector: f.detector,
                kind: f.kind,
                sub_kind: f.sub_kind,
                path: path.clone(),
                key: in_key,
                confidence: f.confidence,
                start: f.start,
                end: f.end,
            }));
    }
    true
}

/// Applies the masks of `detections` (from a scan of `value`) to `value` in place.
pub(crate) fn apply_masks(value: &mut Value, detections: &[Detection]) {
    // Group by (path, key): detections come in document order, one path's together.
    let mut groups: Vec<(&str, bool, Vec<Finding>)> = Vec::new();
    for d in detections {
        let finding = Finding {
            detector: d.detector,
            kind: d.kind,
            sub_kind: d.sub_kind,
            confidence: d.confidence,
            start: d.start,
            end: d.end,
        };
        match groups
            .iter_mut()
            .find(|(p, k, _)| *p == d.path && *k == d.key)
        {
            Some((_, _, findings)) => findings.push(finding),
            None => groups.push((d.path.as_str(), d.key, vec![finding])),
        }
    }
    // Values first (their pointers use the unmasked keys), then keys, deepest first.
    for (path, _, findings) in groups.iter().filter(|(_, key, _)| !key) {
        let Some(target) = value.pointer_mut(path) else {
            continue;
        };
        let masked = match target {
            Value::String(text) => mask_text(text, findings),
            Value::Number(number) => mask_text(&number.to_string(), findings),
            _ => continue,
        };
        *target = Value::String(masked);
    }
    let mut keys: Vec<&(&str, bool, Vec<Finding>)> =
        groups.iter().filter(|(_, key, _)| *key).collect();
    keys.sort_by_key(|(path, _, _)| std::cmp::Reverse(path.matches('/').count()));
    for (path, _, findings) in keys {
        let Some(split) = path.rfind('/') else {
            continue;
        };
        let (parent_path, escaped_key) = path.split_at(split);
        let key = escaped_key
            .get(1..)
            .unwrap_or_default()
            .replace("~1", "/")
            .replace("~0", "~");
        let Some(Value::Object(map)) = value.pointer_mut(parent_path) else {
            continue;
        };
        let masked = mask_text(&key, findings);
        if masked == key {
            continue;
        }
        let old = std::mem::take(map);
        let mut renamed = Map::with_capacity(old.len());
        for (k, v) in old {
            if k == key {
                let mut name = masked.clone();
                let mut n = 2;
                while renamed.contains_key(&name) {
                    name = format!("{masked}#{n}");
                    n += 1;
                }
                renamed.insert(name, v);
            } else {
                renamed.insert(k, v);
            }
        }
        *map = renamed;
    }
}

/// Whether `matches` is true for the text of any string, number, array item, object key or
/// object value in `value`.
pub(crate) fn any_text(value: &Value, matches: fn(&str) -> bool) -> bool {
    let mut stack = vec![value];
    while let Some(value) = stack.pop() {
        match value {
            Value::Null | Value::Bool(_) => {}
            Value::Number(number) => {
                if matches(&number.to_string()) {
                    return true;
                }
            }
            Value::String(text) => {
                if matches(text) {
                    return true;
                }
            }
            Value::Array(items) => stack.extend(items),
            Value::Object(map) => {
                for (key, item) in map {
                    if matches(key) {
                        return true;
                    }
                    stack.push(item);
                }
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use crate::detect::{
        has_credit_card, has_pii, has_ssn, mask_value, scan_value, Detector, DetectorLimits,
        DetectorSet, ScanOptions,
    };
    use serde_json::{json, Value};

    #[test]
    fn walks_nested_values_keys_and_numbers() {
        assert!(has_credit_card(&json!(4111111111111111u64)));
        assert!(has_credit_card(
            &json!({"a": [{"b": ["x", "4111 1111 1111 1111"]}]})
        ));
        assert!(has_credit_card(&json!({"4111111111111111": true})));
        assert!(has_ssn(&json!({"user": {"tax": ["078-05-1123"]}})));
        assert!(has_ssn(&json!({"078-05-1123": null})));
        assert!(has_pii(&json!(["nothing", {"ssn": "078 05 1123"}])));
        assert!(has_pii(&json!({"n": 5555555555554444u64})));
        assert!(!has_pii(
            &json!({"a": [1, 2.5, true, null, "hello", {"b": 123456789}]})
        ));
        assert!(!has_pii(&json!(null)));

        let mut deep = json!("4111111111111111");
        for _ in 0..100_000 {
            deep = Value::Array(vec![deep]);
        }
        assert!(has_credit_card(&deep));
        // Dropping a deeply nested value recurses; leak it rather than overflow the test stack.
        std::mem::forget(deep);
    }

    #[test]
    fn pointers_escape_and_index() {
        let value =
            json!({"a/b": {"c~d": ["x", "mail me at a@example.com"]}, "e": 4111111111111111u64});
        let report = scan_value(&value, &ScanOptions::new());
        let paths: Vec<(&str, Detector)> = report
            .detections
            .iter()
            .map(|d| (d.path.as_str(), d.detector))
            .collect();
        assert!(
            paths.contains(&("/a~1b/c~0d/1", Detector::Email)),
            "{paths:?}"
        );
        assert!(paths.contains(&("/e", Detector::PaymentCard)), "{paths:?}");
        assert!(!report.truncated);
        let root = scan_value(&json!("078-05-1123"), &ScanOptions::new());
        assert_eq!(root.detections.first().map(|d| d.path.as_str()), Some(""));
    }

    #[test]
    fn keys_are_reported_and_masked() {
        let value = json!({"078-05-1123": "x", "ok": {"4111111111111111": 1, "a": "b"}});
        let (masked, report) = mask_value(&value, &ScanOptions::only(DetectorSet::redaction()));
        assert!(report.detections.iter().all(|d| d.key));
        assert_eq!(
            masked,
            json!({"***-**-1123": "x", "ok": {"************1111": 1, "a": "b"}})
        );
    }

    #[test]
    fn masks_values_and_numbers() {
        let value = json!({
            "note": "card 4111 1111 1111 1111 please",
            "n": 4111111111111111u64,
            "token": "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",
            "list": ["078-05-1123", "fine"],
        });
        let (masked, report) = mask_value(&value, &ScanOptions::only(DetectorSet::redaction()));
        assert_eq!(masked["note"], "card **** **** **** 1111 please");
        assert_eq!(masked["n"], "************1111");
        assert_eq!(masked["token"], "[REDACTED:github_token]");
        assert_eq!(masked["list"], json!(["***-**-1123", "fine"]));
        assert_eq!(report.detections.len(), 5, "{:?}", report.detections);
    }

    #[test]
    fn limits_truncate() {
        let value = json!(["4111111111111111", "4111111111111111", "4111111111111111"]);
        let opts = ScanOptions {
            detectors: DetectorSet::all(),
            limits: DetectorLimits {
                max_findings: 1,
                ..DetectorLimits::default()
            },
        };
        let report = scan_value(&value, &opts);
        assert_eq!(report.detections.len(), 1);
        assert!(report.truncated);

        let opts = ScanOptions {
            detectors: DetectorSet::all(),
            limits: DetectorLimits {
                max_total_bytes: 20,
                ..DetectorLimits::default()
            },
        };
        let report = scan_value(&value, &opts);
        assert!(report.truncated);
        assert!(report.detections.len() <= 1);

        let opts = ScanOptions {
            detectors: DetectorSet::all(),
            limits: DetectorLimits {
                max_nodes: 2,
                ..DetectorLimits::default()
            },
        };
        assert!(scan_value(&value, &opts).truncated);
        let report = scan_value(&value, &ScanOptions::only(DetectorSet::empty()));
        assert!(report.detections.is_empty() && !report.truncated);
    }
}
