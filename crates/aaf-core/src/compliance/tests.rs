use std::collections::BTreeMap;

use serde_json::json;

use super::*;

/// Facts under which every check passes.
fn good_facts() -> OrgFacts {
    OrgFacts {
        approval_policy: true,
        four_eyes: true,
        agents_without_public_key: 0,
        unscoped_agent_keys: 0,
        agent_keys_without_expiry: 0,
        log_key_configured: true,
        checkpoint_sinks: 1,
        encryption_at_rest: true,
        transport_encrypted: true,
        alert_rules_enabled: 7,
        alert_webhooks: 1,
        risk_scoring_enabled: true,
        kill_switch_last_engaged: Some("2026-01-15T10:00:00Z".into()),
        directory_policies: 0,
        retention: RetentionFacts::default(),
    }
}

fn checkpoint(tree_size: u64, time: &str) -> CheckpointRef {
    CheckpointRef {
        tree_size,
        time: time.into(),
        root: "ab".repeat(32),
        signed: true,
    }
}

/// A snapshot with every event type present (count 3, samples 1, 2, 3) and two checkpoints.
fn busy_snapshot(facts: OrgFacts) -> EvidenceSnapshot {
    let events = event_types::ALL
        .iter()
        .map(|t| {
            (
                (*t).to_owned(),
                EventEvidence {
                    count: 3,
                    samples: vec![1, 2, 3],
                },
            )
        })
        .collect();
    EvidenceSnapshot {
        org_id: "org-1".into(),
        org_name: "Acme".into(),
        from: "2026-01-01T00:00:00Z".into(),
        to: "2026-04-01T00:00:00Z".into(),
        generated_at: "2026-04-01T00:05:00Z".into(),
        events,
        checkpoints: vec![
            checkpoint(10, "2026-01-02T00:00:00Z"),
            checkpoint(90, "2026-03-30T00:00:00Z"),
        ],
        facts,
    }
}

fn empty_snapshot(facts: OrgFacts) -> EvidenceSnapshot {
    EvidenceSnapshot {
        org_id: "org-1".into(),
        org_name: "Acme".into(),
        from: "2026-01-01T00:00:00Z".into(),
        to: "2026-04-01T00:00:00Z".into(),
        generated_at: "2026-04-01T00:05:00Z".into(),
        facts,
        ..EvidenceSnapshot::default()
    }
}

fn control<'a>(report: &'a Report, id: &str) -> &'a ControlReport {
    report
        .controls
        .iter()
        .find(|c| c.id == id)
        .unwrap_or_else(|| panic!("control {id} is not in the report"))
}

#[test]
fn the_builtin_mapping_parses_and_names_only_real_event_types() {
    let mapping = Mapping::builtin();
    assert_eq!(
        mapping.ids(),
        ["soc2", "hipaa", "nist-800-53", "iso27001", "eu-ai-act"]
    );
    let mut used = BTreeSet::new();
    for framework in &mapping.frameworks {
        for control in &framework.controls {
            for t in &control.events {
                assert!(
                    event_types::ALL.contains(&t.as_str()),
                    "{} {}: {t} is not in event_types::ALL",
                    framework.id,
                    control.id
                );
                assert!(
                    !event_types::RETIRED.contains(&t.as_str()),
                    "{} {}: {t} is retired",
                    framework.id,
                    control.id
                );
                used.insert(t.as_str());
            }
        }
    }
    // The mapping draws on most of the event types, not a handful.
    assert!(used.len() >= 40, "only {} event types used", used.len());
}

#[test]
fn every_framework_has_the_controls_the_issue_names() {
    let expected: &[(&str, &[&str])] = &[
        (
            "soc2",
            &[
                "CC6.1", "CC6.2", "CC6.3", "CC6.6", "CC6.8", "CC7.2", "CC7.3", "CC7.4", "CC8.1",
            ],
        ),
        (
            "hipaa",
            &[
                "164.312(a)(1)",
                "164.312(b)",
                "164.312(c)(1)",
                "164.312(d)",
                "164.312(e)(1)",
            ],
        ),
        (
            "nist-800-53",
            &[
                "AC-2", "AC-6", "AU-2", "AU-3", "AU-6", "AU-9", "AU-10", "AU-11", "IR-4", "SI-4",
            ],
        ),
        (
            "iso27001",
            &[
                "A.5.15", "A.5.18", "A.8.2", "A.8.15", "A.8.16", "A.8.24", "A.5.28",
            ],
        ),
        (
            "eu-ai-act",
            &["Art. 12(1)", "Art. 12(2)", "Art. 14(1)", "Art. 14(4)"],
        ),
    ];
    let mapping = Mapping::builtin();
    for (framework, controls) in expected {
        let f = mapping.framework(framework).expect("framework exists");
        for id in *controls {
            let c = f
                .control(id)
                .unwrap_or_else(|| panic!("{framework} lacks {id}"));
            assert!(!c.title.is_empty() && !c.provides.is_empty());
            assert!(!c.events.is_empty() || c.checkpoints);
        }
    }
}

#[test]
fn retention_checks_use_the_figure_each_framework_documents() {
    let mut frameworks_with_a_retention_check = 0;
    for framework in &Mapping::builtin().frameworks {
        assert!(!framework.retention.basis.is_empty());
        let mut found = false;
        for c in &framework.controls {
            for check in c.checks.iter().chain(&c.recommended) {
                if let Check::RetentionAtLeast { days } = check {
                    assert_eq!(
                        *days, framework.retention.days,
                        "{} {}: retention check differs from the framework's figure",
                        framework.id, c.id
                    );
                    found = true;
                }
            }
        }
        frameworks_with_a_retention_check += usize::from(found);
    }
    assert_eq!(frameworks_with_a_retention_check, 5);
    let hipaa = Mapping::builtin().framework("hipaa").expect("hipaa");
    assert_eq!(hipaa.retention.days, 2192);
    assert!(hipaa.retention.interpretation);
    let ai = Mapping::builtin()
        .framework("eu-ai-act")
        .expect("eu-ai-act");
    assert_eq!(ai.retention.days, 184);
    assert!(!ai.retention.interpretation);
}

#[test]
fn frameworks_are_found_by_id_or_alias_and_unknown_ones_list_the_ids() {
    let mapping = Mapping::builtin();
    assert_eq!(
        mapping.framework("fedramp").expect("alias").id,
        "nist-800-53"
    );
    assert_eq!(mapping.framework("SOC2").expect("case").id, "soc2");
    let error = mapping.framework("pci-dss").expect_err("unknown");
    assert_eq!(error.requested, "pci-dss");
    assert_eq!(
        error.known,
        ["soc2", "hipaa", "nist-800-53", "iso27001", "eu-ai-act"]
    );
    assert_eq!(
        error.to_string(),
        "unknown compliance framework \"pci-dss\": expected one of soc2, hipaa, nist-800-53, \
         iso27001, eu-ai-act"
    );
}

#[test]
fn everything_in_place_and_recorded_satisfies_every_control() {
    for framework in &Mapping::builtin().frameworks {
        let report = report(framework, &busy_snapshot(good_facts()));
        for c in &report.controls {
            assert_eq!(
                c.status,
                Status::Satisfied,
                "{} {}: {:?}",
                framework.id,
                c.id,
                c.findings
            );
            assert!(c.findings.is_empty());
        }
        assert_eq!(report.summary.satisfied as usize, framework.controls.len());
        assert_eq!(report.summary.controls as usize, framework.controls.len());
    }
}

#[test]
fn a_period_without_events_gives_no_activity_or_gaps() {
    // Settings in place, nothing happened: no_activity everywhere.
    for framework in &Mapping::builtin().frameworks {
        // Without a checkpoint only checkpoint_in_period can fail.
        let report = report(framework, &empty_snapshot(good_facts()));
        for c in &report.controls {
            assert!(
                matches!(c.status, Status::NoActivity | Status::Gap),
                "{} {}: {:?}",
                framework.id,
                c.id,
                c.status
            );
            assert_eq!(c.evidence.total_events, 0);
            if c.status == Status::Gap {
                assert!(c
                    .findings
                    .iter()
                    .all(|f| f.check == Check::CheckpointInPeriod));
            }
        }
    }
    // Nothing configured either (the default facts): no control is satisfied, and the
    // required checks that read the settings are gaps.
    let soc2 = Mapping::builtin().framework("soc2").expect("soc2");
    let r = report(soc2, &empty_snapshot(OrgFacts::default()));
    assert_eq!(r.summary.satisfied, 0);
    assert_eq!(control(&r, "CC6.2").status, Status::NoActivity);
    assert_eq!(control(&r, "CC7.2").status, Status::Gap);
    assert_eq!(
        control(&r, "CC7.2").findings[0].check,
        Check::AlertRulesEnabled
    );
    assert_eq!(control(&r, "CC6.1").status, Status::Partial); // encryption_at_rest
    let cc71 = &control(&r, "CC6.1").evidence;
    assert!(cc71
        .events
        .iter()
        .all(|e| e.count == 0 && e.samples.is_empty()));
    assert_eq!(cc71.checkpoints, None);
    assert_eq!(
        r.summary.satisfied + r.summary.partial + r.summary.gap + r.summary.no_activity,
        r.summary.controls
    );
}

#[test]
fn no_approval_policy_is_a_gap_of_the_human_oversight_controls() {
    let ai = Mapping::builtin()
        .framework("eu-ai-act")
        .expect("eu-ai-act");
    let facts = OrgFacts {
        approval_policy: false,
        ..good_facts()
    };
    let r = report(ai, &busy_snapshot(facts));
    for id in ["Art. 14(1)", "Art. 14(4)"] {
        let c = control(&r, id);
        assert_eq!(c.status, Status::Gap, "{id}");
        assert_eq!(c.findings.len(), 1);
        let finding = &c.findings[0];
        assert_eq!(finding.check, Check::ApprovalPolicyPresent);
        assert!(finding.required);
        assert!(
            finding.message.contains("require_approval"),
            "{}",
            finding.message
        );
        // The evidence is still reported.
        assert!(c.evidence.total_events > 0);
    }
    // Record-keeping does not depend on approvals.
    assert_eq!(control(&r, "Art. 12(1)").status, Status::Satisfied);
    // Where approvals are only recommended (separation of duties), the control is partial.
    let nist = Mapping::builtin().framework("nist-800-53").expect("nist");
    let r = report(
        nist,
        &busy_snapshot(OrgFacts {
            approval_policy: false,
            ..good_facts()
        }),
    );
    let ac5 = control(&r, "AC-5");
    assert_eq!(ac5.status, Status::Partial);
    assert!(!ac5.findings[0].required);
}

#[test]
fn retention_shorter_than_required_is_a_gap_naming_both_numbers() {
    let hipaa = Mapping::builtin().framework("hipaa").expect("hipaa");
    let mut facts = good_facts();
    facts.retention.default_days = Some(90);
    let r = report(hipaa, &busy_snapshot(facts.clone()));
    let b = control(&r, "164.312(b)");
    assert_eq!(b.status, Status::Gap);
    assert_eq!(b.findings.len(), 1);
    let f = &b.findings[0];
    assert_eq!(f.check, Check::RetentionAtLeast { days: 2192 });
    assert!(f.required);
    assert!(f.message.contains("kept 90 days"), "{}", f.message);
    assert!(
        f.message.contains("less than the 2192 days"),
        "{}",
        f.message
    );
    assert!(f.message.contains("all 7 event types"), "{}", f.message);

    // A class kept forever overrides the default; the exact type overrides its class; the
    // message names the types at the shortest retention only.
    facts.retention.default_days = None;
    facts.retention.by_class = BTreeMap::from([
        ("action".to_owned(), None),
        ("approval".to_owned(), Some(3000)),
        ("approval.rejected".to_owned(), Some(400)),
    ]);
    let r = report(hipaa, &busy_snapshot(facts.clone()));
    let f = &control(&r, "164.312(b)").findings[0];
    assert!(f.message.contains("approval.rejected"), "{}", f.message);
    assert!(!f.message.contains("approval.approved"), "{}", f.message);
    assert!(f.message.contains("400") && f.message.contains("2192"));
    assert_eq!(facts.retention.days_for("action.executed"), None);
    assert_eq!(facts.retention.days_for("approval.approved"), Some(3000));
    assert_eq!(facts.retention.days_for("approval.rejected"), Some(400));
    assert_eq!(facts.retention.days_for("request.rejected"), None);

    // Long enough (or forever) passes.
    facts.retention.by_class.clear();
    facts.retention.default_days = Some(2192);
    let r = report(hipaa, &busy_snapshot(facts));
    assert_eq!(control(&r, "164.312(b)").status, Status::Satisfied);
}

#[test]
fn each_check_reads_its_fact() {
    let nist = Mapping::builtin().framework("nist-800-53").expect("nist");
    let cases: Vec<(OrgFacts, &str, Check, &str)> = vec![
        (
            OrgFacts {
                agents_without_public_key: 2,
                ..good_facts()
            },
            "AU-10",
            Check::AgentSignaturesRequired,
            "2 active agents have no public key",
        ),
        (
            OrgFacts {
                unscoped_agent_keys: 1,
                ..good_facts()
            },
            "AC-6",
            Check::AgentKeysScoped,
            "1 active agent key has no tool scope: only the policies",
        ),
        (
            OrgFacts {
                log_key_configured: false,
                ..good_facts()
            },
            "AU-9",
            Check::CheckpointsSigned,
            "no log key",
        ),
        (
            OrgFacts {
                alert_rules_enabled: 0,
                ..good_facts()
            },
            "SI-4",
            Check::AlertRulesEnabled,
            "no alert rule",
        ),
        (
            OrgFacts {
                directory_policies: 3,
                ..good_facts()
            },
            "CM-3",
            Check::PolicyChangesAudited,
            "3 policy modules come from the server's policy directory",
        ),
        (
            OrgFacts {
                four_eyes: false,
                ..good_facts()
            },
            "AC-5",
            Check::FourEyesEnabled,
            "four-eyes rule is off",
        ),
    ];
    for (facts, id, check, text) in cases {
        let r = report(nist, &busy_snapshot(facts));
        let c = control(&r, id);
        assert_eq!(c.status, Status::Gap, "{id}");
        assert_eq!(c.findings[0].check, check, "{id}");
        assert!(
            c.findings[0].message.contains(text),
            "{}",
            c.findings[0].message
        );
        assert!(!c.passed.contains(&check));
    }

    // Recommended checks make a control partial.
    let r = report(
        nist,
        &busy_snapshot(OrgFacts {
            checkpoint_sinks: 0,
            kill_switch_last_engaged: None,
            ..good_facts()
        }),
    );
    assert_eq!(control(&r, "AU-9").status, Status::Partial);
    // A kill switch engaged in the period counts as tested even without a last date.
    assert_eq!(control(&r, "IR-4").status, Status::Satisfied);
    let mut quiet = busy_snapshot(OrgFacts {
        kill_switch_last_engaged: None,
        ..good_facts()
    });
    quiet.events.remove(event_types::KILL_SWITCH_ENGAGED);
    let r = report(nist, &quiet);
    let ir4 = control(&r, "IR-4");
    assert_eq!(ir4.status, Status::Partial);
    assert_eq!(ir4.findings[0].check, Check::KillSwitchTested);

    // An unsigned checkpoint in the period fails checkpoints_signed even with a log key.
    let mut snapshot = busy_snapshot(good_facts());
    snapshot.checkpoints[1].signed = false;
    let r = report(nist, &snapshot);
    let au9 = control(&r, "AU-9");
    assert_eq!(au9.status, Status::Gap);
    assert_eq!(
        au9.findings[0].message,
        "1 checkpoint of the period is not signed with the log key"
    );

    // No checkpoint in the period.
    let mut snapshot = busy_snapshot(good_facts());
    snapshot.checkpoints.clear();
    let r = report(nist, &snapshot);
    let au9 = control(&r, "AU-9");
    assert_eq!(au9.status, Status::Gap);
    assert_eq!(au9.findings[0].check, Check::CheckpointInPeriod);
    // AU-10 still has its events as evidence.
    assert_eq!(control(&r, "AU-10").status, Status::Satisfied);
}

#[test]
fn evidence_keeps_at_most_max_samples_and_the_first_and_last_checkpoints() {
    let nist = Mapping::builtin().framework("nist-800-53").expect("nist");
    let mut snapshot = busy_snapshot(good_facts());
    snapshot.events.insert(
        event_types::ACTION_DECIDED.into(),
        EventEvidence {
            count: 1000,
            samples: (1..=20).rev().collect(),
        },
    );
    snapshot.checkpoints = vec![
        checkpoint(50, "2026-02-01T00:00:00Z"),
        checkpoint(10, "2026-01-02T00:00:00Z"),
        checkpoint(90, "2026-03-30T00:00:00Z"),
    ];
    let r = report(nist, &snapshot);
    let au10 = control(&r, "AU-10");
    let decided = &au10.evidence.events[0];
    assert_eq!(decided.event_type, "action.decided");
    assert_eq!(decided.count, 1000);
    assert_eq!(decided.samples, [20, 19, 18, 17, 16]);
    assert_eq!(au10.evidence.total_events, 1000 + 3 + 3);
    let cps = au10.evidence.checkpoints.as_ref().expect("checkpoints");
    assert_eq!(cps.count, 3);
    assert_eq!(cps.first.as_ref().map(|c| c.tree_size), Some(10));
    assert_eq!(cps.last.as_ref().map(|c| c.tree_size), Some(90));
    // A control that does not use checkpoints has none.
    assert_eq!(control(&r, "AC-2").evidence.checkpoints, None);
}

const SMALL: &str = r#"
frameworks:
  - id: demo
    aliases: [example]
    title: Demo framework
    version: "1"
    source: A test
    retention: {days: 30, basis: Thirty days, interpretation: false}
    controls:
      - id: D-1
        title: Oversight
        provides: Approvals.
        events: [approval.approved, approval.rejected]
        checks: [approval_policy_present]
        recommended:
          - retention_at_least: {days: 30}
      - id: D-2
        title: Log protection
        provides: Checkpoints.
        checkpoints: true
        checks: [checkpoints_signed]
"#;

#[test]
fn the_report_json_has_the_documented_shape() {
    let mapping = Mapping::from_yaml(SMALL).expect("valid");
    let framework = mapping.framework("example").expect("alias");
    let snapshot = EvidenceSnapshot {
        org_id: "o1".into(),
        org_name: "Acme".into(),
        from: "2026-01-01T00:00:00Z".into(),
        to: "2026-02-01T00:00:00Z".into(),
        generated_at: "2026-02-01T00:00:01Z".into(),
        events: BTreeMap::from([(
            "approval.approved".to_owned(),
            EventEvidence {
                count: 2,
                samples: vec![41, 17],
            },
        )]),
        checkpoints: vec![],
        facts: OrgFacts {
            approval_policy: true,
            retention: RetentionFacts {
                default_days: Some(7),
                by_class: BTreeMap::new(),
            },
            ..OrgFacts::default()
        },
    };
    let value = serde_json::to_value(report(framework, &snapshot)).expect("json");
    let expected = json!({
        "framework": {
            "id": "demo",
            "title": "Demo framework",
            "version": "1",
            "source": "A test",
            "retention": {"days": 30, "basis": "Thirty days", "interpretation": false}
        },
        "org_id": "o1",
        "org_name": "Acme",
        "from": "2026-01-01T00:00:00Z",
        "to": "2026-02-01T00:00:00Z",
        "generated_at": "2026-02-01T00:00:01Z",
        "summary": {"controls": 2, "satisfied": 0, "partial": 1, "gap": 1, "no_activity": 0},
        "controls": [
            {
                "id": "D-1",
                "title": "Oversight",
                "provides": "Approvals.",
                "status": "partial",
                "evidence": {
                    "total_events": 2,
                    "events": [
                        {"type": "approval.approved", "count": 2, "samples": [41, 17]},
                        {"type": "approval.rejected", "count": 0, "samples": []}
                    ],
                    "checkpoints": null
                },
                "findings": [{
                    "check": {"retention_at_least": {"days": 30}},
                    "required": false,
                    "message": "audit events of type approval.approved, approval.rejected are \
                                kept 7 days, less than the 30 days this check asks for (the \
                                framework's retention basis says why)"
                }],
                "passed": ["approval_policy_present"]
            },
            {
                "id": "D-2",
                "title": "Log protection",
                "provides": "Checkpoints.",
                "status": "gap",
                "evidence": {
                    "total_events": 0,
                    "events": [],
                    "checkpoints": {"count": 0, "first": null, "last": null}
                },
                "findings": [{
                    "check": "checkpoints_signed",
                    "required": true,
                    "message": "no log key is configured: the audit log's checkpoints are not \
                                signed"
                }],
                "passed": []
            }
        ],
        "facts": {
            "approval_policy": true,
            "four_eyes": false,
            "agents_without_public_key": 0,
            "unscoped_agent_keys": 0,
            "agent_keys_without_expiry": 0,
            "log_key_configured": false,
            "checkpoint_sinks": 0,
            "encryption_at_rest": false,
            "transport_encrypted": false,
            "alert_rules_enabled": 0,
            "alert_webhooks": 0,
            "risk_scoring_enabled": false,
            "kill_switch_last_engaged": null,
            "directory_policies": 0,
            "retention": {"default_days": 7, "by_class": {}}
        },
        "notice": NOTICE
    });
    assert_eq!(value, expected);
    // The report reads back as it was written.
    let back: Report = serde_json::from_value(value).expect("deserialise");
    assert_eq!(back, report(framework, &snapshot));
}

#[test]
fn the_snapshot_reads_from_json_with_defaults() {
    let snapshot: EvidenceSnapshot = serde_json::from_value(json!({
        "org_id": "o1", "org_name": "Acme", "from": "a", "to": "b", "generated_at": "c",
        "events": {"action.decided": {"count": 3, "samples": [1, 2, 3]}},
        "facts": {"approval_policy": true, "retention": {"by_class": {"action": null, "auth": 30}}}
    }))
    .expect("snapshot");
    assert!(snapshot.checkpoints.is_empty());
    assert!(snapshot.facts.approval_policy);
    assert_eq!(snapshot.facts.retention.days_for("action.failed"), None);
    assert_eq!(snapshot.facts.retention.days_for("auth.failed"), Some(30));
}

#[test]
fn invalid_mappings_are_refused_with_a_typed_error() {
    let unknown_event = SMALL.replace("approval.rejected", "approval_maybe");
    assert_eq!(
        Mapping::from_yaml(&unknown_event),
        Err(MappingError::UnknownEventType {
            framework: "demo".into(),
            control: "D-1".into(),
            event_type: "approval_maybe".into(),
        })
    );
    let unknown_check = SMALL.replace("checkpoints_signed", "checkpoints_blessed");
    assert!(matches!(
        Mapping::from_yaml(&unknown_check),
        Err(MappingError::Syntax(m)) if m.contains("checkpoints_blessed")
    ));
    let unknown_member = SMALL.replace(
        "provides: Approvals.",
        "provides: Approvals.\n        owner: me",
    );
    assert!(matches!(
        Mapping::from_yaml(&unknown_member),
        Err(MappingError::Syntax(m)) if m.contains("owner")
    ));
    let duplicate = SMALL.replace("id: D-2", "id: D-1");
    assert_eq!(
        Mapping::from_yaml(&duplicate),
        Err(MappingError::DuplicateControl {
            framework: "demo".into(),
            control: "D-1".into()
        })
    );
    let no_evidence = SMALL.replace("checkpoints: true", "checkpoints: false");
    assert!(matches!(
        Mapping::from_yaml(&no_evidence),
        Err(MappingError::NoEvidence { .. })
    ));
    let zero_days = SMALL.replace(
        "- retention_at_least: {days: 30}",
        "- retention_at_least: {days: 0}",
    );
    assert!(matches!(
        Mapping::from_yaml(&zero_days),
        Err(MappingError::Invalid(_))
    ));
}

#[test]
fn checks_read_and_write_their_documented_forms() {
    let checks: Vec<Check> = serde_json::from_value(json!([
        "agent_keys_expire",
        {"retention_at_least": {"days": 365}}
    ]))
    .expect("json");
    assert_eq!(
        checks,
        [
            Check::AgentKeysExpire,
            Check::RetentionAtLeast { days: 365 }
        ]
    );
    assert_eq!(
        Check::RetentionAtLeast { days: 365 }.name(),
        "retention_at_least"
    );
    assert_eq!(
        Check::RetentionAtLeast { days: 365 }.to_string(),
        "retention_at_least(365 days)"
    );
    // Every check's name is its serde name.
    for check in ALL_CHECKS {
        assert_eq!(
            serde_json::to_value(check).expect("json"),
            json!(check.name())
        );
        assert!(!check.describe().is_empty());
    }
}

/// Every check without parameters.
const ALL_CHECKS: [Check; 15] = [
    Check::ApprovalPolicyPresent,
    Check::FourEyesEnabled,
    Check::AgentSignaturesRequired,
    Check::AgentKeysScoped,
    Check::AgentKeysExpire,
    Check::CheckpointsSigned,
    Check::CheckpointSinkConfigured,
    Check::CheckpointInPeriod,
    Check::EncryptionAtRest,
    Check::TransportEncryption,
    Check::AlertRulesEnabled,
    Check::AlertNotificationsConfigured,
    Check::RiskScoringEnabled,
    Check::KillSwitchTested,
    Check::PolicyChangesAudited,
];

#[test]
fn the_html_page_escapes_every_text() {
    let soc2 = Mapping::builtin().framework("soc2").expect("soc2");
    let mut snapshot = busy_snapshot(OrgFacts {
        kill_switch_last_engaged: Some("<script>alert(2)</script>".into()),
        ..OrgFacts::default()
    });
    snapshot.org_name = "<script>alert(1)</script> & \"Acme\" 'Ltd'".into();
    snapshot.from = "<img src=x onerror=alert(3)>".into();
    snapshot.checkpoints[0].time = "<script>alert(4)</script>".into();
    snapshot.facts.retention.by_class = BTreeMap::from([("<b>action</b>".to_owned(), Some(1))]);
    let html = render_html(&report(soc2, &snapshot));
    assert!(!html.contains("<script"), "an unescaped script tag");
    assert!(!html.contains("<img"), "an unescaped img tag");
    assert!(!html.contains("<b>"), "an unescaped b tag");
    assert!(
        html.contains("&lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;Acme&quot; &#39;Ltd&#39;")
    );
    assert!(html.contains("&lt;script&gt;alert(2)&lt;/script&gt;"));
    assert!(html.contains("&lt;img src=x onerror=alert(3)&gt;"));
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(html.contains("Content-Security-Policy"));
    assert!(!html.contains("<link") && !html.contains("src=\"http"));
    // Every control, its status and the notice are on the page.
    for c in &soc2.controls {
        assert!(
            html.contains(&format!("<tr id=\"{}\">", escape_html(&c.id))),
            "{}",
            c.id
        );
    }
    assert!(html.contains("class=\"status gap\""));
    assert!(html.contains(&escape_html(NOTICE)));
    assert!(html.contains("(seq 1, 2, 3)"));
}

#[test]
fn escape_html_replaces_the_five_special_characters() {
    assert_eq!(
        escape_html(r#"<a href="x">Tom & 'Jerry'</a>"#),
        "&lt;a href=&quot;x&quot;&gt;Tom &amp; &#39;Jerry&#39;&lt;/a&gt;"
    );
    assert_eq!(escape_html("plain – text"), "plain – text");
}

#[test]
fn docs_compliance_md_holds_every_framework_table() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/compliance.md");
    let doc = std::fs::read_to_string(path).expect("docs/compliance.md");
    let checks = ALL_CHECKS
        .iter()
        .map(|c| format!("| `{}` |", c.name()))
        .chain(["| `retention_at_least: {days: N}` |".to_owned()]);
    for row in checks {
        assert!(
            doc.contains(&row),
            "docs/compliance.md does not describe {row}"
        );
    }
    for framework in &Mapping::builtin().frameworks {
        let table = markdown_table(framework);
        assert!(
            doc.contains(&table),
            "docs/compliance.md lacks the current table of {}:\n{table}",
            framework.id
        );
    }
}
