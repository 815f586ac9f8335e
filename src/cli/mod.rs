//! Command-line surface: runc's global flags and verbs, parsed by clap. No system calls here.

use std::path::PathBuf;

use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};

mod parse;
pub use parse::parse;

#[derive(Parser, Debug)]
#[command(
    name = "berth",
    // `-v`/`--version` below, as runc spells it; the text is set at run time (parse.rs).
    disable_version_flag = true,
    about = "berth: an OCI container runtime (runc-compatible CLI)",
    long_about = "berth runs OCI bundles (a config.json plus a root filesystem) as isolated \
Linux containers. It speaks runc's command line, so containerd, Docker and Podman can use it \
as their runtime.\n\nTypical use by hand:\n  berth spec                 # write a default config.json\n  \
berth run -b BUNDLE ID     # create, start and wait for a container\n  berth list                 \
# show containers under --root"
)]
pub struct Cli {
    /// Print the version
    #[arg(short = 'v', short_alias = 'V', long, action = ArgAction::Version)]
    pub version: Option<bool>,

    /// Directory holding container state
    #[arg(long, global = true, default_value = "/run/berth", value_name = "DIR")]
    pub root: PathBuf,

    /// Also write log records to this file
    #[arg(long, global = true, value_name = "FILE")]
    pub log: Option<PathBuf>,

    /// Format of log records
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Log debug records
    #[arg(long, global = true)]
    pub debug: bool,

    /// Treat cgroupsPath as systemd's slice:prefix:name
    #[arg(long, global = true)]
    pub systemd_cgroup: bool,

    /// Rootless mode (true, false or auto); with `spec`, write a rootless config
    #[arg(long, global = true, value_name = "VALUE", num_args = 0..=1, default_missing_value = "true")]
    pub rootless: Option<String>,

    /// Accepted for runc compatibility; ignored
    #[arg(long, global = true, hide = true)]
    pub criu: Option<String>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create a container from a bundle; its process waits for `start`
    Create(CreateArgs),
    /// Run the process of a created container
    Start(IdArg),
    /// Print a container's state as JSON
    State(IdArg),
    /// Send a signal to a container's init (default SIGTERM)
    Kill(KillArgs),
    /// Delete a stopped (or, with --force, any) container
    Delete(DeleteArgs),
    /// Create and start a container, and wait for it unless --detach
    Run(RunArgs),
    /// List containers under --root
    List(ListArgs),
    /// Freeze every process of a container
    Pause(IdArg),
    /// Thaw a paused container
    Resume(IdArg),
    /// Write a default config.json to the bundle
    Spec(SpecArgs),
    /// List the processes of a container (host pids)
    Ps(PsArgs),
    /// Print what berth implements, as OCI runtime features JSON
    Features,
    /// Print a container's resource usage (and OOM events) as JSON, one object per line
    #[command(
        long_about = "Print a container's resource usage statistics as runc does: with --stats \
one {\"type\":\"stats\",...} object, otherwise one every --interval and an \
{\"type\":\"oom\",...} object whenever the container runs out of memory, until the container \
stops.\n\nExamples:\n  berth events --stats ID\n  berth events --interval 1s ID"
    )]
    Events(EventsArgs),
    /// Run a new process inside a container
    #[command(
        long_about = "Run a new process inside an existing container: it joins the container's \
namespaces and cgroup and gets its capabilities, seccomp filter and labels.\n\n\
The process is the container's own with ARGS and the flags applied, or, with --process, the \
spec's process object from a file (as containerd and conmon send it).\n\n\
Examples:\n  berth exec ID ps aux\n  berth exec -t -u 1000:1000 --cwd /tmp ID sh\n  \
berth exec --process process.json --detach --pid-file exec.pid ID"
    )]
    Exec(Box<ExecArgs>),
    /// Change the resource limits of a live container
    #[command(
        long_about = "Change the resource limits of a created, running or paused container. \
Only the values given change; the rest stay as they are. Every value is checked against the \
host before anything is written, and the new values are kept in the container's state.\n\n\
--resources takes LinuxResources JSON (the spec's linux.resources object) from a file, or from \
stdin with '-'; the flags override it.\n\n\
Examples:\n  berth update --memory 256m --memory-swap 512m ID\n  berth update --pids-limit 100 ID\n  \
echo '{\"cpu\":{\"quota\":50000,\"period\":100000}}' | berth update -r - ID"
    )]
    Update(Box<UpdateArgs>),
}

/// Sizes: bytes, or a number with k, m, g, t or p (binary units); -1 for unlimited.
#[derive(Args, Debug)]
pub struct UpdateArgs {
    /// LinuxResources JSON from FILE, or '-' for stdin
    #[arg(short, long, value_name = "FILE|-")]
    pub resources: Option<PathBuf>,
    /// Memory limit
    #[arg(long, value_name = "SIZE", value_parser = berth::update::parse_bytes, allow_hyphen_values = true)]
    pub memory: Option<i64>,
    /// Memory plus swap limit; -1 for unlimited swap
    #[arg(long, value_name = "SIZE", value_parser = berth::update::parse_bytes, allow_hyphen_values = true)]
    pub memory_swap: Option<i64>,
    /// Memory soft limit
    #[arg(long, value_name = "SIZE", value_parser = berth::update::parse_bytes, allow_hyphen_values = true)]
    pub memory_reservation: Option<i64>,
    /// Kernel memory limit (cgroup v1 kernels that still have it)
    #[arg(long, value_name = "SIZE", value_parser = berth::update::parse_bytes, allow_hyphen_values = true)]
    pub kernel_memory: Option<i64>,
    /// Kernel TCP buffer limit (cgroup v1)
    #[arg(long, value_name = "SIZE", value_parser = berth::update::parse_bytes, allow_hyphen_values = true)]
    pub kernel_memory_tcp: Option<i64>,
    /// CPU shares (relative weight)
    #[arg(long, visible_alias = "cpu-share", value_name = "N")]
    pub cpu_shares: Option<u64>,
    /// CFS quota in microseconds per period; -1 for none
    #[arg(long, value_name = "USEC", allow_hyphen_values = true)]
    pub cpu_quota: Option<i64>,
    /// CFS period in microseconds
    #[arg(long, value_name = "USEC")]
    pub cpu_period: Option<u64>,
    /// CFS burst in microseconds
    #[arg(long, value_name = "USEC")]
    pub cpu_burst: Option<u64>,
    /// Real-time runtime in microseconds (cgroup v1)
    #[arg(long, value_name = "USEC", allow_hyphen_values = true)]
    pub cpu_rt_runtime: Option<i64>,
    /// Real-time period in microseconds (cgroup v1)
    #[arg(long, value_name = "USEC")]
    pub cpu_rt_period: Option<u64>,
    /// CPUs the container may use (e.g. 0-2,4)
    #[arg(long, value_name = "LIST")]
    pub cpuset_cpus: Option<String>,
    /// Memory nodes the container may use
    #[arg(long, value_name = "LIST")]
    pub cpuset_mems: Option<String>,
    /// Maximum number of tasks; -1 or 0 for unlimited
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub pids_limit: Option<i64>,
    /// Block I/O weight, 10 to 1000
    #[arg(long, value_name = "N")]
    pub blkio_weight: Option<u16>,
    /// Intel RDT L3 cache schema (refused: berth has no RDT support)
    #[arg(long, value_name = "SCHEMA")]
    pub l3_cache_schema: Option<String>,
    /// Intel RDT memory bandwidth schema (refused: berth has no RDT support)
    #[arg(long, value_name = "SCHEMA")]
    pub mem_bw_schema: Option<String>,
    /// Container id
    pub id: String,
}

#[derive(Args, Debug)]
pub struct ExecArgs {
    /// A process.json (the spec's process object); flags describing the process are ignored
    #[arg(short, long, value_name = "FILE")]
    pub process: Option<PathBuf>,
    /// Allocate a pseudo-terminal
    #[arg(short, long)]
    pub tty: bool,
    /// Unix socket that receives the pty master
    #[arg(long, value_name = "PATH")]
    pub console_socket: Option<PathBuf>,
    /// Return once the process has started
    #[arg(short, long)]
    pub detach: bool,
    /// Write the process's pid to this file
    #[arg(long, value_name = "FILE")]
    pub pid_file: Option<PathBuf>,
    /// Set an environment variable (repeatable)
    #[arg(short, long, value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Working directory in the container
    #[arg(long, value_name = "DIR")]
    pub cwd: Option<PathBuf>,
    /// User as uid[:gid]
    #[arg(short, long, value_name = "UID[:GID]")]
    pub user: Option<String>,
    /// Additional group id (repeatable)
    #[arg(short = 'g', long, value_name = "GID")]
    pub additional_gids: Vec<u32>,
    /// Add a capability (repeatable)
    #[arg(short, long, value_name = "CAP")]
    pub cap: Vec<String>,
    /// Set no_new_privs for the process
    #[arg(long)]
    pub no_new_privs: bool,
    /// AppArmor profile for the process
    #[arg(long, value_name = "PROFILE")]
    pub apparmor: Option<String>,
    /// SELinux label for the process
    #[arg(long, value_name = "LABEL")]
    pub process_label: Option<String>,
    /// Pass this many fds after stderr (3, 4, ...) to the process
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub preserve_fds: u32,
    /// Run in a sub-cgroup of the container's: PATH or CONTROLLER:PATH (repeatable)
    #[arg(long, value_name = "PATH")]
    pub cgroup: Vec<String>,
    /// Allow exec in a paused container
    #[arg(long)]
    pub ignore_paused: bool,
    /// Accepted for runc compatibility; berth needs no subreaper
    #[arg(long, hide = true)]
    pub no_subreaper: bool,
    /// Container id
    pub id: String,
    /// Command and arguments (unless --process)
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "ARGS"
    )]
    pub command: Vec<String>,
}

#[derive(Args, Debug)]
pub struct EventsArgs {
    /// Time between stats events, as a Go duration (500ms, 1.5s, 1m30s)
    #[arg(long, default_value = "5s", value_name = "DURATION", value_parser = berth::events::parse_interval)]
    pub interval: std::time::Duration,
    /// Print the stats once and exit
    #[arg(long)]
    pub stats: bool,
    /// Container id
    pub id: String,
}

#[derive(Args, Debug)]
pub struct IdArg {
    /// Container id
    pub id: String,
}

#[derive(Args, Debug, Clone)]
pub struct CreateArgs {
    /// Path to the bundle (holds config.json)
    #[arg(short, long, default_value = ".")]
    pub bundle: PathBuf,
    /// Unix socket that receives the pty master when process.terminal is true
    #[arg(long, value_name = "PATH")]
    pub console_socket: Option<PathBuf>,
    /// Write the container init's pid to this file
    #[arg(long, value_name = "FILE")]
    pub pid_file: Option<PathBuf>,
    /// Use mount --move and chroot instead of pivot_root
    #[arg(long)]
    pub no_pivot: bool,
    /// Do not create a new session keyring
    #[arg(long)]
    pub no_new_keyring: bool,
    /// Pass this many fds after stderr (3, 4, ...) to the process
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub preserve_fds: u32,
    /// Container id
    pub id: String,
}

#[derive(Args, Debug)]
pub struct KillArgs {
    /// Signal every process in the container's cgroup
    #[arg(short, long)]
    pub all: bool,
    /// Container id
    pub id: String,
    /// Signal name or number
    #[arg(default_value = "SIGTERM")]
    pub signal: String,
}

#[derive(Args, Debug)]
pub struct DeleteArgs {
    /// Kill the container if it is running; succeed if it does not exist
    #[arg(short, long)]
    pub force: bool,
    /// Container ids
    #[arg(required = true)]
    pub ids: Vec<String>,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    pub create: CreateArgs,
    /// Return once the container is started
    #[arg(short, long)]
    pub detach: bool,
    /// Keep the container's state after it exits
    #[arg(long)]
    pub keep: bool,
}

#[derive(Args, Debug)]
pub struct ListArgs {
    /// Print ids only
    #[arg(short, long)]
    pub quiet: bool,
    /// table or json
    #[arg(short, long, default_value = "table")]
    pub format: ListFormat,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListFormat {
    Table,
    Json,
}

#[derive(Args, Debug)]
pub struct SpecArgs {
    /// Bundle directory to write config.json into
    #[arg(short, long, default_value = ".")]
    pub bundle: PathBuf,
}

#[derive(Args, Debug)]
pub struct PsArgs {
    /// table (the host's ps output) or json (an array of host pids)
    #[arg(short, long, default_value = "table")]
    pub format: ListFormat,
    /// Container id
    pub id: String,
    /// Options for ps(1) with the table format (default -ef)
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "PS OPTIONS"
    )]
    pub ps_options: Vec<String>,
}
