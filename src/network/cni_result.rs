//! What berth reads from a CNI plugin chain's result: the container's interface (its
//! addresses, gateways and MAC). Pure parsing of the plugins' output, with no other part of
//! the network module, so that it can be fuzzed on its own (fuzz/fuzz_targets/cni_result.rs).

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::net::{Ipv4Addr, Ipv6Addr};

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Interface {
    pub network: String,
    pub ifname: String,
    pub ip: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Option<Ipv4Addr>,
    pub mac: String,
    /// The IPv6 address, prefix length and gateway on a dual-stack network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip6: Option<Ipv6Addr>,
    #[serde(default)]
    pub prefix6: u8,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway6: Option<Ipv6Addr>,
}

/// The interface `ifname` inside the namespace from a CNI 1.0 result (its IPv4 address, and
/// its IPv6 one on a dual-stack network).
pub(crate) fn interface_of(network: &str, ifname: &str, netns: &str, res: &Value) -> Option<Interface> {
    let ifaces = res["interfaces"].as_array().cloned().unwrap_or_default();
    let idx = ifaces.iter().position(|i| i["name"] == ifname && i["sandbox"] == netns);
    let ours = |c: &&Value| idx.is_none() || c["interface"].as_u64() == idx.map(|x| x as u64);
    let ips = res["ips"].as_array()?;
    let ipc = ips.iter().filter(ours).find(|c| c["address"].as_str().is_some_and(|a| !a.contains(':')))?;
    let (ip, prefix) = ipc["address"].as_str()?.split_once('/')?;
    let six = ips.iter().filter(ours).find(|c| c["address"].as_str().is_some_and(|a| a.contains(':')));
    let (ip6, prefix6) = six
        .and_then(|c| c["address"].as_str()?.split_once('/'))
        .and_then(|(a, p)| Some((a.parse::<Ipv6Addr>().ok()?, p.parse::<u8>().ok()?)))
        .map_or((None, 0), |(a, p)| (Some(a), p));
    Some(Interface {
        network: network.to_string(),
        ifname: ifname.to_string(),
        ip: ip.parse().ok()?,
        prefix: prefix.parse().ok()?,
        gateway: ipc["gateway"].as_str().and_then(|g| g.parse().ok()),
        mac: idx.and_then(|i| ifaces[i]["mac"].as_str()).unwrap_or("").to_string(),
        ip6,
        prefix6,
        gateway6: six.and_then(|c| c["gateway"].as_str()).and_then(|g| g.parse().ok()),
    })
}
