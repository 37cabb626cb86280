//! The human-approval workflow end to end, over HTTP on a real server: seed 004's Stripe
//! charge of 50000 waits for an approver and then reaches a loopback upstream exactly once;
//! rejected, expired, tampered and re-check-denied actions never do; roles, four eyes and
//! quorums; the agent's wait, cancel and result report; and the races (two approvers, an
//! approval against expiry, a node that stopped between approval and execution), with real
//! concurrent requests. Time moves with a manual clock, never with sleeps.

use std::path::Path;
use std::time::Duration;

use aaf_server::clock::Clock;
use aaf_server::config::Config;
use serde_json::{json, Value};
use sqlx::Connection;

use crate::common::{examples, policy_dir, within, TestServer, Upstream, ADMIN_TOKEN, ALLOW_ALL};

/// Seed 004's policy decides on `http_proxy` calls to a URL containing `stripe.com`; the
/// connector resolves that name to the loopback upstream (static `hosts`, no DNS).
/// `tweak`, with encryption at rest turned off: the actions are stored in clear, as by
/// versions before it or with `encryption.enabled = false`, which is what these tests change
/// behind AAF's back (sealed rows: `encryption::a_tampered_sealed_action_is_never_executed`).
fn in_clear(tweak: impl FnOnce(&mut Config)) -> impl FnOnce(&mut Config) {
    move |c: &mut Config| {
        tweak(c);
        c.encryption.enabled = false;
    }
}

pub(crate) fn stripe_to(_upstream: &Upstream) -> impl FnOnce(&mut Config) {
    move |c: &mut Config| {
        c.connectors.http.system_dns = false;
        c.connectors
            .http
            .hosts
            .insert("api.stripe.com".into(), vec!["127.0.0.1".parse().unwrap()]);
        c.auth.failed_auth_per_minute = 0;
    }
}

pub(crate) fn charge(upstream: &Upstream, amount: u64) -> Value {
    json!({
        "tool": "http_proxy",
        "operation": "POST",
        "params": {
            "url": format!("http://api.stripe.com:{}/v1/charges", upstream.addr.port()),
            "body": {"amount": amount, "currency": "usd"},
            "headers": {"Authorization": "Bearer sk_test_approval_secret"}
        },
        "context": {"user_id": "customer-7", "purpose": "invoice 42"}
    })
}

pub(crate) fn start_clock() -> Clock {
    Clock::manual(time::OffsetDateTime::now_utc())
}

/// Waits (long polling, no sleeps) until action `id` has `status`; panics after 30 s.
pub(crate) async fn wait_for_status(server: &TestServer, id: &str, status: &str) -> Value {
    for _ in 0..30 {
        let (code, body) = server
            .get_json(&format!("/v1/actions/{id}?wait=1"), ADMIN_TOKEN)
            .await;
        assert_eq!(code, 200, "{body}");
        if body["status"] == status {
            return body;
        }
    }
    panic!("action {id} never reached status {status}");
}

pub(crate) async fn answer(
    server: &TestServer,
    token: &str,
    id: &str,
    verb: &str,
    body: Value,
) -> (u16, Value) {
    server
        .post_json(&format!("/v1/approvals/{id}/{verb}"), token, body)
        .await
}

fn events_of<'a>(events: &'a [Value], action_id: &str, kind: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|e| e["action_id"] == action_id && e["type"] == kind)
        .collect()
}

/// Approves action `id`, which must then be denied at the re-check because its stored form
/// no longer matches its digest (`reason_part` names how), never reaching `upstream`;
/// returns its one `approval.recheck_denied` event.
async fn approve_denied_on_digest(
    server: &TestServer,
    approver: &str,
    id: &str,
    upstream: &Upstream,
    reason_part: &str,
) -> Value {
    let (code, body) = answer(server, approver, id, "approve", json!({})).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["action"]["status"], "denied", "{body}");
    let reason = body["action"]["reason"].as_str().unwrap();
    assert!(
        reason.contains("denied at re-check") && reason.contains(reason_part),
        "{reason}"
    );
    assert_eq!(upstream.count(), 0);
    let events = server.audit(None).await;
    let denied = events_of(&events, id, "approval.recheck_denied");
    assert_eq!(denied.len(), 1);
    assert_eq!(denied[0]["data"]["check"], "digest");
    denied[0].clone()
}

#[tokio::test]
async fn stripe_charge_waits_for_an_approver_then_reaches_the_upstream_once() {
    let upstream = Upstream::start().await;
    let server = TestServer::start(&examples("seed-004"), stripe_to(&upstream)).await;
    let (_, agent_key) = server.create_agent("billing-agent").await;
    let (approver_id, approver) = server.create_user("alice", "approver").await;

    let (status, submitted) = server.act(&agent_key, charge(&upstream, 50000)).await;
    assert_eq!(status, 202, "{submitted}");
    assert_eq!(submitted["status"], "pending_approval");
    let id = submitted["id"].as_str().unwrap().to_string();
    let digest = submitted["approval"]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(submitted["approval"]["approvals_required"], 1);
    assert_eq!(upstream.count(), 0, "nothing runs before approval");

    // The queue shows the action, the policy that asked, the digest and the time left.
    let (code, queue) = server
        .get_json("/v1/approvals?status=pending", &approver)
        .await;
    assert_eq!(code, 200, "{queue}");
    let item = &queue["approvals"][0];
    assert_eq!(item["action"]["id"], id.as_str());
    assert_eq!(item["action"]["params"]["body"]["amount"], 50000);
    assert_eq!(item["requested_by_policies"], json!(["aaf.policy"]));
    assert_eq!(item["digest"], digest.as_str());
    let left = item["seconds_left"].as_u64().unwrap();
    assert!((3500..=3600).contains(&left), "{left}");
    assert_eq!(item["approvals_missing"], 1);
    assert_eq!(
        item["action"]["params"]["headers"]["Authorization"], "[REDACTED]",
        "approvers see the action without its secrets"
    );

    // The agent waits (long polling) while the approver decides.
    let waiting = {
        let (client, url, key) = (
            server.client.clone(),
            server.url(&format!("/v1/actions/{id}?wait=30")),
            agent_key.clone(),
        );
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            let r = client.get(url).bearer_auth(key).send().await.unwrap();
            assert_eq!(r.status(), 200);
            (r.json::<Value>().await.unwrap(), started.elapsed())
        })
    };

    // An answer bound to another digest is refused.
    let (code, body) = answer(
        &server,
        &approver,
        &id,
        "approve",
        json!({"digest": "0".repeat(64)}),
    )
    .await;
    assert_eq!(code, 409, "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("digest mismatch"));

    let (code, approved) = answer(
        &server,
        &approver,
        &id,
        "approve",
        json!({"comment": "invoice 42 checked", "digest": digest}),
    )
    .await;
    assert_eq!(code, 200, "{approved}");
    assert_eq!(approved["action"]["status"], "executed", "{approved}");
    assert_eq!(approved["action"]["result"]["status"], 200);
    assert_eq!(approved["votes"][0]["user_id"], approver_id.as_str());
    assert_eq!(approved["votes"][0]["comment"], "invoice 42 checked");

    // Exactly once, with the original body and credentials.
    assert_eq!(upstream.count(), 1);
    {
        let hits = upstream.hits.lock().unwrap();
        let sent: Value = serde_json::from_slice(&hits[0].body).unwrap();
        assert_eq!(sent, json!({"amount": 50000, "currency": "usd"}));
        assert_eq!(
            hits[0].headers["authorization"],
            "Bearer sk_test_approval_secret"
        );
    }
    // Once run, the stored row keeps only the redacted inputs, like every other action.
    let stored = stored_params(&server.data_dir, &id).await;
    assert!(!stored.contains("sk_test_approval_secret"), "{stored}");
    // Sealed at rest (docs/encryption.md); read back through the API, redacted.
    assert!(stored.starts_with("enc1.inputs."), "{stored}");
    assert!(!stored.contains("50000"), "{stored}");
    let (_, action) = server
        .get_json(&format!("/v1/actions/{id}"), &agent_key)
        .await;
    assert_eq!(action["params"]["body"]["amount"], 50000, "{action}");
    assert_eq!(
        action["params"]["headers"]["Authorization"], "[REDACTED]",
        "{action}"
    );
    let (woke, waited) = waiting.await.unwrap();
    assert_ne!(
        woke["status"], "pending_approval",
        "the waiting agent learnt the change"
    );
    assert!(
        waited < Duration::from_secs(30),
        "woken by the change, not by the end of the wait"
    );

    // Approving again changes nothing.
    let (code, body) = answer(&server, &approver, &id, "approve", json!({})).await;
    assert_eq!(code, 409, "{body}");
    let (code, body) = answer(&server, ADMIN_TOKEN, &id, "approve", json!({})).await;
    assert_eq!(code, 409, "{body}");
    assert_eq!(upstream.count(), 1);

    // Every transition is one audit event naming who and why.
    let events = server.audit(None).await;
    let decided = events_of(&events, &id, "action.decided");
    assert_eq!(decided[0]["data"]["approval"]["digest"], digest.as_str());
    let approvals = events_of(&events, &id, "approval.approved");
    assert_eq!(approvals.len(), 1);
    assert_eq!(approvals[0]["data"]["approver_id"], approver_id.as_str());
    assert_eq!(approvals[0]["data"]["comment"], "invoice 42 checked");
    assert_eq!(approvals[0]["data"]["digest"], digest.as_str());
    assert_eq!(events_of(&events, &id, "action.execution_started").len(), 1);
    assert_eq!(events_of(&events, &id, "action.executed").len(), 1);
    server.stop().await;
}

#[tokio::test]
async fn rejected_and_expired_actions_never_reach_the_upstream() {
    let upstream = Upstream::start().await;
    let clock = start_clock();
    let server =
        TestServer::start_clocked(&examples("seed-004"), clock.clone(), stripe_to(&upstream)).await;
    let (_, agent_key) = server.create_agent("billing-agent").await;
    let (_, approver) = server.create_user("alice", "approver").await;

    // Rejected: final; a later approval is refused.
    let (_, body) = server.act(&agent_key, charge(&upstream, 50000)).await;
    let rejected = body["id"].as_str().unwrap().to_string();
    let (code, body) = answer(
        &server,
        &approver,
        &rejected,
        "reject",
        json!({"comment": "not ours"}),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["action"]["status"], "rejected");
    let (code, _) = answer(&server, ADMIN_TOKEN, &rejected, "approve", json!({})).await;
    assert_eq!(code, 409);
    let stored = stored_params(&server.data_dir, &rejected).await;
    assert!(!stored.contains("sk_test_approval_secret"), "{stored}");

    // Expired: the sweeper expires it once the clock passes the deadline (1 h by default).
    let (_, body) = server.act(&agent_key, charge(&upstream, 60000)).await;
    let expired = body["id"].as_str().unwrap().to_string();
    clock.advance(Duration::from_secs(3601));
    let action = wait_for_status(&server, &expired, "expired").await;
    assert!(action["reason"]
        .as_str()
        .unwrap()
        .contains("before its deadline"));
    let (code, body) = answer(&server, &approver, &expired, "approve", json!({})).await;
    assert_eq!(code, 409, "{body}");

    // An approval arriving after the deadline, before the sweeper ran, expires it instead.
    let (_, body) = server.act(&agent_key, charge(&upstream, 70000)).await;
    let late = body["id"].as_str().unwrap().to_string();
    clock.advance(Duration::from_secs(7200));
    let (code, body) = answer(&server, &approver, &late, "approve", json!({})).await;
    assert_eq!(code, 409, "{body}");
    wait_for_status(&server, &late, "expired").await;

    assert_eq!(upstream.count(), 0);
    let events = server.audit(None).await;
    let expiry = events_of(&events, &expired, "approval.expired");
    assert_eq!(expiry.len(), 1, "an expiry is recorded once");
    assert_eq!(expiry[0]["data"]["security_event"], true);
    assert_eq!(events_of(&events, &late, "approval.expired").len(), 1);
    assert_eq!(events_of(&events, &rejected, "approval.rejected").len(), 1);
    server.stop().await;
}

/// The parameters of an action as stored in the database file.
async fn stored_params(data_dir: &Path, id: &str) -> String {
    let url = format!("sqlite://{}?mode=ro", data_dir.join("aaf.db").display());
    let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
    let params: String = sqlx::query_scalar("SELECT params FROM actions WHERE id = ?")
        .bind(id)
        .fetch_one(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    params
}

/// Changes the stored parameters of an action behind AAF's back (as someone with access to
/// the database file could).
async fn tamper(data_dir: &Path, id: &str) {
    let url = format!("sqlite://{}?mode=rw", data_dir.join("aaf.db").display());
    let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
    let done =
        sqlx::query("UPDATE actions SET params = replace(params, '50000', '5000000') WHERE id = ?")
            .bind(id)
            .execute(&mut conn)
            .await
            .unwrap();
    assert_eq!(done.rows_affected(), 1);
    conn.close().await.unwrap();
}

#[tokio::test]
async fn a_tampered_stored_action_is_caught_by_its_digest_and_not_executed() {
    let upstream = Upstream::start().await;
    let server = TestServer::start(&examples("seed-004"), in_clear(stripe_to(&upstream))).await;
    let (_, agent_key) = server.create_agent("billing-agent").await;
    let (_, approver) = server.create_user("alice", "approver").await;
    let (_, body) = server.act(&agent_key, charge(&upstream, 50000)).await;
    let id = body["id"].as_str().unwrap().to_string();

    tamper(&server.data_dir, &id).await;
    approve_denied_on_digest(&server, &approver, &id, &upstream, "digest").await;
    server.stop().await;
}

#[tokio::test]
async fn amounts_beyond_double_precision_never_reach_an_approval() {
    // 4000000000000000000 and 4000000000000000014 had one digest (RFC 8785 rounds both to
    // one double): a pending charge of the first, changed in the database to the second,
    // passed the digest check and the changed amount was sent upstream. Such amounts are
    // now refused on submission, and a stored action changed to hold one has no digest,
    // so it is denied at the re-check and never runs.
    let upstream = Upstream::start().await;
    let server = TestServer::start(&examples("seed-004"), in_clear(stripe_to(&upstream))).await;
    let (_, agent_key) = server.create_agent("billing-agent").await;
    let (_, approver) = server.create_user("alice", "approver").await;
    let (code, body) = server
        .act(&agent_key, charge(&upstream, 4_000_000_000_000_000_000))
        .await;
    assert_eq!(code, 400, "{body}");
    assert_eq!(body["error"]["field"], "params.body.amount", "{body}");

    let (code, body) = server.act(&agent_key, charge(&upstream, 50000)).await;
    assert_eq!(code, 202, "{body}");
    let id = body["id"].as_str().unwrap().to_string();
    let url = format!(
        "sqlite://{}?mode=rw",
        server.data_dir.join("aaf.db").display()
    );
    let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
    let done = sqlx::query(
        "UPDATE actions SET params = replace(params, '50000', '4000000000000000014') WHERE id = ?",
    )
    .bind(&id)
    .execute(&mut conn)
    .await
    .unwrap();
    assert_eq!(done.rows_affected(), 1);
    conn.close().await.unwrap();
    assert!(stored_params(&server.data_dir, &id)
        .await
        .contains("4000000000000000014"));

    let denied = approve_denied_on_digest(&server, &approver, &id, &upstream, "no digest").await;
    assert_eq!(denied["data"]["stored_digest"], Value::Null);
    assert_eq!(denied["data"]["security_event"], true);
    server.stop().await;
}

#[tokio::test]
async fn a_policy_that_now_denies_stops_an_approved_action() {
    let upstream = Upstream::start().await;
    let mut server = TestServer::start(&examples("seed-004"), stripe_to(&upstream)).await;
    let (_, agent_key) = server.create_agent("billing-agent").await;
    let (_, approver) = server.create_user("alice", "approver").await;
    let (_, body) = server.act(&agent_key, charge(&upstream, 50000)).await;
    let id = body["id"].as_str().unwrap().to_string();

    // The policies change (here: the server restarts with a policy set that denies charges).
    let data = server.take_data_dir();
    server.stop().await;
    let deny = policy_dir(&[(
        "no_charges.rego",
        "package org.no_charges\nimport rego.v1\ndecision := {\"action\": \"deny\", \"reason\": \"charges are frozen\"} if contains(input.action.params.url, \"stripe.com\")\ndecision := \"allow\" if not contains(input.action.params.url, \"stripe.com\")\n",
    )]);
    let server = TestServer::start_in(data.path(), deny.path(), stripe_to(&upstream)).await;
    let (code, body) = answer(&server, &approver, &id, "approve", json!({})).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["action"]["status"], "denied");
    let reason = body["action"]["reason"].as_str().unwrap();
    assert!(
        reason.contains("denied at re-check after approval")
            && reason.contains("charges are frozen"),
        "{reason}"
    );
    assert_eq!(upstream.count(), 0);
    server.stop().await;
}

#[tokio::test]
async fn viewers_auditors_and_agents_cannot_approve_and_four_eyes_holds() {
    let upstream = Upstream::start().await;
    let server = TestServer::start(&examples("seed-004"), stripe_to(&upstream)).await;
    let (_, agent_key) = server.create_agent("billing-agent").await;
    let (_, viewer) = server.create_user("vic", "viewer").await;
    let (_, auditor) = server.create_user("ada", "auditor").await;
    let (_, approver) = server.create_user("alice", "approver").await;
    let (_, body) = server.act(&agent_key, charge(&upstream, 50000)).await;
    let id = body["id"].as_str().unwrap().to_string();

    for token in [&viewer, &auditor, &agent_key] {
        let (code, body) = answer(&server, token, &id, "approve", json!({})).await;
        assert_eq!(code, 403, "{body}");
        let (code, _) = server.get_json("/v1/approvals", token).await;
        assert_eq!(code, 403);
    }

    // Four eyes: alice cannot approve an action requested for her (by name or id).
    let mut own = charge(&upstream, 50000);
    own["context"]["user_id"] = json!("alice");
    let (_, body) = server.act(&agent_key, own).await;
    let own_id = body["id"].as_str().unwrap().to_string();
    let (code, body) = answer(&server, &approver, &own_id, "approve", json!({})).await;
    assert_eq!(code, 403, "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("four-eyes"));
    // Another approver (the admin) may.
    let (code, body) = answer(&server, ADMIN_TOKEN, &own_id, "approve", json!({})).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["action"]["status"], "executed");

    // With four eyes turned off for the organisation, she may approve her own.
    let r = server
        .client
        .patch(server.url("/v1/settings"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"four_eyes": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut own = charge(&upstream, 50001);
    own["context"]["user_id"] = json!("alice");
    let (_, body) = server.act(&agent_key, own).await;
    let own_id = body["id"].as_str().unwrap().to_string();
    let (code, body) = answer(&server, &approver, &own_id, "approve", json!({})).await;
    assert_eq!(code, 200, "{body}");

    // Nothing was approved by the refused callers.
    let (_, action) = server
        .get_json(&format!("/v1/actions/{id}"), ADMIN_TOKEN)
        .await;
    assert_eq!(action["status"], "pending_approval");
    assert_eq!(upstream.count(), 2);
    server.stop().await;
}

/// Four eyes compares normalised identities: spelling variants of the approver's id or name
/// in `context.user_id` (surrounding spaces, upper case, other UUID forms, zero-width or
/// full-width characters) bar her as the exact form does; a `context.user_id` that is not a
/// string (an array holding her id, a number, an object) lets nobody approve, though it may
/// still be rejected.
#[tokio::test]
async fn four_eyes_sees_through_spelling_variants_and_refuses_non_string_user_ids() {
    let upstream = Upstream::start().await;
    let server = TestServer::start(&examples("seed-004"), stripe_to(&upstream)).await;
    let (_, agent_key) = server.create_agent("billing-agent").await;
    let (alice_id, alice) = server.create_user("alice", "approver").await;
    let submit = |user_id: Value| {
        let mut action = charge(&upstream, 50000);
        action["context"]["user_id"] = user_id;
        let (server, agent_key) = (&server, &agent_key);
        async move {
            let (code, body) = server.act(agent_key, action).await;
            assert_eq!(code, 202, "{body}");
            body["id"].as_str().unwrap().to_string()
        }
    };

    let variants = [
        json!(format!(" {alice_id}")),
        json!(format!("{alice_id}\n")),
        json!(alice_id.to_uppercase()),
        json!(format!("{{{alice_id}}}")),
        json!(format!("urn:uuid:{alice_id}")),
        json!(alice_id.replace('-', "")),
        json!(format!("{alice_id}\u{200b}")),
        json!("ALICE"),
        json!(" Alice "),
        json!("\u{ff41}lice"), // full-width "a"
    ];
    for variant in variants {
        let id = submit(variant.clone()).await;
        let (code, body) = answer(&server, &alice, &id, "approve", json!({})).await;
        assert_eq!(code, 403, "context.user_id {variant}: {body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("four-eyes"),
            "context.user_id {variant}: {body}"
        );
        let (_, action) = server
            .get_json(&format!("/v1/actions/{id}"), ADMIN_TOKEN)
            .await;
        assert_eq!(action["status"], "pending_approval", "{variant}: {action}");
    }

    // Not a string: nobody can tell whom it was requested for, so nobody may approve it.
    for variant in [
        json!([alice_id.clone()]),
        json!({"id": alice_id.clone()}),
        json!(42),
        json!(true),
    ] {
        let id = submit(variant.clone()).await;
        for token in [&alice, ADMIN_TOKEN] {
            let (code, body) = answer(&server, token, &id, "approve", json!({})).await;
            assert_eq!(code, 403, "context.user_id {variant}: {body}");
            assert!(
                body["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("context.user_id"),
                "the refusal names the field: {body}"
            );
        }
        // A rejection is always safe.
        let (code, body) = answer(&server, ADMIN_TOKEN, &id, "reject", json!({})).await;
        assert_eq!(code, 200, "{variant}: {body}");
        assert_eq!(body["action"]["status"], "rejected", "{body}");
    }

    // Another user's id does not bar alice.
    let (bob_id, _) = server.create_user("bob", "approver").await;
    let id = submit(json!(bob_id.to_uppercase())).await;
    let (code, body) = answer(&server, &alice, &id, "approve", json!({})).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["action"]["status"], "executed", "{body}");
    assert_eq!(upstream.count(), 1);
    server.stop().await;
}

const QUORUM: &str = r#"package org.quorum
import rego.v1
decision := {"action": "require_approval", "reason": "two people must agree", "approvals_required": 2, "approval_timeout_seconds": 600} if input.tool == "wire_transfer"
decision := "allow" if input.tool != "wire_transfer"
"#;

#[tokio::test]
async fn a_quorum_needs_distinct_approvers_and_one_rejection_rejects() {
    let policies = policy_dir(&[("quorum.rego", QUORUM)]);
    let clock = start_clock();
    let server = TestServer::start_clocked(policies.path(), clock.clone(), |_| {}).await;
    let (_, agent_key) = server.create_agent("treasury").await;
    let (_, alice) = server.create_user("alice", "approver").await;
    let (_, bob) = server.create_user("bob", "approver").await;
    let transfer = json!({"tool": "wire_transfer", "operation": "send", "params": {"amount": 1}});

    let (code, body) = server.act(&agent_key, transfer.clone()).await;
    assert_eq!(code, 202, "{body}");
    assert_eq!(body["approval"]["approvals_required"], 2);
    // The policy's deadline (600 s) applies, not the default hour.
    let expected = aaf_server::time::format_rfc3339(clock.now() + Duration::from_secs(600));
    assert_eq!(body["approval"]["expires_at"], expected.as_str());
    let id = body["id"].as_str().unwrap().to_string();

    let (code, body) = answer(&server, &alice, &id, "approve", json!({})).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["action"]["status"], "pending_approval");
    assert_eq!(body["approvals_missing"], 1);
    let (code, body) = answer(&server, &alice, &id, "approve", json!({})).await;
    assert_eq!(code, 409, "the same approver does not count twice: {body}");
    let (code, body) = answer(&server, &bob, &id, "approve", json!({})).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["action"]["status"], "approved");
    assert_eq!(body["approvals_missing"], 0);
    assert_eq!(body["votes"].as_array().unwrap().len(), 2);

    // One rejection rejects, whatever approvals came before.
    let (_, body) = server.act(&agent_key, transfer).await;
    let second = body["id"].as_str().unwrap().to_string();
    let (code, _) = answer(&server, &alice, &second, "approve", json!({})).await;
    assert_eq!(code, 200);
    let (code, body) = answer(&server, &bob, &second, "reject", json!({"comment": "no"})).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["action"]["status"], "rejected");
    server.stop().await;
}

const NEEDS_APPROVAL: &str = "package org.approve_tickets\nimport rego.v1\ndecision := \"require_approval\" if input.tool == \"ticketing\"\n";

#[tokio::test]
async fn the_agent_waits_cancels_and_reports_its_own_result_once() {
    let policies = policy_dir(&[("allow.rego", ALLOW_ALL), ("tickets.rego", NEEDS_APPROVAL)]);
    let server = TestServer::start(policies.path(), |_| {}).await;
    let (_, agent_key) = server.create_agent("helpdesk").await;
    let (_, other_key) = server.create_agent("other").await;
    let (_, approver) = server.create_user("alice", "approver").await;
    let ticket = json!({"tool": "ticketing", "operation": "close", "params": {"ticket": 7}});

    let (_, body) = server.act(&agent_key, ticket.clone()).await;
    let id = body["id"].as_str().unwrap().to_string();
    // Nothing to report before approval; another agent cannot touch it.
    let result = |key: &str, body: Value| {
        let path = format!("/v1/actions/{id}/result");
        let key = key.to_string();
        let server = &server;
        async move { server.post_json(&path, &key, body).await }
    };
    let (code, _) = result(&agent_key, json!({"status": "succeeded"})).await;
    assert_eq!(code, 409);
    let (code, _) = result(&other_key, json!({"status": "succeeded"})).await;
    assert_eq!(code, 404);
    let (code, body) = result(&agent_key, json!({"status": "maybe"})).await;
    assert_eq!(code, 400);
    assert_eq!(body["error"]["field"], "status");

    let (code, _) = answer(&server, &approver, &id, "approve", json!({})).await;
    assert_eq!(code, 200);
    let (code, action) = server
        .get_json(&format!("/v1/actions/{id}?wait=5"), &agent_key)
        .await;
    assert_eq!(code, 200);
    assert_eq!(action["status"], "approved");
    let (code, body) = result(
        &agent_key,
        json!({"status": "succeeded", "detail": {"closed_at": "now"}}),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["status"], "executed");
    assert_eq!(body["result"]["detail"]["closed_at"], "now");
    let (code, body) = result(&agent_key, json!({"status": "failed"})).await;
    assert_eq!(code, 409, "a second report is refused: {body}");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("already reported"));

    // Cancel while pending; then nobody can approve it.
    let (_, body) = server.act(&agent_key, ticket).await;
    let cancelled = body["id"].as_str().unwrap().to_string();
    let (code, _) = server
        .post_json(
            &format!("/v1/actions/{cancelled}/cancel"),
            &other_key,
            json!({}),
        )
        .await;
    assert_eq!(code, 404);
    let (code, body) = server
        .post_json(
            &format!("/v1/actions/{cancelled}/cancel"),
            &agent_key,
            json!({}),
        )
        .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["status"], "cancelled");
    let (code, _) = answer(&server, &approver, &cancelled, "approve", json!({})).await;
    assert_eq!(code, 409);

    // A wait longer than 60 s is refused; an allowed action has nothing to approve.
    let (code, body) = server
        .get_json(&format!("/v1/actions/{id}?wait=61"), &agent_key)
        .await;
    assert_eq!((code, body["error"]["field"].as_str()), (400, Some("wait")));
    let (_, allowed) = server
        .act(&agent_key, json!({"tool": "search", "operation": "q"}))
        .await;
    let allowed = allowed["id"].as_str().unwrap().to_string();
    let (code, _) = answer(&server, &approver, &allowed, "approve", json!({})).await;
    assert_eq!(code, 409);

    let events = server.audit(None).await;
    assert_eq!(events_of(&events, &id, "action.result_reported").len(), 1);
    assert_eq!(
        events_of(&events, &cancelled, "approval.cancelled").len(),
        1
    );
    server.stop().await;
}

#[tokio::test]
async fn settings_set_the_organisations_deadline() {
    let policies = policy_dir(&[("allow.rego", ALLOW_ALL), ("tickets.rego", NEEDS_APPROVAL)]);
    let clock = start_clock();
    let server = TestServer::start_clocked(policies.path(), clock.clone(), |_| {}).await;
    let (_, agent_key) = server.create_agent("helpdesk").await;
    let (_, viewer) = server.create_user("vic", "viewer").await;
    let (code, settings) = server.get_json("/v1/settings", &viewer).await;
    assert_eq!(code, 200);
    assert_eq!(
        settings,
        json!({"four_eyes": true, "approval_timeout_seconds": 3600, "customised": false, "updated_at": null,
            "outbound_detection": null,
            "outbound_detection_in_force": {"default": "record", "payment_card": "mask", "secret": "mask", "us_ssn": "mask"}})
    );

    let patch = |token: &str, body: Value| {
        let r = server
            .client
            .patch(server.url("/v1/settings"))
            .bearer_auth(token)
            .json(&body);
        async move {
            let r = r.send().await.unwrap();
            let code = r.status().as_u16();
            (code, r.json::<Value>().await.unwrap())
        }
    };
    assert_eq!(patch(&viewer, json!({"four_eyes": false})).await.0, 403);
    let (code, body) = patch(ADMIN_TOKEN, json!({"approval_timeout_seconds": 0})).await;
    assert_eq!(
        (code, body["error"]["field"].as_str()),
        (400, Some("approval_timeout_seconds"))
    );
    let (code, body) = patch(ADMIN_TOKEN, json!({"approval_timeout_seconds": 120})).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["approval_timeout_seconds"], 120);
    assert_eq!(body["four_eyes"], true);

    let (_, body) = server
        .act(
            &agent_key,
            json!({"tool": "ticketing", "operation": "close"}),
        )
        .await;
    let expected = aaf_server::time::format_rfc3339(clock.now() + Duration::from_secs(120));
    assert_eq!(body["approval"]["expires_at"], expected.as_str());
    let events = server.audit(None).await;
    assert!(events.iter().any(|e| e["type"] == "org.settings_changed"
        && e["data"]["after"]["approval_timeout_seconds"] == 120));
    server.stop().await;
}

#[tokio::test]
async fn racing_approvers_execute_the_action_exactly_once() {
    let upstream = Upstream::start().await;
    let server = TestServer::start(&examples("seed-004"), stripe_to(&upstream)).await;
    let (_, agent_key) = server.create_agent("billing-agent").await;
    let mut approvers = Vec::new();
    for name in ["alice", "bob", "carol"] {
        approvers.push(server.create_user(name, "approver").await.1);
    }
    for round in 0..5u64 {
        let (_, body) = server
            .act(&agent_key, charge(&upstream, 50000 + round))
            .await;
        let id = body["id"].as_str().unwrap().to_string();
        // Nine concurrent answers: every approver approves three times, and in odd rounds
        // carol rejects instead.
        let mut tasks = Vec::new();
        for (i, token) in approvers.iter().cycle().take(9).enumerate() {
            let verb = if round % 2 == 1 && i % 3 == 2 {
                "reject"
            } else {
                "approve"
            };
            let (client, url, token) = (
                server.client.clone(),
                server.url(&format!("/v1/approvals/{id}/{verb}")),
                token.clone(),
            );
            tasks.push(tokio::spawn(async move {
                let r = client
                    .post(url)
                    .bearer_auth(token)
                    .json(&json!({}))
                    .send()
                    .await
                    .unwrap();
                r.status().as_u16()
            }));
        }
        let mut codes = Vec::new();
        for t in tasks {
            codes.push(t.await.unwrap());
        }
        assert_eq!(
            codes.iter().filter(|c| **c == 200).count(),
            1,
            "round {round}: {codes:?}"
        );
        assert!(codes.iter().all(|c| *c == 200 || *c == 409), "{codes:?}");
        let (_, action) = server
            .get_json(&format!("/v1/actions/{id}"), ADMIN_TOKEN)
            .await;
        let status = action["status"].as_str().unwrap().to_string();
        assert!(status == "executed" || status == "rejected", "{status}");
        let events = server.audit(None).await;
        let executed = events_of(&events, &id, "action.executed").len();
        assert_eq!(executed, usize::from(status == "executed"), "round {round}");
        let finals = events_of(&events, &id, "approval.approved").len()
            + events_of(&events, &id, "approval.rejected").len();
        assert_eq!(finals, 1, "one answer decided round {round}");
    }
    let executed = upstream.count();
    let (_, stats) = server.get_json("/v1/stats", ADMIN_TOKEN).await;
    assert_eq!(
        stats["actions_by_status"]["executed"].as_u64().unwrap_or(0) as usize,
        executed
    );
    server.stop().await;
}

#[tokio::test]
async fn an_approval_racing_the_expiry_has_exactly_one_outcome() {
    let upstream = Upstream::start().await;
    let clock = start_clock();
    let server = TestServer::start_clocked(&examples("seed-004"), clock.clone(), |c| {
        stripe_to(&upstream)(c);
        c.approvals.sweep_interval_ms = 5;
    })
    .await;
    let (_, agent_key) = server.create_agent("billing-agent").await;
    let (_, approver) = server.create_user("alice", "approver").await;
    let mut outcomes = Vec::new();
    for round in 0..12u64 {
        let (_, body) = server
            .act(&agent_key, charge(&upstream, 50000 + round))
            .await;
        let id = body["id"].as_str().unwrap().to_string();
        clock.advance(Duration::from_secs(3599));
        // The approval and the deadline passing (and the sweeper expiring) at once.
        let approve = {
            let (client, url, token) = (
                server.client.clone(),
                server.url(&format!("/v1/approvals/{id}/approve")),
                approver.clone(),
            );
            tokio::spawn(async move {
                client
                    .post(url)
                    .bearer_auth(token)
                    .json(&json!({}))
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            })
        };
        let mover = {
            let clock = clock.clone();
            // Spread the deadline over the approval's own processing time, so that rounds
            // fall before, during and after it.
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_micros(round * 150)).await;
                clock.advance(Duration::from_secs(2));
            })
        };
        let code = approve.await.unwrap();
        mover.await.unwrap();
        let action = within("the expected state", async {
            loop {
                let (_, a) = server
                    .get_json(&format!("/v1/actions/{id}?wait=1"), ADMIN_TOKEN)
                    .await;
                if a["status"] == "executed" || a["status"] == "expired" {
                    break a;
                }
            }
        })
        .await;
        let status = action["status"].as_str().unwrap().to_string();
        assert_eq!(
            code == 200,
            status == "executed",
            "round {round}: {code} {status}"
        );
        let events = server.audit(None).await;
        let approved = events_of(&events, &id, "approval.approved").len();
        let expired = events_of(&events, &id, "approval.expired").len();
        assert_eq!(approved + expired, 1, "round {round}: exactly one outcome");
        outcomes.push(status);
    }
    let executed = outcomes.iter().filter(|s| *s == "executed").count();
    assert_eq!(upstream.count(), executed, "{outcomes:?}");
    eprintln!("approval vs expiry outcomes: {outcomes:?}");
    server.stop().await;
}

/// Sets an action's status behind the server's back, as a node that stopped right after
/// committing it would have left it.
pub(crate) async fn leave_as(data_dir: &Path, id: &str, status: &str) {
    let url = format!("sqlite://{}?mode=rw", data_dir.join("aaf.db").display());
    let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
    sqlx::query("UPDATE actions SET status = ?, version = version + 1 WHERE id = ?")
        .bind(status)
        .bind(id)
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
}

/// A server on seed-004's policies with Stripe routed to a fresh upstream, a manual clock and
/// a sweeper every 20 ms, and an agent's key: for the recovery tests.
pub(crate) async fn recovering_server() -> (Upstream, Clock, TestServer, String) {
    let upstream = Upstream::start().await;
    let clock = start_clock();
    let server = TestServer::start_clocked(&examples("seed-004"), clock.clone(), |c| {
        stripe_to(&upstream)(c);
        c.approvals.sweep_interval_ms = 20;
    })
    .await;
    let (_, agent_key) = server.create_agent("billing-agent").await;
    (upstream, clock, server, agent_key)
}

#[tokio::test]
async fn a_node_stopping_between_approval_and_execution_loses_nothing_and_runs_nothing_twice() {
    let (upstream, clock, server, agent_key) = recovering_server().await;

    // Approved, but its node stopped before running it: the approval is not lost.
    let (_, body) = server.act(&agent_key, charge(&upstream, 50000)).await;
    let approved = body["id"].as_str().unwrap().to_string();
    leave_as(&server.data_dir, &approved, "approved").await;
    // Executing when its node stopped: whether it ran is unknown, so it is never run again.
    let (_, body) = server.act(&agent_key, charge(&upstream, 60000)).await;
    let executing = body["id"].as_str().unwrap().to_string();
    leave_as(&server.data_dir, &executing, "executing").await;

    // Within the recovery delay nothing happens; after it, the sweeper finishes both.
    let (_, a) = server
        .get_json(&format!("/v1/actions/{approved}?wait=1"), ADMIN_TOKEN)
        .await;
    assert_eq!(a["status"], "approved");
    clock.advance(Duration::from_secs(31 + 30));
    let done = wait_for_status(&server, &approved, "executed").await;
    assert_eq!(done["result"]["status"], 200);
    let failed = wait_for_status(&server, &executing, "failed").await;
    assert!(failed["reason"]
        .as_str()
        .unwrap()
        .contains("outcome unknown"));
    assert_eq!(
        upstream.count(),
        1,
        "the recovered approval ran once; the unknown one never"
    );
    {
        let hits = upstream.hits.lock().unwrap();
        let sent: Value = serde_json::from_slice(&hits[0].body).unwrap();
        assert_eq!(sent["amount"], 50000);
    }
    // More sweeps change nothing.
    clock.advance(Duration::from_secs(600));
    let (_, a) = server
        .get_json(&format!("/v1/actions/{approved}?wait=1"), ADMIN_TOKEN)
        .await;
    assert_eq!(a["status"], "executed");
    assert_eq!(upstream.count(), 1);
    server.stop().await;
}

#[tokio::test]
async fn an_allowed_action_its_node_left_executing_fails_as_outcome_unknown() {
    let (upstream, clock, server, agent_key) = recovering_server().await;

    // Allowed (at most 10000) and run at once; then left `executing`, as by a node that
    // stopped before recording the outcome.
    let (status, body) = server.act(&agent_key, charge(&upstream, 500)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["decision"], "allow", "{body}");
    let id = body["id"].as_str().unwrap().to_string();
    assert_eq!(upstream.count(), 1);
    leave_as(&server.data_dir, &id, "executing").await;

    let (_, a) = server
        .get_json(&format!("/v1/actions/{id}?wait=1"), ADMIN_TOKEN)
        .await;
    assert_eq!(
        a["status"], "executing",
        "untouched within the recovery delay"
    );
    clock.advance(Duration::from_secs(31 + 30));
    let failed = wait_for_status(&server, &id, "failed").await;
    assert!(
        failed["reason"]
            .as_str()
            .unwrap()
            .contains("outcome unknown"),
        "{failed}"
    );
    assert_eq!(upstream.count(), 1, "never run a second time");
    server.stop().await;
}

/// Runs `aaf approvals ...` against the server with `token`; returns (success, stdout, stderr).
async fn cli(server: &TestServer, token: &str, args: &[&str]) -> (bool, String, String) {
    let mut all = vec!["approvals"];
    all.extend_from_slice(args);
    server.cli(token, &all).await
}

#[tokio::test]
async fn the_cli_lists_approves_and_rejects() {
    let upstream = Upstream::start().await;
    let server = TestServer::start(&examples("seed-004"), stripe_to(&upstream)).await;
    let (_, agent_key) = server.create_agent("billing-agent").await;
    let (_, approver) = server.create_user("alice", "approver").await;
    let (_, viewer) = server.create_user("vic", "viewer").await;
    let (_, first) = server.act(&agent_key, charge(&upstream, 50000)).await;
    let first = first["id"].as_str().unwrap().to_string();
    let (_, second) = server.act(&agent_key, charge(&upstream, 60000)).await;
    let second_digest = second["approval"]["digest"].as_str().unwrap().to_string();
    let second = second["id"].as_str().unwrap().to_string();

    let (ok, out, err) = cli(&server, &approver, &["list"]).await;
    assert!(ok, "{err}");
    assert!(out.contains(&first) && out.contains(&second), "{out}");
    assert!(
        out.contains("http_proxy/POST") && out.contains("0/1"),
        "{out}"
    );
    let (ok, out, _) = cli(&server, &approver, &["list", "--json"]).await;
    assert!(ok);
    let listed: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(listed["approvals"].as_array().unwrap().len(), 2);

    // A viewer is refused, with the server's reason and a failing exit status.
    let (ok, _, err) = cli(&server, &viewer, &["approve", &first]).await;
    assert!(!ok);
    assert!(err.contains("403"), "{err}");

    let (ok, out, err) = cli(
        &server,
        &approver,
        &[
            "approve",
            &second,
            "--comment",
            "ok",
            "--digest",
            &second_digest,
        ],
    )
    .await;
    assert!(ok, "{err}");
    assert!(
        out.contains(&format!("action {second} is now executed")),
        "{out}"
    );
    let (ok, out, err) = cli(
        &server,
        &approver,
        &["reject", &first, "--comment", "duplicate"],
    )
    .await;
    assert!(ok, "{err}");
    assert!(out.contains("is now rejected"), "{out}");
    let (ok, out, _) = cli(&server, &approver, &["list"]).await;
    assert!(ok);
    assert!(
        out.contains("no actions with approval status pending"),
        "{out}"
    );
    assert_eq!(upstream.count(), 1);
    server.stop().await;
}
