//! What the container commands print: `ls` (table / json), `inspect` (docker's JSON, simple
//! `--format` templates) and `stats`.

use super::adapt;
use super::run::{self, State, Status};
use super::store::{Containers, Record};
use super::{Engine, EngineError};
use serde_json::{json, Value};
use std::io::Write;
use std::time::{Duration, Instant, SystemTime};

/// docker's (go-units) HumanDuration.
pub fn human_duration(d: Duration) -> String {
    let s = d.as_secs();
    let plural = |n: u64, unit: &str| format!("{n} {unit}{}", if n == 1 { "" } else { "s" });
    if s < 1 {
        return "Less than a second".into();
    }
    if s < 60 {
        return plural(s, "second");
    }
    let m = (d.as_secs_f64() / 60.0).round() as u64;
    if m == 1 {
        return "About a minute".into();
    }
    if m < 60 {
        return plural(m, "minute");
    }
    let h = (d.as_secs_f64() / 3600.0).round() as u64;
    if h == 1 {
        return "About an hour".into();
    }
    if h < 48 {
        return plural(h, "hour");
    }
    if h < 24 * 7 * 2 {
        return plural(h / 24, "day");
    }
    if h < 24 * 30 * 2 {
        return plural(h / 24 / 7, "week");
    }
    if h < 24 * 365 * 2 {
        return plural(h / 24 / 30, "month");
    }
    plural(h / 24 / 365, "year")
}

fn since(t: Option<&str>) -> Duration {
    t.and_then(adapt::parse_rfc3339).and_then(|t| SystemTime::now().duration_since(t).ok()).unwrap_or_default()
}

/// The STATUS column: "Up 5 seconds", "Exited (0) 3 minutes ago", "Created", ...
pub fn status_text(st: &Status) -> String {
    let shim = st.shim.as_ref();
    match st.state {
        State::Created => "Created".into(),
        State::Running => {
            let mut s = format!("Up {}", human_duration(since(shim.and_then(|s| s.started_at.as_deref()))));
            if st.paused {
                s.push_str(" (Paused)");
            }
            match st.health.as_deref() {
                Some("starting") => s.push_str(" (health: starting)"),
                Some(h) => s.push_str(&format!(" ({h})")),
                None => {}
            }
            if !st.shim_alive {
                s.push_str(" (no shim)");
            }
            s
        }
        State::Restarting => format!(
            "Restarting ({}) {} ago",
            shim.and_then(|s| s.exit_code).unwrap_or(0),
            human_duration(since(shim.and_then(|s| s.finished_at.as_deref())))
        ),
        State::Exited => format!(
            "Exited ({}) {} ago",
            st.exit_code.unwrap_or(0),
            human_duration(since(shim.and_then(|s| s.finished_at.as_deref())))
        ),
    }
}

pub fn command_text(rec: &Record, trunc: bool) -> String {
    let mut c =
        std::iter::once(rec.path.as_str()).chain(rec.args.iter().map(String::as_str)).collect::<Vec<_>>().join(" ");
    if trunc && c.chars().count() > 20 {
        c = c.chars().take(19).collect::<String>() + "…";
    }
    format!("\"{c}\"")
}

pub struct LsOpts {
    pub all: bool,
    pub quiet: bool,
    pub format: Option<String>,
    pub no_trunc: bool,
    pub last: Option<usize>,
    pub filter: Vec<String>,
}

fn matches_filter(rec: &Record, st: &Status, f: &str) -> Result<bool, EngineError> {
    let (k, v) =
        f.split_once('=').ok_or_else(|| EngineError::Invalid(format!("invalid --filter {f:?}: expected KEY=VALUE")))?;
    Ok(match k {
        "name" => rec.name.contains(v),
        "id" => rec.id.starts_with(v),
        "status" if st.paused => v == "paused",
        "health" => match st.health.as_deref() {
            Some(h) => h == v,
            None => v == "none",
        },
        "status" => st.state.as_str() == v,
        "exited" => st.state == State::Exited && st.exit_code.map(|c| c.to_string()).as_deref() == Some(v),
        "label" => match v.split_once('=') {
            Some((lk, lv)) => rec.spec.labels.get(lk).map(String::as_str) == Some(lv),
            None => {
                rec.spec.labels.contains_key(v) || rec.image_config.labels.as_ref().is_some_and(|l| l.contains_key(v))
            }
        },
        "ancestor" => rec.image == v || rec.image_id.contains(v),
        _ => return Err(EngineError::Invalid(format!("invalid --filter {f:?}: unknown key {k:?}"))),
    })
}

/// The containers `ls` shows: running ones (all of them with `all`, a status filter or
/// `last`), those matching every `key=value` filter, newest first, at most `last`.
pub fn select(
    e: &Engine,
    cs: &Containers,
    all: bool,
    filters: &[String],
    last: Option<usize>,
) -> Result<Vec<(Record, Status)>, EngineError> {
    let mut recs: Vec<(Record, Status)> = Vec::new();
    for rec in cs.all() {
        let st = run::status(e, cs, &rec.id);
        let explicit_status = filters.iter().any(|f| f.starts_with("status=") || f.starts_with("exited="));
        if !all && !explicit_status && last.is_none() && !matches!(st.state, State::Running | State::Restarting) {
            continue;
        }
        let mut keep = true;
        for f in filters {
            keep &= matches_filter(&rec, &st, f)?;
        }
        if keep {
            recs.push((rec, st));
        }
    }
    recs.sort_by(|a, b| b.0.created.cmp(&a.0.created));
    if let Some(n) = last {
        recs.truncate(n);
    }
    Ok(recs)
}

pub fn ls(e: &Engine, cs: &Containers, o: &LsOpts) -> Result<(), EngineError> {
    let recs = select(e, cs, o.all, &o.filter, o.last)?;
    let mut out = std::io::stdout().lock();
    let id_of = |r: &Record| if o.no_trunc { r.id.clone() } else { r.id[..12].to_string() };
    if o.quiet {
        for (r, _) in &recs {
            let _ = writeln!(out, "{}", id_of(r));
        }
        return Ok(());
    }
    match o.format.as_deref() {
        None | Some("table") => {
            let mut rows = vec![["CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"]
                .map(String::from)
                .to_vec()];
            for (r, st) in &recs {
                rows.push(vec![
                    id_of(r),
                    r.image.clone(),
                    command_text(r, !o.no_trunc),
                    format!("{} ago", human_duration(since(Some(&r.created)))),
                    status_text(st),
                    if st.state == State::Running { displayable_ports(&r.net.ports) } else { String::new() },
                    r.name.clone(),
                ]);
            }
            print_table(&mut out, &rows);
        }
        Some(f) => {
            let rows: Vec<Value> = recs.iter().map(|(r, st)| ls_view(r, st, o.no_trunc)).collect();
            let text = crate::template::render_rows(f, &rows, &ls_headers()).map_err(template_err)?;
            let _ = out.write_all(text.as_bytes());
        }
    }
    Ok(())
}

pub fn template_err(e: crate::template::TemplateError) -> EngineError {
    EngineError::Invalid(e.to_string())
}

/// docker's column names of `ls --format 'table ...'`.
fn ls_headers() -> std::collections::BTreeMap<&'static str, &'static str> {
    [
        ("ID", "CONTAINER ID"),
        ("Names", "NAMES"),
        ("Image", "IMAGE"),
        ("Command", "COMMAND"),
        ("CreatedAt", "CREATED AT"),
        ("RunningFor", "CREATED"),
        ("Ports", "PORTS"),
        ("State", "STATE"),
        ("Status", "STATUS"),
        ("Size", "SIZE"),
        ("Labels", "LABELS"),
        ("Mounts", "MOUNTS"),
        ("Networks", "NETWORKS"),
        ("LocalVolumes", "LOCAL VOLUMES"),
    ]
    .into_iter()
    .collect()
}

/// The networks `ls` lists for a container, as docker's NETWORKS column: every network it is
/// attached to (those joined with `network connect` too, a disconnected one no more), else the
/// network it will join when it starts.
fn ls_networks(r: &Record) -> String {
    if !r.net.networks.is_empty() {
        r.net.networks.join(",")
    } else {
        let first = (!r.spec.network_left).then(|| r.spec.network.clone());
        first.into_iter().chain(r.spec.connected.iter().map(|c| c.network.clone())).collect::<Vec<_>>().join(",")
    }
}

/// What `ls --format` shows of a container (docker's `ps --format` fields).
fn ls_view(r: &Record, st: &Status, no_trunc: bool) -> Value {
    json!({
        "Command": command_text(r, !no_trunc),
        "CreatedAt": r.created,
        "ID": if no_trunc { r.id.clone() } else { r.id[..12].to_string() },
        "Image": r.image,
        "Labels": r.spec.labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(","),
        "LocalVolumes": r.mounts.iter().filter(|m| m.kind == "volume").count().to_string(),
        "Mounts": r.mounts.iter().map(|m| m.name.clone().unwrap_or_else(|| m.source.to_string_lossy().into_owned())).collect::<Vec<_>>().join(","),
        "Names": r.name,
        "Networks": ls_networks(r),
        "Ports": if st.state == State::Running { displayable_ports(&r.net.ports) } else { String::new() },
        "RunningFor": format!("{} ago", human_duration(since(Some(&r.created)))),
        "Size": "0B",
        "State": if st.paused { "paused" } else { st.state.as_str() },
        "Status": status_text(st),
        "ExitCode": st.exit_code,
    })
}

fn print_table(out: &mut impl Write, rows: &[Vec<String>]) {
    let cols = rows.first().map(Vec::len).unwrap_or(0);
    let widths: Vec<usize> = (0..cols).map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0)).collect();
    for r in rows {
        let mut line = String::new();
        for (i, cell) in r.iter().enumerate() {
            line.push_str(cell);
            if i + 1 < cols {
                line.push_str(&" ".repeat(widths[i] - cell.chars().count() + 3));
            }
        }
        let _ = writeln!(out, "{}", line.trim_end());
    }
}

// ---------------------------------------------------------------------------------------------
// inspect

fn restart_json(p: &str) -> Value {
    let (name, max) = match p.split_once(':') {
        Some((n, m)) => (n, m.parse::<u32>().unwrap_or(0)),
        None => (if p.is_empty() { "no" } else { p }, 0),
    };
    json!({"Name": name, "MaximumRetryCount": max})
}

pub fn inspect_json(e: &Engine, cs: &Containers, r: &Record, st: &Status) -> Value {
    let dir = cs.path(&r.id);
    let sh = st.shim.clone().unwrap_or_default();
    let s = &r.spec;
    let zero_time = "0001-01-01T00:00:00Z";
    let mut port_bindings = serde_json::Map::new();
    for m in s.publish.iter().filter_map(|p| crate::network::PortMapping::parse(p).ok()).flatten() {
        let e =
            port_bindings.entry(format!("{}/{}", m.container_port, m.protocol.as_str())).or_insert_with(|| json!([]));
        let host_port = match (m.host_port, m.host_port_end) {
            (0, _) => String::new(),
            (p, 0) => p.to_string(),
            (p, end) => format!("{p}-{end}"),
        };
        if let Some(a) = e.as_array_mut() {
            a.push(json!({"HostIp": m.host_ip.map(|i| i.to_string()).unwrap_or_default(), "HostPort": host_port}));
        }
    }
    let mut ports = serde_json::Map::new();
    if st.state == State::Running {
        for p in &r.net.ports {
            // "IP:HOST->PORT/PROTO"
            if let Some((host, cont)) = p.split_once("->") {
                let (ip, hp) = host.rsplit_once(':').unwrap_or(("", host));
                let ip = ip.trim_start_matches('[').trim_end_matches(']');
                let e = ports.entry(cont.to_string()).or_insert_with(|| json!([]));
                if let Some(a) = e.as_array_mut() {
                    a.push(json!({"HostIp": ip, "HostPort": hp}));
                }
            }
        }
    }
    // A container not started yet shows the network it will join (docker does; compose reads
    // it). On user-defined networks docker adds the short id to the aliases.
    let planned = [s.network.clone()];
    let named = !matches!(s.network.as_str(), "bridge" | "none" | "host" | "default")
        && !s.network.starts_with("container:")
        && !s.network_left;
    let nets: &[String] = if r.net.networks.is_empty() && named { &planned } else { &r.net.networks };
    let ifaces =
        crate::network::attachment(&e.data_root, &r.id).ok().flatten().map(|a| a.interfaces).unwrap_or_default();
    let networks: serde_json::Map<String, Value> = nets
        .iter()
        .map(|n| {
            if let Some(i) = ifaces.iter().find(|i| &i.network == n) {
                let mut aliases = s.network_aliases.clone();
                if let Some(c) = s.connected.iter().find(|c| &c.network == n) {
                    aliases = c.aliases.clone();
                }
                if n != "bridge" {
                    aliases.push(r.id[..12].to_string());
                }
                return (n.clone(), json!({
                    "IPAddress": i.ip.to_string(),
                    "IPPrefixLen": i.prefix,
                    "Gateway": i.gateway.map(|g| g.to_string()).unwrap_or_default(),
                    "MacAddress": i.mac,
                    "Aliases": aliases,
                }));
            }
            let mut aliases = s.network_aliases.clone();
            if n != "bridge" {
                aliases.push(r.id[..12].to_string());
            }
            (n.clone(), json!({
                "IPAddress": if Some(n) == r.net.networks.first() { r.net.ip.clone().unwrap_or_default() } else { String::new() },
                "IPPrefixLen": r.net.prefix.unwrap_or(0),
                "Gateway": r.net.gateway.clone().unwrap_or_default(),
                "MacAddress": r.net.mac.clone().unwrap_or_default(),
                "GlobalIPv6Address": if n == r.net.networks.first().unwrap_or(n) { r.net.ip6.clone().unwrap_or_default() } else { String::new() },
                "GlobalIPv6PrefixLen": r.net.prefix6,
                "IPv6Gateway": r.net.gateway6.clone().unwrap_or_default(),
                "Aliases": aliases,
            }))
        })
        .collect();
    let running = st.state == State::Running;
    let mut security_opt = Vec::new();
    if let Some(x) = &s.seccomp {
        security_opt.push(format!("seccomp={x}"));
    }
    if let Some(x) = &s.apparmor {
        security_opt.push(format!("apparmor={x}"));
    }
    if s.no_new_privileges {
        security_opt.push("no-new-privileges".to_string());
    }
    let mut labels = r.image_config.labels.clone().unwrap_or_default();
    labels.extend(s.labels.clone());
    let hostconfig = json!({
        "Binds": r.mounts.iter().filter(|m| !m.anonymous).map(|m| {
            let src = if m.kind == "volume" { m.name.clone().unwrap_or_default() } else { m.source.to_string_lossy().into_owned() };
            format!("{src}:{}{}", m.destination, if m.rw { "" } else { ":ro" })
        }).collect::<Vec<_>>(),
        "NetworkMode": s.network,
        "LogConfig": {"Type": "json-file", "Config": {}},
        "PortBindings": port_bindings,
        "PublishAllPorts": s.publish_all,
        "RestartPolicy": restart_json(&s.restart),
        "AutoRemove": s.auto_remove,
        "CapAdd": s.cap_add,
        "CapDrop": s.cap_drop,
        "Dns": s.dns,
        "DnsSearch": s.dns_search,
        "DnsOptions": s.dns_options,
        "ExtraHosts": s.extra_hosts.iter().map(|(h, i)| format!("{h}:{i}")).collect::<Vec<_>>(),
        "Privileged": s.privileged,
        "ReadonlyRootfs": s.read_only,
        "SecurityOpt": security_opt,
        "Tmpfs": s.tmpfs.iter().map(|(d, o)| (d.clone(), json!(o))).collect::<serde_json::Map<_, _>>(),
        "Memory": s.memory.unwrap_or(0),
        "MemorySwap": s.memory_swap.unwrap_or(0),
        "NanoCpus": s.cpus.map(|c| (c * 1e9) as i64).unwrap_or(0),
        "PidsLimit": s.pids_limit,
        "ShmSize": s.shm_size.unwrap_or(64 << 20),
        "Init": s.init,
        "PidMode": if s.pid_host { "host" } else { "" },
        "IpcMode": if s.ipc_host { "host" } else { "private" },
        "UTSMode": if s.uts_host { "host" } else { "" },
        "CgroupParent": s.cgroup_parent.clone().unwrap_or_default(),
        "CgroupnsMode": if s.cgroupns_host { "host" } else { "private" },
        "LogConfig": {"Type": s.log_driver.as_deref().unwrap_or("json-file"), "Config": s.log_opts},
    });
    let mut hostconfig = hostconfig;
    if let Some(h) = hostconfig.as_object_mut() {
        super::resources::inspect_fields(&s.resources, h);
    }
    let health_check = super::opts::healthcheck(r);
    let mut state = json!({
            "Status": if st.paused { "paused" } else { st.state.as_str() },
            "Running": running,
            "Paused": st.paused,
            "Restarting": st.state == State::Restarting,
            "OOMKilled": sh.oom_killed,
            "Dead": false,
            "Pid": st.pid,
            "ExitCode": st.exit_code.or(sh.exit_code).unwrap_or(0),
            "Error": sh.error.clone().unwrap_or_default(),
            "StartedAt": sh.started_at.clone().unwrap_or_else(|| zero_time.into()),
            "FinishedAt": sh.finished_at.clone().unwrap_or_else(|| zero_time.into()),
            "ShimPid": if st.shim_alive { sh.shim_pid } else { 0 },
    });
    if health_check.as_ref().is_some_and(|h| crate::shim::health::probe_args(h).is_some()) {
        let h = crate::shim::health::read_health(&dir)
            .unwrap_or_else(|| crate::shim::health::Health { status: "starting".into(), ..Default::default() });
        state["Health"] = json!(h);
    }
    let graphdriver = json!({
        "Name": "overlay",
        "Data": {
            "LowerDir": r.lowers.iter().map(|p| p.to_string_lossy().into_owned()).collect::<Vec<_>>().join(":"),
            "UpperDir": dir.join("rw/upper"),
            "WorkDir": dir.join("rw/work"),
            "MergedDir": dir.join("bundle/rootfs"),
        }
    });
    let mounts = r.mounts.iter().map(|m| json!({
            "Type": m.kind,
            "Name": m.name,
            "Source": m.source,
            "Destination": m.destination,
            "Driver": if m.kind == "volume" { "local" } else { "" },
            "Mode": if m.rw { "" } else { "ro" },
            "RW": m.rw,
            "Propagation": m.options.iter().find(|o| o.contains("private") || o.contains("shared") || o.contains("slave")).cloned().unwrap_or_else(|| if m.kind == "bind" { "rprivate".into() } else { String::new() }),
        })).collect::<Vec<_>>();
    let config = json!({
        "Hostname": adapt::hostname_of(r),
        "User": s.user.clone().or_else(|| r.image_config.user.clone()).unwrap_or_default(),
        "AttachStdin": false,
        "Tty": s.tty,
        "OpenStdin": s.stdin_open,
        "Env": s.env,
        "Cmd": if s.cmd.is_empty() && s.entrypoint.is_none() { r.image_config.cmd.clone().map(Value::from).unwrap_or(Value::Null) } else { json!(s.cmd) },
        "Image": r.image,
        "Volumes": r.image_config.volumes,
        "WorkingDir": s.workdir.clone().or_else(|| r.image_config.working_dir.clone()).unwrap_or_default(),
        "Entrypoint": s.entrypoint.clone().or_else(|| r.image_config.entrypoint.clone()),
        "Labels": labels,
        "StopSignal": adapt::stop_signal(r),
        "StopTimeout": s.stop_timeout,
        "ExposedPorts": r.image_config.exposed_ports,
    });
    let mut config = config;
    if let Some(h) = &health_check {
        config["Healthcheck"] = json!(h);
    }
    let networksettings = json!({
        "SandboxKey": r.net.sandbox,
        "Ports": ports,
        "IPAddress": if running { r.net.ip.clone().unwrap_or_default() } else { String::new() },
        "IPPrefixLen": r.net.prefix.unwrap_or(0),
        "Gateway": r.net.gateway.clone().unwrap_or_default(),
        "MacAddress": r.net.mac.clone().unwrap_or_default(),
        "GlobalIPv6Address": if running { r.net.ip6.clone().unwrap_or_default() } else { String::new() },
        "GlobalIPv6PrefixLen": r.net.prefix6,
        "IPv6Gateway": r.net.gateway6.clone().unwrap_or_default(),
        "Networks": networks,
    });
    json!({
        "Id": r.id,
        "Created": r.created,
        "Path": r.path,
        "Args": r.args,
        "State": state,
        "Image": r.image_id,
        "ResolvConfPath": dir.join("etc/resolv.conf"),
        "HostnamePath": dir.join("etc/hostname"),
        "HostsPath": dir.join("etc/hosts"),
        "LogPath": dir.join(crate::shim::LOG_FILE),
        "Name": format!("/{}", r.name),
        "RestartCount": sh.restart_count,
        "Driver": "overlay",
        "Platform": "linux",
        "HostConfig": hostconfig,
        "GraphDriver": graphdriver,
        "Mounts": mounts,
        "Config": config,
        "NetworkSettings": networksettings,
        "EngineRoot": { "DataRoot": e.data_root, "RuntimeRoot": e.root },
    })
}

pub fn inspect(e: &Engine, cs: &Containers, keys: &[String], format: Option<&str>) -> Result<i32, EngineError> {
    let mut arr = Vec::new();
    let mut first: Option<EngineError> = None;
    for k in keys {
        match cs.find(k) {
            Ok(r) => {
                let st = run::status(e, cs, &r.id);
                arr.push(inspect_json(e, cs, &r, &st));
            }
            Err(err) => {
                first.get_or_insert(err);
            }
        }
    }
    let mut out = std::io::stdout().lock();
    match format {
        Some(t) => {
            let t = if t == "json" { "{{json .}}" } else { t };
            let tmpl = crate::template::Template::parse(t).map_err(template_err)?;
            for v in &arr {
                let line = tmpl.render(v).map_err(template_err)?;
                let _ = writeln!(out, "{line}");
            }
        }
        None => {
            let _ = writeln!(out, "{}", serde_json::to_string_pretty(&Value::Array(arr)).unwrap_or_default());
        }
    }
    match first {
        Some(err) => Err(err),
        None => Ok(0),
    }
}

// ---------------------------------------------------------------------------------------------
// stats

/// docker's size units for stats (binary, "1.5MiB").
fn bytes_text(n: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < units.len() {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{n}B")
    } else {
        format!("{v:.3}").trim_end_matches('0').trim_end_matches('.').to_string() + units[i]
    }
}

/// docker's decimal units for network / block I/O ("1.2kB").
fn io_text(n: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1000.0 && i + 1 < units.len() {
        v /= 1000.0;
        i += 1;
    }
    if i == 0 {
        format!("{n}B")
    } else {
        format!("{v:.3}").trim_end_matches('0').trim_end_matches('.').to_string() + units[i]
    }
}

fn host_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

/// (rx, tx) bytes of the container's interfaces other than lo.
fn net_io(pid: i32) -> (u64, u64) {
    let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/net/dev")) else { return (0, 0) };
    let mut rx = 0;
    let mut tx = 0;
    for l in s.lines().skip(2) {
        let Some((name, rest)) = l.split_once(':') else { continue };
        if name.trim() == "lo" {
            continue;
        }
        let f: Vec<u64> = rest.split_whitespace().filter_map(|x| x.parse().ok()).collect();
        if f.len() >= 9 {
            rx += f[0];
            tx += f[8];
        }
    }
    (rx, tx)
}

struct Sample {
    cpu_ns: u64,
    at: Instant,
    data: Value,
}

fn sample(e: &Engine, id: &str) -> Option<Sample> {
    let data = adapt::runtime_stats(e, id)?;
    Some(Sample {
        cpu_ns: data.pointer("/cpu/usage/total").and_then(Value::as_u64).unwrap_or(0),
        at: Instant::now(),
        data,
    })
}

/// The host's CPU time in nanoseconds (the first line of /proc/stat; USER_HZ is 100).
fn system_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| {
            let l = s.lines().next()?.strip_prefix("cpu ")?.to_string();
            Some(l.split_whitespace().take(8).filter_map(|x| x.parse::<u64>().ok()).sum::<u64>() * 10_000_000)
        })
        .unwrap_or(0)
}

/// One stats reading in the Engine API's shape (`cpu_stats` filled, `precpu_stats` from the
/// reading before, if any).
pub fn stats_api_json(e: &Engine, r: &Record, st: &Status, prev: Option<&Value>) -> Value {
    let d = adapt::runtime_stats(e, &r.id).unwrap_or(Value::Null);
    let u = |p: &str| d.pointer(p).and_then(Value::as_u64).unwrap_or(0);
    let ncpu = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let mut limit = u("/memory/usage/limit");
    let host = host_memory();
    if limit == 0 || (host > 0 && limit > host) {
        limit = host;
    }
    let raw = d.pointer("/memory/raw").cloned().unwrap_or(json!({}));
    let (rx, tx) = if st.pid > 0 { net_io(st.pid) } else { (0, 0) };
    let cpu = json!({
        "cpu_usage": {"total_usage": u("/cpu/usage/total"), "usage_in_kernelmode": u("/cpu/usage/kernel"),
                      "usage_in_usermode": u("/cpu/usage/user"), "percpu_usage": d.pointer("/cpu/usage/percpu").cloned().unwrap_or(json!([]))},
        "system_cpu_usage": system_cpu_ns(),
        "online_cpus": ncpu,
        "throttling_data": {"periods": u("/cpu/throttling/periods"), "throttled_periods": u("/cpu/throttling/throttledPeriods"),
                            "throttled_time": u("/cpu/throttling/throttledTime")},
    });
    json!({
        "read": adapt::now_rfc3339(),
        "preread": prev.map(|p| p["read"].clone()).unwrap_or(json!("0001-01-01T00:00:00Z")),
        "id": r.id,
        "name": format!("/{}", r.name),
        "pids_stats": {"current": u("/pids/current"), "limit": u("/pids/limit")},
        "cpu_stats": cpu,
        "precpu_stats": prev.map(|p| p["cpu_stats"].clone()).unwrap_or(json!({"cpu_usage": {"total_usage": 0}, "throttling_data": {}})),
        "memory_stats": {"usage": u("/memory/usage/usage"), "max_usage": u("/memory/usage/max"), "limit": limit, "stats": raw},
        "blkio_stats": {"io_service_bytes_recursive": d.pointer("/blkio/io_service_bytes_recursive").cloned().unwrap_or(Value::Null)},
        "networks": {"eth0": {"rx_bytes": rx, "tx_bytes": tx, "rx_packets": 0, "tx_packets": 0, "rx_errors": 0, "tx_errors": 0, "rx_dropped": 0, "tx_dropped": 0}},
    })
}

fn stats_row(r: &Record, st: &Status, a: Option<&Sample>, b: Option<&Sample>, no_trunc: bool) -> Vec<String> {
    let id = if no_trunc { r.id.clone() } else { r.id[..12].to_string() };
    let (Some(a), Some(b)) = (a, b) else {
        return vec![
            id,
            r.name.clone(),
            "0.00%".into(),
            "0B / 0B".into(),
            "0.00%".into(),
            "0B / 0B".into(),
            "0B / 0B".into(),
            "0".into(),
        ];
    };
    let dt = b.at.duration_since(a.at).as_nanos().max(1) as f64;
    let cpu = (b.cpu_ns.saturating_sub(a.cpu_ns)) as f64 / dt * 100.0;
    let d = &b.data;
    let usage = d.pointer("/memory/usage/usage").and_then(Value::as_u64).unwrap_or(0);
    let raw = |k: &str| d.pointer(&format!("/memory/raw/{k}")).and_then(Value::as_u64);
    let inactive = raw("total_inactive_file").or_else(|| raw("inactive_file")).unwrap_or(0);
    let used = usage.saturating_sub(inactive);
    let mut limit = d.pointer("/memory/usage/limit").and_then(Value::as_u64).unwrap_or(0);
    let host = host_memory();
    if limit == 0 || (host > 0 && limit > host) {
        limit = host;
    }
    let mem_pct = if limit > 0 { used as f64 / limit as f64 * 100.0 } else { 0.0 };
    let (rx, tx) = if st.pid > 0 { net_io(st.pid) } else { (0, 0) };
    let (mut rd, mut wr) = (0u64, 0u64);
    for e in d.pointer("/blkio/io_service_bytes_recursive").and_then(Value::as_array).into_iter().flatten() {
        let v = e["value"].as_u64().unwrap_or(0);
        match e["op"].as_str().unwrap_or("").to_ascii_lowercase().as_str() {
            "read" => rd += v,
            "write" => wr += v,
            _ => {}
        }
    }
    let pids = d.pointer("/pids/current").and_then(Value::as_u64).unwrap_or(0);
    vec![
        id,
        r.name.clone(),
        format!("{cpu:.2}%"),
        format!("{} / {}", bytes_text(used), bytes_text(limit)),
        format!("{mem_pct:.2}%"),
        format!("{} / {}", io_text(rx), io_text(tx)),
        format!("{} / {}", io_text(rd), io_text(wr)),
        pids.to_string(),
    ]
}

pub fn stats(
    e: &Engine,
    cs: &Containers,
    keys: &[String],
    all: bool,
    no_stream: bool,
    no_trunc: bool,
    format: Option<&str>,
) -> Result<i32, EngineError> {
    let tmpl_check = format.filter(|f| *f != "table").map(|f| if f == "json" { "{{json .}}" } else { f });
    if let Some(f) = tmpl_check {
        crate::template::Template::parse(f).map_err(template_err)?;
    }
    let recs: Vec<Record> = if keys.is_empty() {
        let mut v: Vec<Record> =
            cs.all().into_iter().filter(|r| all || run::status(e, cs, &r.id).state == State::Running).collect();
        v.sort_by(|a, b| b.created.cmp(&a.created));
        v
    } else {
        keys.iter().map(|k| cs.find(k)).collect::<Result<_, _>>()?
    };
    let header = ["CONTAINER ID", "NAME", "CPU %", "MEM USAGE / LIMIT", "MEM %", "NET I/O", "BLOCK I/O", "PIDS"]
        .map(String::from)
        .to_vec();
    let mut prev: Vec<Option<Sample>> = recs.iter().map(|r| sample(e, &r.id)).collect();
    loop {
        std::thread::sleep(Duration::from_millis(if no_stream { 500 } else { 1000 }));
        let mut rows = vec![header.clone()];
        let mut next = Vec::with_capacity(recs.len());
        for (i, r) in recs.iter().enumerate() {
            let st = run::status(e, cs, &r.id);
            let cur = if st.state == State::Running { sample(e, &r.id) } else { None };
            rows.push(stats_row(r, &st, prev[i].as_ref(), cur.as_ref(), no_trunc));
            next.push(cur);
        }
        let mut out = std::io::stdout().lock();
        if !no_stream {
            let _ = write!(out, "\x1b[2J\x1b[H");
        }
        match tmpl_check {
            Some(f) => {
                let keys = ["ID", "Name", "CPUPerc", "MemUsage", "MemPerc", "NetIO", "BlockIO", "PIDs"];
                let views: Vec<Value> = rows[1..]
                    .iter()
                    .map(|r| {
                        let mut m: serde_json::Map<String, Value> =
                            keys.iter().zip(r).map(|(k, v)| (k.to_string(), json!(v))).collect();
                        m.insert("Container".into(), json!(r[0]));
                        Value::Object(m)
                    })
                    .collect();
                let names = [
                    ("ID", "CONTAINER ID"),
                    ("Container", "CONTAINER"),
                    ("Name", "NAME"),
                    ("CPUPerc", "CPU %"),
                    ("MemUsage", "MEM USAGE / LIMIT"),
                    ("MemPerc", "MEM %"),
                    ("NetIO", "NET I/O"),
                    ("BlockIO", "BLOCK I/O"),
                    ("PIDs", "PIDS"),
                ]
                .into_iter()
                .collect();
                let text = crate::template::render_rows(f, &views, &names).map_err(template_err)?;
                let _ = out.write_all(text.as_bytes());
            }
            None => print_table(&mut out, &rows),
        }
        let _ = out.flush();
        if no_stream {
            return Ok(0);
        }
        prev = next;
    }
}

/// The PORTS column as docker's CLI shows it: sorted by container port, address, host port and
/// protocol; mappings whose host port equals the container port grouped into ranges per
/// address and protocol ("0.0.0.0:8000-8002->8000-8002/tcp"), the others listed after them.
pub fn displayable_ports(shown: &[String]) -> String {
    // (container port, address, host port, protocol) from "IP:HOST->PORT/PROTO".
    let mut ports: Vec<(u16, String, u16, String)> = shown
        .iter()
        .filter_map(|p| {
            let (host, cont) = p.split_once("->")?;
            let (ip, hp) = host.rsplit_once(':')?;
            let (cp, proto) = cont.split_once('/')?;
            let ip = ip.trim_start_matches('[').trim_end_matches(']').to_string();
            Some((cp.parse().ok()?, ip, hp.parse().ok()?, proto.to_string()))
        })
        .collect();
    ports.sort();
    let join = |ip: &str, port: &str| if ip.contains(':') { format!("[{ip}]:{port}") } else { format!("{ip}:{port}") };
    let mut groups: Vec<((String, String), u16, u16)> = Vec::new();
    let mut done = Vec::new();
    let mut others = Vec::new();
    for (cp, ip, hp, proto) in ports {
        if hp != cp {
            others.push(format!("{}->{cp}/{proto}", join(&ip, &hp.to_string())));
            continue;
        }
        let key = (ip, proto);
        match groups.iter_mut().find(|(k, _, _)| *k == key) {
            Some(g) if g.2.checked_add(1) == Some(cp) => g.2 = cp,
            Some(g) => {
                done.push((g.0.clone(), g.1, g.2));
                (g.1, g.2) = (cp, cp);
            }
            None => groups.push((key, cp, cp)),
        }
    }
    done.extend(groups);
    let mut out: Vec<String> = done
        .into_iter()
        .map(|((ip, proto), first, last)| {
            let r = if first == last { first.to_string() } else { format!("{first}-{last}") };
            format!("{}->{r}/{proto}", join(&ip, &r))
        })
        .collect();
    out.extend(others);
    out.join(", ")
}

/// "IP:HOST->PORT/PROTO" as (container "PORT/PROTO", host "IP:HOST" with IPv6 in brackets).
fn split_shown(p: &str) -> Option<(&str, &str)> {
    let (host, cont) = p.split_once("->")?;
    Some((cont, host))
}

/// Orders strings as docker's natural sort: runs of digits by value, the rest by bytes.
fn natural_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    fn chunks(s: &str) -> Vec<(bool, &str)> {
        let mut v = Vec::new();
        let mut start = 0;
        let b = s.as_bytes();
        for i in 1..=b.len() {
            if i == b.len() || b[i].is_ascii_digit() != b[start].is_ascii_digit() {
                v.push((b[start].is_ascii_digit(), &s[start..i]));
                start = i;
            }
        }
        v
    }
    let (x, y) = (chunks(a), chunks(b));
    for (p, q) in x.iter().zip(&y) {
        let o = match (p, q) {
            ((true, m), (true, n)) => {
                let (m, n) = (m.trim_start_matches('0'), n.trim_start_matches('0'));
                m.len().cmp(&n.len()).then_with(|| m.cmp(n))
            }
            ((_, m), (_, n)) => m.cmp(n),
        };
        if o != std::cmp::Ordering::Equal {
            return o;
        }
    }
    x.len().cmp(&y.len())
}

/// `container port`: docker's "80/tcp -> 0.0.0.0:8080" lines (naturally sorted), or with a
/// PORT[/PROTO] the host addresses of that port; a running container's ports only.
pub fn port(e: &Engine, cs: &Containers, key: &str, private: Option<&str>) -> Result<i32, EngineError> {
    let r = cs.find(key)?;
    let running = run::status(e, cs, &r.id).state == State::Running;
    let shown: Vec<(&str, &str)> =
        if running { r.net.ports.iter().filter_map(|p| split_shown(p)).collect() } else { Vec::new() };
    let mut out: Vec<String> = match private {
        Some(want) => {
            let (num, proto) = want.split_once('/').unwrap_or((want, "tcp"));
            let proto = if proto.is_empty() { "tcp" } else { proto };
            if num.parse::<u16>().is_err() {
                return Err(EngineError::Invalid(format!("invalid port ({num})")));
            }
            let port_key = format!("{num}/{proto}");
            let v: Vec<String> = shown.iter().filter(|(c, _)| *c == port_key).map(|(_, h)| h.to_string()).collect();
            if v.is_empty() {
                let _ = writeln!(std::io::stderr(), "berth: no public port '{want}' published for {key}");
                return Ok(1);
            }
            v
        }
        None => shown.iter().map(|(c, h)| format!("{c} -> {h}")).collect(),
    };
    out.sort_by(|a, b| natural_cmp(a, b));
    let mut o = std::io::stdout().lock();
    for l in &out {
        let _ = writeln!(o, "{l}");
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let s = |n| human_duration(Duration::from_secs(n));
        assert_eq!(human_duration(Duration::from_millis(300)), "Less than a second");
        assert_eq!(s(1), "1 second");
        assert_eq!(s(42), "42 seconds");
        assert_eq!(s(80), "About a minute");
        assert_eq!(s(600), "10 minutes");
        assert_eq!(s(3600), "About an hour");
        assert_eq!(s(5 * 3600), "5 hours");
        assert_eq!(s(3 * 86400), "3 days");
        assert_eq!(s(20 * 86400), "2 weeks");
        assert_eq!(s(90 * 86400), "3 months");
        assert_eq!(s(800 * 86400), "2 years");
    }

    #[test]
    fn templates() {
        let render_template = |t: &str, v: &Value| crate::template::Template::parse(t).unwrap().render(v).unwrap();
        let v = json!({"State": {"Status": "running", "ExitCode": 0}, "Name": "/x", "Config": {"Labels": {"a": "b"}}, "N": null});
        assert_eq!(render_template("{{.State.Status}} {{.State.ExitCode}}", &v), "running 0");
        assert_eq!(render_template("{{json .Config.Labels}}", &v), "{\"a\":\"b\"}");
        assert_eq!(render_template("{{index .Config.Labels \"a\"}}", &v), "b");
        assert_eq!(render_template("{{.N}}|{{.Missing}}", &v), "<no value>|<no value>");
        assert_eq!(render_template("plain", &v), "plain");
    }

    #[test]
    fn units() {
        assert_eq!(bytes_text(512), "512B");
        assert_eq!(bytes_text(1536), "1.5KiB");
        assert_eq!(bytes_text(64 << 20), "64MiB");
        assert_eq!(io_text(1200), "1.2kB");
    }

    #[test]
    fn natural_order() {
        let mut v = vec!["8000/tcp -> x", "80/tcp -> [::]:1", "80/tcp -> 0.0.0.0:1", "443/tcp -> y", "80/udp -> z"];
        v.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(v, ["80/tcp -> 0.0.0.0:1", "80/tcp -> [::]:1", "80/udp -> z", "443/tcp -> y", "8000/tcp -> x"]);
    }

    #[test]
    fn ports_column_as_docker() {
        let v = |x: &[&str]| x.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let p = v(&[
            "0.0.0.0:8002->8002/tcp",
            "0.0.0.0:8000->8000/tcp",
            "[::]:8000->8000/tcp",
            "0.0.0.0:8001->8001/tcp",
            "[::]:8001->8001/tcp",
            "[::]:8002->8002/tcp",
            "127.0.0.1:32768->80/tcp",
            "0.0.0.0:53->53/udp",
        ]);
        assert_eq!(
            displayable_ports(&p),
            "0.0.0.0:53->53/udp, 0.0.0.0:8000-8002->8000-8002/tcp, [::]:8000-8002->8000-8002/tcp, 127.0.0.1:32768->80/tcp"
        );
        assert_eq!(
            displayable_ports(&v(&["0.0.0.0:80->80/tcp", "0.0.0.0:82->82/tcp"])),
            "0.0.0.0:80->80/tcp, 0.0.0.0:82->82/tcp"
        );
    }
}
