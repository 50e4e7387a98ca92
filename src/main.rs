//! berth: an OCI container runtime whose command line is a drop-in for runc's.

//!
//! This file parses the command line and calls the runtime library (`berth::`, src/lib.rs);
//! the engine (images, containers, networks, the per-container shim) lives in this binary's
//! own modules and reaches the runtime through that library's API only.

mod api;
mod builder;
mod engine;
mod events;
mod help;
mod image;
mod network;
mod remap;
mod shim;
mod template;

/// The fuzz targets of the engine and the mutation fuzzer that drives them (tests only).
#[cfg(test)]
#[path = "fuzz/engine.rs"]
mod fuzz_engine;
#[cfg(test)]
#[path = "fuzz/frontends.rs"]
mod fuzz_frontends;
#[cfg(test)]
#[path = "fuzz/mutator.rs"]
mod fuzz_mutator;
mod unprivileged;

use berth::{logging, units, CreateOpts, Globals};
use clap::{Parser, Subcommand};
use std::io::Write;
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "berth",
    disable_version_flag = true,
    about = "An OCI container runtime (runc-compatible command line)"
)]
struct Cli {
    #[command(flatten)]
    g: GlobalArgs,
    #[command(subcommand)]
    cmd: Option<Cmd>,
}

/// The runtime commands alone: what engines call (create, start, state, kill, delete, exec...)
/// is parsed without building the engine commands' hundreds of flags (about 2 MiB less peak
/// RSS per call). Anything it does not accept (help, errors) goes to the full `Cli`.
#[derive(Parser)]
#[command(name = "berth", disable_version_flag = true)]
struct RuntimeCli {
    #[command(flatten)]
    g: GlobalArgs,
    #[command(subcommand)]
    cmd: Option<RuntimeCmd>,
}

#[derive(clap::Args)]
struct GlobalArgs {
    /// Root directory for container state [default: /run/berth; for a non-root user
    /// $XDG_RUNTIME_DIR/berth when XDG_RUNTIME_DIR is set].
    #[arg(long, global = true)]
    root: Option<PathBuf>,
    /// Log file (errors are also printed on stderr).
    #[arg(long, global = true, default_value = "")]
    log: String,
    /// Log format: text or json.
    #[arg(long = "log-format", global = true, default_value = "text")]
    log_format: String,
    /// Enable debug logging.
    #[arg(long, global = true)]
    debug: bool,
    /// Use systemd to manage cgroups (cgroupsPath in slice:prefix:name form).
    #[arg(long = "systemd-cgroup", global = true)]
    systemd_cgroup: bool,
    /// Rootless mode: true, false or auto.
    #[arg(long, global = true, default_value = "auto")]
    rootless: String,
    /// Path to criu (accepted for compatibility; checkpointing is not supported).
    #[arg(long, global = true, hide = true)]
    criu: Option<String>,
    /// Engine data: images, engine containers, networks, volumes
    /// [default: $BERTH_DATA_ROOT, else /var/lib/berth].
    #[arg(long = "data-root", global = true)]
    data_root: Option<PathBuf>,
    /// Print the version.
    #[arg(short = 'v', long = "version")]
    version: bool,
}

#[derive(clap::Args, Clone)]
struct CreateArgs {
    /// Path to the bundle directory (default: current directory).
    #[arg(short = 'b', long, default_value = ".")]
    bundle: PathBuf,
    /// Unix socket that receives the pty master when process.terminal is true.
    #[arg(long = "console-socket")]
    console_socket: Option<PathBuf>,
    /// File to write the container's init pid to.
    #[arg(long = "pid-file")]
    pid_file: Option<PathBuf>,
    /// Do not use pivot_root (for ramdisk roots).
    #[arg(long = "no-pivot")]
    no_pivot: bool,
    /// Do not create a new session keyring.
    #[arg(long = "no-new-keyring")]
    no_new_keyring: bool,
    /// Pass N additional fds (3 .. 3+N-1) to the container.
    #[arg(long = "preserve-fds", default_value_t = 0)]
    preserve_fds: i32,
    /// Container id.
    id: String,
}

#[derive(clap::Args)]
struct ExecArgs {
    /// Unix socket that receives the pty master when --tty is given.
    #[arg(long = "console-socket")]
    console_socket: Option<PathBuf>,
    /// Unix socket that receives a pidfd of the new process.
    #[arg(long = "pidfd-socket")]
    pidfd_socket: Option<PathBuf>,
    /// Working directory inside the container.
    #[arg(long)]
    cwd: Option<PathBuf>,
    /// Set an environment variable (KEY=VALUE), repeatable.
    #[arg(short = 'e', long = "env")]
    env: Vec<String>,
    /// Allocate a pseudo-TTY.
    #[arg(short = 't', long)]
    tty: bool,
    /// User as uid[:gid].
    #[arg(short = 'u', long)]
    user: Option<String>,
    /// Additional gids, repeatable.
    #[arg(short = 'g', long = "additional-gids")]
    additional_gids: Vec<u32>,
    /// Path to a process.json that describes the process.
    #[arg(short = 'p', long)]
    process: Option<PathBuf>,
    /// Detach from the process.
    #[arg(short = 'd', long)]
    detach: bool,
    /// File to write the process's pid to.
    #[arg(long = "pid-file")]
    pid_file: Option<PathBuf>,
    /// SELinux label of the process.
    #[arg(long = "process-label")]
    process_label: Option<String>,
    /// AppArmor profile of the process.
    #[arg(long)]
    apparmor: Option<String>,
    /// Set no_new_privs for the process.
    #[arg(long = "no-new-privs")]
    no_new_privs: bool,
    /// Add a capability, repeatable.
    #[arg(short = 'c', long = "cap")]
    cap: Vec<String>,
    /// Pass N additional fds to the process.
    #[arg(long = "preserve-fds", default_value_t = 0)]
    preserve_fds: i32,
    /// Run in a sub-cgroup of the container: [controller:]path.
    #[arg(long)]
    cgroup: Option<String>,
    /// Exec even when the container is paused.
    #[arg(long = "ignore-paused")]
    ignore_paused: bool,
    /// Container id.
    id: String,
    /// Command and arguments.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

/// `berth events` without an ID / `berth system events`: the engine's event journal.
#[derive(clap::Args, Clone, Debug)]
pub struct EngineEventsArgs {
    /// Show events created since this time (RFC 3339, unix seconds or a duration like 10m).
    #[arg(long)]
    since: Option<String>,
    /// Stream events until this time.
    #[arg(long)]
    until: Option<String>,
    /// Filter: container=, event=, image=, label=, network=, type=, volume=.
    #[arg(short = 'f', long)]
    filter: Vec<String>,
    /// Go template, or json.
    #[arg(long)]
    format: Option<String>,
}

#[derive(clap::Args)]
#[command(allow_negative_numbers = true)]
struct UpdateArgs {
    /// Resources JSON file, or - for stdin (as containerd sends it).
    #[arg(short = 'r', long)]
    resources: Option<String>,
    #[arg(long)]
    memory: Option<String>,
    #[arg(long = "memory-swap")]
    memory_swap: Option<String>,
    #[arg(long = "memory-reservation")]
    memory_reservation: Option<String>,
    #[arg(long = "kernel-memory", hide = true)]
    kernel_memory: Option<String>,
    #[arg(long = "kernel-memory-tcp", hide = true)]
    kernel_memory_tcp: Option<String>,
    #[arg(long = "cpu-shares", alias = "cpu-share")]
    cpu_shares: Option<u64>,
    #[arg(long = "cpu-quota")]
    cpu_quota: Option<i64>,
    #[arg(long = "cpu-period")]
    cpu_period: Option<u64>,
    #[arg(long = "cpu-burst")]
    cpu_burst: Option<u64>,
    #[arg(long = "cpu-rt-period")]
    cpu_rt_period: Option<u64>,
    #[arg(long = "cpu-rt-runtime")]
    cpu_rt_runtime: Option<i64>,
    #[arg(long = "cpuset-cpus")]
    cpuset_cpus: Option<String>,
    #[arg(long = "cpuset-mems")]
    cpuset_mems: Option<String>,
    #[arg(long = "cpu-idle")]
    cpu_idle: Option<i64>,
    #[arg(long = "pids-limit")]
    pids_limit: Option<i64>,
    #[arg(long = "blkio-weight")]
    blkio_weight: Option<u16>,
    #[arg(long = "l3-cache-schema", hide = true)]
    l3_cache_schema: Option<String>,
    #[arg(long = "mem-bw-schema", hide = true)]
    mem_bw_schema: Option<String>,
    id: String,
}

// One value per process: the size of the largest variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum RuntimeCmd {
    /// Create a container (its process waits for `start`).
    Create(CreateArgs),
    /// Start the process of a created container.
    Start { id: String },
    /// Create and start a container.
    Run {
        #[command(flatten)]
        c: CreateArgs,
        /// Detach from the container's process.
        #[arg(short = 'd', long)]
        detach: bool,
        /// Keep the container's state after it exits.
        #[arg(long)]
        keep: bool,
    },
    /// Print the state of a container.
    State { id: String },
    /// Send a signal to a container's init (default SIGTERM).
    Kill {
        /// Send the signal to every process of the container.
        #[arg(short = 'a', long)]
        all: bool,
        id: String,
        #[arg(default_value = "SIGTERM")]
        signal: String,
    },
    /// Delete a container.
    Delete {
        /// Kill and delete a running container.
        #[arg(short = 'f', long)]
        force: bool,
        id: String,
    },
    /// List containers.
    #[command(alias = "ls")]
    List {
        /// Output format: table or json.
        #[arg(short = 'f', long, default_value = "table")]
        format: String,
        /// Print only the ids.
        #[arg(short = 'q', long)]
        quiet: bool,
    },
    /// Write a default config.json.
    Spec {
        /// Bundle directory to write config.json into.
        #[arg(short = 'b', long, default_value = ".")]
        bundle: PathBuf,
        /// Make a config for a rootless container.
        /// (`spec --rootless` arrives here as `--spec-rootless`: the global `--rootless` owns the
        /// name, and clap refuses one long name for two arguments.)
        #[arg(long = "spec-rootless", hide = true, num_args = 0..=1, default_missing_value = "true")]
        rootless: Option<String>,
    },
    /// Print the features berth supports (runtime-spec features.md JSON).
    Features,
    /// Run a new process inside a container.
    Exec(ExecArgs),
    /// Suspend every process of a container (cgroup freezer).
    Pause { id: String },
    /// Resume a paused container.
    Resume { id: String },
    /// List the processes of a container.
    Ps {
        /// Output format: table or json.
        #[arg(short = 'f', long, default_value = "table")]
        format: String,
        id: String,
        /// Options passed to ps(1).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        ps_args: Vec<String>,
    },
    /// Print a container's stats and events (runc); without ID, the engine's events (docker).
    Events {
        /// Print stats once and exit.
        #[arg(long)]
        stats: bool,
        /// Interval between stats, e.g. 5s, 500ms.
        #[arg(long, default_value = "5s")]
        interval: String,
        #[command(flatten)]
        engine: EngineEventsArgs,
        id: Option<String>,
    },
    /// Update a container's resource limits.
    Update(UpdateArgs),
    /// Internal: the container's init after re-exec.
    #[command(hide = true)]
    Init,
}

#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Cmd {
    #[command(flatten)]
    Runtime(RuntimeCmd),
    /// Images: load, pull, ls, inspect, tag, rm, prune, unpack, mount.
    Image {
        #[command(subcommand)]
        cmd: image::cli::ImageCmd,
    },
    /// Containers, docker-style: run, create, start, stop, ls, logs, exec, inspect, rm, ...
    Container {
        #[command(subcommand)]
        cmd: engine::ContainerCmd,
    },
    /// Named volumes: create, ls, inspect, rm, prune.
    Volume {
        #[command(subcommand)]
        cmd: engine::VolumeCmd,
    },
    /// Networks: create, ls, inspect, rm, prune.
    Network {
        #[command(subcommand)]
        cmd: network::NetworkCmd,
    },
    /// The build cache: prune.
    Builder {
        #[command(subcommand)]
        cmd: builder::BuilderCmd,
    },
    /// Log in to a registry: checks the credentials, then stores them in the auth file.
    Login {
        #[arg(short = 'u', long)]
        username: Option<String>,
        #[arg(short = 'p', long)]
        password: Option<String>,
        /// Read the password from standard input.
        #[arg(long = "password-stdin")]
        password_stdin: bool,
        /// The auth file (default: $REGISTRY_AUTH_FILE, $DOCKER_CONFIG/config.json, ~/.docker/config.json).
        #[arg(long)]
        authfile: Option<PathBuf>,
        /// Allow plain http and unverified TLS.
        #[arg(long)]
        insecure: bool,
        /// CA certificate (PEM) to trust for the registry.
        #[arg(long = "tls-ca")]
        tls_ca: Option<PathBuf>,
        /// Registry (default: Docker Hub).
        server: Option<String>,
    },
    /// Log out from a registry: removes its credentials from the auth file.
    Logout {
        #[arg(long)]
        authfile: Option<PathBuf>,
        server: Option<String>,
    },
    /// System-wide information (as `system info`).
    Info {
        /// Go template (e.g. '{{.ContainersRunning}}') or json.
        #[arg(short = 'f', long)]
        format: Option<String>,
    },
    /// The engine as a whole: service (the Docker Engine API on a socket), events, df, prune, info.
    System {
        #[command(subcommand)]
        cmd: SystemCmd,
    },
}

#[derive(Subcommand)]
enum SystemCmd {
    /// Real-time events from the engine (as `berth events` without a container id).
    Events(EngineEventsArgs),
    /// Disk usage of images, containers, volumes and the build cache.
    Df {
        /// Go template (e.g. 'table {{.Type}}\t{{.Size}}') or json.
        #[arg(long)]
        format: Option<String>,
    },
    /// Remove stopped containers, unused networks, dangling images (and more with -a / --volumes).
    Prune {
        /// Remove every image no container uses, not only dangling ones.
        #[arg(short = 'a', long)]
        all: bool,
        /// Remove unused anonymous volumes too.
        #[arg(long)]
        volumes: bool,
        /// Accepted for docker compatibility (berth never prompts).
        #[arg(short = 'f', long)]
        force: bool,
    },
    /// System-wide information.
    Info {
        /// Go template (e.g. '{{.ContainersRunning}}') or json.
        #[arg(short = 'f', long)]
        format: Option<String>,
    },
    /// Serve the Docker Engine API (docker CLI, docker-compose, Docker SDKs) on a socket.
    Service {
        /// Address to listen on (unix:///path; default unix:///run/berth/docker.sock, for an
        /// ordinary user unix://$XDG_RUNTIME_DIR/berth/docker.sock).
        #[arg(short = 'H', long = "host")]
        host: Vec<String>,
        /// Exit after this many idle seconds (0: serve until stopped).
        #[arg(short = 't', long, default_value = "0")]
        timeout: u64,
        /// Group owning the socket (name or gid).
        #[arg(short = 'G', long)]
        group: Option<String>,
        /// Require TLS with client certificates (tcp listeners).
        #[arg(long)]
        tlsverify: bool,
        /// CA certificate (PEM) client certificates must be signed by.
        #[arg(long)]
        tlscacert: Option<PathBuf>,
        /// The service's certificate (PEM).
        #[arg(long)]
        tlscert: Option<PathBuf>,
        /// The service's private key (PEM).
        #[arg(long)]
        tlskey: Option<PathBuf>,
    },
}

fn main() {
    // The re-executed init takes the fast path, before any argument parsing.
    if let Some(fd) = std::env::var_os(berth::INIT_ENV) {
        if std::env::args_os().nth(1).is_some_and(|a| a == "init") {
            let fd: i32 = fd.to_str().and_then(|s| s.parse().ok()).unwrap_or(-1);
            berth::init_main(fd);
        }
    }
    // `--init`'s pid 1 inside a container (this binary bind-mounted as /sbin/berth-init).
    if engine::init::is_init(std::env::args_os().next().as_deref()) {
        engine::init::main(std::env::args_os().skip(1).collect());
    }
    // The per-container shim (and its debugging CLI) takes a fast path too: no clap, no logging.
    if std::env::args_os().nth(1).is_some_and(|a| a == "shim") {
        std::process::exit(shim::main(std::env::args_os().skip(2).collect()));
    }
    berth::faults::crash_point("cli.start");
    let args: Vec<String> = std::env::args_os().skip(1).map(|a| a.to_string_lossy().into_owned()).collect();
    if printing_command(&args) {
        // A listing or stream whose reader goes away (`berth list | head -1`) ends quietly, by
        // SIGPIPE, as runc does; Rust would otherwise panic on EPIPE in println!.
        // SAFETY: restoring the default disposition of a signal, before any thread exists.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
    if let Some(code) = help::intercept(&args) {
        std::process::exit(code);
    }
    let sub = subcommand_name();
    let argv = clap_args(sub.as_deref());
    let runtime = match sub.as_deref() {
        None
        | Some(
            "image" | "container" | "volume" | "network" | "builder" | "system" | "info" | "login" | "logout" | "help",
        ) => None,
        Some(_) => RuntimeCli::try_parse_from(&argv).ok(),
    };
    let cli = match runtime {
        Some(r) => Cli { g: r.g, cmd: r.cmd.map(Cmd::Runtime) },
        None => match Cli::try_parse_from(&argv) {
            Ok(c) => c,
            Err(e) => {
                // docker's exit code for a bad flag of an engine command is 125.
                let engine_cmd = sub.as_deref().is_some_and(|a| a == "container" || a == "volume" || a == "system");
                let runtime_cmd = !sub.as_deref().is_some_and(help::is_engine);
                let code = if !e.use_stderr() {
                    0
                } else if engine_cmd {
                    125
                } else if runtime_cmd {
                    // runc's code for a usage error, on one line.
                    let text = e.to_string();
                    let first = text.split("\n\n").next().unwrap_or("usage error");
                    let first = first.split_whitespace().collect::<Vec<_>>().join(" ");
                    fail(first.strip_prefix("error: ").unwrap_or(&first), 1);
                } else {
                    e.exit_code()
                };
                let _ = e.print();
                std::process::exit(code);
            }
        },
    };
    let Cli { g: cli, cmd } = cli;
    let json = match cli.log_format.as_str() {
        "json" => true,
        "text" => false,
        other => fail(&format!("unknown --log-format {other:?} (text or json)"), 2),
    };
    if let Err(e) = logging::init(Some(cli.log.as_str()), json, cli.debug) {
        fail(&e.to_string(), 1);
    }
    let rootless_flag = match berth::rootless::parse_bool_or_auto(&cli.rootless) {
        Ok(b) => b,
        Err(e) => fail(&e, 2),
    };
    if cli.version {
        println!("berth version {}", env!("CARGO_PKG_VERSION"));
        println!("spec: {}", berth::OCI_VERSION);
        println!("libseccomp: {}", libseccomp_version());
        return;
    }
    let Some(cmd) = cmd else {
        fail("no command given (see berth --help)", 2);
    };
    // An ordinary user's engine commands: the user's own store, in the user's namespaces.
    let engine_cmd = matches!(
        cmd,
        Cmd::Image { .. }
            | Cmd::Container { .. }
            | Cmd::Volume { .. }
            | Cmd::Network { .. }
            | Cmd::Builder { .. }
            | Cmd::System { .. }
            | Cmd::Info { .. }
            | Cmd::Login { .. }
            | Cmd::Logout { .. }
    );
    let unprivileged = engine_cmd && unprivileged::needed();
    if unprivileged {
        // Before the runtime's state root is chosen: it goes below $XDG_RUNTIME_DIR.
        match unprivileged::default_runtime_dir() {
            Ok(Some(w)) => {
                let _ = writeln!(std::io::stderr(), "berth: warning: {w}");
            }
            Ok(None) => {}
            Err(e) => fail(&e.to_string(), 125),
        }
    }
    let root = match &cli.root {
        Some(r) => r.clone(),
        None => {
            let (r, xdg) = berth::rootless::default_root();
            if xdg {
                if let Err(e) = berth::rootless::prepare_xdg_root(&r) {
                    fail(&e, 1);
                }
            }
            r
        }
    };
    let g = Globals {
        root,
        systemd_cgroup: cli.systemd_cgroup,
        debug: cli.debug,
        rootless: berth::rootless::use_rootless_cgroups(rootless_flag, cli.systemd_cgroup),
    };
    let data_root = cli
        .data_root
        .clone()
        .or_else(|| std::env::var_os("BERTH_DATA_ROOT").filter(|v| !v.is_empty()).map(PathBuf::from))
        .map(Ok)
        .unwrap_or_else(|| if unprivileged { unprivileged::data_root() } else { Ok(PathBuf::from("/var/lib/berth")) })
        .unwrap_or_else(|e| fail(&e.to_string(), 125));
    if unprivileged {
        match unprivileged::enter() {
            Ok(warnings) => {
                for w in warnings {
                    let _ = writeln!(std::io::stderr(), "berth: warning: {w}");
                }
            }
            Err(e) => fail(&e.to_string(), 125),
        }
        // Children (the shim, its clean-up command) find the same store.
        std::env::set_var("BERTH_DATA_ROOT", &data_root);
    }
    // docker's userns-remap (daemon.json): the store moves to <data-root>/<uid>.<gid>.
    let data_root = match (engine_cmd && !unprivileged).then(|| remap::setup(&data_root)) {
        Some(Ok(Some(d))) => d,
        Some(Err(e)) => fail(&e.to_string(), 125),
        _ => data_root,
    };
    let cmd = match cmd {
        Cmd::Image { cmd: image::cli::ImageCmd::Build(args) } => {
            let quiet = args.quiet;
            let req = match image::cli::build_request(args, &data_root, &g.root) {
                Ok(r) => r,
                Err(e) => fail(&e.to_string(), 1),
            };
            match builder::build(&req) {
                Ok(b) => {
                    if quiet {
                        println!("{}", b.id);
                    }
                    std::process::exit(0)
                }
                Err(e) => fail(&e.to_string(), 1),
            }
        }
        Cmd::Image { cmd } => match image::cli::run(&data_root, cmd) {
            Ok(()) => std::process::exit(0),
            Err(e) => fail(&e.to_string(), 1),
        },
        Cmd::Container { cmd } => {
            let e = engine::Engine::new(&data_root, &g.root, cli.systemd_cgroup, cli.debug);
            match engine::container_command(&e, cmd) {
                Ok(code) => std::process::exit(code),
                Err(err) => fail(&err.to_string(), err.exit_code()),
            }
        }
        Cmd::Volume { cmd } => {
            let e = engine::Engine::new(&data_root, &g.root, cli.systemd_cgroup, cli.debug);
            match engine::volume_command(&e, cmd) {
                Ok(code) => std::process::exit(code),
                Err(err) => fail(&err.to_string(), err.exit_code()),
            }
        }
        Cmd::Builder { cmd: builder::BuilderCmd::Prune { .. } } => match builder::prune(&data_root) {
            Ok(bytes) => {
                println!("Total reclaimed space: {}", image::cli::human_size(bytes));
                std::process::exit(0)
            }
            Err(err) => fail(&err.to_string(), 1),
        },
        Cmd::Network { cmd: network::NetworkCmd::Connect { alias, ip, network, container } } => {
            let e = engine::Engine::new(&data_root, &g.root, cli.systemd_cgroup, cli.debug);
            match engine::network_connect(&e, &network, &container, &alias, ip.as_deref()) {
                Ok(()) => std::process::exit(0),
                Err(err) => fail(&err.to_string(), 1),
            }
        }
        Cmd::Network { cmd: network::NetworkCmd::Disconnect { network, container, .. } } => {
            let e = engine::Engine::new(&data_root, &g.root, cli.systemd_cgroup, cli.debug);
            match engine::network_disconnect(&e, &network, &container) {
                Ok(()) => std::process::exit(0),
                Err(err) => fail(&err.to_string(), 1),
            }
        }
        Cmd::Network { cmd } => match network::run(&data_root, cmd) {
            Ok(()) => std::process::exit(0),
            Err(err) => fail(&err.to_string(), 1),
        },
        Cmd::System { cmd: SystemCmd::Service { host, timeout, group, tlsverify, tlscacert, tlscert, tlskey } } => {
            let e = engine::Engine::new(&data_root, &g.root, cli.systemd_cgroup, cli.debug);
            let o = api::ServiceOpts { hosts: host, timeout, group, tlsverify, tlscacert, tlscert, tlskey };
            match api::serve(e, o) {
                Ok(()) => std::process::exit(0),
                Err(err) => fail(&err.to_string(), 1),
            }
        }
        Cmd::Runtime(RuntimeCmd::Events { id: None, engine: a, .. }) => engine_events(&data_root, &a),
        Cmd::System { cmd: SystemCmd::Events(a) } => engine_events(&data_root, &a),
        Cmd::Login { username, password, password_stdin, authfile, insecure, tls_ca, server } => {
            let password = if password_stdin {
                if password.is_some() {
                    fail("--password and --password-stdin are mutually exclusive", 1);
                }
                let mut s = String::new();
                let _ = std::io::Read::read_to_string(&mut std::io::stdin(), &mut s);
                s.trim_end_matches(['\n', '\r']).to_string()
            } else {
                password.unwrap_or_default()
            };
            let opts = image::registry::ClientOptions { insecure, tls_ca, auth_file: None, credentials: None };
            match image::login::login(
                server.as_deref(),
                username.as_deref().unwrap_or(""),
                &password,
                authfile.as_deref(),
                opts,
            ) {
                Ok(_) => {
                    println!("Login Succeeded");
                    std::process::exit(0)
                }
                Err(e) => fail(&e.to_string(), 1),
            }
        }
        Cmd::Logout { authfile, server } => match image::login::logout(server.as_deref(), authfile.as_deref()) {
            Ok(removed) => {
                let key = image::login::server_key(server.as_deref());
                if removed {
                    println!("Removing login credentials for {key}");
                } else {
                    println!("Not logged in to {key}");
                }
                std::process::exit(0)
            }
            Err(e) => fail(&e.to_string(), 1),
        },
        Cmd::Info { format } => {
            let e = engine::Engine::new(&data_root, &g.root, cli.systemd_cgroup, cli.debug);
            match engine::system::info(&e, format.as_deref()) {
                Ok(()) => std::process::exit(0),
                Err(err) => fail(&err.to_string(), err.exit_code()),
            }
        }
        Cmd::System { cmd } => {
            let e = engine::Engine::new(&data_root, &g.root, cli.systemd_cgroup, cli.debug);
            let r = match cmd {
                SystemCmd::Df { format } => engine::system::df(&e, format.as_deref()),
                SystemCmd::Prune { all, volumes, force: _ } => engine::system::prune(&e, all, volumes),
                SystemCmd::Info { format } => engine::system::info(&e, format.as_deref()),
                SystemCmd::Events(_) | SystemCmd::Service { .. } => Ok(()),
            };
            match r {
                Ok(()) => std::process::exit(0),
                Err(err) => fail(&err.to_string(), err.exit_code()),
            }
        }
        Cmd::Runtime(c) => c,
    };
    let code = match dispatch(&g, cmd) {
        Ok(c) => c,
        Err(e) => fail(&e.to_string(), 1),
    };
    std::process::exit(code);
}

/// docker's `events`: exits 125 on bad input as docker's engine commands do.
fn engine_events(data_root: &std::path::Path, a: &EngineEventsArgs) -> ! {
    match events::command(data_root, a.since.as_deref(), a.until.as_deref(), &a.filter, a.format.as_deref()) {
        Ok(()) => std::process::exit(0),
        Err(e) => fail(&e.to_string(), 125),
    }
}

/// The command line for clap: `spec`'s own `--rootless` (after the command) renamed, since the
/// global `--rootless` has the same name.
fn clap_args(sub: Option<&str>) -> Vec<std::ffi::OsString> {
    let mut seen_sub = false;
    std::env::args_os()
        .enumerate()
        .map(|(i, a)| {
            if i > 0 && sub == Some("spec") {
                if seen_sub {
                    if let Some(rest) = a.to_str().and_then(|a| a.strip_prefix("--rootless")) {
                        if rest.is_empty() || rest.starts_with('=') {
                            return format!("--spec-rootless{rest}").into();
                        }
                    }
                }
                if !seen_sub && a == "spec" {
                    seen_sub = true;
                }
            }
            a
        })
        .collect()
}

/// The first positional argument (the subcommand), skipping global options and their values.
fn subcommand_name() -> Option<String> {
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--root" | "--log" | "--log-format" | "--rootless" | "--criu" | "--data-root" => {
                it.next();
            }
            _ if a.starts_with('-') => {}
            _ => return Some(a),
        }
    }
    None
}

/// Commands whose whole job is printing (listings, streams, help): they take SIGPIPE's default
/// action. The others keep it ignored, so a closed console socket or sync pipe is an error they
/// handle and clean up after, not a silent death.
fn printing_command(args: &[String]) -> bool {
    let mut words = args.iter().enumerate().filter(|(i, a)| {
        let flag_value = *i > 0 && help::GLOBAL_VALUE_FLAGS.contains(&args[i - 1].as_str());
        !a.starts_with('-') && !flag_value
    });
    let first = words.next().map(|(_, a)| a.as_str());
    let second = words.next().map(|(_, a)| a.as_str());
    match first {
        None | Some("list" | "ls" | "ps" | "events" | "state" | "features" | "spec" | "help" | "h") => true,
        Some("image" | "container" | "volume" | "network" | "system") => matches!(
            second,
            Some(
                "ls" | "list"
                    | "ps"
                    | "logs"
                    | "inspect"
                    | "history"
                    | "top"
                    | "stats"
                    | "port"
                    | "diff"
                    | "events"
                    | "df"
                    | "info"
            )
        ),
        _ => false,
    }
}

fn libseccomp_version() -> String {
    match libseccomp::ScmpVersion::current() {
        Ok(v) => format!("{}.{}.{}", v.major, v.minor, v.micro),
        Err(_) => "unknown".into(),
    }
}

fn fail(msg: &str, code: i32) -> ! {
    let line = plain_errno(&msg.replace('\n', " "));
    logging::error(&line);
    let _ = writeln!(std::io::stderr(), "berth: {line}");
    std::process::exit(code)
}

/// Drops Rust's " (os error N)" suffixes, so errno text reads as the kernel's words alone
/// ("open /x: No such file or directory").
fn plain_errno(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len());
    let mut rest = msg;
    while let Some(i) = rest.find(" (os error ") {
        let tail = &rest[i + 11..];
        let digits = tail.bytes().take_while(u8::is_ascii_digit).count();
        if digits > 0 && tail[digits..].starts_with(')') {
            out.push_str(&rest[..i]);
            rest = &tail[digits + 1..];
        } else {
            out.push_str(&rest[..i + 11]);
            rest = tail;
        }
    }
    out.push_str(rest);
    out
}

fn create_opts(c: CreateArgs) -> CreateOpts {
    CreateOpts {
        id: c.id,
        bundle: c.bundle,
        console_socket: c.console_socket,
        pid_file: c.pid_file,
        no_pivot: c.no_pivot,
        no_new_keyring: c.no_new_keyring,
        preserve_fds: c.preserve_fds.max(0),
    }
}

fn dispatch(g: &Globals, cmd: RuntimeCmd) -> Result<i32, berth::Error> {
    match cmd {
        RuntimeCmd::Create(c) => {
            berth::create(g, &create_opts(c))?;
            Ok(0)
        }
        RuntimeCmd::Start { id } => berth::start(g, &id).map(|_| 0),
        RuntimeCmd::Run { c, detach, keep } => berth::run(g, &create_opts(c), detach, keep),
        RuntimeCmd::State { id } => {
            println!("{}", berth::state_json(g, &id)?);
            Ok(0)
        }
        RuntimeCmd::Kill { all, id, signal } => {
            let sig = berth::parse_signal(&signal)?;
            berth::kill(g, &id, sig, all).map(|_| 0)
        }
        RuntimeCmd::Delete { force, id } => berth::delete(g, &id, force).map(|_| 0),
        RuntimeCmd::List { format, quiet } => {
            list(g, &format, quiet)?;
            Ok(0)
        }
        RuntimeCmd::Spec { bundle, rootless } => {
            let path = bundle.join("config.json");
            if path.exists() {
                return Err(berth::Error::Msg(format!("{} already exists", path.display())));
            }
            let s = berth::to_runc_json(&berth::default_spec(rootless.as_deref() == Some("true")));
            std::fs::write(&path, s).map_err(|e| berth::Error::Msg(format!("write {}: {e}", path.display())))?;
            Ok(0)
        }
        RuntimeCmd::Features => {
            println!("{}", serde_json::to_string_pretty(&berth::features()).unwrap_or_default());
            Ok(0)
        }
        // As runc: the process's own exit code, and 255 for every failure of exec itself.
        RuntimeCmd::Exec(e) => match berth::exec(
            g,
            &berth::ExecOpts {
                id: e.id,
                args: e.command,
                process_file: e.process,
                console_socket: e.console_socket,
                pidfd_socket: e.pidfd_socket,
                cwd: e.cwd,
                env: e.env,
                tty: e.tty,
                user: e.user,
                additional_gids: e.additional_gids,
                detach: e.detach,
                pid_file: e.pid_file,
                process_label: e.process_label,
                apparmor: e.apparmor,
                no_new_privs: e.no_new_privs,
                caps: e.cap,
                preserve_fds: e.preserve_fds.max(0),
                cgroup: e.cgroup,
                ignore_paused: e.ignore_paused,
                stdio: None,
            },
        ) {
            Ok(code) => Ok(code),
            Err(err) => fail(&format!("exec failed: {err}"), 255),
        },
        RuntimeCmd::Pause { id } => berth::pause(g, &id).map(|_| 0),
        RuntimeCmd::Resume { id } => berth::resume(g, &id).map(|_| 0),
        RuntimeCmd::Ps { format, id, ps_args } => berth::ps(g, &id, &format, &ps_args).map(|_| 0),
        RuntimeCmd::Events { stats, interval, id, .. } => {
            let Some(id) = id else { return Err(berth::Error::Msg("events: a container id is needed".into())) };
            let iv = parse_duration(&interval)?;
            berth::events(g, &id, stats, iv).map(|_| 0)
        }
        RuntimeCmd::Update(u) => {
            let r = update_resources(&u)?;
            berth::update(g, &u.id, &r).map(|_| 0)
        }
        RuntimeCmd::Init => Err(berth::Error::Msg("init is internal to berth".into())),
    }
}

fn list(g: &Globals, format: &str, quiet: bool) -> Result<(), berth::Error> {
    let entries = berth::list(g);
    let mut out = std::io::stdout().lock();
    if quiet {
        for e in &entries {
            let _ = writeln!(out, "{}", e.id);
        }
        return Ok(());
    }
    let text = match format {
        "json" => berth::listing::json(&entries),
        "table" => berth::listing::table(&entries),
        other => return Err(berth::Error::Msg(format!("unknown list format {other:?} (table or json)"))),
    };
    let _ = out.write_all(text.as_bytes());
    Ok(())
}

fn parse_duration(s: &str) -> Result<std::time::Duration, berth::Error> {
    let bad = || berth::Error::Msg(format!("invalid --interval {s:?} (e.g. 5s, 500ms, 1m)"));
    let (num, unit) = s.find(|c: char| !c.is_ascii_digit() && c != '.').map(|i| s.split_at(i)).unwrap_or((s, "s"));
    let n: f64 = num.parse().map_err(|_| bad())?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" | "" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(bad()),
    };
    if !(secs > 0.0 && secs.is_finite()) {
        return Err(bad());
    }
    Ok(std::time::Duration::from_secs_f64(secs))
}

/// A size for `update` (see units::ram_in_bytes), or -1 for unlimited.
fn parse_size(flag: &str, s: &str) -> Result<i64, berth::Error> {
    if s.trim() == "-1" {
        return Ok(-1);
    }
    units::ram_in_bytes(s)
        .ok_or_else(|| berth::Error::Msg(format!("invalid {flag} {s:?} (bytes, with an optional k, m, g or t suffix)")))
}

fn update_resources(u: &UpdateArgs) -> Result<oci_spec::runtime::LinuxResources, berth::Error> {
    use serde_json::{json, Map, Value};
    let mut v: Value = match &u.resources {
        Some(f) => {
            let data = if f == "-" {
                let mut b = Vec::new();
                std::io::Read::read_to_end(&mut std::io::stdin(), &mut b)
                    .map_err(|e| berth::Error::Msg(format!("read resources from stdin: {e}")))?;
                b
            } else {
                std::fs::read(f).map_err(|e| berth::Error::Msg(format!("read resources file {f}: {e}")))?
            };
            serde_json::from_slice(&data).map_err(|e| berth::Error::Msg(format!("parse resources JSON: {e}")))?
        }
        None => json!({}),
    };
    let obj = v.as_object_mut().ok_or_else(|| berth::Error::Msg("resources JSON must be an object".into()))?;
    let mut set = |section: &str, key: &str, val: Value| {
        let s = obj.entry(section.to_string()).or_insert_with(|| Value::Object(Map::new()));
        if let Some(m) = s.as_object_mut() {
            m.insert(key.to_string(), val);
        }
    };
    if let Some(m) = &u.memory {
        set("memory", "limit", json!(parse_size("--memory", m)?));
    }
    if let Some(m) = &u.memory_swap {
        set("memory", "swap", json!(parse_size("--memory-swap", m)?));
    }
    if let Some(m) = &u.memory_reservation {
        set("memory", "reservation", json!(parse_size("--memory-reservation", m)?));
    }
    if let Some(x) = u.cpu_shares {
        set("cpu", "shares", json!(x));
    }
    if let Some(x) = u.cpu_quota {
        set("cpu", "quota", json!(x));
    }
    if let Some(x) = u.cpu_period {
        set("cpu", "period", json!(x));
    }
    if let Some(x) = u.cpu_burst {
        set("cpu", "burst", json!(x));
    }
    if let Some(x) = u.cpu_rt_period {
        set("cpu", "realtimePeriod", json!(x));
    }
    if let Some(x) = u.cpu_rt_runtime {
        set("cpu", "realtimeRuntime", json!(x));
    }
    if let Some(x) = &u.cpuset_cpus {
        set("cpu", "cpus", json!(x));
    }
    if let Some(x) = &u.cpuset_mems {
        set("cpu", "mems", json!(x));
    }
    if let Some(x) = u.cpu_idle {
        set("cpu", "idle", json!(x));
    }
    if let Some(x) = u.pids_limit {
        set("pids", "limit", json!(x));
    }
    if let Some(x) = u.blkio_weight {
        set("blockIO", "weight", json!(x));
    }
    serde_json::from_value(v).map_err(|e| berth::Error::Msg(format!("resources: {e}")))
}

#[cfg(test)]
mod tests {
    #[test]
    fn plain_errno_strips_suffixes() {
        assert_eq!(
            super::plain_errno("open /x: No such file or directory (os error 2)"),
            "open /x: No such file or directory"
        );
        assert_eq!(super::plain_errno("a (os error 1): b (os error 13)"), "a: b");
        assert_eq!(super::plain_errno("keep (os error x)"), "keep (os error x)");
    }

    #[test]
    fn sizes() {
        assert_eq!(super::parse_size("--memory", "512m").unwrap(), 512 << 20);
        assert_eq!(super::parse_size("--memory", "1G").unwrap(), 1 << 30);
        assert_eq!(super::parse_size("--memory", "1000").unwrap(), 1000);
        assert_eq!(super::parse_size("--memory", "-1").unwrap(), -1);
        assert!(super::parse_size("--memory", "lots").is_err());
        assert!(super::parse_size("--memory", "-5").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(super::parse_duration("5s").unwrap().as_millis(), 5000);
        assert_eq!(super::parse_duration("500ms").unwrap().as_millis(), 500);
        assert!(super::parse_duration("0s").is_err());
        assert!(super::parse_duration("x").is_err());
    }
}
