//! `/networks/...`: berth's CNI bridge networks as docker's JSON.

use super::http::{Request, Response};
use super::{body_json, ApiError, ApiResult, Service};
use crate::network::{self, config, NetError};
use serde_json::{json, Value};

fn net_err(e: NetError) -> ApiError {
    match e {
        NetError::NotFound(n) => ApiError::new(404, format!("network {n} not found")),
        e => {
            let m = e.to_string();
            let status = if m.contains("in use") || m.contains("has active endpoints") || m.contains("already exists") {
                409
            } else {
                500
            };
            ApiError::new(status, m)
        }
    }
}

/// Docker's view of one network (list and inspect).
fn view(s: &Service, name: &str) -> Result<Value, ApiError> {
    let v = network::cli::inspect(&s.e.data_root, name).map_err(net_err)?;
    let driver = v["Driver"].as_str().unwrap_or("bridge").to_string();
    let config = if driver == "bridge" { json!([{"Subnet": v["Subnet"], "Gateway": v["Gateway"]}]) } else { json!([]) };
    let mut containers = serde_json::Map::new();
    if let Some(c) = v["Containers"].as_object() {
        for (id, x) in c {
            containers.insert(
                id.clone(),
                json!({"Name": x["Name"], "EndpointID": "", "MacAddress": x["MacAddress"], "IPv4Address": x["IPv4Address"], "IPv6Address": ""}),
            );
        }
    }
    Ok(json!({
        "Name": name,
        "Id": v.get("Id").cloned().unwrap_or_else(|| json!(name)),
        "Created": v.get("Created").cloned().unwrap_or(json!("0001-01-01T00:00:00Z")),
        "Scope": "local",
        "Driver": driver,
        "EnableIPv6": false,
        "IPAM": {"Driver": "default", "Options": null, "Config": config},
        "Internal": v.get("Internal").cloned().unwrap_or(json!(false)),
        "Attachable": false,
        "Ingress": false,
        "ConfigFrom": {"Network": ""},
        "ConfigOnly": false,
        "Containers": containers,
        "Options": {},
        "Labels": {},
    }))
}

pub fn list(s: &Service, _req: &Request) -> ApiResult {
    let mut names: Vec<String> = config::list(&s.e.data_root).into_iter().map(|n| n.name).collect();
    for n in [config::DEFAULT_NETWORK, "host", "none"] {
        if !names.iter().any(|x| x == n) {
            names.push(n.to_string());
        }
    }
    names.sort();
    let out: Vec<Value> = names.iter().filter_map(|n| view(s, n).ok()).collect();
    Ok(Response::json(200, &Value::Array(out)))
}

pub fn inspect(s: &Service, name: &str) -> ApiResult {
    Ok(Response::json(200, &view(s, &name_of(s, name))?))
}

pub fn create(s: &Service, req: &Request) -> ApiResult {
    let b = body_json(req)?;
    let name = b
        .get("Name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ApiError::bad("network name (Name) is required"))?;
    let driver = b.get("Driver").and_then(Value::as_str).unwrap_or("bridge");
    if !matches!(driver, "" | "bridge") {
        return Err(ApiError::bad(format!("network driver {driver:?} is not supported (bridge only)")));
    }
    let ipam = b.get("IPAM").and_then(|i| i.get("Config")).and_then(Value::as_array).and_then(|a| a.first().cloned());
    let subnet = ipam.as_ref().and_then(|c| c.get("Subnet")).and_then(Value::as_str).filter(|x| !x.is_empty());
    let gateway = ipam.as_ref().and_then(|c| c.get("Gateway")).and_then(Value::as_str).filter(|x| !x.is_empty());
    let internal = b.get("Internal").and_then(Value::as_bool).unwrap_or(false);
    if matches!(name, "host" | "none") || name == config::DEFAULT_NETWORK {
        return Err(ApiError::new(409, format!("network with name {name} already exists")));
    }
    let n = {
        let _l = config::lock(&s.e.data_root).map_err(net_err)?;
        if config::load(&s.e.data_root, name).is_ok() {
            return Err(ApiError::new(409, format!("network with name {name} already exists")));
        }
        config::create(
            &s.e.data_root,
            name,
            &config::CreateOptions {
                subnets: subnet.map(str::to_string).into_iter().collect(),
                gateways: gateway.map(str::to_string).into_iter().collect(),
                internal,
                ..Default::default()
            },
        )
        .map_err(|e| match e {
            NetError::Msg(m) => ApiError::bad(m),
            e => net_err(e),
        })?
    };
    Ok(Response::json(201, &json!({"Id": n.id, "Warning": ""})))
}

pub fn remove(s: &Service, name: &str) -> ApiResult {
    network::remove_network(&s.e.data_root, name).map_err(net_err)?;
    Ok(Response::empty(204))
}

pub fn prune(s: &Service) -> ApiResult {
    let deleted = network::prune(&s.e.data_root).map_err(net_err)?;
    Ok(Response::json(200, &json!({"NetworksDeleted": deleted})))
}

/// The network's name for a name or (a prefix of) its id.
fn name_of(s: &Service, key: &str) -> String {
    config::list(&s.e.data_root)
        .into_iter()
        .find(|n| n.name == key || (key.len() >= 3 && n.id.starts_with(key)))
        .map(|n| n.name)
        .unwrap_or_else(|| key.to_string())
}

pub fn connect(s: &Service, req: &Request, id: &str) -> ApiResult {
    let b = body_json(req)?;
    let container = b.get("Container").and_then(Value::as_str).ok_or_else(|| ApiError::bad("Container is required"))?;
    let ep = b.get("EndpointConfig").cloned().unwrap_or(Value::Null);
    let aliases: Vec<String> = ep
        .get("Aliases")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
        .unwrap_or_default();
    let ip = ep.get("IPAMConfig").and_then(|i| i.get("IPv4Address")).and_then(Value::as_str).filter(|x| !x.is_empty());
    let cs = crate::engine::store::Containers::new(&s.e.data_root);
    crate::engine::ops::network_connect(&s.e, &cs, &name_of(s, id), container, &aliases, ip)?;
    Ok(Response::empty(200))
}

pub fn disconnect(s: &Service, req: &Request, id: &str) -> ApiResult {
    let b = body_json(req)?;
    let container = b.get("Container").and_then(Value::as_str).ok_or_else(|| ApiError::bad("Container is required"))?;
    let cs = crate::engine::store::Containers::new(&s.e.data_root);
    crate::engine::ops::network_disconnect(&s.e, &cs, &name_of(s, id), container)?;
    Ok(Response::empty(200))
}
