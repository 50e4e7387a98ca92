//! docker's `--format` templates, the subset people use: `{{.Field}}`, `{{.A.B}}`,
//! `{{json .}}`, `{{json .Field}}`, `{{upper .F}}` / `lower` / `title`, `{{index .M "k"}}`,
//! `{{join .L ","}}`, `{{len .L}}`, pipes (`{{.Name | upper}}`), `\t`/`\n` escapes, and the
//! `table` prefix (a header row from the caller's column names, columns aligned as docker's
//! tabwriter does). Shared by `ls`, `inspect`, `images`, `stats`, `events` and the `system`
//! commands: every front-end renders the same JSON views.

use serde_json::Value;
use std::collections::BTreeMap;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TemplateError {
    #[error("template parsing error: unclosed action in {0:?}")]
    Unclosed(String),
    #[error("template parsing error: function {0:?} not defined")]
    UnknownFunction(String),
    #[error("template parsing error: bad action {{{{{0}}}}}")]
    Bad(String),
    #[error("template: executing {0:?}: {1}")]
    Exec(String, String),
}

#[derive(Debug, Clone, PartialEq)]
enum Arg {
    /// `.A.B` (empty path: `.`)
    Field(Vec<String>),
    Str(String),
    Int(i64),
}

#[derive(Debug, Clone, PartialEq)]
struct Cmd {
    func: Option<String>,
    args: Vec<Arg>,
}

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Text(String),
    Action(String, Vec<Cmd>),
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    /// Started with `table`: print a header row and align columns.
    pub table: bool,
    parts: Vec<Part>,
}

const FUNCS: &[&str] =
    &["json", "upper", "lower", "title", "index", "join", "len", "println", "print", "pad", "truncate"];

fn split_words(s: &str) -> Result<Vec<String>, TemplateError> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                let mut q = String::from('"');
                loop {
                    match chars.next() {
                        Some('\\') => {
                            if let Some(n) = chars.next() {
                                q.push(match n {
                                    'n' => '\n',
                                    't' => '\t',
                                    o => o,
                                });
                            }
                        }
                        Some('"') => break,
                        Some(o) => q.push(o),
                        None => return Err(TemplateError::Bad(s.to_string())),
                    }
                }
                out.push(q);
            }
            '|' => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
                out.push("|".into());
            }
            c if c.is_whitespace() => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    Ok(out)
}

fn parse_arg(w: &str, expr: &str) -> Result<Arg, TemplateError> {
    if let Some(q) = w.strip_prefix('"') {
        return Ok(Arg::Str(q.to_string()));
    }
    if w.starts_with('.') || w.starts_with("$.") || w == "$" {
        let w = w.trim_start_matches('$');
        return Ok(Arg::Field(w.split('.').filter(|p| !p.is_empty()).map(str::to_string).collect()));
    }
    if let Ok(n) = w.parse::<i64>() {
        return Ok(Arg::Int(n));
    }
    Err(TemplateError::Bad(expr.to_string()))
}

fn parse_action(expr: &str) -> Result<Vec<Cmd>, TemplateError> {
    let words = split_words(expr)?;
    let mut cmds = Vec::new();
    for seg in words.split(|w| w == "|") {
        let Some(first) = seg.first() else { return Err(TemplateError::Bad(expr.to_string())) };
        let (func, rest) = if first.starts_with('.') || first.starts_with('"') || first.starts_with('$') {
            (None, seg)
        } else if FUNCS.contains(&first.as_str()) {
            (Some(first.clone()), &seg[1..])
        } else {
            return Err(TemplateError::UnknownFunction(first.clone()));
        };
        let args = rest.iter().map(|w| parse_arg(w, expr)).collect::<Result<Vec<_>, _>>()?;
        if func.is_none() && args.len() != 1 {
            return Err(TemplateError::Bad(expr.to_string()));
        }
        cmds.push(Cmd { func, args });
    }
    Ok(cmds)
}

impl Template {
    pub fn parse(src: &str) -> Result<Template, TemplateError> {
        let mut s = src.replace("\\t", "\t").replace("\\n", "\n");
        let mut table = false;
        if let Some(rest) = s.strip_prefix("table") {
            if rest.is_empty() || rest.starts_with(char::is_whitespace) {
                table = true;
                s = rest.trim_start().to_string();
            }
        }
        let mut parts = Vec::new();
        let mut rest = s.as_str();
        while let Some(i) = rest.find("{{") {
            if i > 0 {
                parts.push(Part::Text(rest[..i].to_string()));
            }
            let j = rest[i..].find("}}").ok_or_else(|| TemplateError::Unclosed(src.to_string()))?;
            let mut expr = &rest[i + 2..i + j];
            // {{- and -}} trim markers: accepted, the spaces they name are kept.
            expr = expr.strip_prefix('-').unwrap_or(expr);
            expr = expr.strip_suffix('-').unwrap_or(expr);
            let expr = expr.trim();
            parts.push(Part::Action(expr.to_string(), parse_action(expr)?));
            rest = &rest[i + j + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_string()));
        }
        Ok(Template { table, parts })
    }

    /// The header row of a `table` template: each action that is a field takes the caller's
    /// name for it (`ID` → `CONTAINER ID`), else the field name upper-cased.
    pub fn header(&self, names: &BTreeMap<&str, &str>) -> String {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Action(_, cmds) => {
                    let field = cmds.iter().find_map(|c| match c.args.first() {
                        Some(Arg::Field(f)) if !f.is_empty() => Some(f.join(".")),
                        _ => None,
                    });
                    if let Some(f) = field {
                        out.push_str(names.get(f.as_str()).copied().unwrap_or(&f.to_uppercase()));
                    }
                }
            }
        }
        out
    }

    pub fn render(&self, v: &Value) -> Result<String, TemplateError> {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Action(expr, cmds) => {
                    let mut prev: Option<Value> = None;
                    for c in cmds {
                        let mut args: Vec<Value> = c.args.iter().map(|a| eval(a, v)).collect();
                        if let Some(p) = prev.take() {
                            args.push(p);
                        }
                        prev = Some(call(expr, c.func.as_deref(), args)?);
                    }
                    out.push_str(&go_print(prev.as_ref().unwrap_or(&Value::Null), true));
                }
            }
        }
        Ok(out)
    }
}

fn eval(a: &Arg, v: &Value) -> Value {
    match a {
        Arg::Str(s) => Value::String(s.clone()),
        Arg::Int(n) => Value::from(*n),
        Arg::Field(path) => {
            let mut cur = v;
            for p in path {
                match cur.get(p) {
                    Some(x) => cur = x,
                    None => return Value::Null,
                }
            }
            cur.clone()
        }
    }
}

fn call(expr: &str, func: Option<&str>, args: Vec<Value>) -> Result<Value, TemplateError> {
    let err = |m: &str| TemplateError::Exec(expr.to_string(), m.to_string());
    let one = |args: &[Value]| args.first().cloned().ok_or_else(|| err("wrong number of args"));
    let text = |v: &Value| go_print(v, false);
    Ok(match func {
        None => one(&args)?,
        Some("json") => Value::String(serde_json::to_string(&one(&args)?).unwrap_or_default()),
        Some("upper") => Value::String(text(&one(&args)?).to_uppercase()),
        Some("lower") => Value::String(text(&one(&args)?).to_lowercase()),
        Some("title") => {
            let s = text(&one(&args)?);
            let mut c = s.chars();
            Value::String(c.next().map(|f| f.to_uppercase().collect::<String>() + c.as_str()).unwrap_or_default())
        }
        Some("len") => match one(&args)? {
            Value::Array(a) => Value::from(a.len()),
            Value::Object(m) => Value::from(m.len()),
            Value::String(s) => Value::from(s.len()),
            _ => return Err(err("len of a value without length")),
        },
        Some("index") => {
            let [m, k] = args.as_slice() else { return Err(err("index takes a map and a key")) };
            match (m, k) {
                (Value::Object(o), Value::String(k)) => o.get(k).cloned().unwrap_or(Value::Null),
                (Value::Array(a), Value::Number(n)) => {
                    a.get(n.as_u64().unwrap_or(u64::MAX) as usize).cloned().ok_or_else(|| err("index out of range"))?
                }
                _ => Value::Null,
            }
        }
        Some("join") => {
            let [l, sep] = args.as_slice() else { return Err(err("join takes a list and a separator")) };
            let items: Vec<String> = l.as_array().map(|a| a.iter().map(text).collect()).unwrap_or_default();
            Value::String(items.join(&text(sep)))
        }
        Some("truncate") => {
            let [s, n] = args.as_slice() else { return Err(err("truncate takes a string and a length")) };
            let n = n.as_u64().unwrap_or(0) as usize;
            Value::String(text(s).chars().take(n).collect())
        }
        Some("pad") => {
            let [s, a, b] = args.as_slice() else { return Err(err("pad takes a string and two counts")) };
            let sp = |n: &Value| " ".repeat(n.as_u64().unwrap_or(0) as usize);
            Value::String(format!("{}{}{}", sp(a), text(s), sp(b)))
        }
        Some("print") => Value::String(args.iter().map(text).collect::<Vec<_>>().join("")),
        Some("println") => Value::String(args.iter().map(text).collect::<Vec<_>>().join(" ") + "\n"),
        Some(f) => return Err(TemplateError::UnknownFunction(f.to_string())),
    })
}

/// A value as Go's text/template prints it: strings raw, maps `map[k:v]`, lists `[a b]`,
/// a missing value `<no value>` at the top level.
fn go_print(v: &Value, top: bool) -> String {
    match v {
        Value::Null if top => "<no value>".into(),
        Value::Null => "<nil>".into(),
        Value::String(s) => s.clone(),
        Value::Array(a) => format!("[{}]", a.iter().map(|x| go_print(x, false)).collect::<Vec<_>>().join(" ")),
        Value::Object(m) => {
            format!(
                "map[{}]",
                m.iter().map(|(k, x)| format!("{k}:{}", go_print(x, false))).collect::<Vec<_>>().join(" ")
            )
        }
        other => other.to_string(),
    }
}

/// Aligns tab-separated cells as docker's tabwriter (minimum width 10, padding 3, the last
/// cell of a line not padded).
pub fn align(text: &str) -> String {
    let lines: Vec<Vec<&str>> = text.lines().map(|l| l.split('\t').collect()).collect();
    let mut widths: Vec<usize> = Vec::new();
    for cells in &lines {
        for (i, c) in cells.iter().enumerate().take(cells.len().saturating_sub(1)) {
            let w = (c.chars().count() + 3).max(10);
            if widths.len() <= i {
                widths.push(w);
            } else if widths[i] < w {
                widths[i] = w;
            }
        }
    }
    let mut out = String::new();
    for cells in &lines {
        let n = cells.len();
        for (i, c) in cells.iter().enumerate() {
            out.push_str(c);
            if i + 1 < n {
                out.push_str(&" ".repeat(widths[i].saturating_sub(c.chars().count())));
            }
        }
        out.push('\n');
    }
    out
}

/// Renders `rows` with a `--format` value: `json` (one object a line), `table TEMPLATE`
/// (header + aligned rows) or a plain template (one rendered line a row).
pub fn render_rows(format: &str, rows: &[Value], names: &BTreeMap<&str, &str>) -> Result<String, TemplateError> {
    let format = if format == "json" { "{{json .}}" } else { format };
    let t = Template::parse(format)?;
    let mut text = String::new();
    if t.table {
        text.push_str(&t.header(names));
        text.push('\n');
    }
    for r in rows {
        text.push_str(&t.render(r)?);
        text.push('\n');
    }
    Ok(if t.table { align(&text) } else { text })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn r(t: &str, v: &Value) -> String {
        Template::parse(t).unwrap().render(v).unwrap()
    }

    #[test]
    fn fields_functions_and_pipes() {
        let v = json!({"ID": "abc", "Names": "web", "State": {"Status": "running"}, "Labels": {"a": "1"}, "L": ["x", "y"], "N": 3});
        assert_eq!(r("{{.ID}} {{.Names}}", &v), "abc web");
        assert_eq!(r("{{.State.Status}}", &v), "running");
        assert_eq!(r("{{json .State}}", &v), r#"{"Status":"running"}"#);
        assert_eq!(r("{{.Names | upper}}", &v), "WEB");
        assert_eq!(r("{{upper .Names}}", &v), "WEB");
        assert_eq!(r("{{index .Labels \"a\"}}", &v), "1");
        assert_eq!(r("{{join .L \",\"}}", &v), "x,y");
        assert_eq!(r("{{len .L}}", &v), "2");
        assert_eq!(r("{{.Missing}}", &v), "<no value>");
        assert_eq!(r("{{.Labels}}", &v), "map[a:1]");
        assert_eq!(r("{{.L}}", &v), "[x y]");
        assert_eq!(r("{{.N}}\\t{{.ID}}", &v), "3\tabc");
        assert_eq!(r("{{json .}}", &json!({"a": 1})), r#"{"a":1}"#);
        assert_eq!(Template::parse("{{nope .X}}"), Err(TemplateError::UnknownFunction("nope".into())));
        assert!(Template::parse("{{.X").is_err());
    }

    #[test]
    fn tables() {
        let rows = vec![json!({"ID": "a", "Image": "busybox"}), json!({"ID": "bbbbbbbbbbbbbb", "Image": "x"})];
        let mut names = BTreeMap::new();
        names.insert("ID", "CONTAINER ID");
        let out = render_rows("table {{.ID}}\t{{.Image}}", &rows, &names).unwrap();
        assert_eq!(out, "CONTAINER ID     IMAGE\na                busybox\nbbbbbbbbbbbbbb   x\n");
        assert_eq!(render_rows("json", &rows[..1], &names).unwrap(), "{\"ID\":\"a\",\"Image\":\"busybox\"}\n");
    }
}
