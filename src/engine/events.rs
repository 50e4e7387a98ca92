//! The container events the engine writes to the journal (see [`crate::events`]).

use super::store::Record;
use super::Engine;
use crate::events::{Event, Journal};
use std::collections::BTreeMap;

/// docker's attributes of a container event: its name, image and labels.
pub fn attrs(rec: &Record) -> BTreeMap<String, String> {
    let mut a = rec.image_config.labels.clone().unwrap_or_default();
    a.extend(rec.spec.labels.clone());
    a.insert("name".into(), rec.name.clone());
    a.insert("image".into(), rec.image.clone());
    a
}

/// Records `action` on container `rec`.
pub fn container(e: &Engine, rec: &Record, action: &str) {
    container_with(e, rec, action, BTreeMap::new());
}

/// Records `action` with extra attributes (exitCode, oldName, signal, ...).
pub fn container_with(e: &Engine, rec: &Record, action: &str, extra: BTreeMap<String, String>) {
    let mut a = attrs(rec);
    a.extend(extra);
    let _ = Journal::new(&e.data_root).append(&Event::new("container", action, &rec.id, a));
}
