//! Iterative walks over JSON values: scanning with JSON pointers, applying masks, and the
//! whole-value predicates of the `has_*` built-ins. No recursion, so nesting depth is
//! bounded only by memory (a 10,000-deep value is fine).

use std::cell::Cell;
use std::fmt::Write as _;

use serde_json::{Map, Value};

use super::batch::{self, Batch};
use super::{
    mask_text, scan_parts, truncate, Detection, Finding, Parts, ScanOptions, ScanReport, Sink,
};

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

/// [`super::scan_value`]: collects the strings, numbers and keys of `value` (in the order a
/// scan string by string visits them, applying the node and byte limits) into a batch,
/// runs the families' prefilters over it ([`batch::plan`]), then scans the strings the
/// prefilters point at (applying the findings limit). The detections are those of a scan
/// of each string alone ([`scan_each`], kept for the tests).
pub(crate) fn scan(value: &Value, opts: &ScanOptions) -> ScanReport {
    let mut report = ScanReport::default();
    if opts.detectors.is_empty() {
        return report;
    }
    let collected = collect(value, opts);
    LAST_SIZES.with(|sizes| {
        sizes.set((
            collected.batch.text().len(),
            collected.items.len(),
            collected.arena.len(),
        ));
    });
    let plan = batch::plan(
        &collected.batch,
        |index| collected.items.get(index).and_then(|item| item.member_key),
        opts.detectors,
    );
    let max_findings = opts.limits.max_findings;
    for (index, item) in collected.items.iter().enumerate() {
        let remaining = max_findings.saturating_sub(report.detections.len());
        if remaining == 0 && !item.empty {
            // The findings cap is reached: this and later strings are not scanned.
            report.truncated = true;
            return report;
        }
        if item.cut {
            report.truncated = true;
        }
        let parts = plan.get(index).copied().unwrap_or(Parts::ALL);
        if parts.is_empty() {
            continue;
        }
        let mut sink = Sink::new(remaining);
        scan_parts(
            collected.batch.segment(index),
            opts.detectors,
            &mut sink,
            item.member_key,
            parts,
        );
        if sink.overflowed() {
            report.truncated = true;
        }
        push_findings(&mut report, sink, &collected.arena, item.node, item.in_key);
    }
    if collected.truncated {
        report.truncated = true;
    }
    report
}

/// One key or value text of a value, as [`scan`] collects it.
struct Item<'v> {
    /// The key of the object member whose string value this is.
    member_key: Option<&'v str>,
    /// Whether the text is an object key.
    in_key: bool,
    /// Its path node.
    node: usize,
    /// Whether the string limit cut the text.
    cut: bool,
    /// Whether the text (before any cut) is empty.
    empty: bool,
}

/// What [`collect`] gathered.
struct Collected<'v> {
    arena: Vec<PathNode<'v>>,
    items: Vec<Item<'v>>,
    /// The texts of `items`, in order, cut to their limits.
    batch: Batch,
    /// Whether the node or byte limit ended the walk.
    truncated: bool,
}

thread_local! {
    /// Bytes of text, strings and path nodes of the last value [`collect`]ed on this thread.
    static LAST_SIZES: Cell<(usize, usize, usize)> = const { Cell::new((0, 0, 0)) };
}

/// The largest count [`LAST_SIZES`] starts a buffer with (times 16 for bytes).
const MAX_HINT: usize = 1 << 14;

/// Walks `value` as a scan string by string does ([`scan_each`]), collecting the texts it
/// would scan until a node or byte limit ends it.
fn collect<'v>(value: &'v Value, opts: &ScanOptions) -> Collected<'v> {
    let limits = &opts.limits;
    // Start with the sizes of the last value collected on this thread (action parameters
    // come in similar sizes): growing the buffers costs more than the walk.
    let (bytes, strings, nodes_hint) = LAST_SIZES.with(Cell::get);
    let mut arena = Vec::with_capacity(nodes_hint.min(MAX_HINT));
    arena.push(PathNode {
        parent: 0,
        segment: Segment::Root,
    });
    let mut out = Collected {
        arena,
        items: Vec::with_capacity(strings.min(MAX_HINT)),
        batch: Batch::with_capacity(bytes.min(MAX_HINT * 16), strings.min(MAX_HINT)),
        truncated: false,
    };
    // (value, its path node, the key of the member it is the value of)
    let mut stack: Vec<(&Value, usize, Option<&str>)> = vec![(value, 0, None)];
    let mut scanned = 0usize;
    let mut nodes = 0usize;
    let mut number_text = String::new();
    // Adds one text; false when the byte budget is spent (the walk ends).
    let mut add = |out: &mut Collected<'v>,
                   text: &str,
                   member_key: Option<&'v str>,
                   in_key: bool,
                   node: usize|
     -> bool {
        let budget = limits.max_total_bytes.saturating_sub(scanned);
        if budget == 0 && !text.is_empty() {
            out.truncated = true;
            return false;
        }
        let string_limit = limits.max_string_bytes.min(budget);
        let (cut_text, cut) = truncate(text, string_limit);
        scanned = scanned.saturating_add(text.len().min(string_limit));
        out.batch.push(cut_text);
        out.items.push(Item {
            member_key,
            in_key,
            node,
            cut,
            empty: text.is_empty(),
        });
        true
    };
    while let Some((value, node, member_key)) = stack.pop() {
        nodes += 1;
        if nodes > limits.max_nodes {
            out.truncated = true;
            break;
        }
        match value {
            Value::Null | Value::Bool(_) => {}
            Value::Number(number) => {
                number_text.clear();
                // Writing to a `String` does not fail.
                let _ = write!(number_text, "{number}");
                if !add(&mut out, &number_text, None, false, node) {
                    return out;
                }
            }
            Value::String(text) => {
                if !add(&mut out, text, member_key, false, node) {
                    return out;
                }
            }
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate().rev() {
                    out.arena.push(PathNode {
                        parent: node,
                        segment: Segment::Index(i),
                    });
                    stack.push((item, out.arena.len() - 1, None));
                }
            }
            Value::Object(map) => {
                let first_child = out.arena.len();
                for (key, _) in map.iter() {
                    out.arena.push(PathNode {
                        parent: node,
                        segment: Segment::Key(key),
                    });
                }
                // Keys, in order, before the values.
                for (offset, (key, _)) in map.iter().enumerate() {
                    if !add(&mut out, key, None, true, first_child + offset) {
                        return out;
                    }
                }
                for (offset, (key, item)) in map.iter().enumerate().rev() {
                    stack.push((item, first_child + offset, Some(key.as_str())));
                }
            }
        }
    }
    out
}

/// Adds the findings of `sink` (of the text at path node `node`) to `report`.
fn push_findings(
    report: &mut ScanReport,
    sink: Sink,
    arena: &[PathNode<'_>],
    node: usize,
    in_key: bool,
) {
    let findings = sink.finish();
    if findings.is_empty() {
        return;
    }
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

/// [`super::scan_value`] string by string, as it was before the batched [`scan`]: the
/// reference the tests compare [`scan`] with.
#[cfg(test)]
pub(crate) fn scan_each(value: &Value, opts: &ScanOptions) -> ScanReport {
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
#[cfg(test)]
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
    let cut = super::scan_into(text, &local, &mut sink, member_key);
    *scanned = scanned.saturating_add(text.len().min(string_limit));
    if cut || sink.overflowed() {
        report.truncated = true;
    }
    push_findings(report, sink, arena, node, in_key);
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
