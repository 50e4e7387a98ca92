//! runc's help for the runtime commands, in the layout urfave/cli prints (NAME, USAGE,
//! DESCRIPTION, OPTIONS; the whole text aligned by a Go tabwriter), and runc's answers to
//! `help`, `-h`/`--help` and an unknown command. The engine commands (image, container,
//! volume, network) keep their docker-style help from clap.

/// One runtime command's help.
struct Cmd {
    names: &'static [&'static str],
    usage: &'static str,
    /// What follows the command in USAGE (runc puts its long argument notes here).
    args: &'static str,
    description: &'static str,
    /// (flags, text); a flag taking a value says "value", as urfave prints it.
    options: &'static [(&'static str, &'static str)],
}

/// What create, run and start take.
const ID_ARGS: &str = "<container-id>

Where \"<container-id>\" is your name for the instance of the container that you
are starting. The name you provide for the container instance must be unique on
your host.";

const CREATE_OPTS: &[(&str, &str)] = &[
    ("--bundle value, -b value", "path to the root of the bundle directory, defaults to the current directory"),
    (
        "--console-socket value",
        "path to an AF_UNIX socket which will receive a file descriptor referencing the master end of the console's pseudoterminal",
    ),
    ("--pid-file value", "specify the file to write the process id to"),
    ("--no-pivot", "do not use pivot root to jail process inside rootfs.  This should be used whenever the rootfs is on top of a ramdisk"),
    ("--no-new-keyring", "do not create a new session keyring for the container.  This will cause the container to inherit the calling processes session key"),
    ("--preserve-fds value", "Pass N additional file descriptors to the container (stdio + $LISTEN_FDS + N in total) (default: 0)"),
];

const RUN_OPTS: &[(&str, &str)] = &[
    CREATE_OPTS[0],
    CREATE_OPTS[1],
    ("--detach, -d", "detach from the container's process"),
    ("--keep", "do not delete the container after it exits"),
    CREATE_OPTS[2],
    CREATE_OPTS[3],
    CREATE_OPTS[4],
    CREATE_OPTS[5],
];

const COMMANDS: &[Cmd] = &[
    Cmd {
        names: &["create"],
        usage: "create a container",
        args: ID_ARGS,
        description: "The create command creates an instance of a container for a bundle. The bundle
is a directory with a specification file named \"config.json\" and a root
filesystem.

The specification file includes an args parameter. The args parameter is used
to specify command(s) that get run when the container is started. To change the
command(s) that get executed on start, edit the args parameter of the spec. See
\"berth spec --help\" for more explanation.",
        options: CREATE_OPTS,
    },
    Cmd {
        names: &["delete"],
        usage: "delete any resources held by the container often used with detached container",
        args: "<container-id>

Where \"<container-id>\" is the name for the instance of the container.

EXAMPLE:
For example, if the container id is \"ubuntu01\" and berth list currently shows the
status of \"ubuntu01\" as \"stopped\" the following will delete resources held for
\"ubuntu01\" removing \"ubuntu01\" from the berth list of containers:

       # berth delete ubuntu01",
        description: "",
        options: &[("--force, -f", "Forcibly deletes the container if it is still running (uses SIGKILL)")],
    },
    Cmd {
        names: &["events"],
        usage: "display container events such as OOM notifications, cpu, memory, and IO usage statistics",
        args: "<container-id>

Where \"<container-id>\" is the name for the instance of the container.",
        description: "The events command displays information about the container. By default the
information is displayed once every 5 seconds.",
        options: &[
            ("--interval value", "set the stats collection interval (default: 5s)"),
            ("--stats", "display the container's stats then exit"),
        ],
    },
    Cmd {
        names: &["exec"],
        usage: "execute new process inside the container",
        args: "<container-id> <command> [command options]  || -p process.json <container-id>

Where \"<container-id>\" is the name for the instance of the container and
\"<command>\" is the command to be executed in the container.
\"<command>\" can't be empty unless a \"-p\" flag provided.

EXAMPLE:
For example, if the container is configured to run the linux ps command the
following will output a list of processes running in the container:

       # berth exec <container-id> ps",
        description: "",
        options: &[
            CREATE_OPTS[1],
            ("--pidfd-socket value", "path to an AF_UNIX socket which will receive a pidfd of the new process"),
            ("--cwd value", "current working directory in the container"),
            ("--env value, -e value", "set environment variables"),
            ("--tty, -t", "allocate a pseudo-TTY"),
            ("--user value, -u value", "UID (format: <uid>[:<gid>])"),
            ("--additional-gids value, -g value", "additional gids"),
            ("--process value, -p value", "path to the process.json"),
            ("--detach, -d", "detach from the container's process"),
            ("--pid-file value", "specify the file to write the process id to"),
            ("--process-label value", "set the asm process label for the process commonly used with selinux"),
            ("--apparmor value", "set the apparmor profile for the process"),
            ("--no-new-privs", "set the no new privileges value for the process"),
            ("--cap value, -c value", "add a capability to the bounding set for the process"),
            CREATE_OPTS[5],
            ("--cgroup value", "run the process in an (existing) sub-cgroup(s). Format is [<controller>:]<cgroup>."),
            ("--ignore-paused", "allow exec in a paused container"),
        ],
    },
    Cmd {
        names: &["kill"],
        usage: "kill sends the specified signal (default: SIGTERM) to the container's init process",
        args: "<container-id> [signal]

Where \"<container-id>\" is the name for the instance of the container and
\"[signal]\" is the signal to be sent to the init process.

EXAMPLE:
For example, if the container id is \"ubuntu01\" the following will send a \"KILL\"
signal to the init process of the \"ubuntu01\" container:

       # berth kill ubuntu01 KILL",
        description: "",
        options: &[("--all, -a", "send the specified signal to all processes inside the container")],
    },
    Cmd {
        names: &["list", "ls"],
        usage: "lists containers started by berth with the given root",
        args: "

Where the given root is specified via the global option \"--root\"
(default: \"/run/berth\").

EXAMPLE 1:
To list containers created via the default \"--root\":
       # berth list

EXAMPLE 2:
To list containers created using a non-default value for \"--root\":
       # berth --root value list",
        description: "",
        options: &[
            ("--format value, -f value", "select one of: table or json (default: \"table\")"),
            ("--quiet, -q", "display only container IDs"),
        ],
    },
    Cmd {
        names: &["pause"],
        usage: "pause suspends all processes inside the container",
        args: "<container-id>

Where \"<container-id>\" is the name for the instance of the container to be
paused. ",
        description: "The pause command suspends all processes in the instance of the container.

Use berth list to identify instances of containers and their current status.",
        options: &[],
    },
    Cmd {
        names: &["ps"],
        usage: "ps displays the processes running inside a container",
        args: "<container-id> [ps options]",
        description: "",
        options: &[("--format value, -f value", "select one of: table or json (default: \"table\")")],
    },
    Cmd {
        names: &["resume"],
        usage: "resumes all processes that have been previously paused",
        args: "<container-id>

Where \"<container-id>\" is the name for the instance of the container to be
resumed.",
        description: "The resume command resumes all processes in the instance of the container.

Use berth list to identify instances of containers and their current status.",
        options: &[],
    },
    Cmd {
        names: &["run"],
        usage: "create and run a container",
        args: ID_ARGS,
        description: "The run command creates an instance of a container for a bundle. The bundle
is a directory with a specification file named \"config.json\" and a root
filesystem.

The specification file includes an args parameter. The args parameter is used
to specify command(s) that get run when the container is started. To change the
command(s) that get executed on start, edit the args parameter of the spec. See
\"berth spec --help\" for more explanation.",
        options: RUN_OPTS,
    },
    Cmd {
        names: &["spec"],
        usage: "create a new specification file",
        args: "",
        description: "The spec command creates the new specification file named \"config.json\" for
the bundle.

The spec generated is just a starter file. Editing of the spec is required to
achieve desired results. For example, the newly generated spec includes an args
parameter that is initially set to call the \"sh\" command when the container is
started.

You can pass the parameter --rootless to this command to generate a proper
rootless spec file.
",
        options: &[
            ("--bundle value, -b value", "path to the root of the bundle directory"),
            ("--rootless", "generate a configuration for a rootless container"),
        ],
    },
    Cmd {
        names: &["start"],
        usage: "executes the user defined process in a created container",
        args: ID_ARGS,
        description: "The start command executes the user defined process in a created container.",
        options: &[],
    },
    Cmd {
        names: &["state"],
        usage: "output the state of a container",
        args: "<container-id>

Where \"<container-id>\" is your name for the instance of the container.",
        description: "The state command outputs current state information for the
instance of a container.",
        options: &[],
    },
    Cmd {
        names: &["update"],
        usage: "update container resource constraints",
        args: "<container-id>",
        description: "",
        options: &[
            (
                "--resources value, -r value",
                "path to the file containing the resources to update or '-' to read from the standard input

The accepted format is as follow (unchanged values can be omitted):

{
  \"memory\": {
    \"limit\": 0,
    \"reservation\": 0,
    \"swap\": 0
  },
  \"cpu\": {
    \"shares\": 0,
    \"quota\": 0,
    \"burst\": 0,
    \"period\": 0,
    \"realtimeRuntime\": 0,
    \"realtimePeriod\": 0,
    \"cpus\": \"\",
    \"mems\": \"\",
    \"idle\": 0
  },
  \"blockIO\": {
    \"weight\": 0
  },
  \"pids\": {
    \"limit\": 0
  }
}

Note: if data is to be read from a file or the standard input, all
other options are ignored.",
            ),
            ("--blkio-weight value", "Specifies per cgroup weight, range is from 10 to 1000 (default: 0)"),
            ("--cpu-period value", "CPU CFS period to be used for hardcapping (in usecs). 0 to use system default"),
            ("--cpu-quota value", "CPU CFS hardcap limit (in usecs). Allowed cpu time in a given period"),
            ("--cpu-burst value", "CPU CFS hardcap burst limit (in usecs). Allowed accumulated cpu time additionally for burst a given period"),
            ("--cpu-share value", "CPU shares (relative weight vs. other containers)"),
            ("--cpu-rt-period value", "CPU realtime period to be used for hardcapping (in usecs). 0 to use system default"),
            ("--cpu-rt-runtime value", "CPU realtime hardcap limit (in usecs). Allowed cpu time in a given period"),
            ("--cpuset-cpus value", "CPU(s) to use"),
            ("--cpuset-mems value", "Memory node(s) to use"),
            ("--cpu-idle value", "set cgroup SCHED_IDLE or not, 0: default behavior, 1: SCHED_IDLE"),
            ("--memory value", "Memory limit (in bytes)"),
            ("--memory-reservation value", "Memory reservation or soft_limit (in bytes)"),
            ("--memory-swap value", "Total memory usage (memory + swap); set '-1' to enable unlimited swap"),
            ("--pids-limit value", "Maximum number of pids allowed in the container (default: 0)"),
        ],
    },
    Cmd {
        names: &["features"],
        usage: "show the enabled features",
        args: "",
        description: "Show the enabled features.
   The result is parsable as a JSON.
   See https://github.com/opencontainers/runtime-spec/blob/main/features.md for the format.
",
        options: &[],
    },
];

const ENGINE: &[(&str, &str)] = &[
    (
        "image",
        "images: build, load, pull, push, save, history, ls, inspect, tag, rm, prune, unpack, mount (docker-style; see berth image --help)",
    ),
    ("container", "containers, docker-style: run, create, start, stop, ls, logs, exec, inspect, rm, commit, diff, cp, export, ..."),
    ("volume", "named volumes: create, ls, inspect, rm, prune"),
    ("network", "networks: create, ls, inspect, rm, prune, connect, disconnect"),
    ("builder", "the build cache: prune"),
    ("system", "the engine as a whole: service (the Docker Engine API on a socket), events, df, prune, info"),
    ("info", "system-wide information (as system info)"),
    ("login", "log in to a registry (writes the docker-style auth file pull reads)"),
    ("logout", "log out from a registry"),
];

const GLOBAL_OPTS: &[(&str, &str)] = &[
    ("--debug", "enable debug logging"),
    ("--log value", "set the log file to write berth logs to (default is '/dev/stderr')"),
    ("--log-format value", "set the log format ('text' (default), or 'json') (default: \"text\")"),
    ("--root value", "root directory for storage of container state (this should be located in tmpfs) (default: \"/run/berth\")"),
    ("--criu value", "accepted for compatibility: checkpoint and restore are not supported"),
    (
        "--systemd-cgroup",
        "enable systemd cgroup support, expects cgroupsPath to be of form \"slice:prefix:name\" for e.g. \"system.slice:berth:434234\"",
    ),
    ("--rootless value", "ignore cgroup permission errors ('true', 'false', or 'auto') (default: \"auto\")"),
    ("--data-root value", "engine data: images, engine containers, networks, volumes (default: $BERTH_DATA_ROOT, else \"/var/lib/berth\")"),
    ("--help, -h", "show help"),
    ("--version, -v", "print the version"),
];

/// Global options that take a value (skipped when looking for the command).
pub const GLOBAL_VALUE_FLAGS: &[&str] = &["--root", "--log", "--log-format", "--rootless", "--criu", "--data-root"];

fn find(name: &str) -> Option<&'static Cmd> {
    COMMANDS.iter().find(|c| c.names.contains(&name))
}

/// `--since`, `--until`, `--filter`/`-f`, `--format`: the engine's `events` flags (runc's
/// `events` has none of them).
fn is_engine_events_flag(arg: &str) -> bool {
    let Some(name) = arg.strip_prefix('-') else { return false };
    let name = name.trim_start_matches('-');
    let name = name.split_once('=').map_or(name, |(n, _)| n);
    matches!(name, "since" | "until" | "filter" | "f" | "format")
}

pub fn is_engine(name: &str) -> bool {
    ENGINE.iter().any(|(n, _)| *n == name)
}

/// Go's text/tabwriter as urfave/cli uses it for help (minwidth 1, tabwidth 8, padding 2,
/// ' '): within each run of consecutive lines that hold a tab, the text before the tab is
/// padded to the widest such text plus 2.
fn tabwrite(text: &str) -> String {
    let lines: Vec<&str> = text.split('\n').collect();
    let mut out = String::with_capacity(text.len() + 256);
    let mut i = 0;
    while i < lines.len() {
        if !lines[i].contains('\t') {
            out.push_str(lines[i]);
            i += 1;
            if i < lines.len() {
                out.push('\n');
            }
            continue;
        }
        let start = i;
        while i < lines.len() && lines[i].contains('\t') {
            i += 1;
        }
        let block = &lines[start..i];
        let w = block.iter().filter_map(|l| l.split_once('\t')).map(|(a, _)| a.chars().count()).max().unwrap_or(0) + 2;
        for (k, l) in block.iter().enumerate() {
            if let Some((a, b)) = l.split_once('\t') {
                out.push_str(a);
                out.extend(std::iter::repeat_n(' ', w - a.chars().count()));
                out.push_str(b);
            }
            if start + k + 1 < lines.len() {
                out.push('\n');
            }
        }
    }
    out
}

fn command_help(c: &Cmd) -> String {
    let name = c.names[0];
    let mut s = format!("NAME:\n   berth {name} - {}\n\nUSAGE:\n   berth {name}", c.usage);
    if !c.options.is_empty() {
        s.push_str(" [command options]");
    }
    s.push(' ');
    s.push_str(if c.args.is_empty() { "[arguments...]" } else { c.args });
    if !c.description.is_empty() {
        s.push_str("\n\nDESCRIPTION:\n   ");
        s.push_str(c.description);
    }
    if !c.options.is_empty() {
        s.push_str("\n\nOPTIONS:\n   ");
        for (f, t) in c.options {
            s.push_str(&format!("{f}\t{t}\n   "));
        }
    }
    s.push('\n');
    tabwrite(&s)
}

fn app_help() -> String {
    let mut s = String::from(
        "NAME:
   berth - Open Container Initiative runtime

berth is a command line client for running applications packaged according to
the Open Container Initiative (OCI) format: a drop-in for runc, with a daemonless
docker-style engine (images, containers, volumes, networks) on top.

Containers are configured using bundles. A bundle for a container is a directory
that includes a specification file named \"config.json\" and a root filesystem.
The root filesystem contains the contents of the container.

To start a new instance of a container:

    # berth run [ -b bundle ] <container-id>

USAGE:
   berth [global options] command [command options] [arguments...]

VERSION:
   ",
    );
    s.push_str(env!("CARGO_PKG_VERSION"));
    s.push_str("\nspec: ");
    s.push_str(berth::OCI_VERSION);
    s.push_str("\n\nCOMMANDS:");
    for c in COMMANDS {
        s.push_str(&format!("\n   {}\t{}", c.names.join(", "), c.usage));
    }
    for (n, u) in ENGINE {
        s.push_str(&format!("\n   {n}\t{u}"));
    }
    s.push_str("\n   help, h\tShows a list of commands or help for one command\n\nGLOBAL OPTIONS:");
    for (f, t) in GLOBAL_OPTS {
        s.push_str(&format!("\n   {f}\t{t}"));
    }
    s.push('\n');
    tabwrite(&s)
}

fn print(text: &str) -> i32 {
    use std::io::Write;
    // `berth --help | head` ends quietly.
    // SAFETY: restoring the default disposition of a signal, before any thread exists.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    let _ = std::io::stdout().write_all(text.as_bytes());
    0
}

fn no_topic(name: &str) -> i32 {
    crate::logging::error(&format!("No help topic for '{name}'"));
    eprintln!("berth: No help topic for '{name}'");
    3
}

/// Answers help requests and unknown commands as runc does; `None` lets the argument parser
/// handle the command line. `args` excludes the program name.
pub fn intercept(args: &[String]) -> Option<i32> {
    let mut i = 0;
    let mut wants_help = false;
    let mut version = false;
    while i < args.len() {
        let a = args[i].as_str();
        if GLOBAL_VALUE_FLAGS.contains(&a) {
            if i + 1 >= args.len() {
                return Some(global_usage_error(&format!("flag needs an argument: -{}", a.trim_start_matches('-'))));
            }
            i += 2;
            continue;
        }
        if !a.starts_with('-') || a == "-" {
            break;
        }
        match a {
            "-h" | "--help" => wants_help = true,
            "-v" | "--version" => version = true,
            "--" => {
                i += 1;
                break;
            }
            _ => {
                let name = a.trim_start_matches('-');
                let name = name.split_once('=').map_or(name, |(n, _)| n);
                let known = GLOBAL_OPTS
                    .iter()
                    .flat_map(|(f, _)| f.split(", "))
                    .any(|f| f.strip_suffix(" value").unwrap_or(f).trim_start_matches('-') == name);
                if !known {
                    return Some(global_usage_error(&format!("flag provided but not defined: -{name}")));
                }
            }
        }
        i += 1;
    }
    let Some(sub) = args.get(i) else {
        // runc with no command (or only global options) shows its help.
        return if version && !wants_help { None } else { Some(print(&app_help())) };
    };
    if wants_help {
        return Some(print(&app_help()));
    }
    match sub.as_str() {
        "help" | "h" => {
            let Some(topic) = args.get(i + 1) else { return Some(print(&app_help())) };
            if is_engine(topic) {
                return None;
            }
            Some(match find(topic) {
                Some(c) => print(&command_help(c)),
                None => no_topic(topic),
            })
        }
        s if is_engine(s) || s == "init" => None,
        // `events` with the engine's journal flags is the engine's `berth events`.
        "events" if args[i + 1..].iter().any(|a| is_engine_events_flag(a)) => None,
        s => {
            let Some(c) = find(s) else { return Some(no_topic(s)) };
            // Options come before the first positional argument (Go's flag package stops there,
            // so `exec ID sh -h` gives -h to sh).
            let mut k = i + 1;
            while k < args.len() {
                let a = args[k].as_str();
                if a == "-h" || a == "--help" {
                    return Some(print(&command_help(c)));
                }
                if a == "--" {
                    k += 1;
                    break;
                }
                if !a.starts_with('-') || a == "-" {
                    break;
                }
                let (name, inline) = match a.trim_start_matches('-').split_once('=') {
                    Some((n, _)) => (n, true),
                    None => (a.trim_start_matches('-'), false),
                };
                match flag_kind(c, name) {
                    None => return Some(usage_error(c, &format!("flag provided but not defined: -{name}"), true)),
                    Some(true) if !inline => {
                        if k + 1 >= args.len() {
                            return Some(usage_error(c, &format!("flag needs an argument: -{name}"), true));
                        }
                        k += 2;
                    }
                    Some(_) => k += 1,
                }
            }
            let n = args.len().saturating_sub(k);
            let name = c.names[0];
            let wrong = match arity(name) {
                Some(Arity::Exact(e)) if n != e => Some(format!("\"{name}\" requires exactly {e} argument(s)")),
                Some(Arity::Min(m, _)) if n < m => Some(format!("\"{name}\" requires a minimum of {m} argument(s)")),
                Some(Arity::Min(_, Some(x))) if n > x => {
                    Some(format!("\"{name}\" requires a maximum of {x} argument(s)"))
                }
                _ => None,
            };
            wrong.map(|msg| usage_error(c, &msg, false))
        }
    }
}

/// runc's answer to a bad global option: "Incorrect Usage." and the error, then the whole help.
fn global_usage_error(msg: &str) -> i32 {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(format!("Incorrect Usage. {msg}\n\n").as_bytes());
    let _ = out.write_all(app_help().as_bytes());
    let _ = out.flush();
    crate::logging::error(msg);
    eprintln!("berth: {msg}");
    1
}

/// How many arguments a runtime command takes after its options (runc's `checkArgs`).
enum Arity {
    Exact(usize),
    /// A minimum and, for `kill`, a maximum.
    Min(usize, Option<usize>),
}

fn arity(name: &str) -> Option<Arity> {
    Some(match name {
        "create" | "delete" | "events" | "pause" | "resume" | "run" | "start" | "state" | "update" => Arity::Exact(1),
        "features" | "list" | "spec" => Arity::Exact(0),
        "exec" | "ps" => Arity::Min(1, None),
        "kill" => Arity::Min(1, Some(2)),
        _ => return None,
    })
}

/// Flags a command accepts beyond those its help lists: berth's spellings kept for scripts
/// written against it (`--cpu-shares`, runc's hidden kernel-memory flags).
const HIDDEN_VALUE_FLAGS: &[(&str, &str)] =
    &[("update", "cpu-shares"), ("update", "kernel-memory"), ("update", "kernel-memory-tcp")];

/// Whether `name` (without dashes) is one of the command's flags, and then whether it takes a
/// value. Global options are accepted after the command too, as berth always has.
fn flag_kind(c: &Cmd, name: &str) -> Option<bool> {
    let listed = c.options.iter().chain(GLOBAL_OPTS).flat_map(|(f, _)| f.split(", "));
    for f in listed {
        let (flag, value) = match f.strip_suffix(" value") {
            Some(f) => (f, true),
            None => (f, false),
        };
        if flag.trim_start_matches('-') == name {
            return Some(value);
        }
    }
    HIDDEN_VALUE_FLAGS.iter().any(|(cmd, f)| *cmd == c.names[0] && *f == name).then_some(true)
}

/// runc's usage error: "Incorrect Usage" and the command's help on stdout, the error on stderr
/// (and in the log), status 1. A bad flag names itself on the first line; a wrong number of
/// arguments does not.
fn usage_error(c: &Cmd, msg: &str, flag: bool) -> i32 {
    use std::io::Write;
    let head = if flag { format!("Incorrect Usage: {msg}\n\n") } else { "Incorrect Usage.\n\n".to_string() };
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(head.as_bytes());
    let _ = out.write_all(command_help(c).as_bytes());
    let _ = out.flush();
    crate::logging::error(msg);
    eprintln!("berth: {msg}");
    1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn help(args: &[&str]) -> Option<i32> {
        intercept(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn tabwriter_blocks() {
        assert_eq!(tabwrite("a\tx\nlong\ty\n\nb\tz\n"), "a     x\nlong  y\n\nb  z\n");
    }

    #[test]
    fn kill_layout() {
        let h = command_help(find("kill").unwrap());
        assert!(h.starts_with("NAME:\n   berth kill - kill sends"), "{h}");
        assert!(h.contains("\nUSAGE:\n   berth kill [command options] <container-id> [signal]\n"), "{h}");
        assert!(
            h.ends_with(
                "\nOPTIONS:\n   --all, -a  send the specified signal to all processes inside the container\n   \n"
            ),
            "{h}"
        );
        let s = command_help(find("state").unwrap());
        assert!(s.contains("USAGE:\n   berth state <container-id>\n"), "{s}");
        assert!(s.ends_with("instance of a container.\n"), "{s}");
    }

    #[test]
    fn where_help_is_answered() {
        assert_eq!(help(&["exec", "ID", "sh", "-h"]), None);
        assert_eq!(help(&["exec", "--cwd", "/", "ID"]), None);
        assert_eq!(help(&["image", "--help"]), None);
        assert_eq!(help(&["--version"]), None);
        assert_eq!(help(&["--root", "/x", "state", "ID"]), None);
    }
}
