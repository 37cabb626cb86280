//! The HTML rendering of a [`Report`]: one self-contained page (inline CSS, no scripts, no
//! external resources), every text escaped.

use std::fmt::Write as _;

use super::{CheckpointRef, ControlReport, OrgFacts, Report, Status};

/// Escapes text for HTML element content and quoted attribute values: `&`, `<`, `>`, `"` and
/// `'` become character references; everything else is kept.
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            other => out.push(other),
        }
    }
    out
}

const STYLE: &str = "\
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:2rem auto;\
max-width:80rem;padding:0 1rem;color:#1f2328;line-height:1.45}\
h1{font-size:1.6rem;margin-bottom:.2rem}h2{font-size:1.2rem;margin-top:2rem}\
.meta{color:#59636e;margin:.2rem 0}\
.notice{background:#fff8c5;border:1px solid #d4a72c;border-radius:6px;padding:.6rem .8rem}\
.summary{display:flex;gap:.6rem;flex-wrap:wrap;margin:1rem 0}\
.summary div{border-radius:6px;padding:.4rem .8rem;font-weight:600}\
table{border-collapse:collapse;width:100%;font-size:.92rem}\
th,td{border:1px solid #d1d9e0;padding:.45rem .55rem;text-align:left;vertical-align:top}\
th{background:#f6f8fa}table.facts{width:auto}\
.status{display:inline-block;border-radius:4px;padding:.1rem .45rem;font-weight:600;\
white-space:nowrap}\
.satisfied{background:#dafbe1;color:#116329}.partial{background:#fff1c2;color:#7d4e00}\
.gap{background:#ffebe9;color:#a40e26}.no_activity{background:#eaeef2;color:#424a53}\
.zero{color:#818b98}ul{margin:0;padding-left:1.1rem}\
.tag{font-size:.75rem;text-transform:uppercase;font-weight:700;margin-right:.3rem}\
.req{color:#a40e26}.rec{color:#7d4e00}.ok{color:#116329}\
code{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:.85em}\
footer{margin-top:2rem;color:#59636e;font-size:.85rem}";

/// The report as a readable, self-contained HTML page: a header (framework, organisation,
/// period, the notice that this is evidence support and not a certification), the count of
/// controls per status, one table row per control (status, what AAF provides, event counts
/// with sample `seq`s, checkpoints, findings, passed checks), the settings the checks read and
/// the framework's retention basis. Inline CSS only, no scripts, and a
/// `Content-Security-Policy` meta element that forbids everything but inline style; every
/// text from the report is HTML-escaped ([`escape_html`]).
pub fn render_html(report: &Report) -> String {
    let e = escape_html;
    let mut h = String::with_capacity(16 * 1024);
    let fw = &report.framework;
    // `write!` into a String cannot fail; its results are ignored throughout.
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; \
         style-src 'unsafe-inline'\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{} compliance evidence: {}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n",
        e(&fw.id),
        e(&report.org_name),
    );
    let _ = write!(
        h,
        "<header>\n<h1>{}</h1>\n<p class=\"meta\">{} &middot; {}</p>\n\
         <p class=\"meta\">Organisation <strong>{}</strong> (<code>{}</code>) &middot; period \
         {} to {} &middot; generated {}</p>\n<p class=\"notice\">{}</p>\n</header>\n",
        e(&fw.title),
        e(&fw.version),
        e(&fw.source),
        e(&report.org_name),
        e(&report.org_id),
        e(&report.from),
        e(&report.to),
        e(&report.generated_at),
        e(&report.notice),
    );
    if let Some(note) = &fw.note {
        let _ = writeln!(h, "<p>{}</p>", e(note));
    }

    let s = &report.summary;
    let _ = write!(
        h,
        "<section class=\"summary\" aria-label=\"summary\">\n<div class=\"no_activity\">{} \
         controls</div>\n",
        s.controls
    );
    for (status, n) in [
        (Status::Satisfied, s.satisfied),
        (Status::Partial, s.partial),
        (Status::Gap, s.gap),
        (Status::NoActivity, s.no_activity),
    ] {
        let _ = writeln!(
            h,
            "<div class=\"{}\">{} {}</div>",
            status.as_str(),
            n,
            status_label(status)
        );
    }
    h.push_str("</section>\n");

    h.push_str(
        "<h2>Controls</h2>\n<table>\n<thead><tr><th>Control</th><th>Status</th>\
         <th>What AAF provides</th><th>Evidence in the period</th><th>Checks</th></tr></thead>\n\
         <tbody>\n",
    );
    for control in &report.controls {
        control_row(&mut h, control);
    }
    h.push_str("</tbody>\n</table>\n");

    h.push_str("<h2>Settings the checks read</h2>\n<table class=\"facts\">\n<tbody>\n");
    for (name, value) in facts_rows(&report.facts) {
        let _ = writeln!(
            h,
            "<tr><th><code>{}</code></th><td>{}</td></tr>",
            e(name),
            e(&value)
        );
    }
    h.push_str("</tbody>\n</table>\n");

    let r = &fw.retention;
    let _ = write!(
        h,
        "<h2>Retention</h2>\n<p>This framework is taken to ask for audit records to be kept at \
         least <strong>{} days</strong>{}. {}</p>\n",
        r.days,
        if r.interpretation {
            " (a common reading, not the text's requirement)"
        } else {
            ""
        },
        e(&r.basis),
    );
    let _ = write!(
        h,
        "<footer>Statuses: <strong>satisfied</strong>, the checks pass and the period holds \
         evidence; <strong>partial</strong>, a recommended check fails; <strong>gap</strong>, a \
         required check fails; <strong>no activity</strong>, the checks pass but the period \
         holds no evidence. Each sample is an audit event's <code>seq</code> in the \
         organisation's chain. Framework <code>{}</code>.</footer>\n</body>\n</html>\n",
        e(&fw.id)
    );
    h
}

fn status_label(status: Status) -> &'static str {
    match status {
        Status::Satisfied => "satisfied",
        Status::Partial => "partial",
        Status::Gap => "gap",
        Status::NoActivity => "no activity",
    }
}

fn control_row(h: &mut String, c: &ControlReport) {
    let e = escape_html;
    let _ = write!(
        h,
        "<tr id=\"{}\"><td><strong>{}</strong><br>{}</td><td><span class=\"status {}\">{}</span>\
         </td><td>{}</td><td>",
        e(&c.id),
        e(&c.id),
        e(&c.title),
        c.status.as_str(),
        status_label(c.status),
        e(&c.provides),
    );
    let ev = &c.evidence;
    if !ev.events.is_empty() {
        h.push_str("<ul>");
        for t in &ev.events {
            let class = if t.count == 0 { " class=\"zero\"" } else { "" };
            let _ = write!(
                h,
                "<li{class}><code>{}</code>: {}",
                e(&t.event_type),
                t.count
            );
            if !t.samples.is_empty() {
                let seqs: Vec<String> = t.samples.iter().map(u64::to_string).collect();
                let _ = write!(h, " (seq {})", e(&seqs.join(", ")));
            }
            h.push_str("</li>");
        }
        h.push_str("</ul>");
    }
    if let Some(cp) = &ev.checkpoints {
        let _ = write!(
            h,
            "<p>{} checkpoint{} of the audit log",
            cp.count,
            if cp.count == 1 { "" } else { "s" }
        );
        if let Some(first) = &cp.first {
            let _ = write!(h, "; first {}", checkpoint_text(first));
        }
        if let Some(last) = &cp.last {
            if cp.count > 1 {
                let _ = write!(h, "; last {}", checkpoint_text(last));
            }
        }
        h.push_str("</p>");
    }
    h.push_str("</td><td>");
    if !c.findings.is_empty() || !c.passed.is_empty() {
        h.push_str("<ul>");
        for f in &c.findings {
            let (class, tag) = if f.required {
                ("req", "gap")
            } else {
                ("rec", "partial")
            };
            let _ = write!(
                h,
                "<li><span class=\"tag {class}\">{tag}</span><code>{}</code>: {}</li>",
                e(&f.check.to_string()),
                e(&f.message)
            );
        }
        for p in &c.passed {
            let _ = write!(
                h,
                "<li><span class=\"tag ok\">ok</span><code>{}</code>: {}</li>",
                e(&p.to_string()),
                e(&p.describe())
            );
        }
        h.push_str("</ul>");
    } else {
        h.push_str("<span class=\"zero\">none</span>");
    }
    h.push_str("</td></tr>\n");
}

fn checkpoint_text(c: &CheckpointRef) -> String {
    let root: String = c.root.chars().take(16).collect();
    format!(
        "size <code>{}</code> at {}, root <code>{}{}</code>{}",
        c.tree_size,
        escape_html(&c.time),
        escape_html(&root),
        if c.root.chars().count() > 16 {
            "&hellip;"
        } else {
            ""
        },
        if c.signed { ", signed" } else { ", unsigned" }
    )
}

fn facts_rows(f: &OrgFacts) -> Vec<(&'static str, String)> {
    let yes_no = |b: bool| if b { "yes" } else { "no" }.to_owned();
    let days =
        |d: Option<u32>| d.map_or_else(|| "kept forever".to_owned(), |d| format!("{d} days"));
    let mut rows = vec![
        ("approval_policy", yes_no(f.approval_policy)),
        ("four_eyes", yes_no(f.four_eyes)),
        (
            "agents_without_public_key",
            f.agents_without_public_key.to_string(),
        ),
        ("unscoped_agent_keys", f.unscoped_agent_keys.to_string()),
        (
            "agent_keys_without_expiry",
            f.agent_keys_without_expiry.to_string(),
        ),
        ("log_key_configured", yes_no(f.log_key_configured)),
        ("checkpoint_sinks", f.checkpoint_sinks.to_string()),
        ("encryption_at_rest", yes_no(f.encryption_at_rest)),
        ("transport_encrypted", yes_no(f.transport_encrypted)),
        ("alert_rules_enabled", f.alert_rules_enabled.to_string()),
        ("alert_webhooks", f.alert_webhooks.to_string()),
        ("risk_scoring_enabled", yes_no(f.risk_scoring_enabled)),
        (
            "kill_switch_last_engaged",
            f.kill_switch_last_engaged
                .clone()
                .unwrap_or_else(|| "never".to_owned()),
        ),
        ("directory_policies", f.directory_policies.to_string()),
        ("retention (default)", days(f.retention.default_days)),
    ];
    if !f.retention.by_class.is_empty() {
        let classes: Vec<String> = f
            .retention
            .by_class
            .iter()
            .map(|(class, d)| format!("{class}: {}", days(*d)))
            .collect();
        rows.push(("retention (by event type)", classes.join("; ")));
    }
    rows
}
