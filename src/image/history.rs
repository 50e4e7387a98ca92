//! `berth image history`: the history entries of an image's config, newest first, as
//! `docker history` shows them (IMAGE, CREATED, CREATED BY, SIZE, COMMENT; the image id on
//! the newest row and `<missing>` below it; CREATED BY cut to 45 characters unless
//! `--no-trunc`; `-q` the ids only; `--format json` one object a line).

use super::cli::{format_utc, human_duration, human_size, parse_rfc3339};
use super::store::{Image, Store, StoreError};
use std::io::{self, Write};

#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("unsupported --format {0:?} (table, json or a {{{{.Field}}}} template)")]
    Format(String),
}

#[derive(Debug, Default, serde::Deserialize)]
struct Entry {
    #[serde(default)]
    created: Option<String>,
    #[serde(default)]
    created_by: Option<String>,
    #[serde(default)]
    comment: Option<String>,
    #[serde(default)]
    empty_layer: bool,
}

/// One row, newest first.
pub struct Row {
    /// The image id (full, `sha256:...`) on the newest row, None (`<missing>`) below.
    pub id: Option<String>,
    pub created: Option<i64>,
    pub created_by: String,
    pub size: u64,
    pub comment: String,
}

/// The rows of `img`: one per history entry (an entry that is not `empty_layer` owns the next
/// layer, whose size is the size of its content as docker counts it); an image without history gets one row per
/// layer.
pub fn rows(store: &Store, img: &Image) -> Vec<Row> {
    let entries: Vec<Entry> =
        img.config.extra.get("history").and_then(|h| serde_json::from_value(h.clone()).ok()).unwrap_or_default();
    let layer_size =
        |i: usize| img.chain_ids.get(i).map(|c| content_size(&store.snapshot_dir(c).join("fs"))).unwrap_or(0);
    let image_created = img.config.created.as_deref().and_then(parse_rfc3339);
    let mut out = Vec::new();
    if entries.is_empty() {
        for i in 0..img.layers.len() {
            out.push(Row {
                id: None,
                created: image_created,
                created_by: String::new(),
                size: layer_size(i),
                comment: String::new(),
            });
        }
    } else {
        let mut layer = 0;
        for e in entries {
            let size = if e.empty_layer {
                0
            } else {
                layer += 1;
                layer_size(layer - 1)
            };
            out.push(Row {
                id: None,
                created: e.created.as_deref().and_then(parse_rfc3339),
                created_by: e.created_by.unwrap_or_default(),
                size,
                comment: e.comment.unwrap_or_default(),
            });
        }
    }
    out.reverse();
    if let Some(first) = out.first_mut() {
        first.id = Some(img.id().to_string());
    }
    out
}

/// RFC 3339 in UTC, as docker history prints times ("2024-01-03T00:00:00Z").
fn rfc3339(t: i64) -> String {
    let u = format_utc(t);
    match (u.get(..10), u.get(11..19)) {
        (Some(d), Some(h)) => format!("{d}T{h}Z"),
        _ => u,
    }
}

/// The size of a layer as docker's history shows it: the sizes of everything in the layer's
/// snapshot that is not a directory (a symlink counts its target's length), each inode once.
fn content_size(dir: &std::path::Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut seen = std::collections::HashSet::new();
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let Ok(md) = e.path().symlink_metadata() else { continue };
            if md.is_dir() {
                stack.push(e.path());
            } else if md.len() > 0 && seen.insert(md.ino()) {
                total += md.len();
            }
        }
    }
    total
}

/// Docker's cut: at most `n` characters, the last one `…` when cut.
fn ellipsis(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        return s.to_string();
    }
    let mut t: String = s.chars().take(n - 1).collect();
    t.push('…');
    t
}

pub fn history(
    store: &Store,
    query: &str,
    quiet: bool,
    no_trunc: bool,
    human: bool,
    format: Option<&str>,
) -> Result<(), HistoryError> {
    let img = store.resolve(query)?;
    let rows = rows(store, &img);
    let now = super::store::now_secs() as i64;
    let id = |r: &Row| match &r.id {
        Some(id) if no_trunc => id.clone(),
        Some(id) => id.trim_start_matches("sha256:").chars().take(12).collect(),
        None => "<missing>".to_string(),
    };
    let created = |r: &Row| match (r.created, human) {
        (Some(t), true) => format!("{} ago", human_duration(now - t)),
        (Some(t), false) => rfc3339(t),
        (None, _) => "N/A".to_string(),
    };
    let created_by = |r: &Row| {
        let c = r.created_by.replace('\t', " ");
        if no_trunc {
            c
        } else {
            ellipsis(&c, 45)
        }
    };
    let size = |r: &Row| if human { human_size(r.size) } else { r.size.to_string() };
    let mut out = io::stdout().lock();
    if quiet {
        for r in &rows {
            let _ = writeln!(out, "{}", id(r));
        }
        return Ok(());
    }
    match format {
        None | Some("table") => {
            let mut table = vec![["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"].map(String::from).to_vec()];
            for r in &rows {
                table.push(vec![id(r), created(r), created_by(r), size(r), r.comment.clone()]);
            }
            let _ = out.write_all(tabwrite(&table).as_bytes());
        }
        Some("json") | Some("{{json .}}") => {
            for r in &rows {
                let v = serde_json::json!({
                    "Comment": r.comment,
                    "CreatedAt": r.created.map(rfc3339).unwrap_or_default(),
                    "CreatedBy": created_by(r),
                    "CreatedSince": r.created.map(|t| format!("{} ago", human_duration(now - t))).unwrap_or_default(),
                    "ID": id(r),
                    "Size": size(r),
                });
                let _ = writeln!(out, "{v}");
            }
        }
        Some(t) if t.contains("{{") => {
            let obj = |r: &Row| {
                serde_json::json!({
                    "Comment": r.comment,
                    "CreatedAt": r.created.map(rfc3339).unwrap_or_default(),
                    "CreatedBy": created_by(r),
                    "CreatedSince": created(r),
                    "ID": id(r),
                    "Size": size(r),
                })
            };
            let (table, t) = match t.strip_prefix("table") {
                Some(rest) => (true, rest.trim_start()),
                None => (false, t),
            };
            let t = t.replace("\\t", "\t").replace("\\n", "\n");
            let mut lines = Vec::new();
            if table {
                let head = serde_json::json!({
                    "Comment": "COMMENT", "CreatedAt": "CREATED AT", "CreatedBy": "CREATED BY",
                    "CreatedSince": "CREATED", "ID": "IMAGE", "Size": "SIZE",
                });
                lines.push(render(&t, &head)?);
            }
            for r in &rows {
                lines.push(render(&t, &obj(r))?);
            }
            if table {
                let cells: Vec<Vec<String>> =
                    lines.iter().map(|l| l.split('\t').map(str::to_string).collect()).collect();
                let _ = out.write_all(tabwrite(&cells).as_bytes());
            } else {
                for l in lines {
                    let _ = writeln!(out, "{l}");
                }
            }
        }
        Some(f) => return Err(HistoryError::Format(f.to_string())),
    }
    Ok(())
}

/// Columns as docker's tabwriter sets them (minimum width 10, padding 3; the last cell of a
/// line is not padded).
fn tabwrite(lines: &[Vec<String>]) -> String {
    let cols = lines.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| lines.iter().filter_map(|l| l.get(c)).map(|x| x.chars().count()).max().unwrap_or(0))
        .map(|w| (w + 3).max(10))
        .collect();
    let mut s = String::new();
    for l in lines {
        for (c, cell) in l.iter().enumerate() {
            s.push_str(cell);
            if c + 1 < l.len() {
                s.push_str(&" ".repeat(widths[c] - cell.chars().count()));
            }
        }
        s.push('\n');
    }
    s
}

/// A Go template over a row's fields: `{{.Field}}` and `{{json .}}` / `{{json .Field}}`.
fn render(t: &str, v: &serde_json::Value) -> Result<String, HistoryError> {
    let mut out = String::new();
    let mut rest = t;
    while let Some(i) = rest.find("{{") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        let j = after.find("}}").ok_or_else(|| HistoryError::Format(t.to_string()))?;
        let expr = after[..j].trim();
        let (json, field) = match expr.strip_prefix("json ") {
            Some(f) => (true, f.trim()),
            None => (false, expr),
        };
        let val = match field {
            "." => v.clone(),
            f => match f.strip_prefix('.').and_then(|k| v.get(k)) {
                Some(x) => x.clone(),
                None => return Err(HistoryError::Format(t.to_string())),
            },
        };
        match (&val, json) {
            (serde_json::Value::String(s), false) => out.push_str(s),
            (x, _) => out.push_str(&x.to_string()),
        }
        rest = &after[j + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_like_docker() {
        assert_eq!(ellipsis("abc", 45), "abc");
        let long = "/bin/sh -c #(nop)  CMD [\"sh\" \"-c\" \"echo a very long command\"]";
        let cut = ellipsis(long, 45);
        assert_eq!(cut.chars().count(), 45);
        assert!(cut.ends_with('…') && long.starts_with(cut.trim_end_matches('…')));
    }
}
