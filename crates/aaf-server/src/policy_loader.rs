//! Reading policy files from disk into a [`PolicySet`].

use std::path::{Path, PathBuf};

use aaf_core::policy::{EvaluatorOptions, LoadError, PolicySet, PolicySource};

/// The bundled starter policy, used when the policy directory does not exist.
pub const STARTER_POLICY: &str = include_str!("../../../policies/starter.rego");
/// The path the starter policy is reported under.
pub const STARTER_POLICY_PATH: &str = "<bundled>/starter.rego";

/// Where a policy set came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyOrigin {
    /// `.rego` files read from this directory.
    Directory(PathBuf),
    /// The directory did not exist; the bundled starter policy is in force.
    BundledStarter(PathBuf),
}

/// Why policies could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum PolicyLoadError {
    /// A file or directory could not be read.
    #[error("cannot read policies: {0}")]
    Io(String),
    /// One or more modules are invalid; each error has `file:line:col`.
    #[error("invalid policies:\n{}", .0.iter().map(|e| format!("  {e}")).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<LoadError>),
}

/// The subdirectory of a policy directory that holds the built-in policy packs' sources
/// (`policies/packs/` in the repository). The server and `aaf policy check` skip it: packs
/// are enabled per organisation over the API (`docs/policy-packs.md`), not by being there.
pub const PACKS_SUBDIR: &str = "packs";

/// Reads every `*.rego` file below `dir` (recursively, sorted by path), skipping Rego unit
/// test files (`*_test.rego`), hidden entries and the top-level [`PACKS_SUBDIR`].
///
/// Errors: [`PolicyLoadError::Io`] when `dir` is not a readable directory or a file cannot be
/// read (a file that is not UTF-8 is an error too).
pub fn read_policy_dir(dir: &Path) -> Result<Vec<PolicySource>, PolicyLoadError> {
    read_rego_files(dir, false)
}

/// Like [`read_policy_dir`], with the Rego unit test files (`*_test.rego`) and the
/// [`PACKS_SUBDIR`] too (for `aaf policy test`).
///
/// Errors: as [`read_policy_dir`].
pub fn read_policy_dir_with_tests(dir: &Path) -> Result<Vec<PolicySource>, PolicyLoadError> {
    read_rego_files(dir, true)
}

fn read_rego_files(dir: &Path, with_tests: bool) -> Result<Vec<PolicySource>, PolicyLoadError> {
    let mut files = Vec::new();
    collect(dir, &mut files, with_tests)?;
    if !with_tests {
        let packs = dir.join(PACKS_SUBDIR);
        files.retain(|f| !f.starts_with(&packs));
    }
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let rego = std::fs::read_to_string(&path)
                .map_err(|e| PolicyLoadError::Io(format!("{}: {e}", path.display())))?;
            Ok(PolicySource {
                path: path.display().to_string(),
                rego,
            })
        })
        .collect()
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>, with_tests: bool) -> Result<(), PolicyLoadError> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| PolicyLoadError::Io(format!("{}: {e}", dir.display())))?;
    for entry in entries {
        let entry = entry.map_err(|e| PolicyLoadError::Io(format!("{}: {e}", dir.display())))?;
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().to_string();
        if name.starts_with('.') {
            continue;
        }
        let file_type = entry
            .file_type()
            .map_err(|e| PolicyLoadError::Io(format!("{}: {e}", path.display())))?;
        if file_type.is_dir() {
            collect(&path, out, with_tests)?;
        } else if name.ends_with(".rego") && (with_tests || !name.ends_with("_test.rego")) {
            out.push(path);
        }
    }
    Ok(())
}

/// Reads the modules of `dir`, or the bundled starter policy when `dir` does not exist.
///
/// Errors: unreadable files ([`PolicyLoadError::Io`]).
pub fn load_sources(dir: &Path) -> Result<(Vec<PolicySource>, PolicyOrigin), PolicyLoadError> {
    if dir.exists() {
        Ok((
            read_policy_dir(dir)?,
            PolicyOrigin::Directory(dir.to_path_buf()),
        ))
    } else {
        Ok((
            vec![PolicySource {
                path: STARTER_POLICY_PATH.to_string(),
                rego: STARTER_POLICY.to_string(),
            }],
            PolicyOrigin::BundledStarter(dir.to_path_buf()),
        ))
    }
}

/// Loads the policies of `dir`, or the bundled starter policy when `dir` does not exist.
///
/// Errors: unreadable files ([`PolicyLoadError::Io`]) and invalid modules
/// ([`PolicyLoadError::Invalid`]). An existing directory with no `.rego` files is not an
/// error: the set is empty and every action is denied.
pub fn load_policies(
    dir: &Path,
    options: EvaluatorOptions,
) -> Result<(PolicySet, PolicyOrigin), PolicyLoadError> {
    let (sources, origin) = load_sources(dir)?;
    let set = PolicySet::load(sources, options).map_err(PolicyLoadError::Invalid)?;
    Ok((set, origin))
}
