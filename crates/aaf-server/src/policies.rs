//! The policies in force, per organisation: the policy directory's modules (shared by every
//! organisation), plus each organisation's managed policies, enabled policy packs and data
//! documents, compiled into one [`PolicySet`] per revision, and its shadow policies.
//!
//! Invariants:
//! - A request takes one `Arc<OrgPolicies>` and decides with it only: an installed set is
//!   immutable, and installing a new one is a pointer swap, so no request ever sees half of
//!   a change.
//! - An organisation's policies change only through [`Mutation::BumpPolicyGeneration`], a
//!   compare-and-set on its generation committed with the change and its audit event; every
//!   node rebuilds when it sees a newer generation (PostgreSQL `NOTIFY`, and a poll every
//!   `policy_engine.refresh_interval_ms`).
//! - A set that does not compile is never installed: the one in force stays.
//! - Every installed revision's sources and data are stored (`policy_revisions`) before a
//!   decision can be made under it, so any decision can be replayed.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, RwLock};

use aaf_core::policy::{EvaluatorOptions, LoadError, PolicyBundle, PolicySet, PolicySource};
use aaf_store::{Mutation, PolicyObject, PolicyRevisionRecord, WriteUnit};
use serde_json::Value;

use crate::app::AppState;
use crate::policy_loader::{load_sources, PolicyOrigin};

/// Kind of a managed policy object.
pub const POLICY_KIND: &str = "policy";
/// Kind of a data document object.
pub const DATA_KIND: &str = "data";
/// Kind of a policy pack's state object.
pub const PACK_KIND: &str = "pack";

/// A built-in policy pack (`policies/packs/`, `docs/policy-packs.md`).
#[derive(Debug, Clone, Copy)]
pub struct Pack {
    /// Its name (`security`, `compliance`, `financial`).
    pub name: &'static str,
    /// What it does, in one sentence.
    pub description: &'static str,
    /// Its parameters (keys of the data document `packs/<name>`).
    pub parameters: &'static [&'static str],
    /// Its Rego source.
    pub rego: &'static str,
}

/// The built-in packs.
pub const PACKS: &[Pack] = &[
    Pack {
        name: "security",
        description: "SSRF and private networks, domain allowlist, default deny: HTTP calls only over https to allowlisted public hosts (safe methods allowed, writes need approval); other tools denied unless listed",
        parameters: &[
            "allowed_domains",
            "allow_http",
            "allowed_methods",
            "approval_methods",
            "allowed_ports",
            "allowed_tools",
        ],
        rego: include_str!("../../../policies/packs/security.rego"),
    },
    Pack {
        name: "compliance",
        description: "PII and payment card numbers in parameters need approval or are denied; required audit context fields",
        parameters: &[
            "on_pii",
            "on_credit_card",
            "exempt_tools",
            "required_context",
            "on_missing_context",
        ],
        rego: include_str!("../../../policies/packs/compliance.rego"),
    },
    Pack {
        name: "financial",
        description: "Amount limits and approval thresholds per payment API (default: api.stripe.com, approval above 10000, deny above 1000000, in cents)",
        parameters: &["apis"],
        rego: include_str!("../../../policies/packs/financial.rego"),
    },
];

/// The pack named `name`.
pub fn pack(name: &str) -> Option<&'static Pack> {
    PACKS.iter().find(|p| p.name == name)
}

/// The module path of a managed policy.
pub fn managed_path(name: &str) -> String {
    format!("managed/{name}.rego")
}

/// The module path of a pack.
pub fn pack_path(name: &str) -> String {
    format!("packs/{name}.rego")
}

/// The policy directory's modules and the set they make alone.
#[derive(Debug)]
pub struct Base {
    /// The modules (or the bundled starter policy).
    pub sources: Vec<PolicySource>,
    /// Where they came from.
    pub origin: PolicyOrigin,
    /// The set of the modules alone (organisations without managed policies use it).
    pub set: Arc<PolicySet>,
    /// Counts directory reloads, from 0.
    pub generation: u64,
}

/// A shadow policy: evaluated on every action with the enforced set, never deciding.
#[derive(Debug)]
pub struct ShadowPolicy {
    /// The managed policy's id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// The version evaluated.
    pub version: i64,
    /// The enforced modules plus this policy.
    pub set: Arc<PolicySet>,
}

/// What an organisation's actions are decided with.
#[derive(Debug)]
pub struct OrgPolicies {
    /// The organisation's policy generation it was built from.
    pub generation: i64,
    /// The directory load it was built from ([`Base::generation`]).
    pub base_generation: u64,
    /// The enforced set.
    pub set: Arc<PolicySet>,
    /// The shadow policies.
    pub shadows: Vec<ShadowPolicy>,
    /// What the enforced set was built from (for the revision record).
    pub bundle: Arc<PolicyBundle>,
}

impl OrgPolicies {
    /// The revision record of the enforced set.
    pub fn revision_record(&self, org_id: &str, now: &str) -> PolicyRevisionRecord {
        PolicyRevisionRecord {
            org_id: org_id.to_string(),
            revision: self.set.revision().to_string(),
            bundle: serde_json::json!({
                "sources": self.bundle.sources.iter().map(|s| serde_json::json!({"path": s.path, "rego": s.rego})).collect::<Vec<_>>(),
                "data": self.bundle.data,
            }),
            created_at: now.to_string(),
        }
    }
}

/// One shadow policy's would-be outcome of an action.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct ShadowOutcome {
    /// The shadow policy's id.
    pub policy_id: String,
    /// Its name.
    pub policy: String,
    /// Its version.
    pub version: i64,
    /// The verdict had it been enforced.
    pub decision: String,
    /// The reason of that verdict.
    pub reason: String,
    /// Whether it differs from the verdict in force.
    pub differs: bool,
}

/// The policies in force, per organisation (see the module documentation).
pub struct PolicyRegistry {
    base: RwLock<Arc<Base>>,
    orgs: RwLock<HashMap<String, Arc<OrgPolicies>>>,
    options: EvaluatorOptions,
    builds: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for PolicyRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyRegistry").finish_non_exhaustive()
    }
}

/// Nests data documents (`a/b` → `{"a": {"b": ...}}`) into one base document.
///
/// Errors: a document that is not valid JSON, a bad path, or paths that overlap.
pub fn nest_data(docs: &[(String, String)]) -> Result<Value, String> {
    let paths: Vec<&str> = docs.iter().map(|(p, _)| p.as_str()).collect();
    let mut root = serde_json::Map::new();
    for (path, body) in docs {
        check_data_path(path, &paths).map_err(|m| format!("data document {path}: {m}"))?;
        let value: Value = serde_json::from_str(body)
            .map_err(|e| format!("data document {path} is not valid JSON: {e}"))?;
        let segments: Vec<&str> = path.split('/').collect();
        let Some((last, parents)) = segments.split_last() else {
            continue;
        };
        let mut node = &mut root;
        for segment in parents {
            let entry = node
                .entry(segment.to_string())
                .or_insert_with(|| Value::Object(serde_json::Map::new()));
            node = match entry {
                Value::Object(map) => map,
                _ => return Err(format!("data document {path} overlaps another document")),
            };
        }
        node.insert((*last).to_string(), value);
    }
    Ok(Value::Object(root))
}

/// Checks a data document path: 1 to 8 `/`-separated Rego identifiers (`[A-Za-z_][A-Za-z0-9_]*`),
/// at most 256 characters, and that it neither contains nor is inside another live
/// document's path.
///
/// Errors: the problem, for a 400 on `path`.
pub fn check_data_path(path: &str, others: &[&str]) -> Result<(), String> {
    if path.is_empty() || path.len() > 256 {
        return Err("must be 1 to 256 characters".into());
    }
    let segments: Vec<&str> = path.split('/').collect();
    if segments.len() > 8 {
        return Err("must have at most 8 segments".into());
    }
    for s in &segments {
        let mut chars = s.chars();
        let ok = chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !ok {
            return Err(format!(
                "segment {s:?} is not a Rego identifier ([A-Za-z_][A-Za-z0-9_]*)"
            ));
        }
    }
    for other in others {
        if *other == path {
            continue;
        }
        let (a, b) = (format!("{path}/"), format!("{other}/"));
        if b.starts_with(&a) || a.starts_with(&b) {
            return Err(format!("overlaps the data document {other}"));
        }
    }
    Ok(())
}

/// Builds an organisation's policies from the directory's modules and its live objects.
///
/// Errors: every problem, located (`managed/<name>.rego:line:col`, `data`, ...).
pub fn build_org(
    base: &Base,
    objects: &[PolicyObject],
    generation: i64,
    options: EvaluatorOptions,
) -> Result<OrgPolicies, Vec<LoadError>> {
    let live: Vec<&PolicyObject> = objects.iter().filter(|o| o.disabled_at.is_none()).collect();
    let problem = |file: &str, message: String| LoadError {
        file: file.to_string(),
        line: 0,
        col: 0,
        message,
    };
    let mut sources = base.sources.clone();
    let mut labels = BTreeMap::new();
    let mut owned: Vec<(String, String)> = Vec::new(); // (path, what) of managed modules
    for o in &live {
        match o.kind.as_str() {
            POLICY_KIND if o.mode == "enforce" => {
                let path = managed_path(&o.name);
                labels.insert(path.clone(), o.name.clone());
                owned.push((path.clone(), format!("policy {}", o.name)));
                sources.push(PolicySource {
                    path,
                    rego: o.body.clone(),
                });
            }
            PACK_KIND if o.body == "enabled" => {
                let Some(p) = pack(&o.key) else {
                    return Err(vec![problem(
                        "packs",
                        format!("unknown policy pack {}", o.key),
                    )]);
                };
                let path = pack_path(p.name);
                labels.insert(path.clone(), format!("pack:{}", p.name));
                owned.push((path.clone(), format!("pack {}", p.name)));
                sources.push(PolicySource {
                    path,
                    rego: p.rego.to_string(),
                });
            }
            _ => {}
        }
    }
    let docs: Vec<(String, String)> = live
        .iter()
        .filter(|o| o.kind == DATA_KIND)
        .map(|o| (o.key.clone(), o.body.clone()))
        .collect();
    let data = nest_data(&docs).map_err(|m| vec![problem("data", m)])?;
    let bundle = PolicyBundle {
        sources,
        data,
        labels,
    };
    let set = PolicySet::load_bundle(bundle.clone(), options)?;
    check_own_packages(&set, &owned)?;
    let mut shadows = Vec::new();
    for o in live
        .iter()
        .filter(|o| o.kind == POLICY_KIND && o.mode == "shadow")
    {
        let path = managed_path(&o.name);
        let mut shadow_bundle = bundle.clone();
        shadow_bundle.sources.push(PolicySource {
            path: path.clone(),
            rego: o.body.clone(),
        });
        shadow_bundle.labels.insert(path.clone(), o.name.clone());
        let shadow_set = PolicySet::load_bundle(shadow_bundle, options)?;
        let mut shadow_owned = owned.clone();
        shadow_owned.push((path, format!("policy {}", o.name)));
        check_own_packages(&shadow_set, &shadow_owned)?;
        shadows.push(ShadowPolicy {
            id: o.key.clone(),
            name: o.name.clone(),
            version: o.active_version,
            set: Arc::new(shadow_set),
        });
    }
    Ok(OrgPolicies {
        generation,
        base_generation: base.generation,
        set: Arc::new(set),
        shadows,
        bundle: Arc::new(bundle),
    })
}

/// Each managed policy and pack must have a package of its own, so that its decisions are
/// its alone (two modules of one package are merged by Rego).
fn check_own_packages(set: &PolicySet, owned: &[(String, String)]) -> Result<(), Vec<LoadError>> {
    let mut errors = Vec::new();
    for (path, what) in owned {
        let Some(module) = set.modules().iter().find(|m| &m.path == path) else {
            continue;
        };
        if let Some(other) = set
            .modules()
            .iter()
            .find(|m| m.package == module.package && &m.path != path)
        {
            errors.push(LoadError {
                file: path.clone(),
                line: 1,
                col: 1,
                message: format!(
                    "package {} of {what} is also declared by {}; each managed policy needs a package of its own (e.g. package aaf.policies.<name>)",
                    module.package, other.path
                ),
            });
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

impl PolicyRegistry {
    /// A registry over the directory's modules.
    ///
    /// Errors: the modules do not load.
    pub fn new(
        sources: Vec<PolicySource>,
        origin: PolicyOrigin,
        options: EvaluatorOptions,
    ) -> Result<PolicyRegistry, Vec<LoadError>> {
        let set = PolicySet::load(sources.clone(), options)?;
        Ok(PolicyRegistry {
            base: RwLock::new(Arc::new(Base {
                sources,
                origin,
                set: Arc::new(set),
                generation: 0,
            })),
            orgs: RwLock::new(HashMap::new()),
            options,
            builds: tokio::sync::Mutex::new(()),
        })
    }

    /// The directory's modules in force.
    pub fn base(&self) -> Arc<Base> {
        match self.base.read() {
            Ok(b) => Arc::clone(&b),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// The options every set is loaded with.
    pub fn options(&self) -> EvaluatorOptions {
        self.options
    }

    fn cached(&self, org_id: &str) -> Option<Arc<OrgPolicies>> {
        let orgs = self.orgs.read().unwrap_or_else(|p| p.into_inner());
        orgs.get(org_id).cloned()
    }

    /// Every organisation's policies in memory (for statistics).
    pub fn loaded(&self) -> Vec<(String, Arc<OrgPolicies>)> {
        let orgs = self.orgs.read().unwrap_or_else(|p| p.into_inner());
        orgs.iter()
            .map(|(k, v)| (k.clone(), Arc::clone(v)))
            .collect()
    }

    /// Installs `policies` for the organisation unless a newer build is installed already.
    pub fn install(&self, org_id: &str, policies: Arc<OrgPolicies>) {
        let mut orgs = self.orgs.write().unwrap_or_else(|p| p.into_inner());
        let newer = orgs.get(org_id).is_none_or(|current| {
            (policies.generation, policies.base_generation)
                >= (current.generation, current.base_generation)
        });
        if newer {
            orgs.insert(org_id.to_string(), policies);
        }
    }

    /// Replaces the directory's modules (after a reload); organisations are rebuilt by the
    /// refresher.
    ///
    /// Errors: the modules do not load (the modules in force stay).
    pub fn replace_base(
        &self,
        sources: Vec<PolicySource>,
        origin: PolicyOrigin,
    ) -> Result<Arc<Base>, Vec<LoadError>> {
        let set = PolicySet::load(sources.clone(), self.options)?;
        let mut base = self.base.write().unwrap_or_else(|p| p.into_inner());
        let next = Arc::new(Base {
            sources,
            origin,
            set: Arc::new(set),
            generation: base.generation + 1,
        });
        *base = Arc::clone(&next);
        Ok(next)
    }
}

/// The organisation's policies in force, built on first use.
///
/// Errors: they could not be read or built (the caller denies: fail closed).
pub async fn for_org(state: &AppState, org_id: &str) -> Result<Arc<OrgPolicies>, String> {
    if let Some(p) = state.registry.cached(org_id) {
        return Ok(p);
    }
    refresh_org(state, org_id, false).await
}

/// Rebuilds the organisation's policies if its generation or the directory changed (or
/// always, with `force`), stores the revision and installs them.
///
/// Errors: the database or the build failed; the policies in force (if any) stay.
pub async fn refresh_org(
    state: &AppState,
    org_id: &str,
    force: bool,
) -> Result<Arc<OrgPolicies>, String> {
    let _build = state.registry.builds.lock().await;
    let base = state.registry.base();
    // The generation first: the objects read next are at least as new.
    let generation = state
        .store
        .policy_generation(org_id)
        .await
        .map_err(|e| format!("the organisation's policies could not be read: {e}"))?;
    if let Some(current) = state.registry.cached(org_id) {
        if !force && current.generation == generation && current.base_generation == base.generation
        {
            return Ok(current);
        }
    }
    let policies = if generation == 0 {
        Arc::new(OrgPolicies {
            generation,
            base_generation: base.generation,
            set: Arc::clone(&base.set),
            shadows: Vec::new(),
            bundle: Arc::new(PolicyBundle {
                sources: base.sources.clone(),
                ..PolicyBundle::default()
            }),
        })
    } else {
        let objects = state
            .store
            .list_policy_objects(org_id, None)
            .await
            .map_err(|e| format!("the organisation's policies could not be read: {e}"))?;
        let options = state.registry.options();
        let base_for_build = Arc::clone(&base);
        let built = tokio::task::spawn_blocking(move || {
            build_org(&base_for_build, &objects, generation, options)
        })
        .await
        .map_err(|e| format!("the policy build failed: {e}"))?;
        match built {
            Ok(p) => Arc::new(p),
            Err(errors) => {
                let text = errors
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ");
                tracing::error!(%org_id, generation, errors = %text, "the organisation's policies do not compile; the set in force stays");
                return Err(format!(
                    "the organisation's policies do not compile: {text}"
                ));
            }
        }
    };
    record_revision(state, org_id, &policies).await?;
    state.registry.install(org_id, Arc::clone(&policies));
    tracing::info!(%org_id, generation, revision = %policies.set.revision(), policies = policies.set.policies().len(), shadows = policies.shadows.len(), "organisation policies installed");
    Ok(policies)
}

/// Stores what the revision was built from (once per organisation and revision).
async fn record_revision(
    state: &AppState,
    org_id: &str,
    policies: &OrgPolicies,
) -> Result<(), String> {
    let record = policies.revision_record(org_id, &crate::time::now_rfc3339());
    state
        .writer
        .submit(WriteUnit {
            mutations: vec![Mutation::InsertPolicyRevision(record)],
            action: None,
            events: Vec::new(),
        })
        .await
        .map(|_| ())
        .map_err(|e| format!("the policy revision could not be recorded: {e}"))
}

/// Evaluates the shadow policies on `input`, comparing each with the verdict in force.
pub fn evaluate_shadows(
    policies: &OrgPolicies,
    input: &Value,
    enforced: aaf_core::action::Verdict,
) -> Vec<ShadowOutcome> {
    policies
        .shadows
        .iter()
        .map(|s| {
            let d = s.set.evaluate(input);
            ShadowOutcome {
                policy_id: s.id.clone(),
                policy: s.name.clone(),
                version: s.version,
                decision: d.verdict.as_str().to_string(),
                reason: d.reason,
                differs: d.verdict != enforced,
            }
        })
        .collect()
}

/// Every `policy_engine.refresh_interval_ms`, and at once on a notification: rebuilds the
/// organisations whose generation changed, and all of them after a directory reload.
pub async fn refresher(state: AppState) {
    let interval = std::time::Duration::from_millis(state.config.policy_engine.refresh_interval_ms);
    let wake = Arc::clone(&state.policy_wake);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = wake.notified() => {}
        }
        let generations: HashMap<String, i64> = match state.store.policy_generations().await {
            Ok(g) => g.into_iter().collect(),
            Err(e) => {
                tracing::warn!(error = %e, "could not check for policy changes");
                continue;
            }
        };
        let base_generation = state.registry.base().generation;
        for (org_id, current) in state.registry.loaded() {
            let latest = generations.get(&org_id).copied().unwrap_or(0);
            if latest != current.generation || current.base_generation != base_generation {
                if let Err(e) = refresh_org(&state, &org_id, false).await {
                    tracing::warn!(%org_id, error = %e, "organisation policies not refreshed");
                }
            }
        }
    }
}

/// Watches the policy directory and reloads it after it has been quiet for
/// `policy_engine.watch_debounce_ms`; a directory that does not load keeps the modules in
/// force (the error is logged). Returns the watcher, which stops when dropped.
///
/// Errors: the directory cannot be watched.
pub fn watch_directory(state: AppState, dir: &Path) -> Result<notify::RecommendedWatcher, String> {
    use notify::Watcher;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event {
            if !event.kind.is_access() {
                let _ = tx.send(());
            }
        }
    })
    .map_err(|e| e.to_string())?;
    watcher
        .watch(dir, notify::RecursiveMode::Recursive)
        .map_err(|e| e.to_string())?;
    let dir = dir.to_path_buf();
    let debounce = std::time::Duration::from_millis(state.config.policy_engine.watch_debounce_ms);
    tokio::spawn(async move {
        while rx.recv().await.is_some() {
            // Wait for quiet: editors write several events per save.
            loop {
                match tokio::time::timeout(debounce, rx.recv()).await {
                    Ok(Some(())) => continue,
                    Ok(None) => return,
                    Err(_) => break,
                }
            }
            let loaded = load_sources(&dir);
            let (sources, origin) = match loaded {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(directory = %dir.display(), error = %e, "policy directory not reloaded; the policies in force stay");
                    continue;
                }
            };
            match state.registry.replace_base(sources, origin) {
                Ok(base) => {
                    tracing::info!(directory = %dir.display(), revision = %base.set.revision(), modules = base.sources.len(), "policy directory reloaded");
                    state.policy_wake.notify_one();
                }
                Err(errors) => {
                    for e in errors {
                        tracing::error!(error = %e, "policy directory not reloaded; the policies in force stay");
                    }
                }
            }
        }
    });
    Ok(watcher)
}
