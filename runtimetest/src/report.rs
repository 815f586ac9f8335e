//! Result lines: `ok - <what>` / `not ok - <what>: expected <x>, got <y>`.

use std::fmt::Display;
use std::io::Write;

#[derive(Default)]
pub struct Report {
    pub passed: usize,
    pub failed: usize,
}

/// Write a line to stdout, ignoring errors (stdout may be closed).
pub fn out(line: &str) {
    let stdout = std::io::stdout();
    let mut lock = stdout.lock();
    let _ = writeln!(lock, "{line}");
    let _ = lock.flush();
}

impl Report {
    pub fn ok(&mut self, what: &str) {
        self.passed += 1;
        out(&format!("ok - {what}"));
    }

    pub fn fail(&mut self, what: &str, expected: impl Display, got: impl Display) {
        self.failed += 1;
        out(&format!("not ok - {what}: expected {expected}, got {got}"));
    }

    /// Pass when `cond`, else fail with the given expected/got texts.
    pub fn check_that(
        &mut self,
        what: &str,
        cond: bool,
        expected: impl Display,
        got: impl Display,
    ) {
        if cond {
            self.ok(what);
        } else {
            self.fail(what, expected, got);
        }
    }

    /// Pass when the two values are equal.
    pub fn check_eq<T: PartialEq + Display>(&mut self, what: &str, expected: T, got: T) {
        let c = expected == got;
        self.check_that(what, c, expected, got);
    }

    /// A check that could not be carried out; not counted either way.
    pub fn skip(&mut self, what: &str, why: impl Display) {
        out(&format!("# skip - {what}: {why}"));
    }

    pub fn summary(&self) {
        out(&format!(
            "runtimetest: {} passed, {} failed",
            self.passed, self.failed
        ));
    }
}
