//! macvlan and ipvlan networks: containers sit directly on a host interface's LAN through the
//! standard `macvlan` and `ipvlan` CNI plugins, with host-local addresses of the LAN's subnet.
//! No bridge, no masquerade, no published ports, no name resolution (berth's DNS server listens
//! on a bridge gateway, which a LAN network does not have on the host).

use super::config::Addressing;
use super::{cni, NetError};
use serde_json::{json, Value};
use std::path::Path;

/// The CNI list of a macvlan or ipvlan network: the plugin on `parent` in `mode` with
/// host-local addresses of the LAN's subnet.
pub fn conflist(data_root: &Path, name: &str, meta: &Value, a: &Addressing, o: &LanOptions, internal: bool) -> Value {
    let plugin = json!({
        "type": o.driver, "master": o.parent, "mode": o.mode,
        "capabilities": {"ips": true}, "ipam": super::config::ipam(data_root, a, internal),
    });
    json!({"cniVersion": cni::CNI_VERSION, "name": name, "plugins": [plugin], "berth": meta})
}

/// A macvlan or ipvlan network's link: driver, parent interface, mode.
#[derive(Clone, Debug)]
pub struct LanOptions {
    pub driver: String,
    pub parent: String,
    pub mode: String,
}

/// The driver options (`-o KEY=VALUE`) of a macvlan or ipvlan network, checked: the parent
/// must exist on the host.
pub fn options(name: &str, driver: &str, opts: &[(String, String)]) -> Result<LanOptions, NetError> {
    let (mode_key, modes, default_mode): (&str, &[&str], &str) = match driver {
        "macvlan" => ("macvlan_mode", &["bridge", "private", "vepa", "passthru"], "bridge"),
        _ => ("ipvlan_mode", &["l2", "l3", "l3s"], "l2"),
    };
    let mut parent = None;
    let mut mode = default_mode.to_string();
    for (k, v) in opts {
        match k.as_str() {
            "parent" => parent = Some(v.clone()),
            k if k == mode_key => {
                if !modes.contains(&v.as_str()) {
                    return Err(NetError::Msg(format!(
                        "network {name}: invalid {mode_key} {v:?} (one of {})",
                        modes.join(", ")
                    )));
                }
                mode = v.clone();
            }
            _ => return Err(NetError::Msg(format!("network {name}: unknown {driver} option {k:?}"))),
        }
    }
    let parent = parent
        .ok_or_else(|| NetError::Msg(format!("network {name}: the {driver} driver needs -o parent=INTERFACE")))?;
    let ok_name =
        !parent.is_empty() && parent.len() < 16 && parent != "." && parent != ".." && !parent.contains(['/', ' ', ':']);
    if !ok_name || !Path::new("/sys/class/net").join(&parent).exists() {
        return Err(NetError::Msg(format!("network {name}: parent interface {parent:?} does not exist")));
    }
    Ok(LanOptions { driver: driver.to_string(), parent, mode })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_checked() {
        let o = |kv: &[(&str, &str)]| kv.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<Vec<_>>();
        let l = options("n", "macvlan", &o(&[("parent", "lo"), ("macvlan_mode", "vepa")])).unwrap();
        assert_eq!((l.parent.as_str(), l.mode.as_str()), ("lo", "vepa"));
        assert_eq!(options("n", "ipvlan", &o(&[("parent", "lo")])).unwrap().mode, "l2");
        for bad in [
            o(&[]),
            o(&[("parent", "no-such-if0")]),
            o(&[("parent", "../lo")]),
            o(&[("parent", "..")]),
            o(&[("parent", "lo"), ("macvlan_mode", "l3")]),
            o(&[("parent", "lo"), ("color", "red")]),
        ] {
            assert!(options("n", "macvlan", &bad).is_err(), "{bad:?}");
        }
    }
}
