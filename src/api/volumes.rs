//! `/volumes/...`.

use super::http::{Request, Response};
use super::{body_json, ApiError, ApiResult, Service};
use crate::engine::store::Containers;
use crate::engine::volume::{inspect_json, Volumes};
use serde_json::{json, Value};
use std::collections::BTreeMap;

pub fn list(s: &Service) -> ApiResult {
    let vols = Volumes::new(&s.e.data_root);
    let v: Vec<Value> = vols.list().iter().map(inspect_json).collect();
    Ok(Response::json(200, &json!({"Volumes": v, "Warnings": []})))
}

pub fn create(s: &Service, req: &Request) -> ApiResult {
    let b = body_json(req)?;
    let name = match b.get("Name") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(n)) => n.clone(),
        Some(_) => return Err(ApiError::bad("json: cannot unmarshal Name: expected a string")),
    };
    let driver = b.get("Driver").and_then(Value::as_str).unwrap_or("");
    if !matches!(driver, "" | "local") {
        return Err(ApiError::bad(format!("volume driver {driver:?} is not supported (local only)")));
    }
    let mut labels = BTreeMap::new();
    if let Some(l) = b.get("Labels").and_then(Value::as_object) {
        for (k, v) in l {
            labels.insert(k.clone(), v.as_str().unwrap_or_default().to_string());
        }
    }
    let (name, anonymous) = if name.is_empty() { (crate::engine::store::new_id()?, true) } else { (name, false) };
    let (v, _) = Volumes::new(&s.e.data_root).create(&name, labels, anonymous)?;
    Ok(Response::json(201, &inspect_json(&v)))
}

pub fn inspect(s: &Service, name: &str) -> ApiResult {
    let v = Volumes::new(&s.e.data_root).get(name)?;
    Ok(Response::json(200, &inspect_json(&v)))
}

pub fn remove(s: &Service, req: &Request, name: &str) -> ApiResult {
    let _ = req;
    let cs = Containers::new(&s.e.data_root);
    Volumes::new(&s.e.data_root).remove(name, &cs)?;
    Ok(Response::empty(204))
}

pub fn prune(s: &Service) -> ApiResult {
    let vols = Volumes::new(&s.e.data_root);
    let cs = Containers::new(&s.e.data_root);
    let users: Vec<String> = cs.all().iter().flat_map(|r| r.mounts.iter().filter_map(|m| m.name.clone())).collect();
    let mut deleted = Vec::new();
    for v in vols.list() {
        if v.meta.anonymous && !users.contains(&v.name) && vols.remove_unchecked(&v.name).is_ok() {
            deleted.push(v.name);
        }
    }
    Ok(Response::json(200, &json!({"VolumesDeleted": deleted, "SpaceReclaimed": 0})))
}
