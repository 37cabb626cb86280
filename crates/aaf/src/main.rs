//! `aaf`: the Agent Action Firewall binary.
//!
//! Subcommands: `serve` (the firewall), `policy check|eval` (offline policy tools),
//! `audit verify` (offline chain verification), `agents create|list` (API client),
//! `approvals list|approve|reject`, `kill`, `unkill`, `kill-switches` (API client),
//! `orgs create|list` (tenants, directly in the database), `mcp stdio` (a stdio MCP server
//! that forwards to AAF's `/mcp`),
//! `openapi` (print the API description).

#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use aaf_core::action::{ActionRequest, AgentInfo, OrgInfo, PolicyInput, RequestMetadata};
use aaf_core::policy::EvaluatorOptions;
use aaf_server::config::{CliOverrides, Config, LogFormat};
use aaf_server::policy_loader::{load_policies, PolicyOrigin};
use aaf_store::{PgOptions, Store, StoreOptions};
use clap::{Args, Parser, Subcommand};

mod audit_cmd;
mod mcp_bridge;
use serde_json::Value;

// The global allocator is mimalloc as vendored by regorus, which regorus itself declares
// (its `allocator-memory-limits` feature): markedly faster than the system allocator for the
// many small allocations of JSON and Rego values on the decision path (docs/performance.md),
// and its allocation counters are what bounds the memory of policy work
// (`limits.policy_memory_limit_mb`, docs/policies.md#resource-limits).

#[derive(Parser)]
#[command(
    name = "aaf",
    version,
    about = "Agent Action Firewall: policy-checked, audited actions for AI agents"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the firewall server.
    Serve(ServeArgs),
    /// Check and evaluate Rego policies offline.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Inspect the audit log offline.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Proof packs: verify one offline.
    #[command(subcommand)]
    Proof(ProofCommand),
    /// Encryption at rest: make a master key.
    #[command(subcommand)]
    Encryption(EncryptionCommand),
    /// Manage agents through a running server.
    #[command(subcommand)]
    Agents(AgentsCommand),
    /// The approval queue of a running server: list, approve, reject.
    #[command(subcommand)]
    Approvals(ApprovalsCommand),
    /// Engage a kill switch on a running server: `aaf kill agent AGENT_ID --reason "..."`
    /// stops the agent's actions at once (and aborts its running connector calls).
    Kill(KillArgs),
    /// Release a kill switch: `aaf unkill KILL_SWITCH_ID`.
    Unkill {
        /// The kill switch id (`aaf kill-switches` lists them).
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List the kill switches of a running server's organisation.
    KillSwitches {
        /// Every kill switch (released and expired ones too), not only the unreleased ones.
        #[arg(long)]
        all: bool,
        /// Print the server's JSON instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Create and list organisations (tenants) directly in the database, like an operator's
    /// bootstrap; works whether or not a server is running on it.
    #[command(subcommand)]
    Orgs(OrgsCommand),
    /// Print the OpenAPI 3.1 document of the API.
    Openapi,
    /// The MCP gateway from the command line.
    #[command(subcommand)]
    Mcp(McpCommand),
}

#[derive(Subcommand)]
enum McpCommand {
    /// A stdio MCP server for clients that can only launch one: it forwards every request
    /// to AAF's /mcp with the agent's key (docs/mcp.md).
    Stdio {
        /// Base URL of the AAF server.
        #[arg(long, default_value = "http://127.0.0.1:8700")]
        server: String,
        /// The agent's AAF key. Default: the AAF_AGENT_KEY environment variable.
        #[arg(long, env = "AAF_AGENT_KEY", hide_env_values = true)]
        key: String,
    },
}

#[derive(Args)]
struct ServeArgs {
    /// Configuration file (TOML). Default: ./aaf.toml when it exists.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Address to listen on (overrides `listen`). Default 127.0.0.1:8700.
    #[arg(long)]
    listen: Option<std::net::SocketAddr>,
    /// Data directory (overrides `data_dir`). Default ./aaf-data.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Policy directory (overrides `policies`). Default ./policies.
    #[arg(long)]
    policies: Option<PathBuf>,
    /// Log format (overrides `log.format`): human or json.
    #[arg(long, value_parser = ["human", "json"])]
    log_format: Option<String>,
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Parse and check every policy file in DIR, as `aaf serve` does at start.
    Check {
        /// The policy directory.
        dir: PathBuf,
    },
    /// Evaluate policies against an input file, like POST /v1/actions/dry-run.
    Eval {
        /// The policy directory.
        #[arg(
            long,
            required_unless_present = "revision",
            conflicts_with = "revision"
        )]
        policies: Option<PathBuf>,
        /// Instead of a directory: a policy set revision as `GET /v1/policy-revisions/{revision}`
        /// returns it (`{"revision", "sources", "data"}`), to replay a past decision under
        /// exactly the policies that made it. Its hash is checked.
        #[arg(long)]
        revision: Option<PathBuf>,
        /// A JSON file: an action body ({"tool", "operation", "params", "context"}), or a
        /// complete policy input document (one with an "action" key).
        #[arg(long)]
        input: PathBuf,
        /// Evaluation time limit in milliseconds.
        #[arg(long, default_value_t = 100)]
        timeout_ms: u64,
    },
    /// Run the Rego unit tests (rules named `test_*`, as `opa test` does) of the policy
    /// directories, including their `*_test.rego` files. Exits 1 when a test fails or errs,
    /// or when there is no test.
    Test {
        /// Policy directories (or single .rego files).
        #[arg(required = true)]
        dirs: Vec<PathBuf>,
        /// Only the tests whose full name (`data.<package>.<rule>`) matches this regular
        /// expression.
        #[arg(long)]
        run: Option<String>,
        /// Output: `text` (default) or `json`.
        #[arg(long, default_value = "text", value_parser = ["text", "json"])]
        format: String,
        /// Report line coverage per file.
        #[arg(long)]
        coverage: bool,
        /// Time limit of each test in milliseconds.
        #[arg(long, default_value_t = 5000)]
        timeout_ms: u64,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Recompute every audit chain of a data directory (or PostgreSQL database) and its
    /// Merkle tree, report the head of each, and check every signed checkpoint (those in the
    /// database, and with --checkpoints those exported to a directory sink) against the
    /// tree recomputed from the events.
    Verify {
        #[command(flatten)]
        db: DbArgs,
        /// A directory of exported checkpoints (a directory sink, `evidence.sinks`): each
        /// must be signed by the log key and match the events, so rewriting the database
        /// together with its chain heads is detected.
        #[arg(long)]
        checkpoints: Option<PathBuf>,
        /// The log's verifier key (`<name>+<id>+<base64>`, printed when the key was made).
        /// Default: derived from --log-key-file, or from the data directory's generated
        /// `log-key`.
        #[arg(long)]
        verifier_key: Option<String>,
        /// The log's private key file, to derive the verifier key from.
        #[arg(long)]
        log_key_file: Option<PathBuf>,
    },
    /// Make a new log key (Ed25519, C2SP signed-note format) for `evidence.log_key_file`,
    /// and print its verifier key.
    Keygen {
        /// The log's name: the key name and the start of every checkpoint origin, ideally a
        /// domain name the log is known by (`aaf.example.com/audit`).
        #[arg(long)]
        name: String,
        /// Where to write the private key (mode 0600; never overwritten).
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Subcommand)]
enum EncryptionCommand {
    /// Make a new master key (32 random bytes, base64) for `encryption.master_key_file`, and
    /// print its id.
    Keygen {
        /// Where to write it (mode 0600; never overwritten).
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Subcommand)]
enum ProofCommand {
    /// Verify a proof pack (`GET /v1/proof-pack/{action_id}`) offline and say what it proves
    /// and what it does not. Exit status 0 only when it verifies.
    Verify {
        /// The pack (a zip).
        file: PathBuf,
        /// The log's verifier key (`<name>+<id>+<base64>`, as printed when the key was
        /// made). Without it, the key in the pack is used, which proves integrity only.
        #[arg(long)]
        verifier_key: Option<String>,
    },
}

#[derive(Subcommand)]
enum OrgsCommand {
    /// Create an organisation and print its first admin token (shown once).
    Create {
        /// The organisation's unique name.
        name: String,
        #[command(flatten)]
        db: DbArgs,
        /// The plan recorded for the organisation.
        #[arg(long, default_value = aaf_server::app::SELF_HOSTED_PLAN)]
        plan: String,
    },
    /// List the organisations.
    List {
        #[command(flatten)]
        db: DbArgs,
    },
}

#[derive(Subcommand)]
enum AgentsCommand {
    /// Register an agent and print its API key (shown once).
    Create {
        /// The agent's name.
        name: String,
        /// Risk score from 0 to 1.
        #[arg(long)]
        risk_score: Option<f64>,
        /// Standard base64 of the agent's raw Ed25519 public key: its requests must then be
        /// signed (RFC 9421, see docs/agents.md).
        #[arg(long)]
        public_key: Option<String>,
        /// Limit the first key to these tools (repeat or comma-separate).
        #[arg(long, value_delimiter = ',')]
        tools: Vec<String>,
        /// Lifetime of the first key in seconds (default: the server's auth.agent_key_ttl_seconds).
        #[arg(long)]
        expires_in: Option<u64>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List the organisation's agents.
    List {
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Subcommand)]
enum ApprovalsCommand {
    /// List actions waiting for approval (oldest first): id, tool and operation, risk,
    /// approvals, time left and digest.
    List {
        /// Another approval status instead of `pending` (approved, executed, rejected,
        /// expired, ...).
        #[arg(long, default_value = "pending")]
        status: String,
        /// Print the server's JSON instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Approve a pending action (a connector action then runs at once).
    Approve {
        /// The action id.
        id: String,
        /// Why; kept in the audit log.
        #[arg(long)]
        comment: Option<String>,
        /// The digest you reviewed: the approval is refused unless the action still has it.
        #[arg(long)]
        digest: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Reject a pending action.
    Reject {
        /// The action id.
        id: String,
        /// Why; kept in the audit log.
        #[arg(long)]
        comment: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Args)]
struct KillArgs {
    /// What to stop: `org` (everything), `agent`, `tool` or `agent-tool` (one agent's use of
    /// one tool).
    #[arg(value_parser = ["org", "agent", "tool", "agent-tool"])]
    scope: String,
    /// The agent id (`agent`), the tool name (`tool`), or the agent id and the tool
    /// (`agent-tool AGENT_ID TOOL`); nothing for `org`.
    target: Vec<String>,
    /// Why; every refusal quotes it, and the audit log keeps it.
    #[arg(long)]
    reason: String,
    /// Release it by itself after this many seconds.
    #[arg(long)]
    expires_in: Option<u64>,
    #[command(flatten)]
    client: ClientArgs,
}

/// Where the database is: a data directory (SQLite) or a PostgreSQL URL.
#[derive(Args)]
struct DbArgs {
    /// The data directory of the server (holding aaf.db).
    #[arg(long, default_value = "./aaf-data")]
    data_dir: PathBuf,
    /// A PostgreSQL URL (postgres://...), instead of the data directory. Default: the
    /// AAF_DATABASE_URL environment variable.
    #[arg(long, env = "AAF_DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
}

#[derive(Args)]
struct ClientArgs {
    /// Base URL of the server.
    #[arg(long, default_value = "http://127.0.0.1:8700")]
    server: String,
    /// Your personal access token (`agents` needs an admin's; `approvals` an approver's or
    /// an admin's). Default: the AAF_ADMIN_TOKEN environment variable.
    #[arg(long, env = "AAF_ADMIN_TOKEN", hide_env_values = true)]
    token: String,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    aaf_server::connectors::guarded::install_crypto_provider();
    // Policy commands (check, eval, test) run under the server's default memory limit of
    // policy work; `serve` sets the configured one.
    aaf_core::policy::set_memory_limit(Some(
        aaf_server::config::LimitsConfig::default()
            .policy_memory_limit_mb
            .saturating_mul(1024 * 1024),
    ));
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => serve(args).await,
            Command::Policy(PolicyCommand::Check { dir }) => policy_check(&dir),
            Command::Policy(PolicyCommand::Eval {
                policies,
                revision,
                input,
                timeout_ms,
            }) => policy_eval(policies.as_deref(), revision.as_deref(), &input, timeout_ms),
            Command::Policy(PolicyCommand::Test {
                dirs,
                run,
                format,
                coverage,
                timeout_ms,
            }) => policy_test(&dirs, run.as_deref(), &format, coverage, timeout_ms),
            Command::Audit(AuditCommand::Verify {
                db,
                checkpoints,
                verifier_key,
                log_key_file,
            }) => {
                let keys = audit_cmd::KeySource {
                    verifier_key: verifier_key.as_deref(),
                    log_key_file: log_key_file.as_deref(),
                    data_dir: db.database_url.is_none().then_some(db.data_dir.as_path()),
                };
                audit_verify(&db, checkpoints.as_deref(), &keys).await
            }
            Command::Audit(AuditCommand::Keygen { name, out }) => audit_cmd::keygen(&name, &out),
            Command::Encryption(EncryptionCommand::Keygen { out }) => {
                audit_cmd::master_keygen(&out)
            }
            Command::Proof(ProofCommand::Verify { file, verifier_key }) => {
                audit_cmd::proof_verify(&file, verifier_key.as_deref())
            }
            Command::Agents(cmd) => agents(cmd).await,
            Command::Approvals(cmd) => approvals(cmd).await,
            Command::Kill(args) => kill(args).await,
            Command::Mcp(McpCommand::Stdio { server, key }) => mcp_bridge::run(&server, &key).await,
            Command::Unkill { id, client } => {
                let path = format!("/v1/kill-switches/{id}");
                let Some(body) = call(&client, reqwest::Method::DELETE, &path, None).await? else {
                    return Ok(ExitCode::FAILURE);
                };
                println!(
                    "kill switch {} released",
                    body["id"].as_str().unwrap_or(&id)
                );
                Ok(ExitCode::SUCCESS)
            }
            Command::KillSwitches { all, json, client } => kill_switches(all, json, &client).await,
            Command::Orgs(cmd) => orgs(cmd).await,
            Command::Openapi => {
                println!("{}", aaf_server::openapi::openapi_json());
                Ok(ExitCode::SUCCESS)
            }
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let overrides = CliOverrides {
        listen: args.listen,
        data_dir: args.data_dir,
        policies: args.policies,
    };
    let mut config = Config::load(args.config.as_deref(), std::env::vars(), &overrides)?;
    if let Some(format) = args.log_format {
        config.log.format = if format == "json" {
            LogFormat::Json
        } else {
            LogFormat::Human
        };
    }
    aaf_server::telemetry::init(&config.log);
    aaf_server::app::serve(config).await?;
    Ok(ExitCode::SUCCESS)
}

fn policy_check(dir: &Path) -> anyhow::Result<ExitCode> {
    if !dir.is_dir() {
        anyhow::bail!("{} is not a directory", dir.display());
    }
    match load_policies(dir, EvaluatorOptions::default()) {
        Ok((set, _)) => {
            for m in set.modules() {
                println!("ok  {}  (package {}, {:?})", m.path, m.package, m.syntax);
            }
            println!(
                "{} modules, {} policies: {}",
                set.modules().len(),
                set.policies().len(),
                set.policies()
                    .iter()
                    .map(|p| p.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            let indexed: Vec<_> = set
                .policies()
                .iter()
                .filter_map(|p| p.index().map(|guards| (p.name.as_str(), guards)))
                .collect();
            for (name, guards) in &indexed {
                println!("indexed  {name}: evaluated only when {guards}");
            }
            println!(
                "{} of {} policies indexed (the others are evaluated for every action; docs/policies.md#rule-index)",
                indexed.len(),
                set.policies().len()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("{e}");
            Ok(ExitCode::FAILURE)
        }
    }
}

fn policy_test(
    dirs: &[PathBuf],
    run: Option<&str>,
    format: &str,
    coverage: bool,
    timeout_ms: u64,
) -> anyhow::Result<ExitCode> {
    let filter = run
        .map(regex::Regex::new)
        .transpose()
        .map_err(|e| anyhow::anyhow!("--run is not a valid regular expression: {e}"))?;
    let mut sources = Vec::new();
    for dir in dirs {
        if dir.is_dir() {
            sources.extend(aaf_server::policy_loader::read_policy_dir_with_tests(dir)?);
        } else {
            let rego = std::fs::read_to_string(dir)
                .map_err(|e| anyhow::anyhow!("{}: {e}", dir.display()))?;
            sources.push(aaf_core::policy::PolicySource {
                path: dir.display().to_string(),
                rego,
            });
        }
    }
    // The same file named twice (`policies` and `policies/packs`) is loaded once.
    let mut seen = std::collections::HashSet::new();
    sources.retain(|s| {
        let key = std::fs::canonicalize(&s.path).unwrap_or_else(|_| PathBuf::from(&s.path));
        seen.insert(key)
    });
    let options = EvaluatorOptions {
        eval_timeout: std::time::Duration::from_millis(timeout_ms),
        ..EvaluatorOptions::default()
    };
    let set = match aaf_core::policy::PolicySet::load_for_tests(sources, options) {
        Ok(set) => set,
        Err(errors) => {
            for e in errors {
                eprintln!("{e}");
            }
            return Ok(ExitCode::FAILURE);
        }
    };
    let report = set.run_tests(
        |name| filter.as_ref().is_none_or(|re| re.is_match(name)),
        coverage,
    );
    if format == "json" {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        use aaf_core::policy::testing::TestOutcome;
        for r in &report.results {
            let label = match r.outcome {
                TestOutcome::Pass => "PASS",
                TestOutcome::Fail => "FAIL",
                TestOutcome::Error => "ERROR",
            };
            let detail = r
                .detail
                .as_deref()
                .map(|d| format!(": {d}"))
                .unwrap_or_default();
            println!(
                "{label:<5} {} ({}, {:.3} ms){detail}",
                r.name,
                r.file,
                r.duration_us as f64 / 1000.0
            );
        }
        if let Some(files) = &report.coverage {
            println!(
                "--------------------------------------------------------------------------------"
            );
            for f in files {
                let missing = f
                    .not_covered
                    .iter()
                    .map(u32::to_string)
                    .collect::<Vec<_>>()
                    .join(", ");
                println!(
                    "{:>6.1}%  {}{}",
                    f.percent,
                    f.file,
                    if missing.is_empty() {
                        String::new()
                    } else {
                        format!("  (not covered: lines {missing})")
                    }
                );
            }
        }
        println!(
            "--------------------------------------------------------------------------------"
        );
        let total = report.results.len();
        if total == 0 {
            println!("no tests found (rules named test_*)");
        } else {
            println!("PASS: {}/{total}", report.passed);
            if report.failed > 0 {
                println!("FAIL: {}/{total}", report.failed);
            }
            if report.errors > 0 {
                println!("ERROR: {}/{total}", report.errors);
            }
        }
    }
    Ok(if report.success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Loads a revision as `GET /v1/policy-revisions/{revision}` returns it and checks that its
/// sources and data hash to the revision it names.
fn load_revision_file(
    file: &Path,
    options: EvaluatorOptions,
) -> anyhow::Result<aaf_core::policy::PolicySet> {
    #[derive(serde::Deserialize)]
    struct Source {
        path: String,
        rego: String,
    }
    #[derive(serde::Deserialize)]
    struct Revision {
        revision: String,
        sources: Vec<Source>,
        #[serde(default)]
        data: Value,
    }
    let text = std::fs::read_to_string(file)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))?;
    let rev: Revision = serde_json::from_str(&text).map_err(|e| {
        anyhow::anyhow!(
            "{} is not a policy revision ({{\"revision\", \"sources\", \"data\"}}): {e}",
            file.display()
        )
    })?;
    let mut labels = std::collections::BTreeMap::new();
    for s in &rev.sources {
        let name = s.path.strip_suffix(".rego");
        if let Some(name) = name.and_then(|n| n.strip_prefix("managed/")) {
            labels.insert(s.path.clone(), name.to_string());
        } else if let Some(name) = name.and_then(|n| n.strip_prefix("packs/")) {
            labels.insert(s.path.clone(), format!("pack:{name}"));
        }
    }
    let bundle = aaf_core::policy::PolicyBundle {
        sources: rev
            .sources
            .into_iter()
            .map(|s| aaf_core::policy::PolicySource {
                path: s.path,
                rego: s.rego,
            })
            .collect(),
        data: rev.data,
        labels,
    };
    let set = aaf_core::policy::PolicySet::load_bundle(bundle, options).map_err(|errors| {
        anyhow::anyhow!(
            "the revision does not load:\n{}",
            errors
                .iter()
                .map(|e| format!("  {e}"))
                .collect::<Vec<_>>()
                .join("\n")
        )
    })?;
    if set.revision() != rev.revision {
        anyhow::bail!(
            "{}: its sources and data hash to {}, not to the revision it names ({}); it was changed",
            file.display(),
            set.revision(),
            rev.revision
        );
    }
    Ok(set)
}

fn policy_eval(
    dir: Option<&Path>,
    revision: Option<&Path>,
    input_file: &Path,
    timeout_ms: u64,
) -> anyhow::Result<ExitCode> {
    let options = EvaluatorOptions {
        eval_timeout: std::time::Duration::from_millis(timeout_ms),
        decision_cache_entries: 0,
        ..EvaluatorOptions::default()
    };
    let set = match (dir, revision) {
        (Some(dir), _) => {
            let (set, origin) = load_policies(dir, options)?;
            if let PolicyOrigin::BundledStarter(_) = origin {
                anyhow::bail!("{} does not exist", dir.display());
            }
            set
        }
        (None, Some(file)) => load_revision_file(file, options)?,
        (None, None) => anyhow::bail!("give --policies DIR or --revision FILE"),
    };
    let text = std::fs::read_to_string(input_file)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", input_file.display()))?;
    let value: Value = serde_json::from_str(&text)
        .map_err(|e| anyhow::anyhow!("{} is not JSON: {e}", input_file.display()))?;
    let input = if value.get("action").is_some() {
        value
    } else {
        let request: ActionRequest = serde_json::from_value(serde_json::json!({
            "tool": value.get("tool").cloned().unwrap_or(Value::Null),
            "operation": value.get("operation").cloned().unwrap_or(Value::Null),
            "params": value.get("params").cloned().unwrap_or_else(|| serde_json::json!({})),
            "context": value.get("context").cloned().unwrap_or_else(|| serde_json::json!({})),
        }))
        .map_err(|e| anyhow::anyhow!("{}: not an action body: {e}", input_file.display()))?;
        PolicyInput::build(
            "offline-eval",
            &request,
            &AgentInfo {
                id: "offline-agent".into(),
                name: "offline".into(),
                risk_score: 0.0,
            },
            &OrgInfo {
                id: "offline-org".into(),
                plan: "self_hosted".into(),
            },
            &RequestMetadata {
                timestamp: aaf_server::time::now_rfc3339(),
                ip_address: None,
            },
        )
    };
    let decision = set.evaluate(&input);
    let out = serde_json::json!({
        "decision": decision.verdict.as_str(),
        "reason": decision.reason,
        "risk_level": decision.risk_level,
        "matched_policies": decision.matched_policies,
        "policies": decision.policies.iter().map(|p| serde_json::json!({
            "policy": p.policy,
            "decision": p.decision.map(|v| v.as_str()),
            "reason": p.reason,
            "eval_time_us": p.eval_time_us,
        })).collect::<Vec<_>>(),
        "policy_revision": set.revision(),
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(ExitCode::SUCCESS)
}

/// Opens the database read-write (creating and migrating it if needed): PostgreSQL when a
/// URL is given, else the data directory's SQLite file.
async fn open_db(db: &DbArgs) -> anyhow::Result<Store> {
    Ok(match &db.database_url {
        Some(url) => Store::open_postgres(url, &PgOptions::default()).await?,
        None => Store::open_sqlite(&db.data_dir, &StoreOptions::default()).await?,
    })
}

async fn orgs(cmd: OrgsCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        OrgsCommand::Create { name, db, plan } => {
            let name = name.trim();
            if name.is_empty() || name.chars().count() > 256 || name == aaf_store::SYSTEM_CHAIN {
                anyhow::bail!("the organisation name must be 1 to 256 characters and not `system`");
            }
            let store = open_db(&db).await?;
            let token = aaf_core::secrets::generate_token(aaf_core::secrets::ADMIN_TOKEN_PREFIX);
            let created = store
                .create_org_with_admin_token(
                    name,
                    &plan,
                    aaf_server::app::BOOTSTRAP_ADMIN_NAME,
                    &aaf_core::secrets::hash_token(&token),
                    &aaf_core::secrets::visible_prefix(&token),
                    &aaf_server::time::now_rfc3339(),
                )
                .await;
            store.close().await;
            let org = match created {
                Ok(org) => org,
                Err(aaf_store::StoreError::Conflict(_)) => {
                    anyhow::bail!("an organisation named {name:?} already exists")
                }
                Err(e) => return Err(e.into()),
            };
            println!("organisation {} created (id {})", org.name, org.id);
            println!("admin token (shown once): {token}");
            eprintln!(
                "Store the admin token in your secret manager now; it cannot be shown again."
            );
            Ok(ExitCode::SUCCESS)
        }
        OrgsCommand::List { db } => {
            let store = open_db(&db).await?;
            let orgs = store.list_orgs().await;
            store.close().await;
            for org in orgs? {
                println!("{}  {}  {}  {}", org.id, org.name, org.plan, org.created_at);
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn audit_verify(
    db: &DbArgs,
    checkpoints: Option<&Path>,
    keys: &audit_cmd::KeySource<'_>,
) -> anyhow::Result<ExitCode> {
    let store = match &db.database_url {
        Some(url) => {
            Store::open_postgres(
                url,
                &PgOptions {
                    max_connections: 2,
                    read_only: true,
                    ..Default::default()
                },
            )
            .await?
        }
        None => {
            let file = db.data_dir.join("aaf.db");
            if !file.exists() {
                anyhow::bail!(
                    "{} does not exist: no AAF database in {}",
                    file.display(),
                    db.data_dir.display()
                );
            }
            Store::open_sqlite(
                &db.data_dir,
                &StoreOptions {
                    read_only: true,
                    ..StoreOptions::default()
                },
            )
            .await?
        }
    };
    let outcome = audit_cmd::verify(&store, checkpoints, keys).await;
    store.close().await;
    outcome
}

fn hex_hash(h: &[u8; 32]) -> String {
    h.iter().map(|b| format!("{b:02x}")).collect()
}

async fn agents(cmd: AgentsCommand) -> anyhow::Result<ExitCode> {
    let (args, method, path, body, created) = match &cmd {
        AgentsCommand::Create {
            name,
            risk_score,
            public_key,
            tools,
            expires_in,
            client: args,
        } => {
            let mut body = serde_json::json!({ "name": name });
            if let Some(r) = risk_score {
                body["risk_score"] = serde_json::json!(r);
            }
            if let Some(k) = public_key {
                body["public_key"] = serde_json::json!(k);
            }
            if !tools.is_empty() {
                body["tools"] = serde_json::json!(tools);
            }
            if let Some(e) = expires_in {
                body["expires_in"] = serde_json::json!(e);
            }
            (args, reqwest::Method::POST, "/v1/agents", Some(body), true)
        }
        AgentsCommand::List { client: args } => {
            (args, reqwest::Method::GET, "/v1/agents", None, false)
        }
    };
    let Some(body) = call(args, method, path, body).await? else {
        return Ok(ExitCode::FAILURE);
    };
    println!("{}", serde_json::to_string_pretty(&body)?);
    if created {
        eprintln!("The api_key is shown only once: store it in your secret manager now.");
    }
    Ok(ExitCode::SUCCESS)
}

/// Calls the server; `None` (after printing the server's error) when it refused.
///
/// Errors: the server cannot be reached or answers something other than JSON.
async fn call(
    args: &ClientArgs,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> anyhow::Result<Option<Value>> {
    let url = format!("{}{path}", args.server.trim_end_matches('/'));
    let mut request = reqwest::Client::new()
        .request(method, url)
        .bearer_auth(&args.token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("cannot reach the server: {e}"))?;
    let status = response.status();
    let body: Value = response
        .json()
        .await
        .map_err(|e| anyhow::anyhow!("the server's answer is not JSON: {e}"))?;
    if !status.is_success() {
        let message = body["error"]["message"].as_str().unwrap_or("unknown error");
        eprintln!("error: the server answered {status}: {message}");
        return Ok(None);
    }
    Ok(Some(body))
}

async fn kill(args: KillArgs) -> anyhow::Result<ExitCode> {
    let scope = args.scope.replace('-', "_");
    let target = match (scope.as_str(), args.target.as_slice()) {
        ("org", []) => None,
        ("agent" | "tool", [t]) => Some(t.clone()),
        ("agent_tool", [agent, tool]) => Some(format!("{agent}:{tool}")),
        _ => {
            eprintln!(
                "error: `aaf kill {}` takes {}",
                args.scope,
                match scope.as_str() {
                    "org" => "no target",
                    "agent" => "the agent id",
                    "tool" => "the tool name",
                    _ => "the agent id and the tool name",
                }
            );
            return Ok(ExitCode::from(2));
        }
    };
    let mut body = serde_json::json!({"scope": scope, "reason": args.reason});
    if let Some(t) = target {
        body["target"] = Value::String(t);
    }
    if let Some(s) = args.expires_in {
        body["expires_in"] = Value::from(s);
    }
    let Some(answer) = call(
        &args.client,
        reqwest::Method::POST,
        "/v1/kill-switches",
        Some(body),
    )
    .await?
    else {
        return Ok(ExitCode::FAILURE);
    };
    println!(
        "kill switch {} engaged: scope {}{}; release it with `aaf unkill {}`",
        answer["id"].as_str().unwrap_or("?"),
        answer["scope"].as_str().unwrap_or("?"),
        match answer["target"].as_str() {
            Some(t) if !t.is_empty() => format!(" {t}"),
            _ => String::new(),
        },
        answer["id"].as_str().unwrap_or("?"),
    );
    Ok(ExitCode::SUCCESS)
}

async fn kill_switches(all: bool, json: bool, client: &ClientArgs) -> anyhow::Result<ExitCode> {
    let path = if all {
        "/v1/kill-switches?state=all&limit=1000"
    } else {
        "/v1/kill-switches"
    };
    let Some(body) = call(client, reqwest::Method::GET, path, None).await? else {
        return Ok(ExitCode::FAILURE);
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&body)?);
        return Ok(ExitCode::SUCCESS);
    }
    let items = body["kill_switches"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if items.is_empty() {
        println!("no kill switches");
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<36}  {:<10}  {:<9}  {:<40}  {:<27}  REASON",
        "ID", "SCOPE", "STATE", "TARGET", "ENGAGED"
    );
    for item in items {
        let text = |v: &Value| v.as_str().unwrap_or("-").to_string();
        println!(
            "{:<36}  {:<10}  {:<9}  {:<40}  {:<27}  {}",
            text(&item["id"]),
            text(&item["scope"]),
            text(&item["state"]),
            text(&item["target"]),
            text(&item["created_at"]),
            text(&item["reason"]),
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn approvals(cmd: ApprovalsCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        ApprovalsCommand::List {
            status,
            json,
            client,
        } => {
            let path = format!("/v1/approvals?status={status}&limit=1000");
            let Some(body) = call(&client, reqwest::Method::GET, &path, None).await? else {
                return Ok(ExitCode::FAILURE);
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&body)?);
                return Ok(ExitCode::SUCCESS);
            }
            let items = body["approvals"].as_array().cloned().unwrap_or_default();
            if items.is_empty() {
                println!("no actions with approval status {status}");
                return Ok(ExitCode::SUCCESS);
            }
            println!(
                "{:<36}  {:<28}  {:<8}  {:>9}  {:>8}  {:<16}  REASON",
                "ID", "TOOL/OPERATION", "RISK", "APPROVALS", "LEFT", "DIGEST"
            );
            for item in items {
                let action = &item["action"];
                let text = |v: &Value| v.as_str().unwrap_or("-").to_string();
                let approvals = format!(
                    "{}/{}",
                    item["approvals_required"]
                        .as_u64()
                        .unwrap_or(1)
                        .saturating_sub(item["approvals_missing"].as_u64().unwrap_or(0)),
                    item["approvals_required"].as_u64().unwrap_or(1)
                );
                let digest: String = text(&item["digest"]).chars().take(16).collect();
                println!(
                    "{:<36}  {:<28}  {:<8}  {:>9}  {:>7}s  {:<16}  {}",
                    text(&action["id"]),
                    format!("{}/{}", text(&action["tool"]), text(&action["operation"])),
                    text(&item["risk_level"]),
                    approvals,
                    item["seconds_left"].as_u64().unwrap_or(0),
                    digest,
                    text(&item["reason"]),
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        ApprovalsCommand::Approve {
            id,
            comment,
            digest,
            client,
        } => answer(&client, &id, "approve", comment, digest).await,
        ApprovalsCommand::Reject {
            id,
            comment,
            client,
        } => answer(&client, &id, "reject", comment, None).await,
    }
}

async fn answer(
    client: &ClientArgs,
    id: &str,
    verb: &str,
    comment: Option<String>,
    digest: Option<String>,
) -> anyhow::Result<ExitCode> {
    let mut body = serde_json::json!({});
    if let Some(c) = comment {
        body["comment"] = Value::String(c);
    }
    if let Some(d) = digest {
        body["digest"] = Value::String(d);
    }
    let path = format!("/v1/approvals/{id}/{verb}");
    let Some(answer) = call(client, reqwest::Method::POST, &path, Some(body)).await? else {
        return Ok(ExitCode::FAILURE);
    };
    let action = &answer["action"];
    println!(
        "action {} is now {} ({} approval(s) missing){}",
        action["id"].as_str().unwrap_or(id),
        action["status"].as_str().unwrap_or("?"),
        answer["approvals_missing"].as_u64().unwrap_or(0),
        match action["reason"].as_str() {
            Some(r) if action["status"] == "denied" => format!(": {r}"),
            _ => String::new(),
        }
    );
    Ok(ExitCode::SUCCESS)
}
