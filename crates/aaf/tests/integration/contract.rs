//! The OpenAPI document and the server agree: the answers every endpoint can give are
//! documented, the shapes it answers are the ones declared, out-of-range query values are
//! refused naming the parameter, and the links that contract tests follow exist.
//! (`tests/schemathesis/run.sh` checks the same at large, with generated requests.)

use serde_json::{json, Value};

use crate::common::{policy_dir, TestServer, ADMIN_TOKEN};

/// Denies HTTP connector tools, allows `allow`, asks for approval for anything else.
const CONTRACT_POLICY: &str = r#"package contract
import rego.v1
decision := "deny" if input.action.tool in {"http_proxy", "http"}
decision := "allow" if input.action.tool == "allow"
decision := "require_approval" if not input.action.tool in {"http_proxy", "http", "allow"}
"#;

async fn server() -> (TestServer, tempfile::TempDir) {
    let policies = policy_dir(&[("contract.rego", CONTRACT_POLICY)]);
    let server = TestServer::start(policies.path(), |_| {}).await;
    (server, policies)
}

async fn document(server: &TestServer) -> Value {
    let (status, doc) = server.get_json("/v1/openapi.json", ADMIN_TOKEN).await;
    assert_eq!(status, 200);
    doc
}

/// Resolves a `$ref` to a component schema.
fn schema<'a>(doc: &'a Value, reference: &Value) -> &'a Value {
    let name = reference["$ref"]
        .as_str()
        .and_then(|r| r.strip_prefix("#/components/schemas/"))
        .unwrap_or_else(|| panic!("not a component reference: {reference}"));
    &doc["components"]["schemas"][name]
}

#[tokio::test]
async fn every_operation_documents_the_answers_of_the_shared_layers() {
    let (server, _policies) = server().await;
    let doc = document(&server).await;
    let mut checked = 0;
    for permission in aaf_server::rbac::PERMISSIONS {
        // The document itself, and the MCP endpoint, which speaks JSON-RPC (docs/mcp.md)
        // rather than the REST API the document describes.
        if permission.path == "/v1/openapi.json" || permission.path == "/mcp" {
            continue;
        }
        let method = permission.method.to_ascii_lowercase();
        let op = &doc["paths"][permission.path][&method];
        assert!(
            op.is_object(),
            "{method} {} not documented",
            permission.path
        );
        let public = permission.allow.contains(&aaf_server::rbac::Caller::Public);
        let mut expected: Vec<&str> = Vec::new();
        if !public {
            expected.extend(["401", "429", "503"]);
            assert!(
                op["security"].as_array().is_some_and(|s| !s.is_empty()),
                "{method} {} has no security requirement",
                permission.path
            );
        }
        if op["requestBody"]["content"]["application/json"].is_object() {
            expected.extend(["400", "413", "415"]);
        }
        for status in expected {
            let answer = &op["responses"][status];
            assert!(
                answer["content"]["application/json"]["schema"].is_object(),
                "{method} {} does not document {status}",
                permission.path
            );
        }
        checked += 1;
    }
    assert!(checked > 40, "only {checked} operations checked");

    // And the server does answer 415 where the document now says so.
    let r = server
        .client
        .post(server.url("/v1/agents"))
        .bearer_auth(ADMIN_TOKEN)
        .header("content-type", "text/plain")
        .body(r#"{"name":"x"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unsupported_media_type");
}

#[tokio::test]
async fn the_403_of_post_actions_is_one_of_its_two_documented_shapes() {
    let (server, _policies) = server().await;
    let doc = document(&server).await;
    let forbidden = &doc["paths"]["/v1/actions"]["post"]["responses"]["403"]["content"]
        ["application/json"]["schema"];
    let one_of = schema(&doc, forbidden)["oneOf"]
        .as_array()
        .unwrap_or_else(|| panic!("403 of POST /v1/actions is not oneOf: {forbidden}"));
    let names: Vec<&str> = one_of.iter().filter_map(|s| s["$ref"].as_str()).collect();
    assert_eq!(
        names,
        [
            "#/components/schemas/ActionResponse",
            "#/components/schemas/ErrorBody"
        ]
    );

    // A deny is an ActionResponse; a user's token is an ErrorBody. Each has the required
    // member of its own shape and not the other's.
    let (_agent, key) = server.create_agent("contract").await;
    let (status, denied) = server
        .act(
            &key,
            json!({"tool": "http_proxy", "operation": "GET", "params": {"url": "https://example.com/"}}),
        )
        .await;
    assert_eq!(status, 403, "{denied}");
    assert_eq!(denied["decision"], "deny");
    assert!(denied.get("error").is_none());
    let (status, refused) = server
        .act(ADMIN_TOKEN, json!({"tool": "allow", "operation": "run"}))
        .await;
    assert_eq!(status, 403, "{refused}");
    assert_eq!(refused["error"]["code"], "forbidden");
    assert!(refused.get("decision").is_none());
}

#[tokio::test]
async fn data_documents_are_any_json_value_in_the_document_and_the_server() {
    let (server, _policies) = server().await;
    let doc = document(&server).await;
    let put = &doc["paths"]["/v1/data/{path}"]["put"];
    let body_schema = &put["requestBody"]["content"]["application/json"]["schema"];
    assert!(
        body_schema.get("type").is_none(),
        "PUT /v1/data/{{path}} body is restricted to {body_schema}"
    );
    let value = &doc["components"]["schemas"]["DataView"]["properties"]["value"];
    assert!(
        value.is_object() && value.get("type").is_none(),
        "DataView.value is restricted to {value}"
    );

    for document in [json!([1, 2, 3]), json!("text"), json!(42), json!({"a": 1})] {
        let r = server
            .client
            .put(server.url("/v1/data/contract_data/doc"))
            .bearer_auth(ADMIN_TOKEN)
            .json(&document)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{document}");
        let view: Value = r.json().await.unwrap();
        assert_eq!(view["value"], document);
    }
}

#[tokio::test]
async fn out_of_range_query_values_are_refused_naming_the_parameter() {
    let (server, _policies) = server().await;
    let doc = document(&server).await;
    let (_agent, key) = server.create_agent("contract").await;
    let (status, pending) = server
        .act(&key, json!({"tool": "deploy", "operation": "run"}))
        .await;
    assert_eq!(status, 202, "{pending}");
    let id = pending["id"].as_str().unwrap();
    let r = server
        .client
        .put(server.url("/v1/data/contract_data/doc"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"a": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let wait_max = format!("/v1/actions/{id}?wait=61");
    let wait_huge = format!("/v1/actions/{id}?wait=18446744073709551616");
    let wait_negative = format!("/v1/actions/{id}?wait=-1");
    let cases: [(&str, &str, &str); 12] = [
        (
            "/v1/audit?after_seq=9223372036854775808",
            ADMIN_TOKEN,
            "after_seq",
        ),
        ("/v1/audit?after_seq=-1", ADMIN_TOKEN, "after_seq"),
        (wait_max.as_str(), key.as_str(), "wait"),
        (wait_huge.as_str(), key.as_str(), "wait"),
        (wait_negative.as_str(), key.as_str(), "wait"),
        ("/v1/approvals?limit=0", ADMIN_TOKEN, "limit"),
        ("/v1/approvals?limit=1001", ADMIN_TOKEN, "limit"),
        ("/v1/approvals?limit=4294967296", ADMIN_TOKEN, "limit"),
        ("/v1/audit?limit=abc", ADMIN_TOKEN, "limit"),
        (
            "/v1/data/contract_data/doc?version=0",
            ADMIN_TOKEN,
            "version",
        ),
        (
            "/v1/data/contract_data/doc?version=-3",
            ADMIN_TOKEN,
            "version",
        ),
        (
            "/v1/data/contract_data/doc?version=9223372036854775808",
            ADMIN_TOKEN,
            "version",
        ),
    ];
    for (path, token, parameter) in cases {
        let (status, body) = server.get_json(path, token).await;
        assert_eq!(status, 400, "GET {path}: {body}");
        assert_eq!(body["error"]["field"], parameter, "GET {path}: {body}");
    }

    // The document states the same ranges.
    let range = |path: &str, name: &str| {
        let parameters = doc["paths"][path]["get"]["parameters"].as_array().unwrap();
        let p = parameters.iter().find(|p| p["name"] == name).unwrap();
        (
            p["schema"]["minimum"].clone(),
            p["schema"]["maximum"].clone(),
        )
    };
    assert_eq!(range("/v1/actions/{id}", "wait"), (json!(0), json!(60)));
    for path in ["/v1/approvals", "/v1/audit", "/v1/webhooks/{id}/deliveries"] {
        assert_eq!(range(path, "limit"), (json!(1), json!(1000)), "{path}");
    }
    assert_eq!(range("/v1/data/{path}", "version").0, json!(1));
    assert_eq!(range("/v1/audit", "after_seq").0, json!(0));
}

#[tokio::test]
async fn struct_bodies_must_be_json_objects_not_arrays() {
    // serde reads a struct from an array of its fields in order; the document (and the
    // server) take objects only.
    let (server, _policies) = server().await;
    let (agent, key) = server.create_agent("contract").await;
    let admin = ADMIN_TOKEN.to_string();
    let cases = [
        (
            reqwest::Method::POST,
            "/v1/actions".to_string(),
            key.clone(),
            json!(["allow", "run"]),
        ),
        (
            reqwest::Method::PATCH,
            "/v1/settings".to_string(),
            admin.clone(),
            json!([null, null]),
        ),
        (
            reqwest::Method::POST,
            format!("/v1/agents/{agent}/keys"),
            admin.clone(),
            json!([null]),
        ),
        (
            reqwest::Method::POST,
            format!("/v1/agents/{agent}/keys"),
            admin.clone(),
            json!("x"),
        ),
        (
            reqwest::Method::POST,
            "/v1/agents".to_string(),
            admin.clone(),
            json!(["array-agent"]),
        ),
        (
            reqwest::Method::POST,
            "/v1/users".to_string(),
            admin.clone(),
            json!(["u", "viewer"]),
        ),
    ];
    for (method, path, token, body) in cases {
        let (status, answer) = server
            .send_json(method.clone(), &path, &token, body.clone())
            .await;
        assert_eq!(status, 400, "{method} {path} {body}: {answer}");
        assert!(
            answer["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("expected a JSON object")),
            "{method} {path} {body}: {answer}"
        );
    }
    // The object forms still work.
    let (status, _) = server
        .send_json(
            reqwest::Method::PATCH,
            "/v1/settings",
            &admin,
            json!({"four_eyes": null}),
        )
        .await;
    assert_eq!(status, 200);
    let (status, answer) = server
        .act(&key, json!({"tool": "allow", "operation": "run"}))
        .await;
    assert_eq!(status, 200, "{answer}");
}

/// An optional JSON body may be left out (no bytes), but a body that is there must be JSON:
/// whitespace alone is not a JSON text (RFC 8259), so it is a 400, not "no body".
#[tokio::test]
async fn an_optional_body_of_whitespace_is_refused_not_taken_as_absent() {
    let (server, _policies) = server().await;
    let (agent, _) = server.create_agent("whitespace").await;
    let path = format!("/v1/agents/{agent}/keys");
    let send = |body: &'static str| {
        server
            .client
            .post(server.url(&path))
            .bearer_auth(ADMIN_TOKEN)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    for body in ["\t", " ", "\r\n"] {
        let answer = send(body).await.unwrap();
        assert_eq!(answer.status(), 400, "{body:?}");
    }
    // Left out: the defaults.
    let answer = send("").await.unwrap();
    assert_eq!(answer.status(), 201);
}

#[tokio::test]
async fn links_lead_from_a_submitted_action_to_the_operations_on_it() {
    let (server, _policies) = server().await;
    let doc = document(&server).await;
    let operation_ids: Vec<&str> = doc["paths"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|item| item.as_object().unwrap().values())
        .filter_map(|op| op["operationId"].as_str())
        .collect();
    let links = &doc["paths"]["/v1/actions"]["post"]["responses"]["202"]["links"];
    for (name, operation) in [
        ("GetAction", "get_action"),
        ("Approve", "approve"),
        ("Reject", "reject"),
        ("Cancel", "cancel_action"),
    ] {
        assert_eq!(links[name]["operationId"], operation, "{links}");
        assert_eq!(links[name]["parameters"]["id"], "$response.body#/id");
        assert!(
            operation_ids.contains(&operation),
            "no operation {operation}"
        );
    }

    // Following them works: the 202's id is the id approve and GET /v1/actions/{id} take.
    let (_agent, key) = server.create_agent("contract").await;
    let (_approver, approver) = server.create_user("contract-approver", "approver").await;
    let (status, pending) = server
        .act(&key, json!({"tool": "deploy", "operation": "run"}))
        .await;
    assert_eq!(status, 202, "{pending}");
    let id = pending["id"].as_str().unwrap();
    let (status, answer) = server
        .post_json(&format!("/v1/approvals/{id}/approve"), &approver, json!({}))
        .await;
    assert_eq!(status, 200, "{answer}");
    let (status, action) = server.get_json(&format!("/v1/actions/{id}"), &key).await;
    assert_eq!(status, 200, "{action}");
    assert_eq!(action["status"], "approved");
}
