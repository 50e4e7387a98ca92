//! The docker-style command line: `berth container ...` and `berth volume ...` (clap).

use super::resources::ResourceFlags;
use clap::{Args, Subcommand};

/// Options of `run` and `create`: what the container is made of.
#[derive(Args, Debug, Clone, Default)]
#[command(disable_help_flag = true)]
pub struct CreateOpts {
    /// Print help.
    #[arg(long, action = clap::ArgAction::Help)]
    pub help: Option<bool>,
    /// Name of the container (default: a generated adjective_noun name).
    #[arg(long)]
    pub name: Option<String>,
    /// Remove the container (and its anonymous volumes) when it exits.
    #[arg(long)]
    pub rm: bool,
    /// Keep STDIN open.
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Allocate a pseudo-TTY.
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Set an environment variable (KEY=VALUE, or KEY to pass the caller's value).
    #[arg(short = 'e', long = "env")]
    pub env: Vec<String>,
    /// Read environment variables from a file (KEY=VALUE lines).
    #[arg(long = "env-file")]
    pub env_file: Vec<String>,
    /// Bind mount (/host:/dest[:ro]) or volume (name:/dest[:ro], or /dest for an anonymous one).
    #[arg(short = 'v', long = "volume")]
    pub volume: Vec<String>,
    /// A mount: type=bind|volume|tmpfs,source=...,target=...[,readonly].
    #[arg(long = "mount")]
    pub mount: Vec<String>,
    /// A tmpfs mount: /dest[:options].
    #[arg(long)]
    pub tmpfs: Vec<String>,
    /// Working directory inside the container.
    #[arg(short = 'w', long)]
    pub workdir: Option<String>,
    /// User (name|uid[:group|gid]).
    #[arg(short = 'u', long)]
    pub user: Option<String>,
    /// Additional groups to join.
    #[arg(long = "group-add")]
    pub group_add: Vec<String>,
    /// Overwrite the image's entrypoint ("" clears it).
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// Publish a port: [IP:][HOSTPORT:]CONTAINERPORT[/PROTO].
    #[arg(short = 'p', long = "publish")]
    pub publish: Vec<String>,
    /// Publish every exposed port on a free host port.
    #[arg(short = 'P', long = "publish-all")]
    pub publish_all: bool,
    /// Expose a port (for -P).
    #[arg(long)]
    pub expose: Vec<String>,
    /// Network: bridge (default), none, host, container:NAME or a network name.
    #[arg(long, alias = "net", default_value = "bridge")]
    pub network: String,
    /// Extra DNS name on a user-defined network.
    #[arg(long = "network-alias", alias = "net-alias")]
    pub network_alias: Vec<String>,
    /// Static IPv4 address on the network.
    #[arg(long)]
    pub ip: Option<String>,
    /// Static IPv6 address on a dual-stack network.
    #[arg(long)]
    pub ip6: Option<String>,
    /// The interface's MAC address (aa:bb:cc:dd:ee:ff).
    #[arg(long = "mac-address")]
    pub mac_address: Option<String>,
    /// DNS server.
    #[arg(long)]
    pub dns: Vec<String>,
    /// DNS search domain.
    #[arg(long = "dns-search")]
    pub dns_search: Vec<String>,
    /// DNS option.
    #[arg(long = "dns-option", alias = "dns-opt")]
    pub dns_option: Vec<String>,
    /// Container hostname.
    #[arg(short = 'h', long)]
    pub hostname: Option<String>,
    /// Add a host-to-IP mapping (HOST:IP).
    #[arg(long = "add-host")]
    pub add_host: Vec<String>,
    /// Memory limit (e.g. 64m).
    #[arg(short = 'm', long)]
    pub memory: Option<String>,
    /// Memory plus swap limit (-1: unlimited).
    #[arg(long = "memory-swap", allow_hyphen_values = true)]
    pub memory_swap: Option<String>,
    /// Number of CPUs.
    #[arg(long)]
    pub cpus: Option<String>,
    /// Process limit (-1: unlimited).
    #[arg(long = "pids-limit", allow_hyphen_values = true)]
    pub pids_limit: Option<i64>,
    /// Size of /dev/shm.
    #[arg(long = "shm-size")]
    pub shm_size: Option<String>,
    /// Mount the root filesystem read-only.
    #[arg(long = "read-only")]
    pub read_only: bool,
    /// Add a capability.
    #[arg(long = "cap-add")]
    pub cap_add: Vec<String>,
    /// Drop a capability.
    #[arg(long = "cap-drop")]
    pub cap_drop: Vec<String>,
    /// All capabilities, all devices, no seccomp, writable /sys.
    #[arg(long)]
    pub privileged: bool,
    /// seccomp=FILE|unconfined, apparmor=PROFILE|unconfined, no-new-privileges[=true].
    #[arg(long = "security-opt")]
    pub security_opt: Vec<String>,
    /// Run an init inside the container that forwards signals and reaps zombies.
    #[arg(long)]
    pub init: bool,
    /// Restart policy: no, on-failure[:N], always, unless-stopped.
    #[arg(long, default_value = "no")]
    pub restart: String,
    /// Signal to stop the container.
    #[arg(long = "stop-signal")]
    pub stop_signal: Option<String>,
    /// Seconds to wait for the stop signal before SIGKILL.
    #[arg(long = "stop-timeout", allow_hyphen_values = true)]
    pub stop_timeout: Option<i64>,
    /// Set a label (KEY=VALUE).
    #[arg(short = 'l', long = "label")]
    pub label: Vec<String>,
    /// Add a host device (HOST[:CONTAINER[:PERMS]]).
    #[arg(long)]
    pub device: Vec<String>,
    /// Set a namespaced kernel parameter (KEY=VALUE).
    #[arg(long)]
    pub sysctl: Vec<String>,
    /// Set a ulimit (TYPE=SOFT[:HARD]).
    #[arg(long)]
    pub ulimit: Vec<String>,
    /// PID namespace: host to share the host's.
    #[arg(long)]
    pub pid: Option<String>,
    /// IPC namespace: host to share the host's.
    #[arg(long)]
    pub ipc: Option<String>,
    /// UTS namespace: host to share the host's.
    #[arg(long)]
    pub uts: Option<String>,
    /// Tune the OOM killer's preference.
    #[arg(long = "oom-score-adj", allow_hyphen_values = true)]
    pub oom_score_adj: Option<i32>,
    /// User namespace: host, or keep-id (an ordinary user's engine: the user's own id inside too).
    #[arg(long)]
    pub userns: Option<String>,
    /// Pull the image: missing (default), never or always.
    #[arg(long, default_value = "missing")]
    pub pull: String,
    /// Parent cgroup of the container's cgroup.
    #[arg(long = "cgroup-parent")]
    pub cgroup_parent: Option<String>,
    /// Cgroup namespace: private (default) or host.
    #[arg(long)]
    pub cgroupns: Option<String>,
    #[command(flatten)]
    pub res: ResourceFlags,
    /// Command to run to check health (run with /bin/sh -c).
    #[arg(long = "health-cmd")]
    pub health_cmd: Option<String>,
    /// Time between running the check (ms|s|m|h).
    #[arg(long = "health-interval")]
    pub health_interval: Option<String>,
    /// Consecutive failures needed to report unhealthy.
    #[arg(long = "health-retries")]
    pub health_retries: Option<i64>,
    /// Start period for the container to initialize before starting health-retries countdown.
    #[arg(long = "health-start-period")]
    pub health_start_period: Option<String>,
    /// Time between running the check during the start period.
    #[arg(long = "health-start-interval")]
    pub health_start_interval: Option<String>,
    /// Maximum time to allow one check to run.
    #[arg(long = "health-timeout")]
    pub health_timeout: Option<String>,
    /// Attach to STDIN, STDOUT or STDERR (default: all of them).
    #[arg(short = 'a', long)]
    pub attach: Vec<String>,
    /// Key sequence that detaches from a -i -t container (default ctrl-p,ctrl-q).
    #[arg(long = "detach-keys")]
    pub detach_keys: Option<String>,
    /// Write the container id to this file.
    #[arg(long)]
    pub cidfile: Option<String>,
    /// Read labels from a file (KEY=VALUE lines).
    #[arg(long = "label-file")]
    pub label_file: Vec<String>,
    /// Add an OCI annotation (KEY=VALUE) to the container's config.
    #[arg(long)]
    pub annotation: Vec<String>,
    /// Container NIS domain name.
    #[arg(long)]
    pub domainname: Option<String>,
    /// Suppress the pull output.
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Platform (os/arch) the image must have; pulls that one if missing.
    #[arg(long)]
    pub platform: Option<String>,
    /// Storage driver options (not supported by berth's overlay: refused).
    #[arg(long = "storage-opt")]
    pub storage_opt: Vec<String>,
    /// Mount the volumes of another container (CONTAINER[:ro|rw]).
    #[arg(long = "volumes-from")]
    pub volumes_from: Vec<String>,
    /// Add a link to another container (NAME[:ALIAS]): its address in /etc/hosts.
    #[arg(long)]
    pub link: Vec<String>,
    /// OCI runtime to run the container with (berth).
    #[arg(long)]
    pub runtime: Option<String>,
    /// Logging driver: json-file (default), local or none.
    #[arg(long = "log-driver")]
    pub log_driver: Option<String>,
    /// Log driver option (max-size, max-file, compress, labels, env, tag).
    #[arg(long = "log-opt")]
    pub log_opt: Vec<String>,
    /// Disable any container-specified HEALTHCHECK.
    #[arg(long = "no-healthcheck")]
    pub no_healthcheck: bool,
    /// Image, then the command and its arguments: everything after the image is the
    /// command's, as docker parses it (`busybox -c x` is not `--cpu-shares`).
    #[arg(value_name = "IMAGE [COMMAND [ARG...]]", required = true, num_args = 1.., trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
    /// The terminal's size at start (rows, columns): the API's `HostConfig.ConsoleSize`.
    #[arg(skip)]
    pub console_size: Option<(u16, u16)>,
}

impl CreateOpts {
    /// The image named.
    pub fn image(&self) -> &str {
        self.args.first().map(String::as_str).unwrap_or("")
    }

    /// The command and its arguments given after the image.
    pub fn command(&self) -> &[String] {
        self.args.get(1..).unwrap_or(&[])
    }
}

#[derive(Args, Debug, Clone)]
#[command(disable_help_flag = true)]
pub struct RunArgs {
    /// Run in the background and print the container id.
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// Forward received signals to the container (attached runs).
    #[arg(long = "sig-proxy", default_value = "true", action = clap::ArgAction::Set)]
    pub sig_proxy: bool,
    #[command(flatten)]
    pub c: CreateOpts,
}

#[derive(Subcommand, Debug)]
pub enum ContainerCmd {
    /// Create and start a container from an image.
    Run(RunArgs),
    /// Create a container (start it with `start`).
    Create(CreateOpts),
    /// Start stopped containers.
    Start {
        /// Attach stdout/stderr and forward signals.
        #[arg(short = 'a', long)]
        attach: bool,
        /// Attach stdin.
        #[arg(short = 'i', long)]
        interactive: bool,
        /// Key sequence that detaches (default ctrl-p,ctrl-q; with a terminal and stdin).
        #[arg(long = "detach-keys")]
        detach_keys: Option<String>,
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Stop running containers (stop signal, then SIGKILL after the timeout).
    Stop {
        /// Seconds to wait before killing (-1: forever).
        #[arg(short = 't', long = "time", alias = "timeout", allow_hyphen_values = true)]
        time: Option<i64>,
        /// Signal to send (default: the container's stop signal).
        #[arg(short = 's', long)]
        signal: Option<String>,
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Restart containers.
    Restart {
        #[arg(short = 't', long = "time", alias = "timeout", allow_hyphen_values = true)]
        time: Option<i64>,
        #[arg(short = 's', long)]
        signal: Option<String>,
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Send a signal (default SIGKILL) to running containers.
    Kill {
        #[arg(short = 's', long, default_value = "KILL")]
        signal: String,
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Remove containers.
    #[command(alias = "remove")]
    Rm {
        /// Kill and remove running containers.
        #[arg(short = 'f', long)]
        force: bool,
        /// Remove the container's anonymous volumes too.
        #[arg(short = 'v', long)]
        volumes: bool,
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// List containers.
    #[command(aliases = ["list", "ps"])]
    Ls {
        /// Show all containers (default: running ones).
        #[arg(short = 'a', long)]
        all: bool,
        /// Only ids.
        #[arg(short = 'q', long)]
        quiet: bool,
        /// table (default) or json (one object per line).
        #[arg(long)]
        format: Option<String>,
        /// Do not truncate ids and commands.
        #[arg(long = "no-trunc")]
        no_trunc: bool,
        /// Only the latest N containers.
        #[arg(short = 'n', long = "last")]
        last: Option<usize>,
        /// Filter: name=, id=, status=, label=, exited=.
        #[arg(short = 'f', long)]
        filter: Vec<String>,
    },
    /// Print a container's logs.
    Logs {
        #[arg(short = 'f', long)]
        follow: bool,
        /// Number of lines from the end ("all").
        #[arg(short = 'n', long)]
        tail: Option<String>,
        /// Since a time (RFC 3339, unix seconds or a duration like 10m).
        #[arg(long)]
        since: Option<String>,
        /// Until a time (as --since): later entries are left out.
        #[arg(long)]
        until: Option<String>,
        /// Show timestamps.
        #[arg(short = 't', long)]
        timestamps: bool,
        container: String,
    },
    /// Run a command in a running container.
    Exec {
        #[arg(short = 'i', long)]
        interactive: bool,
        #[arg(short = 't', long)]
        tty: bool,
        /// Run in the background.
        #[arg(short = 'd', long)]
        detach: bool,
        #[arg(short = 'e', long = "env")]
        env: Vec<String>,
        #[arg(long = "env-file")]
        env_file: Vec<String>,
        #[arg(short = 'u', long)]
        user: Option<String>,
        #[arg(short = 'w', long)]
        workdir: Option<String>,
        #[arg(long)]
        privileged: bool,
        container: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        command: Vec<String>,
    },
    /// Print containers as JSON.
    Inspect {
        /// A template such as '{{.State.Status}}' or '{{json .Config}}'.
        #[arg(short = 'f', long)]
        format: Option<String>,
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Wait for containers to stop and print their exit codes.
    Wait {
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Attach to a running container's stdio.
    Attach {
        #[arg(long = "no-stdin")]
        no_stdin: bool,
        /// Key sequence that detaches (default ctrl-p,ctrl-q; with a terminal and stdin).
        #[arg(long = "detach-keys")]
        detach_keys: Option<String>,
        #[arg(long = "sig-proxy", default_value = "true", action = clap::ArgAction::Set)]
        sig_proxy: bool,
        container: String,
    },
    /// Show a container's processes.
    Top {
        container: String,
        /// ps options (default -ef).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        ps_args: Vec<String>,
    },
    /// List a container's published ports, or the host addresses of one container port.
    Port {
        container: String,
        /// PORT[/PROTO] (default protocol tcp).
        private_port: Option<String>,
    },
    /// Resource usage of containers.
    Stats {
        /// Print once and exit.
        #[arg(long = "no-stream")]
        no_stream: bool,
        /// Include stopped containers.
        #[arg(short = 'a', long)]
        all: bool,
        #[arg(long = "no-trunc")]
        no_trunc: bool,
        /// Go template ('table {{.Name}}\t{{.CPUPerc}}') or json.
        #[arg(long)]
        format: Option<String>,
        containers: Vec<String>,
    },
    /// Create a new image from a container's changes.
    Commit {
        /// Author (e.g. "Jane Doe <jane@example.com>").
        #[arg(short = 'a', long)]
        author: Option<String>,
        /// A Dockerfile instruction to apply (CMD, ENTRYPOINT, ENV, EXPOSE, WORKDIR, USER, LABEL, STOPSIGNAL, VOLUME).
        #[arg(short = 'c', long = "change")]
        change: Vec<String>,
        /// Commit message.
        #[arg(short = 'm', long)]
        message: Option<String>,
        /// Pause the container while committing.
        #[arg(short = 'p', long, default_value = "true", action = clap::ArgAction::Set)]
        pause: bool,
        container: String,
        /// REPOSITORY[:TAG]
        reference: Option<String>,
    },
    /// Show the changes to files in a container's filesystem (A added, C changed, D deleted).
    Diff { container: String },
    /// Copy files between a container and the host: `cp CONTAINER:SRC DEST|-` or `cp SRC|- CONTAINER:DEST`.
    Cp {
        /// Archive mode: keep the source's owner.
        #[arg(short = 'a', long)]
        archive: bool,
        /// Follow a symlink SRC.
        #[arg(short = 'L', long = "follow-link")]
        follow_link: bool,
        src: String,
        dest: String,
    },
    /// Write a container's filesystem as a tar archive (standard output by default).
    Export {
        /// Write to a file instead of standard output.
        #[arg(short = 'o', long)]
        output: Option<std::path::PathBuf>,
        container: String,
    },
    /// Remove all stopped containers.
    Prune {
        /// Do not ask (accepted; berth never asks).
        #[arg(short = 'f', long)]
        force: bool,
    },
    /// Pause all processes within containers (freeze their cgroup).
    Pause {
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Unpause all processes within containers.
    Unpause {
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Rename a container.
    Rename { container: String, new_name: String },
    /// Update the resources (and restart policy) of containers.
    Update(UpdateArgs),
    /// Internal: the shim's clean-up once a container is gone for good.
    #[command(hide = true)]
    Cleanup { id: String },
}

#[derive(Subcommand, Debug)]
pub enum VolumeCmd {
    /// Create a volume (a generated name when none is given).
    Create {
        /// Driver (only "local").
        #[arg(short = 'd', long, default_value = "local")]
        driver: String,
        #[arg(short = 'l', long = "label")]
        label: Vec<String>,
        name: Option<String>,
    },
    /// List volumes.
    #[command(alias = "list")]
    Ls {
        #[arg(short = 'q', long)]
        quiet: bool,
        /// table (default) or json.
        #[arg(long)]
        format: Option<String>,
    },
    /// Print volumes as JSON.
    Inspect {
        #[arg(required = true)]
        volumes: Vec<String>,
    },
    /// Remove volumes.
    #[command(alias = "remove")]
    Rm {
        /// Accepted for docker compatibility (a volume in use is never removed).
        #[arg(short = 'f', long)]
        force: bool,
        #[arg(required = true)]
        volumes: Vec<String>,
    },
    /// Remove unused anonymous volumes (-a: all unused volumes).
    Prune {
        #[arg(short = 'a', long)]
        all: bool,
        #[arg(short = 'f', long)]
        force: bool,
    },
}

/// `container update` flags.
#[derive(Args, Debug, Clone)]
pub struct UpdateArgs {
    /// Memory limit.
    #[arg(short = 'm', long)]
    pub memory: Option<String>,
    /// Memory plus swap limit (-1: unlimited).
    #[arg(long = "memory-swap", allow_hyphen_values = true)]
    pub memory_swap: Option<String>,
    /// Number of CPUs.
    #[arg(long)]
    pub cpus: Option<String>,
    /// Process limit (-1: unlimited).
    #[arg(long = "pids-limit", allow_hyphen_values = true)]
    pub pids_limit: Option<i64>,
    /// Restart policy to apply when a container exits.
    #[arg(long)]
    pub restart: Option<String>,
    #[command(flatten)]
    pub res: ResourceFlags,
    #[arg(required = true)]
    pub containers: Vec<String>,
}
