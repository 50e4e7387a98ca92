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
    #[error("unsupported --format {0:?} (table or json)")]
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
/// layer, whose size is the size of its content); an image without history gets one row per
/// layer.
pub fn rows(store: &Store, img: &Image) -> Vec<Row> {
    let entries: Vec<Entry> =
        img.config.extra.get("history").and_then(|h| serde_json::from_value(h.clone()).ok()).unwrap_or_default();
    let layer_size = |i: usize| img.chain_ids.get(i).and_then(|c| store.snapshot_bytes(c)).unwrap_or(0);
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
            let mut table = vec![["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"].map(String::from)];
            for r in &rows {
                table.push([id(r), created(r), created_by(r), size(r), r.comment.clone()]);
            }
            let widths: Vec<usize> =
                (0..5).map(|c| table.iter().map(|l| l[c].chars().count()).max().unwrap_or(0)).collect();
            for l in &table {
                let mut s = String::new();
                for (c, cell) in l.iter().enumerate() {
                    if c == 4 {
                        s.push_str(cell);
                    } else {
                        let pad = widths[c] - cell.chars().count();
                        s.push_str(cell);
                        s.push_str(&" ".repeat(pad + 3));
                    }
                }
                let _ = writeln!(out, "{s}");
            }
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
        Some(f) => return Err(HistoryError::Format(f.to_string())),
    }
    Ok(())
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
