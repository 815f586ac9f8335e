//! `ps`: the processes of a container, found by the host pids in its cgroup. `json` is what
//! containerd's `ctr task ps` and `docker top` read; `table` filters the host's ps(1) output.

use std::path::Path;
use std::process::Command;

use crate::cgroups;
use crate::error::{Error, Result};
use crate::state::{self, Status};

/// The host pids of every process in the container's cgroup, sorted.
pub fn pids(root: &Path, id: &str) -> Result<Vec<i32>> {
    let st = state::read_unlocked(root, id)?;
    let status = st.status(&root.join(id));
    if status == Status::Stopped {
        return Err(Error::WrongState {
            id: id.into(),
            status: status.to_string(),
            action: "a stopped container has no processes to list",
        });
    }
    let mut pids = cgroups::pids(&st.cgroup_path)?;
    pids.sort_unstable();
    Ok(pids)
}

/// Runs the host's `ps` with `options` (default `-ef`) and keeps its header and the rows of the
/// container's processes.
pub fn table(root: &Path, id: &str, options: &[String]) -> Result<String> {
    let pids = pids(root, id)?;
    let default = ["-ef".to_string()];
    let options = if options.is_empty() {
        &default[..]
    } else {
        options
    };
    let out = Command::new("ps")
        .args(options)
        .output()
        .map_err(|e| Error::io("run ps", "ps", e))?;
    if !out.status.success() {
        return Err(Error::Other(format!(
            "ps {}: {}: {}",
            options.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    filter_table(&String::from_utf8_lossy(&out.stdout), &pids)
}

/// Keeps the header and the rows whose PID column (found by name in the header) is one of
/// `pids`.
pub fn filter_table(output: &str, pids: &[i32]) -> Result<String> {
    let mut lines = output.lines();
    let header = lines
        .next()
        .ok_or_else(|| Error::Other("ps printed nothing".into()))?;
    let col = header
        .split_whitespace()
        .position(|h| h == "PID")
        .ok_or_else(|| {
            Error::Other(format!(
                "ps output has no PID column (header {header:?}): its options must include one"
            ))
        })?;
    let mut kept = format!("{header}\n");
    for line in lines {
        let pid = line
            .split_whitespace()
            .nth(col)
            .and_then(|f| f.parse::<i32>().ok());
        if pid.is_some_and(|p| pids.contains(&p)) {
            kept.push_str(line);
            kept.push('\n');
        }
    }
    Ok(kept)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_header_and_container_rows() {
        let out = "UID          PID    PPID  C STIME TTY          TIME CMD\n\
                   root           1       0  0 10:00 ?        00:00:01 /sbin/init\n\
                   root        4242       1  0 10:01 ?        00:00:00 sleep 30\n\
                   root        4243    4242  0 10:01 ?        00:00:00 sh\n";
        let t = filter_table(out, &[4242, 4243]).unwrap();
        assert_eq!(t.lines().count(), 3);
        assert!(t.starts_with("UID"));
        assert!(!t.contains("/sbin/init"));
    }

    #[test]
    fn pid_column_found_by_name() {
        let out = "USER PID COMMAND\nroot 7 x\nroot 8 y\n";
        assert_eq!(
            filter_table(out, &[8]).unwrap(),
            "USER PID COMMAND\nroot 8 y\n"
        );
        assert!(filter_table("USER COMMAND\nroot x\n", &[1]).is_err());
    }
}
