//! `events`: a container's resource usage as runc prints it, once (`--stats`) or as a stream of
//! one JSON object per line: a `stats` event every interval and an `oom` event as soon as the
//! container's memory cgroup runs out of memory. The stream ends when the container's init
//! exits.
//!
//! The loop waits on file descriptors only: the init's pidfd (its exit), the OOM source (v1: an
//! eventfd registered on `memory.oom_control`; v2: `memory.events`, whose changes wake a poll
//! for POLLPRI), with the time to the next stats tick as the poll timeout.

use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom};
use std::os::fd::{AsFd, AsRawFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::eventfd::{EfdFlags, EventFd};
use serde::Serialize;

use crate::cgroups::{self, stats::Stats};
use crate::error::{Error, Result, SysContext};
use crate::state::{self, Status};
use crate::{logging, sys};

/// runc's default `--interval`.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);

/// One line of output: `{"type":"stats","id":..,"data":{..}}` or `{"type":"oom","id":..}`.
#[derive(Serialize, Debug)]
pub struct Event<'a> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<Stats>,
}

/// What the caller does with each event; `false` ends the stream (the reader went away).
pub type Sink<'s> = dyn FnMut(&Event) -> bool + 's;

/// `events --stats`: one stats event, for a container that is not stopped.
pub fn stats_once(root: &Path, id: &str, sink: &mut Sink) -> Result<()> {
    let st = load_live(root, id)?;
    let data = cgroups::stats::read(&st.cgroup_path)?;
    sink(&Event {
        kind: "stats",
        id,
        data: Some(data),
    });
    Ok(())
}

/// `events`: stats every `interval` and OOM events until the container's init exits.
pub fn stream(root: &Path, id: &str, interval: Duration, sink: &mut Sink) -> Result<()> {
    if interval.is_zero() {
        return Err(Error::Other(
            "duration interval must be greater than 0".into(),
        ));
    }
    let st = load_live(root, id)?;
    let pidfd = match sys::pidfd_open(st.oci.pid) {
        Ok(fd) => fd,
        Err(Errno::ESRCH) => return Ok(()),
        Err(e) => return Err(Error::sys("open the init's pidfd", e)),
    };
    // The pid may have been recycled between the status check and the open.
    if !state::init_alive(st.oci.pid, st.init_start_time) {
        return Ok(());
    }
    let mut oom = match OomWatch::new(&st.cgroup_path) {
        Ok(w) => Some(w),
        Err(e) => {
            logging::warn(&format!("no oom events for {id}: {e}"));
            None
        }
    };
    let mut next = Instant::now() + interval;
    loop {
        let now = Instant::now();
        if now >= next {
            match cgroups::stats::read(&st.cgroup_path) {
                Ok(data) => {
                    let ev = Event {
                        kind: "stats",
                        id,
                        data: Some(data),
                    };
                    if !sink(&ev) {
                        return Ok(());
                    }
                }
                // As runc: a failed read is logged and the stream goes on.
                Err(e) => logging::error(&format!("stats of {id}: {e}")),
            }
            // A slow sink or a suspended host must not cause a burst of catch-up events.
            next += interval;
            if next <= Instant::now() {
                next = Instant::now() + interval;
            }
            continue;
        }
        let wait = next - now;
        let (init_exited, oom_ready) = {
            let mut fds = vec![PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
            if let Some(w) = &oom {
                fds.push(PollFd::new(w.fd(), w.flags()));
            }
            match poll(&mut fds, poll_timeout(wait)) {
                Ok(_) => {}
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(Error::sys("wait for container events", e)),
            }
            let ready = |f: &PollFd| f.revents().is_some_and(|r| !r.is_empty());
            (ready(&fds[0]), fds.get(1).is_some_and(ready))
        };
        // OOM first: the kill that ends the container comes with its OOM event.
        if oom_ready || init_exited {
            if let Some(w) = &mut oom {
                match w.check(oom_ready) {
                    Check::Oom => {
                        if !sink(&Event {
                            kind: "oom",
                            id,
                            data: None,
                        }) {
                            return Ok(());
                        }
                    }
                    Check::OomThenGone => {
                        sink(&Event {
                            kind: "oom",
                            id,
                            data: None,
                        });
                        return Ok(());
                    }
                    Check::Nothing => {}
                    // The cgroup is gone: so is the container (runc ends the stream here too).
                    Check::Gone => return Ok(()),
                }
            }
        }
        if init_exited {
            return Ok(());
        }
    }
}

/// poll(2) counts milliseconds in an i32; round up so a tick is never early, and wait at most
/// an hour at a time (the loop recomputes).
fn poll_timeout(d: Duration) -> PollTimeout {
    let ms = d.as_micros().div_ceil(1000).min(3_600_000) as i32;
    PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX)
}

fn load_live(root: &Path, id: &str) -> Result<state::ContainerState> {
    let st = state::read_unlocked(root, id)?;
    if st.status(&root.join(id)) == Status::Stopped {
        return Err(Error::NotRunning(id.into()));
    }
    Ok(st)
}

enum Check {
    Oom,
    Nothing,
    Gone,
    /// The OOM that killed the container, seen once its cgroup was already gone.
    OomThenGone,
}

/// The source of OOM notifications of the container's memory cgroup.
enum OomWatch {
    /// v1: the eventfd the kernel signals on each OOM (and when the cgroup is removed).
    V1 {
        efd: EventFd,
        /// Kept open: the registration lasts as long as the control file is open.
        _control: File,
        event_control: PathBuf,
    },
    /// v2: memory.events, open for POLLPRI, and the OOM count last seen; the parent's
    /// memory.events (hierarchical: it counts the container's OOMs too) and its count at the
    /// last read.
    V2 {
        file: File,
        count: u64,
        parent: PathBuf,
        parent_count: Option<u64>,
    },
}

impl OomWatch {
    fn new(cgroup_path: &Path) -> Result<OomWatch> {
        let rel = cgroup_path.strip_prefix("/").unwrap_or(cgroup_path);
        let root = Path::new("/sys/fs/cgroup");
        if cgroups::is_unified() {
            let path = root.join(rel).join("memory.events");
            let mut file =
                File::open(&path).map_err(|e| Error::io("open memory.events", &path, e))?;
            let count = oom_count(
                &read_from_start(&mut file)
                    .map_err(|e| Error::io("read memory.events", &path, e))?,
            );
            let parent = root
                .join(rel)
                .parent()
                .unwrap_or(root)
                .join("memory.events");
            let parent_count = fs::read_to_string(&parent).ok().map(|t| oom_count(&t));
            return Ok(OomWatch::V2 {
                file,
                count,
                parent,
                parent_count,
            });
        }
        let dir = root.join("memory").join(rel);
        let control_path = dir.join("memory.oom_control");
        let control = File::open(&control_path)
            .map_err(|e| Error::io("open memory.oom_control", &control_path, e))?;
        let efd =
            EventFd::from_flags(EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK).step("eventfd")?;
        let event_control = dir.join("cgroup.event_control");
        let line = format!("{} {}", efd.as_fd().as_raw_fd(), control.as_raw_fd());
        fs::write(&event_control, line)
            .map_err(|e| Error::io("register for oom events", &event_control, e))?;
        Ok(OomWatch::V1 {
            efd,
            _control: control,
            event_control,
        })
    }

    fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        match self {
            OomWatch::V1 { efd, .. } => efd.as_fd(),
            OomWatch::V2 { file, .. } => file.as_fd(),
        }
    }

    /// kernfs signals a changed file as POLLPRI (a regular file is always readable).
    fn flags(&self) -> PollFlags {
        match self {
            OomWatch::V1 { .. } => PollFlags::POLLIN,
            OomWatch::V2 { .. } => PollFlags::POLLPRI,
        }
    }

    /// Whether an OOM happened since the last check; never blocks. `notified`: the fd polled
    /// ready.
    fn check(&mut self, notified: bool) -> Check {
        match self {
            OomWatch::V1 {
                efd, event_control, ..
            } => match efd.read() {
                Ok(_) if !event_control.exists() => Check::Gone,
                Ok(_) => Check::Oom,
                Err(_) => Check::Nothing,
            },
            OomWatch::V2 {
                file,
                count,
                parent,
                parent_count,
            } => match read_from_start(file) {
                Ok(text) => {
                    let now = oom_count(&text);
                    let rose = now > *count;
                    *count = now;
                    // The parent's count as of now: only an OOM after this read can account
                    // for a rise seen once the container's cgroup is gone.
                    if let Ok(t) = fs::read_to_string(&*parent) {
                        *parent_count = Some(oom_count(&t));
                    }
                    if rose {
                        Check::Oom
                    } else {
                        Check::Nothing
                    }
                }
                // A removed cgroup's files fail to read (and would poll ready forever). The
                // kill that ends the container can empty the cgroup, and systemd or `run`'s
                // delete remove it, before this read: a notification of the container's own
                // memory.events, with the parent's OOM count up since the last read, was it.
                Err(_) => {
                    let parent_rose = parent_count.is_some_and(|before| {
                        fs::read_to_string(&*parent).is_ok_and(|t| oom_count(&t) > before)
                    });
                    if notified && parent_rose {
                        Check::OomThenGone
                    } else {
                        Check::Gone
                    }
                }
            },
        }
    }
}

/// Reading a kernfs file again from its start also re-arms its POLLPRI notification.
fn read_from_start(f: &mut File) -> std::io::Result<String> {
    f.seek(SeekFrom::Start(0))?;
    let mut s = String::new();
    f.read_to_string(&mut s)?;
    Ok(s)
}

/// OOM situations in memory.events: `oom` (reclaim failed at the limit) and `oom_kill` (a
/// process killed for it); either rising is an OOM event. Their sum only grows.
pub fn oom_count(memory_events: &str) -> u64 {
    memory_events
        .lines()
        .filter_map(|l| l.split_once(' '))
        .filter(|(k, _)| *k == "oom" || *k == "oom_kill")
        .filter_map(|(_, v)| v.trim().parse::<u64>().ok())
        .fold(0u64, u64::saturating_add)
}

/// Parses a duration as Go's `time.ParseDuration` does (runc's `--interval` is one): a sequence
/// of decimal numbers, each with an optional fraction and a unit (`ns`, `us`/`µs`, `ms`, `s`,
/// `m`, `h`), such as `300ms`, `1.5s` or `1h2m3s`; `0` alone needs no unit. Negative durations,
/// which Go accepts, are refused: nothing in berth can use one.
pub fn parse_go_duration(s: &str) -> std::result::Result<Duration, String> {
    let invalid = |why: &str| format!("invalid duration {s:?}: {why}");
    let mut rest = s;
    if let Some(r) = rest.strip_prefix('+') {
        rest = r;
    } else if rest.starts_with('-') {
        return Err(invalid("it must not be negative"));
    }
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        return Err(invalid("it is empty"));
    }
    const UNITS: &[(&str, u128)] = &[
        ("ns", 1),
        ("us", 1_000),
        ("µs", 1_000),
        ("μs", 1_000),
        ("ms", 1_000_000),
        ("s", 1_000_000_000),
        ("m", 60_000_000_000),
        ("h", 3_600_000_000_000),
    ];
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let int_len = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let (int, after) = rest.split_at(int_len);
        let (frac, after) = match after.strip_prefix('.') {
            Some(a) => {
                let n = a.find(|c: char| !c.is_ascii_digit()).unwrap_or(a.len());
                a.split_at(n)
            }
            None => ("", after),
        };
        if int.is_empty() && frac.is_empty() {
            return Err(invalid("expected a number"));
        }
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        if unit.is_empty() {
            return Err(invalid("a unit (ns, us, ms, s, m, h) is missing"));
        }
        let Some(&(_, scale)) = UNITS.iter().find(|(u, _)| *u == unit) else {
            return Err(invalid(&format!("unknown unit {unit:?}")));
        };
        let too_big = || invalid("it is too large");
        // Digits past nanosecond precision only matter for their value, not their count.
        let int_v: u128 = if int.is_empty() {
            0
        } else {
            int.parse().map_err(|_| too_big())?
        };
        let mut part = int_v.checked_mul(scale).ok_or_else(too_big)?;
        let frac = &frac[..frac.len().min(18)];
        if !frac.is_empty() {
            let f: u128 = frac.parse().map_err(|_| too_big())?;
            part += f * scale / 10u128.pow(frac.len() as u32);
        }
        total = total.checked_add(part).ok_or_else(too_big)?;
        rest = after;
    }
    // Go's durations are int64 nanoseconds.
    if total > i64::MAX as u128 {
        return Err(invalid("it is too large"));
    }
    Ok(Duration::from_nanos(total as u64))
}

/// `--interval`: a Go duration greater than zero.
pub fn parse_interval(s: &str) -> std::result::Result<Duration, String> {
    let d = parse_go_duration(s)?;
    if d.is_zero() {
        return Err("duration interval must be greater than 0".into());
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("1s"), Ok(ms(1000)));
        assert_eq!(parse_go_duration("100ms"), Ok(ms(100)));
        assert_eq!(parse_go_duration("1m30s"), Ok(ms(90_000)));
        assert_eq!(parse_go_duration("1.5s"), Ok(ms(1500)));
        assert_eq!(parse_go_duration(".5s"), Ok(ms(500)));
        assert_eq!(parse_go_duration("1.s"), Ok(ms(1000)));
        assert_eq!(parse_go_duration("+2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_go_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_go_duration("0s"), Ok(Duration::ZERO));
        assert_eq!(
            parse_go_duration("1h2m3s4ms5us6ns"),
            Ok(Duration::new(3723, 4_005_006))
        );
        assert_eq!(parse_go_duration("3µs"), Ok(Duration::from_micros(3)));
        assert_eq!(parse_go_duration("3μs"), Ok(Duration::from_micros(3)));
        assert_eq!(
            parse_go_duration("0.000000001s"),
            Ok(Duration::from_nanos(1))
        );
        assert_eq!(parse_go_duration("1.0000000001s"), Ok(ms(1000)));
    }

    #[test]
    fn go_duration_garbage() {
        for bad in [
            "",
            "5",
            "s",
            "1x",
            "1.2.3s",
            "abc",
            "1s2",
            ".s",
            "-1s",
            "1 s",
            "1S",
            "1sec",
            "9999999999999999999999h",
            "3000000h",
        ] {
            let e = parse_go_duration(bad);
            assert!(e.is_err(), "{bad:?} parsed as {e:?}");
            assert!(e.unwrap_err().contains("invalid duration"));
        }
    }

    #[test]
    fn interval_must_be_positive() {
        assert_eq!(parse_interval("200ms"), Ok(ms(200)));
        assert!(parse_interval("0").unwrap_err().contains("greater than 0"));
        assert!(parse_interval("0ms").is_err());
    }

    #[test]
    fn oom_counts() {
        let ev = "low 0\nhigh 0\nmax 12\noom 2\noom_kill 1\noom_group_kill 0\n";
        assert_eq!(oom_count(ev), 3);
        assert_eq!(oom_count("max 5\n"), 0);
        assert_eq!(oom_count(""), 0);
    }

    #[test]
    fn event_json() {
        let oom = Event {
            kind: "oom",
            id: "c1",
            data: None,
        };
        assert_eq!(
            serde_json::to_string(&oom).unwrap(),
            r#"{"type":"oom","id":"c1"}"#
        );
        let stats = Event {
            kind: "stats",
            id: "c1",
            data: Some(Stats::default()),
        };
        let v = serde_json::to_value(&stats).unwrap();
        assert_eq!(v["type"], "stats");
        assert!(v["data"]["cpu"].is_object());
    }

    #[test]
    fn poll_timeouts_round_up() {
        assert_eq!(
            poll_timeout(Duration::from_micros(1500)),
            PollTimeout::from(2u16)
        );
        assert_eq!(poll_timeout(ms(0)), PollTimeout::ZERO);
        assert_eq!(
            poll_timeout(Duration::from_secs(1 << 40)),
            PollTimeout::try_from(3_600_000).unwrap()
        );
    }
}
