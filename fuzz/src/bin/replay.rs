//! Replays the fuzz corpora through the fuzz targets, without libFuzzer: what `.ci/run` runs
//! (through `fuzz/replay.sh`) so that every input a fuzzing campaign kept, and every
//! reproducer of a fixed finding, is checked again on each change.
//!
//! Usage: `replay [CORPUS_DIR]` (default `fuzz/corpus` of this crate). Each target's inputs are
//! the files of `CORPUS_DIR/<target>/`; a target without a directory has no inputs. Every
//! input runs in this process, in file-name order; an input whose target panics is a
//! failure, named on stderr. The last line is `replay: N passed, M failed`; the exit status
//! is 1 when any input failed or a directory could not be read.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

fn inputs(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    if !dir.exists() {
        return Ok(Vec::new());
    }
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

fn main() -> ExitCode {
    let corpus = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus"));
    let mut passed = 0usize;
    let mut failed = 0usize;
    for (name, target) in aaf_fuzz::TARGETS {
        let dir = corpus.join(name);
        let files = match inputs(&dir) {
            Ok(files) => files,
            Err(error) => {
                eprintln!("replay: cannot read {}: {error}", dir.display());
                failed += 1;
                continue;
            }
        };
        let started = std::time::Instant::now();
        let mut target_failed = 0usize;
        for file in &files {
            let data = match std::fs::read(file) {
                Ok(data) => data,
                Err(error) => {
                    eprintln!("replay: cannot read {}: {error}", file.display());
                    target_failed += 1;
                    continue;
                }
            };
            if std::panic::catch_unwind(|| target(&data)).is_err() {
                eprintln!("replay: FAILED {name} on {}", file.display());
                target_failed += 1;
            }
        }
        println!(
            "replay: {name}: {} inputs, {} failed, {:.1} s",
            files.len(),
            target_failed,
            started.elapsed().as_secs_f64()
        );
        passed += files.len().saturating_sub(target_failed);
        failed += target_failed;
    }
    println!("replay: {passed} passed, {failed} failed");
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
