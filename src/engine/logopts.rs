//! `--log-driver` and `--log-opt`: checked at create, stored in the record, turned into the
//! shim's [`LogConfig`] at every start (the tag template needs the container's id and name).

use super::store::Record;
use super::EngineError;
use crate::shim::syslog as berth_syslog;
use crate::shim::LogConfig;
use std::collections::BTreeMap;

/// The drivers berth has: json-file, `local` (docker's protobuf-framed entries, with its
/// defaults: 20 MiB files, 5 kept, compressed), `syslog` (each line sent to a syslog server,
/// and kept in docker's local cache for `logs`) and `none`.
pub const DRIVERS: &[&str] = &["json-file", "local", "syslog", "none"];

fn allowed(driver: &str) -> &'static [&'static str] {
    match driver {
        "json-file" => &["max-size", "max-file", "compress", "labels", "labels-regex", "env", "env-regex", "tag"],
        "local" => &["max-size", "max-file", "compress"],
        "syslog" => &[
            "env",
            "env-regex",
            "labels",
            "labels-regex",
            "syslog-address",
            "syslog-facility",
            "syslog-tls-ca-cert",
            "syslog-tls-cert",
            "syslog-tls-key",
            "syslog-tls-skip-verify",
            "tag",
            "syslog-format",
            "cache-disabled",
            "cache-max-size",
            "cache-max-file",
            "cache-compress",
        ],
        _ => &[],
    }
}

/// Checks the flags; (driver, options).
pub fn parse(driver: Option<&str>, opts: &[String]) -> Result<(String, BTreeMap<String, String>), EngineError> {
    let driver = driver.filter(|d| !d.is_empty()).unwrap_or("json-file").to_string();
    if !DRIVERS.contains(&driver.as_str()) {
        return Err(EngineError::Invalid(format!("logger: no log driver named '{driver}' is registered")));
    }
    let mut m = BTreeMap::new();
    for o in opts {
        let (k, v) = o
            .split_once('=')
            .ok_or_else(|| EngineError::Invalid(format!("invalid log opt {o:?}: expected KEY=VALUE")))?;
        if !allowed(&driver).contains(&k) {
            return Err(EngineError::Invalid(format!("unknown log opt '{k}' for {driver} log driver")));
        }
        m.insert(k.to_string(), v.to_string());
    }
    // What the writer needs must parse now, not at start.
    config_of(&driver, &m, &BTreeMap::new(), &[], &BTreeMap::new())?;
    Ok((driver, m))
}

fn config_of(
    driver: &str,
    opts: &BTreeMap<String, String>,
    labels: &BTreeMap<String, String>,
    env: &[String],
    tag_view: &BTreeMap<&str, String>,
) -> Result<LogConfig, EngineError> {
    let bad = |k: &str, v: &str, why: &str| EngineError::Invalid(format!("invalid log opt {k}={v}: {why}"));
    let syslog = driver == "syslog";
    let local = driver == "local" || syslog;
    let mut c = LogConfig {
        driver: driver.to_string(),
        max_size: if local { 20 * 1024 * 1024 } else { 0 },
        max_file: if local { 5 } else { 1 },
        compress: local,
        attrs: BTreeMap::new(),
        syslog: None,
        no_file: false,
    };
    // syslog's local cache (docker's dual logging) takes the cache-* options.
    let opts: BTreeMap<String, String> = if syslog {
        let mut o = BTreeMap::new();
        for (k, v) in opts {
            if let Some(rest) = k.strip_prefix("cache-").filter(|r| *r != "disabled") {
                o.insert(rest.to_string(), v.clone());
            }
        }
        if let Some(v) = opts.get("cache-disabled") {
            c.no_file = match v.as_str() {
                "true" | "1" => true,
                "false" | "0" | "" => false,
                _ => return Err(bad("cache-disabled", v, "true or false")),
            };
        }
        let syslog_err = |e: String| EngineError::Invalid(e);
        let (proto, addr) = berth_syslog::parse_address(opts.get("syslog-address").map(String::as_str).unwrap_or(""))
            .map_err(syslog_err)?;
        let facility = berth_syslog::parse_facility(opts.get("syslog-facility").map(String::as_str).unwrap_or(""))
            .map_err(syslog_err)?;
        let format = berth_syslog::parse_format(opts.get("syslog-format").map(String::as_str).unwrap_or(""))
            .map_err(syslog_err)?;
        let t = opts.get("tag").map(String::as_str).filter(|t| !t.is_empty()).unwrap_or("{{.ID}}");
        let tmpl = crate::template::Template::parse(t).map_err(|e| bad("tag", t, &e.to_string()))?;
        let view = serde_json::to_value(tag_view).unwrap_or_default();
        let tag = tmpl.render(&view).map_err(|e| bad("tag", t, &e.to_string()))?;
        c.syslog = Some(berth_syslog::SyslogTarget { proto, addr, facility, format, tag });
        o
    } else {
        opts.clone()
    };
    let opts = &opts;
    if let Some(v) = opts.get("max-size") {
        let n =
            berth::units::ram_in_bytes(v).filter(|n| *n > 0).ok_or_else(|| bad("max-size", v, "a size such as 10m"))?;
        c.max_size = n as u64;
    }
    if let Some(v) = opts.get("max-file") {
        let n: u32 =
            v.parse().ok().filter(|n| *n >= 1).ok_or_else(|| bad("max-file", v, "a number of files, at least 1"))?;
        if n > 1 && c.max_size == 0 {
            return Err(EngineError::Invalid("max-file cannot be set when max-size is not set".into()));
        }
        c.max_file = n;
    }
    if let Some(v) = opts.get("compress") {
        c.compress = match v.as_str() {
            "true" | "1" => true,
            "false" | "0" => false,
            _ => return Err(bad("compress", v, "true or false")),
        };
        if c.compress && c.max_size == 0 {
            return Err(EngineError::Invalid("compress cannot be set when max-size is not set".into()));
        }
    }
    // docker's order (loginfo.ExtraAttributes): labels, labels-regex, env, env-regex; a later
    // match of the same key wins. Keys listed but not set are left out.
    let list = |k: &str| opts.get(k).map(|l| l.split(',').collect::<Vec<_>>()).unwrap_or_default();
    let regex = |k: &str| -> Result<Option<regex::Regex>, EngineError> {
        match opts.get(k).filter(|v| !v.is_empty()) {
            Some(v) => regex::Regex::new(v).map(Some).map_err(|e| {
                let first = e.to_string().lines().last().unwrap_or("").trim().to_string();
                bad(k, v, &first)
            }),
            None => Ok(None),
        }
    };
    let labels: BTreeMap<&str, &str> = labels.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let env: BTreeMap<&str, &str> = env.iter().filter_map(|kv| kv.split_once('=')).collect();
    for (values, named, pattern) in [(&labels, "labels", "labels-regex"), (&env, "env", "env-regex")] {
        let re = regex(pattern)?;
        let picked = list(named).into_iter().filter_map(|k| values.get_key_value(k));
        let matched = values.iter().filter(|(k, _)| re.as_ref().is_some_and(|re| re.is_match(k)));
        for (k, v) in picked.chain(matched) {
            c.attrs.insert(k.to_string(), v.to_string());
        }
    }
    if let Some(t) = opts.get("tag") {
        let tmpl = crate::template::Template::parse(t).map_err(|e| bad("tag", t, &e.to_string()))?;
        let view = serde_json::to_value(tag_view).unwrap_or_default();
        let tag = tmpl.render(&view).map_err(|e| bad("tag", t, &e.to_string()))?;
        c.attrs.insert("tag".into(), tag);
    }
    Ok(c)
}

/// The shim's log settings for container `rec`.
pub fn log_config(rec: &Record) -> Result<LogConfig, EngineError> {
    let s = &rec.spec;
    let mut labels = rec.image_config.labels.clone().unwrap_or_default();
    labels.extend(s.labels.clone());
    let mut env = rec.image_config.env.clone().unwrap_or_default();
    env.extend(s.env.clone());
    let image_id = rec.image_id.trim_start_matches("sha256:").to_string();
    let view: BTreeMap<&str, String> = [
        ("ID", rec.id.get(..12).unwrap_or(&rec.id).to_string()),
        ("FullID", rec.id.clone()),
        ("Name", rec.name.clone()),
        ("ImageID", image_id.get(..12).unwrap_or(&image_id).to_string()),
        ("ImageFullID", image_id.clone()),
        ("ImageName", rec.image.clone()),
        ("DaemonName", "berth".to_string()),
    ]
    .into_iter()
    .collect();
    config_of(s.log_driver.as_deref().unwrap_or("json-file"), &s.log_opts, &labels, &env, &view)
}
