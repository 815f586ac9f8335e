//! Records the git commit berth is built from, for `berth --version` (Docker and Podman read
//! its `commit:` line). Outside a git checkout, or without git, the commit is "unknown": a
//! build must never fail for want of it.

use std::process::Command;

fn main() {
    let commit = Command::new("git")
        .args(["rev-parse", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=BERTH_COMMIT={commit}");
    // A new commit or checkout moves HEAD or the branch it names. In a worktree the branch
    // lives in the common git dir, which `--git-path` resolves.
    if let Some(head) = git_path("HEAD") {
        println!("cargo:rerun-if-changed={head}");
        let target = std::fs::read_to_string(&head).unwrap_or_default();
        if let Some(r) = target.trim().strip_prefix("ref: ") {
            for p in [r, "packed-refs"].iter().filter_map(|p| git_path(p)) {
                if std::path::Path::new(&p).exists() {
                    println!("cargo:rerun-if-changed={p}");
                }
            }
        }
    }
    println!("cargo:rerun-if-changed=build.rs");
}

fn git_path(name: &str) -> Option<String> {
    Command::new("git")
        .args(["rev-parse", "--git-path", name])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
}
