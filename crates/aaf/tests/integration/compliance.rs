//! `GET /v1/compliance/report` end to end (docs/compliance.md): the report of a framework for
//! a period counts the organisation's audit events with samples and its checkpoints, names
//! the gaps it sees, renders as an escaped HTML page with a strict content security policy,
//! and names the field of every bad parameter.

use serde_json::{json, Value};

use crate::common::{policy_dir, TestServer, ADMIN_TOKEN, ALLOW_ALL};

fn control<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["controls"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id)
        .unwrap_or_else(|| panic!("no control {id}: {report}"))
}

#[tokio::test]
async fn a_compliance_report_counts_the_evidence_and_names_the_gaps() {
    let policies = policy_dir(&[("allow.rego", ALLOW_ALL)]);
    let server = TestServer::start(policies.path(), |_| {}).await;
    let (_, key) = server.create_agent("reported").await;
    for i in 0..4 {
        let (status, body) = server
            .act(
                &key,
                json!({"tool": "search", "operation": "query", "params": {"i": i}}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }
    let (status, checkpoint) = server
        .post_json("/v1/audit/checkpoint", ADMIN_TOKEN, json!({}))
        .await;
    assert_eq!(status, 200, "{checkpoint}");
    let (_, auditor) = server.create_user("auditor", "auditor").await;

    let (status, report) = server
        .get_json("/v1/compliance/report?framework=SOC2&format=json", &auditor)
        .await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["framework"]["id"], "soc2");
    assert_eq!(
        report["summary"]["controls"].as_u64().unwrap() as usize,
        report["controls"].as_array().unwrap().len()
    );
    // Every action.decided of the period is counted, with samples (seqs, newest first).
    let decided = report["controls"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|c| c["evidence"]["events"].as_array().unwrap().iter())
        .find(|e| e["type"] == "action.decided")
        .expect("no control counts action.decided");
    assert_eq!(decided["count"], 4, "{decided}");
    let samples: Vec<u64> = decided["samples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_u64().unwrap())
        .collect();
    assert_eq!(samples.len(), 4);
    assert!(samples.windows(2).all(|w| w[0] > w[1]), "{samples:?}");
    // Each sample is an action.decided event of the chain.
    let events = server.audit(None).await;
    for seq in &samples {
        assert_eq!(events[*seq as usize - 1]["type"], "action.decided");
    }
    // The checkpoint signed above is evidence, and the gaps AAF can see are named: no
    // policy can require approval here, agents need not sign, no kill switch was tried.
    let (status, hipaa) = server
        .get_json("/v1/compliance/report?framework=hipaa", ADMIN_TOKEN)
        .await;
    assert_eq!(status, 200, "{hipaa}");
    let audit_controls = control(&hipaa, "164.312(b)");
    assert!(
        audit_controls["evidence"]["checkpoints"]["count"]
            .as_u64()
            .unwrap()
            >= 1,
        "{audit_controls}"
    );
    assert_eq!(
        audit_controls["evidence"]["checkpoints"]["last"]["root"], checkpoint["root_hash"],
        "{audit_controls}"
    );
    assert_eq!(report["facts"]["log_key_configured"], true);
    assert_eq!(report["facts"]["approval_policy"], false);
    assert_eq!(report["facts"]["agents_without_public_key"], 1);
    assert_eq!(report["facts"]["checkpoint_sinks"], 0);
    let findings: Vec<String> = report["controls"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|c| c["findings"].as_array().unwrap().iter())
        .map(|f| f["check"].to_string())
        .collect();
    assert!(
        findings
            .iter()
            .any(|f| f.contains("agent_signatures_required")),
        "{findings:?}"
    );
    assert!(
        findings.iter().any(|f| f.contains("kill_switch_tested")),
        "{findings:?}"
    );

    // EU AI Act Art. 14 (human oversight) is a gap without an approval policy.
    let (status, ai_act) = server
        .get_json("/v1/compliance/report?framework=eu-ai-act", ADMIN_TOKEN)
        .await;
    assert_eq!(status, 200, "{ai_act}");
    assert_eq!(control(&ai_act, "Art. 14(4)")["status"], "gap", "{ai_act}");

    // A period before anything happened holds no events.
    let (status, empty) = server
        .get_json(
            "/v1/compliance/report?framework=hipaa&from=2020-01-01T00:00:00Z&to=2020-02-01T00:00:00Z",
            ADMIN_TOKEN,
        )
        .await;
    assert_eq!(status, 200, "{empty}");
    assert!(empty["controls"]
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c["evidence"]["total_events"] == 0));

    // HTML: asked for by Accept or format, with a content security policy, escaped.
    let response = server
        .client
        .get(server.url("/v1/compliance/report?framework=nist-800-53"))
        .bearer_auth(ADMIN_TOKEN)
        .header(
            "accept",
            "text/html,application/xhtml+xml,application/json;q=0.9",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "text/html; charset=utf-8"
    );
    assert_eq!(
        response.headers()["content-security-policy"],
        "default-src 'none'; style-src 'unsafe-inline'"
    );
    let page = response.text().await.unwrap();
    assert!(page.contains("AU-9"), "the page lists the controls");
    assert!(!page.contains("<script"), "no scripts");

    // Bad parameters name their field; viewers may not read reports.
    for (query, field) in [
        ("", "framework"),
        ("framework=pci", "framework"),
        ("framework=soc2&from=yesterday", "from"),
        (
            "framework=soc2&to=2020-01-01T00:00:00Z&from=2021-01-01T00:00:00Z",
            "to",
        ),
        ("framework=soc2&format=pdf", "format"),
        ("framework=soc2&since=2020-01-01T00:00:00Z", "since"),
    ] {
        let (status, body) = server
            .get_json(&format!("/v1/compliance/report?{query}"), ADMIN_TOKEN)
            .await;
        assert_eq!(status, 400, "{query}: {body}");
        let named = body["error"]["field"] == field
            || body["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains(field));
        assert!(named, "{query}: {body}");
    }
    let (_, viewer) = server.create_user("viewer", "viewer").await;
    let (status, _) = server
        .get_json("/v1/compliance/report?framework=soc2", &viewer)
        .await;
    assert_eq!(status, 403);
    server.stop().await;
}
