//! One hyperfine measurement: no shell between hyperfine and the command (`-N`), its JSON
//! export read back for the median.

use crate::proc::{self, failed, Fail, Scratch};
use serde_json::Value;
use std::process::Command;
use std::time::Duration;

/// How long one runtime command may take before it counts as a hang (they take milliseconds;
/// this leaves room for a loaded host).
pub const STUCK: Duration = Duration::from_secs(20);

/// A deadline for `runs` timed runs of up to `each`.
pub fn deadline(runs: u32, each: Duration) -> Duration {
    Duration::from_secs(60) + each * runs
}

pub struct Job<'a> {
    /// A command line; hyperfine splits it as a shell would, and runs it without one.
    pub command: String,
    /// Run before each timed run (and each warmup), untimed.
    pub prepare: Option<String>,
    pub runs: u32,
    pub warmup: u32,
    pub env: &'a [(String, String)],
    /// How long one process under hyperfine (a shell aside) may live before it counts as a
    /// hang.
    pub stuck: Duration,
    /// The whole job's deadline, a backstop.
    pub timeout: Duration,
}

pub struct Stats {
    /// Seconds.
    pub median: f64,
    /// hyperfine's own record of the runs.
    pub raw: Value,
}

pub fn hyperfine(job: &Job, scratch: &mut Scratch) -> Result<Stats, Fail> {
    let json = scratch.file("hyperfine.json");
    let mut c = Command::new("hyperfine");
    // --output=inherit: the runs write where hyperfine does, into the scratch files, so a
    // failed run's own error message is kept (there is nothing to write on success).
    c.args(["-N", "--style", "none", "--output", "inherit"])
        .args(["--runs", &job.runs.to_string()])
        .args(["--warmup", &job.warmup.to_string()])
        .arg("--export-json")
        .arg(&json);
    if let Some(p) = &job.prepare {
        c.args(["--prepare", p]);
    }
    c.arg(&job.command);
    c.envs(job.env.iter().map(|(k, v)| (k, v)));
    let done = proc::run_limited(&mut c, scratch, job.timeout, Some(job.stuck))?;
    let text = std::fs::read_to_string(&json);
    let _ = std::fs::remove_file(&json);
    if !done.status.success() {
        // hyperfine got the terminal's SIGINT too, and may have ended before we looked.
        if proc::interrupted() {
            return Err(Fail::Interrupted);
        }
        let said = proc::gist(&done.stderr);
        let why = diagnose(job, scratch);
        return Err(failed(format!("`{}`: {said}{why}", job.command)));
    }
    let text = text.map_err(|e| failed(format!("hyperfine wrote no JSON: {e}")))?;
    let v: Value =
        serde_json::from_str(&text).map_err(|e| failed(format!("hyperfine's JSON: {e}")))?;
    let raw = v["results"][0].clone();
    let median = raw["median"]
        .as_f64()
        .ok_or_else(|| failed("hyperfine's JSON has no median"))?;
    Ok(Stats { median, raw })
}

/// hyperfine only says a command failed: run it once more through sh to show why.
fn diagnose(job: &Job, scratch: &mut Scratch) -> String {
    let prepare = job
        .prepare
        .as_deref()
        .map(|p| format!("{p} || {{ echo '(prepare failed)' >&2; exit 1; }}; "))
        .unwrap_or_default();
    let mut c = Command::new("sh");
    c.arg("-c").arg(format!("{prepare}{}", job.command));
    c.envs(job.env.iter().map(|(k, v)| (k, v)));
    match proc::run_limited(&mut c, scratch, job.timeout, Some(job.stuck)) {
        Ok(d) if d.status.success() => " (it succeeded when run again alone)".into(),
        Ok(d) => format!(" — run again: {}", d.why("exit")),
        Err(e) => format!(" — run again: {e}"),
    }
}
