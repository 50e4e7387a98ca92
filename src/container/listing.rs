//! `list`'s output, byte for byte as runc prints it: a Go tabwriter table (minimum cell width
//! 12, padding 3, the last column unpadded), or one JSON array line (`null` when empty) with
//! runc's field order.

use super::ListEntry;
use serde::Serialize;

/// One row of `list --format json`, in runc's field order.
#[derive(Serialize)]
struct Row<'a> {
    #[serde(rename = "ociVersion")]
    version: &'a str,
    id: &'a str,
    pid: i32,
    status: &'a str,
    bundle: &'a std::path::Path,
    rootfs: &'a std::path::Path,
    created: String,
    #[serde(skip_serializing_if = "std::collections::HashMap::is_empty")]
    annotations: &'a std::collections::HashMap<String, String>,
    owner: &'a str,
}

/// A time as Go's RFC3339Nano prints it: trailing zeros of the fraction (and a fraction of
/// zero) left out.
pub fn go_rfc3339_nano(t: &str) -> String {
    let Some(z) = t.strip_suffix('Z') else { return t.to_string() };
    match z.split_once('.') {
        Some((secs, frac)) => {
            let frac = frac.trim_end_matches('0');
            if frac.is_empty() {
                format!("{secs}Z")
            } else {
                format!("{secs}.{frac}Z")
            }
        }
        None => t.to_string(),
    }
}

pub fn json(entries: &[ListEntry]) -> String {
    if entries.is_empty() {
        return "null\n".into();
    }
    let rows: Vec<Row> = entries
        .iter()
        .map(|e| Row {
            version: &e.oci_version,
            id: &e.id,
            pid: e.pid,
            status: e.status.as_str(),
            bundle: &e.bundle,
            rootfs: &e.rootfs,
            created: go_rfc3339_nano(&e.created),
            annotations: &e.annotations,
            owner: &e.owner,
        })
        .collect();
    serde_json::to_string(&rows).unwrap_or_default() + "\n"
}

pub fn table(entries: &[ListEntry]) -> String {
    let mut rows = vec![["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"].map(String::from).to_vec()];
    for e in entries {
        rows.push(vec![
            e.id.clone(),
            e.pid.to_string(),
            e.status.as_str().to_string(),
            e.bundle.display().to_string(),
            go_rfc3339_nano(&e.created),
            e.owner.clone(),
        ]);
    }
    tabwrite(&rows)
}

/// Go's text/tabwriter with minwidth 12, tabwidth 1, padding 3, ' ' padding and no flags, for
/// rows that all have the same number of cells: each cell but the last is padded to its
/// column's widest cell plus 3, and to at least 12.
fn tabwrite(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let width =
        |c: usize| rows.iter().filter_map(|r| r.get(c)).map(|s| s.chars().count() + 3).max().unwrap_or(0).max(12);
    let widths: Vec<usize> = (0..cols.saturating_sub(1)).map(width).collect();
    let mut out = String::new();
    for r in rows {
        for (i, cell) in r.iter().enumerate() {
            out.push_str(cell);
            if let Some(w) = widths.get(i) {
                out.extend(std::iter::repeat_n(' ', w.saturating_sub(cell.chars().count())));
            }
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_times() {
        assert_eq!(go_rfc3339_nano("2026-12-06T19:52:16.344097864Z"), "2026-12-06T19:52:16.344097864Z");
        assert_eq!(go_rfc3339_nano("2026-12-06T19:52:16.344097000Z"), "2026-12-06T19:52:16.344097Z");
        assert_eq!(go_rfc3339_nano("2026-12-06T19:52:16.000000000Z"), "2026-12-06T19:52:16Z");
    }

    #[test]
    fn tabwriter_layout() {
        let rows = vec![
            vec!["ID".to_string(), "BUNDLE".into(), "OWNER".into()],
            vec!["c1".to_string(), "/tmp/a-long-bundle".into(), "root".into()],
        ];
        // Copied from runc's output shape: "ID" padded to 12, the bundle column to 18+3.
        assert_eq!(
            tabwrite(&rows),
            format!(
                "ID{}BUNDLE{}OWNER\nc1{}/tmp/a-long-bundle   root\n",
                " ".repeat(10),
                " ".repeat(15),
                " ".repeat(10)
            )
        );
    }
}
