//! CNI plugin invocation: find the binary on CNI_PATH, run it with the CNI environment and the
//! plugin's config on stdin, chain results (ADD in list order, DEL in reverse).

use super::NetError;
use serde_json::{Map, Value};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Default plugin search path (Debian's containernetworking-plugins, then the upstream default).
pub const DEFAULT_CNI_PATH: &str = "/usr/lib/cni:/opt/cni/bin";
/// The CNI spec version berth speaks (the Debian 1.1.1 plugins support it).
pub const CNI_VERSION: &str = "1.0.0";

/// Where plugins are looked up: BERTH_CNI_PATH, else DEFAULT_CNI_PATH.
pub struct Cni {
    pub path: String,
}

/// One plugin run: what varies per container and interface.
pub struct Call<'a> {
    pub network: &'a str,
    pub container_id: &'a str,
    /// Empty when the namespace is gone (DEL then only releases what lives on the host).
    pub netns: &'a str,
    pub ifname: &'a str,
    /// Values for the capabilities the plugins declare (portMappings, ips).
    pub runtime_config: &'a Value,
}

impl Cni {
    pub fn from_env() -> Cni {
        let path = match std::env::var("BERTH_CNI_PATH") {
            Ok(p) if !p.is_empty() => p,
            _ => DEFAULT_CNI_PATH.to_string(),
        };
        Cni { path }
    }

    pub fn find(&self, typ: &str) -> Option<PathBuf> {
        if typ.is_empty() || typ.contains('/') {
            return None;
        }
        self.path.split(':').filter(|d| !d.is_empty()).map(|d| Path::new(d).join(typ)).find(|p| is_executable(p))
    }

    /// Every plugin binary of `list` (and the IPAM plugin of each) exists.
    pub fn check(&self, network: &str, list: &Value) -> Result<(), NetError> {
        for p in plugins(list) {
            for typ in [p["type"].as_str(), p["ipam"]["type"].as_str()].into_iter().flatten() {
                if self.find(typ).is_none() {
                    return Err(NetError::PluginMissing {
                        network: network.to_string(),
                        plugin: typ.to_string(),
                        path: self.path.clone(),
                    });
                }
            }
        }
        Ok(())
    }

    /// ADD through the whole chain; returns the last plugin's result. `progress` gets each
    /// plugin's result as it comes (so a DEL after a crash has the latest one).
    pub fn add(
        &self,
        list: &Value,
        call: &Call,
        progress: &mut dyn FnMut(&Value) -> Result<(), NetError>,
    ) -> Result<Value, NetError> {
        let mut prev: Option<Value> = None;
        for p in plugins(list).iter().filter(|p| !is_noop(p, call.runtime_config)) {
            let conf = plugin_conf(list, p, call.runtime_config, prev.as_ref());
            let out = self.exec(p, "ADD", &conf, call)?;
            let res: Value = serde_json::from_slice(&out).map_err(|e| NetError::Plugin {
                network: call.network.to_string(),
                plugin: type_of(p).to_string(),
                msg: format!("invalid result JSON: {e}"),
            })?;
            progress(&res)?;
            prev = Some(res);
        }
        Ok(prev.unwrap_or(Value::Null))
    }

    /// DEL through the chain in reverse; every plugin is run even when one fails, and the first
    /// error is returned.
    pub fn del(&self, list: &Value, call: &Call, prev: Option<&Value>) -> Result<(), NetError> {
        let mut first = None;
        for p in plugins(list).iter().rev().filter(|p| !is_noop(p, call.runtime_config)) {
            let conf = plugin_conf(list, p, call.runtime_config, prev);
            if let Err(e) = self.exec(p, "DEL", &conf, call) {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }

    fn exec(&self, plugin: &Value, command: &str, conf: &Value, call: &Call) -> Result<Vec<u8>, NetError> {
        let typ = type_of(plugin);
        let err = |msg: String| NetError::Plugin { network: call.network.to_string(), plugin: typ.to_string(), msg };
        let bin = self.find(typ).ok_or_else(|| NetError::PluginMissing {
            network: call.network.to_string(),
            plugin: typ.to_string(),
            path: self.path.clone(),
        })?;
        let stdin = serde_json::to_vec(conf).map_err(|e| err(format!("encode config: {e}")))?;
        let mut cmd = Command::new(&bin);
        cmd.env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", call.container_id)
            .env("CNI_NETNS", call.netns)
            .env("CNI_IFNAME", call.ifname)
            .env("CNI_PATH", &self.path)
            .env("CNI_ARGS", "")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .current_dir("/");
        // iptables and friends are found on PATH by the plugins.
        let path = std::env::var("PATH").unwrap_or_default();
        if !path.split(':').any(|d| d == "/usr/sbin") {
            let p = if path.is_empty() { String::new() } else { format!("{path}:") };
            cmd.env("PATH", format!("{p}/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"));
        }
        let mut child = cmd.spawn().map_err(|e| err(format!("exec {}: {e}", bin.display())))?;
        if let Some(mut si) = child.stdin.take() {
            // A plugin that exits without reading gives EPIPE here; its exit status tells why.
            let _ = si.write_all(&stdin);
        }
        let out = child.wait_with_output().map_err(|e| err(format!("wait for {}: {e}", bin.display())))?;
        if out.status.success() {
            return Ok(out.stdout);
        }
        Err(err(error_message(&out.stdout, &out.stderr, out.status.code())))
    }
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0).unwrap_or(false)
}

/// Plugins that would only pass the previous result through are not run (one exec less each):
/// portmap with no port to publish, tuning with nothing to set.
fn is_noop(p: &Value, rc: &Value) -> bool {
    match type_of(p) {
        "portmap" => rc["portMappings"].as_array().is_none_or(|a| a.is_empty()),
        "tuning" => p.as_object().is_some_and(|o| o.keys().all(|k| matches!(k.as_str(), "type" | "capabilities"))),
        _ => false,
    }
}

fn plugins(list: &Value) -> &[Value] {
    list["plugins"].as_array().map(Vec::as_slice).unwrap_or(&[])
}

fn type_of(p: &Value) -> &str {
    p["type"].as_str().unwrap_or("")
}

/// The stdin of one plugin: its entry plus the list's name and version, the runtimeConfig
/// entries it declared a capability for, and the previous result.
pub fn plugin_conf(list: &Value, plugin: &Value, rc: &Value, prev: Option<&Value>) -> Value {
    let mut c = plugin.clone();
    let Some(o) = c.as_object_mut() else { return c };
    o.insert("name".into(), list["name"].clone());
    o.insert("cniVersion".into(), list["cniVersion"].clone());
    let mut runtime = Map::new();
    if let Some(caps) = plugin["capabilities"].as_object() {
        for (k, on) in caps {
            if on.as_bool() == Some(true) {
                if let Some(v) = rc.get(k) {
                    runtime.insert(k.clone(), v.clone());
                }
            }
        }
    }
    if !runtime.is_empty() {
        o.insert("runtimeConfig".into(), Value::Object(runtime));
    }
    if let Some(p) = prev {
        o.insert("prevResult".into(), p.clone());
    }
    c
}

/// One line from a failed plugin: its {code,msg,details} error, else its stderr, else the status.
pub fn error_message(stdout: &[u8], stderr: &[u8], code: Option<i32>) -> String {
    if let Ok(v) = serde_json::from_slice::<Value>(stdout) {
        if let Some(msg) = v["msg"].as_str() {
            let mut m = msg.trim().to_string();
            if let Some(d) = v["details"].as_str().map(str::trim).filter(|d| !d.is_empty() && !msg.contains(d)) {
                m = format!("{m}: {d}");
            }
            return one_line(&m);
        }
    }
    let e = String::from_utf8_lossy(stderr);
    if !e.trim().is_empty() {
        return one_line(e.trim());
    }
    match code {
        Some(c) => format!("exit status {c}"),
        None => "killed by a signal".into(),
    }
}

fn one_line(s: &str) -> String {
    s.split('\n').map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn conf_gets_name_version_caps_prev() {
        let list = json!({"name": "n1", "cniVersion": "1.0.0", "plugins": []});
        let p = json!({"type": "portmap", "capabilities": {"portMappings": true, "ips": false}});
        let rc = json!({"portMappings": [{"hostPort": 80}], "ips": ["10.0.0.2"]});
        let c = plugin_conf(&list, &p, &rc, Some(&json!({"ips": []})));
        assert_eq!(c["name"], "n1");
        assert_eq!(c["cniVersion"], "1.0.0");
        assert_eq!(c["runtimeConfig"], json!({"portMappings": [{"hostPort": 80}]}));
        assert_eq!(c["prevResult"], json!({"ips": []}));
        let c = plugin_conf(&list, &json!({"type": "tuning"}), &rc, None);
        assert!(c.get("runtimeConfig").is_none() && c.get("prevResult").is_none());
    }

    #[test]
    fn noop_plugins() {
        let pm = json!({"type": "portmap", "capabilities": {"portMappings": true}});
        assert!(is_noop(&pm, &json!({})));
        assert!(is_noop(&pm, &json!({"portMappings": []})));
        assert!(!is_noop(&pm, &json!({"portMappings": [{"hostPort": 1}]})));
        assert!(is_noop(&json!({"type": "tuning"}), &json!({})));
        assert!(!is_noop(&json!({"type": "tuning", "sysctl": {"a": "1"}}), &json!({})));
        assert!(!is_noop(&json!({"type": "bridge"}), &json!({})));
    }

    #[test]
    fn errors_are_one_line() {
        let out = br#"{"code": 7, "msg": "failed to allocate", "details": "no IP addresses available\n"}"#;
        assert_eq!(error_message(out, b"", Some(1)), "failed to allocate: no IP addresses available");
        assert_eq!(error_message(b"", b"boom\n  more\n", Some(1)), "boom; more");
        assert_eq!(error_message(b"", b"", Some(3)), "exit status 3");
    }
}
