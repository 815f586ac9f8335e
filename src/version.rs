//! What `berth --version` prints: runc's layout (Docker and Podman parse these lines) with
//! berth's name.

/// The git commit berth was built from (see build.rs), or "unknown".
pub const COMMIT: &str = env!("BERTH_COMMIT");

/// The lines after the program name: `version X.Y.Z`, `commit: …`, `spec: …`. berth has no
/// libseccomp (it compiles seccomp filters itself), so runc's `libseccomp:` line is left out.
pub fn text() -> String {
    format!(
        "version {}\ncommit: {COMMIT}\nspec: {}",
        env!("CARGO_PKG_VERSION"),
        crate::state::OCI_VERSION
    )
}
