//! `aaf audit verify` and `aaf audit keygen`: offline verification of the audit chains, their
//! Merkle trees and signed checkpoints (those in the database and those exported to a
//! directory sink), and the creation of a log key (docs/audit.md).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use aaf_core::evidence::checkpoint::{verify_checkpoint, Checkpoint, LogKey};
use aaf_store::evidence::ChainVerification;
use aaf_store::Store;

/// A checkpoint read from outside the database (a directory sink).
struct Exported {
    /// The file.
    path: PathBuf,
    /// The chain its origin names.
    chain: String,
    /// What it commits to.
    checkpoint: Checkpoint,
}

/// Where the verifier key comes from.
pub struct KeySource<'a> {
    /// `--verifier-key`.
    pub verifier_key: Option<&'a str>,
    /// `--log-key-file` (the private key; its verifier key is derived).
    pub log_key_file: Option<&'a Path>,
    /// The SQLite data directory (its generated `log-key`), when verifying one.
    pub data_dir: Option<&'a Path>,
}

impl KeySource<'_> {
    /// The verifier key, and where it was found.
    fn resolve(&self) -> anyhow::Result<Option<(String, String)>> {
        if let Some(key) = self.verifier_key {
            return Ok(Some((key.trim().to_string(), "--verifier-key".into())));
        }
        let from_file = |path: &Path| -> anyhow::Result<String> {
            let text = std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            let key = LogKey::from_private_key(&text)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            Ok(key.verifier_key())
        };
        if let Some(path) = self.log_key_file {
            return Ok(Some((from_file(path)?, path.display().to_string())));
        }
        if let Some(dir) = self.data_dir {
            let path = dir.join(aaf_server::evidence::GENERATED_KEY_FILE);
            if path.exists() {
                return Ok(Some((from_file(&path)?, path.display().to_string())));
            }
        }
        Ok(None)
    }
}

/// Reads every checkpoint file under `dir` (recursively; hidden files skipped), verifying
/// each signature with `verifier_key`. Returns the checkpoints and the problems (a file that
/// is not a checkpoint signed by the key, or of another log).
fn read_exported(dir: &Path, verifier_key: &str) -> anyhow::Result<(Vec<Exported>, Vec<String>)> {
    let key_name = verifier_key
        .split('+')
        .next()
        .unwrap_or_default()
        .to_string();
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        let entries = std::fs::read_dir(&current)
            .map_err(|e| anyhow::anyhow!("--checkpoints {}: {e}", current.display()))?;
        for entry in entries {
            let entry = entry?;
            let path = entry.path();
            if entry.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            if entry.file_type()?.is_dir() {
                pending.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files.sort();
    let mut found = Vec::new();
    let mut problems = Vec::new();
    for path in files {
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) => {
                problems.push(format!("{}: cannot be read: {e}", path.display()));
                continue;
            }
        };
        match verify_checkpoint(&text, verifier_key) {
            Ok(checkpoint) => match checkpoint.origin.strip_prefix(&format!("{key_name}/")) {
                Some(chain) if !chain.is_empty() => found.push(Exported {
                    path,
                    chain: chain.to_string(),
                    checkpoint,
                }),
                _ => problems.push(format!(
                    "{}: origin {:?} is not a chain of the log {key_name:?}",
                    path.display(),
                    checkpoint.origin
                )),
            },
            Err(e) => problems.push(format!(
                "{}: not a checkpoint signed by the log key: {e}",
                path.display()
            )),
        }
    }
    Ok((found, problems))
}

/// `aaf audit verify`: every chain, its tree and its checkpoints.
///
/// # Errors
///
/// The database or the checkpoint directory cannot be read, or `--checkpoints` is given
/// without a verifier key.
pub async fn verify(
    store: &Store,
    checkpoints_dir: Option<&Path>,
    keys: &KeySource<'_>,
) -> anyhow::Result<ExitCode> {
    let verifier = keys.resolve()?;
    let (exported, mut problems) = match checkpoints_dir {
        Some(dir) => {
            let Some((key, _)) = &verifier else {
                anyhow::bail!("--checkpoints needs the log's verifier key: give --verifier-key (as printed when the key was made) or --log-key-file");
            };
            read_exported(dir, key)?
        }
        None => (Vec::new(), Vec::new()),
    };
    let mut extra: BTreeMap<String, BTreeSet<u64>> = BTreeMap::new();
    for e in &exported {
        extra
            .entry(e.chain.clone())
            .or_default()
            .insert(e.checkpoint.size);
    }
    println!("verifying the audit chains in {}", store.backend_name());
    match &verifier {
        Some((_, from)) => {
            println!("checkpoint signatures checked with the verifier key of {from}")
        }
        None => println!(
            "checkpoint signatures NOT checked (no verifier key: give --verifier-key or --log-key-file); their roots are still compared with the events"
        ),
    }
    let started = Instant::now();
    let chains = store.verify_audit_tree(&extra).await?;
    let elapsed = started.elapsed();
    let mut failed = !problems.is_empty();
    for problem in problems.drain(..) {
        println!("BROKEN  {problem}");
    }
    let (mut events, mut checked) = (0_u64, 0_usize);
    for chain in &chains {
        let outcome = report_chain(chain, verifier.as_ref().map(|(k, _)| k.as_str()), &exported);
        failed |= outcome.failed;
        checked += outcome.checkpoints;
        if let Ok(summary) = &chain.result {
            events += summary.count;
        }
    }
    let rate = events as f64 / elapsed.as_secs_f64().max(1e-9);
    if failed {
        eprintln!("audit verification FAILED: the audit log was changed after it was written");
        Ok(ExitCode::FAILURE)
    } else {
        println!(
            "audit verification passed: {} chains, {events} events, {checked} checkpoints ({:.0} events/s)",
            chains.len(),
            rate
        );
        Ok(ExitCode::SUCCESS)
    }
}

/// What [`report_chain`] found.
struct ChainOutcome {
    failed: bool,
    checkpoints: usize,
}

/// Prints one chain's results: the chain, its stored tree, its stored checkpoints and the
/// exported ones.
fn report_chain(
    chain: &ChainVerification,
    verifier_key: Option<&str>,
    exported: &[Exported],
) -> ChainOutcome {
    let org = chain.org_id();
    let mut failed = false;
    let mut checkpoints = 0;
    let events = match &chain.result {
        Ok(summary) => {
            println!(
                "ok      chain {}: {} events, head seq {}, head hash {}",
                summary.org_id,
                summary.count,
                summary.head_seq,
                crate::hex_hash(&summary.head_hash)
            );
            Some(summary.count)
        }
        Err(e) => {
            failed = true;
            println!("BROKEN  {e}");
            None
        }
    };
    // What the tree recomputed from the events says at `size`.
    let recomputed = |size: u64| -> Result<[u8; 32], String> {
        match chain.roots.get(&size) {
            Some(root) => Ok(*root),
            None => match events {
                Some(count) => Err(format!(
                    "the chain has {count} events, fewer than the {size} this commits to: events were removed (with the chain head)"
                )),
                None => Err(format!(
                    "the chain is broken before seq {size}, so its tree of that size cannot be recomputed"
                )),
            },
        }
    };
    if let Some((size, stored)) = &chain.stored_tree {
        match (stored, recomputed(*size)) {
            (Ok(stored), Ok(root)) if *stored == root => {}
            (Ok(_), Ok(_)) => {
                failed = true;
                println!("BROKEN  tree of {org}: the stored hashes of size {size} do not hash to the root of the events: the stored tree was changed");
            }
            (Err(e), _) => {
                failed = true;
                println!("BROKEN  tree of {org}: {e}");
            }
            (_, Err(e)) => {
                failed = true;
                println!("BROKEN  tree of {org}: {e}");
            }
        }
    }
    let mut check = |origin: String, size: u64, root: [u8; 32], note: Option<&str>| {
        checkpoints += 1;
        if let (Some(note), Some(key)) = (note, verifier_key) {
            if let Err(e) = verify_checkpoint(note, key) {
                failed = true;
                println!("BROKEN  checkpoint {origin}: the signature does not verify: {e}");
                return;
            }
        }
        match recomputed(size) {
            Ok(recomputed) if recomputed == root => {
                println!(
                    "ok      checkpoint {origin}: size {size}, root {}",
                    crate::hex_hash(&root)
                );
            }
            Ok(recomputed) => {
                failed = true;
                println!(
                    "BROKEN  checkpoint {origin}: it commits to root {} at size {size}, but the events hash to {}: events were changed, inserted or removed",
                    crate::hex_hash(&root),
                    crate::hex_hash(&recomputed)
                );
            }
            Err(e) => {
                failed = true;
                println!("BROKEN  checkpoint {origin}: {e}");
            }
        }
    };
    for stored in &chain.checkpoints {
        check(
            format!("{org}@{} (database)", stored.tree_size),
            stored.tree_size,
            stored.root_hash,
            Some(&stored.note),
        );
    }
    for e in exported.iter().filter(|e| e.chain == org) {
        // The signature was checked when the file was read.
        check(
            format!("{org}@{} ({})", e.checkpoint.size, e.path.display()),
            e.checkpoint.size,
            e.checkpoint.root,
            None,
        );
    }
    ChainOutcome {
        failed,
        checkpoints,
    }
}

/// Writes `content` and a newline to a new file `out` with mode 0600 (never overwriting),
/// synced.
///
/// # Errors
///
/// The file exists or cannot be written.
fn write_new_secret_file(out: &Path, content: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(out)
        .map_err(|e| anyhow::anyhow!("{}: {e}", out.display()))?;
    file.write_all(format!("{content}\n").as_bytes())?;
    file.sync_all()?;
    Ok(())
}

/// `aaf audit keygen`: a new log key named `name`, written to `out` (mode 0600, never
/// overwriting); prints the verifier key.
///
/// # Errors
///
/// A bad name, or the file exists or cannot be written.
pub fn keygen(name: &str, out: &Path) -> anyhow::Result<ExitCode> {
    let key = LogKey::generate(name)?;
    write_new_secret_file(out, &key.to_private_key())?;
    println!(
        "log key written to {} (keep it secret; set evidence.log_key_file to it)",
        out.display()
    );
    println!("verifier key (give it to whoever verifies checkpoints):");
    println!("{}", key.verifier_key());
    Ok(ExitCode::SUCCESS)
}

/// `aaf encryption keygen --out FILE`: a new master key of encryption at rest, written with
/// mode 0600 to a new file; prints its id.
///
/// # Errors
///
/// The file exists or cannot be written.
pub fn master_keygen(out: &Path) -> anyhow::Result<ExitCode> {
    let (key, text) = aaf_store::encryption::MasterKey::generate();
    write_new_secret_file(out, &text)?;
    println!(
        "master key {} written to {} (keep it secret and backed up apart from the database; set encryption.master_key_file to it on every node)",
        key.id(),
        out.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Reads every file of a zip into memory (at most `MAX_PACK_BYTES` in all).
///
/// # Errors
///
/// The file cannot be read, is not a zip, or is too large.
pub fn read_zip(path: &Path) -> anyhow::Result<BTreeMap<String, Vec<u8>>> {
    use std::io::Read;
    /// Largest pack read, uncompressed, in bytes (256 MiB).
    const MAX_PACK_BYTES: u64 = 256 * 1024 * 1024;
    let file = std::fs::File::open(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let mut archive = zip::ZipArchive::new(file)
        .map_err(|e| anyhow::anyhow!("{}: not a zip: {e}", path.display()))?;
    let mut files = BTreeMap::new();
    let mut total = 0_u64;
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i)?;
        if entry.is_dir() {
            continue;
        }
        let name = entry.name()?.to_string();
        total = total.saturating_add(entry.size());
        if total > MAX_PACK_BYTES {
            anyhow::bail!(
                "{}: more than {MAX_PACK_BYTES} bytes uncompressed",
                path.display()
            );
        }
        let mut bytes = Vec::with_capacity(usize::try_from(entry.size()).unwrap_or(0));
        entry
            .by_ref()
            .take(MAX_PACK_BYTES)
            .read_to_end(&mut bytes)?;
        files.insert(name, bytes);
    }
    Ok(files)
}

/// `aaf proof verify`: verifies a proof pack and prints what it proves and what not.
///
/// # Errors
///
/// The pack cannot be read.
pub fn proof_verify(path: &Path, verifier_key: Option<&str>) -> anyhow::Result<ExitCode> {
    let files = read_zip(path)?;
    let report = aaf_core::evidence::pack::verify(&files, verifier_key);
    for line in &report.proven {
        println!("proven      {line}");
    }
    for line in &report.not_proven {
        println!("not proven  {line}");
    }
    for line in &report.failures {
        println!("FAILED      {line}");
    }
    if report.ok() {
        println!("proof pack verified: {}", path.display());
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("proof pack verification FAILED: {}", path.display());
        Ok(ExitCode::FAILURE)
    }
}
