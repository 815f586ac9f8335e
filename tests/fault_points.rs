//! Every step of create, start, exec and delete must be a fault point, so that the
//! reliability suite (`make test-faults`, which learns the points from a trace) walks it.
//!
//! A step is a statement that can fail (`?`) in the functions that make up the lifecycle. It is
//! a fault point when it goes through one of the helpers that are points: `in_step` (the
//! children's named steps), `logging::timed`, a named system call (`.step`, `.with_step`), a
//! sync message (`send`, `expect`), a state save, or `record` (create's record of a process).
//! Statements that only read the config are listed by hand below, each with its reason.

use std::fs;

/// (file, function) pairs whose statements are steps.
const STEP_FUNCTIONS: &[(&str, &str)] = &[
    ("src/init.rs", "fn stage_steps"),
    ("src/init.rs", "fn init_steps"),
    ("src/init.rs", "fn exec_steps"),
    ("src/spawn.rs", "fn spawn_inner"),
    ("src/lifecycle.rs", "fn create_from"),
    ("src/lifecycle.rs", "fn create_in"),
    ("src/lifecycle.rs", "pub fn start"),
    ("src/lifecycle.rs", "fn destroy"),
];

/// The helpers that are fault points.
const POINTS: &[&str] = &[
    "in_step(",
    "timed(",
    ".step(",
    "with_step(",
    ".send(",
    ".send_with_fds(",
    ".expect(",
    "expect_one_of(",
    ".save(",
    "record(",
    "StateDir::",
    "dir.remove(",
];

/// Fallible statements that are not steps: they read what create was given.
const NOT_STEPS: &[&str] = &[
    // The config's own parts, missing ones refused before anything is made.
    ".ok_or_else(|| Error::config(",
    // Lookups done before the state record exists (nothing made yet).
    "let mut record = intent(",
    "let plan = NsPlan::new(",
    // Opening files to read only (no resource is made).
    "open_bind_sources(",
    "let (parent_chan, child_chan) = channel::pair()",
    // A pure computation of the hooks' state JSON.
    "hook_state(",
    // The procfs write of oomScoreAdj names its field; it is inside the timed cgroup step.
    "Error::config(\"process.oomScoreAdj\"",
    // The stage's pid: served by messages that are points themselves.
    "serve_stage(",
    "reap_stage(",
    // A lookup of the pidfd the relay waits on (start).
    "crate::notify::bind(",
    "sys::pidfd_open(st.oci.pid)",
    "let st = dir.load()",
];

fn body<'a>(src: &'a str, sig: &str) -> &'a str {
    let start = src
        .find(&format!("{sig}("))
        .or_else(|| src.find(&format!("{sig}<")))
        .unwrap_or_else(|| panic!("{sig} not found"));
    let open = start + src[start..].find('{').expect("body");
    let mut depth = 0;
    for (i, c) in src[open..].char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return &src[open + 1..open + i];
                }
            }
            _ => {}
        }
    }
    panic!("unbalanced {sig}");
}

/// Top-level statements of a body (split at `;` and at closing braces of block statements,
/// at nesting depth 0), with line comments removed.
fn statements(body: &str) -> Vec<String> {
    let text: String = body
        .lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n");
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut depth = 0i32;
    let chars: Vec<char> = text.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        cur.push(c);
        match c {
            '{' | '(' | '[' => depth += 1,
            ')' | ']' => depth -= 1,
            '}' => {
                depth -= 1;
                // A block statement (`if … { … }` with no `else` after it) ends here.
                let rest: String = chars[i + 1..].iter().collect();
                let block = ["if ", "for ", "while ", "loop ", "match "]
                    .iter()
                    .any(|k| cur.trim_start().starts_with(k));
                if depth == 0 && block && !rest.trim_start().starts_with("else") {
                    out.push(std::mem::take(&mut cur));
                }
            }
            ';' if depth == 0 => {
                out.push(std::mem::take(&mut cur));
            }
            _ => {}
        }
    }
    out.push(cur);
    out.into_iter()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

#[test]
fn every_fallible_step_is_a_fault_point() {
    let mut missing = Vec::new();
    for (file, sig) in STEP_FUNCTIONS {
        let src = fs::read_to_string(file).expect("source");
        for st in statements(body(&src, sig)) {
            if !st.contains('?') {
                continue;
            }
            if POINTS.iter().any(|p| st.contains(p)) || NOT_STEPS.iter().any(|n| st.contains(n)) {
                continue;
            }
            missing.push(format!("{file} {sig}: {}", st.replace('\n', " ")));
        }
    }
    assert!(
        missing.is_empty(),
        "steps without a fault point (wrap them in in_step / logging::timed, or name the \
         syscall with .step):\n{}",
        missing.join("\n")
    );
}

#[test]
fn the_check_sees_a_bare_step() {
    // The check itself must be able to fail: a bare call is reported.
    let src = "fn init_steps() { in_step(\"a\", || x())?; if y { in_step(\"b\", || z())?; } \
               rootfs::bare()?; Ok(()) }";
    let bare: Vec<String> = statements(body(src, "fn init_steps"))
        .into_iter()
        .filter(|s| s.contains('?') && !POINTS.iter().any(|p| s.contains(p)))
        .collect();
    assert_eq!(bare, vec!["rootfs::bare()?;".to_string()]);
}
