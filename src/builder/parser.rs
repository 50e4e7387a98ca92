//! The Dockerfile parser, with the rules of Docker's frontend (moby/buildkit
//! frontend/dockerfile/parser): parser directives (`# syntax=`, `# escape=`, `# check=`) before
//! anything else, comments (also inside continued lines), line continuation with the escape
//! character, empty continuation lines skipped, `--flag` words, JSON (exec) and shell forms,
//! and heredocs (`<<EOF`, `<<-EOF`, `<<"EOF"`) on RUN, COPY and ADD.

use super::shell::Lex;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("dockerfile parse error on line {line}: {msg}")]
pub struct ParseError {
    pub line: usize,
    pub msg: String,
}

/// A heredoc attached to an instruction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heredoc {
    pub name: String,
    pub content: String,
    /// Unquoted terminator: variables in the content are expanded.
    pub expand: bool,
    /// `<<-`: leading tabs are removed from the content.
    pub chomp: bool,
    pub fd: u32,
}

/// An instruction's arguments, per instruction kind (as the frontend's dispatch table).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Args {
    None,
    /// JSON array (exec form).
    Json(Vec<String>),
    /// The rest of the line, unsplit (shell form).
    Line(String),
    /// Words split on white space (quotes kept, expanded later).
    Words(Vec<String>),
    /// ENV and LABEL: (key, value) with quotes kept; `legacy` when written `KEY value`.
    KeyValues {
        pairs: Vec<(String, String)>,
        legacy: bool,
    },
    /// HEALTHCHECK: `NONE`, or `CMD` and the command.
    Health {
        kind: String,
        cmd: Box<Args>,
    },
    /// ONBUILD: the instruction it carries.
    Sub(Box<Node>),
}

/// One instruction as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// The instruction word as written (e.g. "run", "RUN").
    pub value: String,
    pub flags: Vec<String>,
    pub args: Args,
    pub heredocs: Vec<Heredoc>,
    /// The full (joined) line.
    pub original: String,
    pub start_line: usize,
    pub end_line: usize,
}

impl Node {
    pub fn cmd(&self) -> String {
        self.value.to_ascii_lowercase()
    }
}

/// A parsed Dockerfile.
#[derive(Debug, Clone)]
pub struct Dockerfile {
    pub nodes: Vec<Node>,
    pub escape: char,
    /// `# syntax=` when given.
    pub syntax: Option<String>,
    pub warnings: Vec<String>,
}

struct Directives {
    escape: char,
    done: bool,
    seen: Vec<String>,
    syntax: Option<String>,
}

impl Directives {
    /// Whether `line` (already trimmed on the left) is a parser directive; applies it.
    fn possible(&mut self, line: &str) -> Result<bool, String> {
        if self.done {
            return Ok(false);
        }
        let Some(rest) = line.strip_prefix('#') else {
            self.done = true;
            return Ok(false);
        };
        let rest = rest.trim_start();
        let Some((k, v)) = rest.split_once('=') else {
            self.done = true;
            return Ok(false);
        };
        let k = k.trim_end();
        let v = v.trim();
        let valid_key =
            k.chars().next().is_some_and(|c| c.is_ascii_alphabetic()) && k.chars().all(|c| c.is_ascii_alphanumeric());
        if !valid_key || v.is_empty() {
            self.done = true;
            return Ok(false);
        }
        let k = k.to_ascii_lowercase();
        if !matches!(k.as_str(), "syntax" | "escape" | "check") {
            self.done = true;
            return Ok(false);
        }
        if self.seen.contains(&k) {
            return Err(format!("only one {k} parser directive can be used"));
        }
        self.seen.push(k.clone());
        match k.as_str() {
            "escape" => {
                if v != "`" && v != "\\" {
                    return Err(format!("invalid escape token '{v}' does not match ` or \\"));
                }
                self.escape = v.chars().next().unwrap_or('\\');
            }
            "syntax" => self.syntax = Some(v.to_string()),
            _ => {}
        }
        Ok(true)
    }

    /// The line without its continuation character, and whether the instruction ends here.
    fn trim_continuation<'a>(&self, line: &'a str) -> (&'a str, bool) {
        let t = line.trim_end_matches([' ', '\t']);
        if let Some(body) = t.strip_suffix(self.escape) {
            // `\\` at the end (an escaped escape) is no continuation, unless it is the whole line.
            if body.is_empty() || !body.ends_with(self.escape) {
                return (body, false);
            }
        }
        (line, true)
    }
}

fn is_comment(line: &str) -> bool {
    line.trim_start().starts_with('#')
}

fn trim_newline(s: &str) -> &str {
    s.trim_end_matches(['\r', '\n'])
}

/// Parses a Dockerfile.
pub fn parse(src: &str) -> Result<Dockerfile, ParseError> {
    let src = src.strip_prefix('\u{feff}').unwrap_or(src);
    let lines: Vec<&str> = src.split_inclusive('\n').collect();
    let mut d = Directives { escape: '\\', done: false, seen: Vec::new(), syntax: None };
    let mut nodes = Vec::new();
    let mut warnings = Vec::new();
    let mut i = 0;
    let mut current = 0;
    let err = |line: usize, msg: String| ParseError { line, msg };
    while i < lines.len() {
        let raw = trim_newline(lines[i]).trim_start();
        i += 1;
        let directive = d.possible(raw).map_err(|m| err(current + 1, m))?;
        current += 1;
        let start = current;
        let first = if directive || is_comment(raw) { "" } else { raw };
        let (body, mut end) = d.trim_continuation(first);
        if end && body.is_empty() {
            continue;
        }
        let mut buf = body.to_string();
        let mut empty_cont = false;
        while !end && i < lines.len() {
            let l = trim_newline(lines[i]);
            i += 1;
            current += 1;
            if is_comment(l) {
                continue;
            }
            if l.trim_start().is_empty() {
                empty_cont = true;
                continue;
            }
            let (b, e) = d.trim_continuation(l);
            buf.push_str(b);
            end = e;
        }
        if empty_cont {
            warnings.push(format!("Empty continuation line found in: {buf}"));
        }
        let mut node = node_from_line(&buf, d.escape).map_err(|m| err(start, m))?;
        node.start_line = start;
        if matches!(node.cmd().as_str(), "run" | "copy" | "add") && buf.contains("<<") {
            for mut h in heredocs_from_line(&buf).map_err(|m| err(start, m))? {
                let mut done = false;
                let mut content = String::new();
                while i < lines.len() {
                    let l = lines[i];
                    i += 1;
                    current += 1;
                    let mut term = trim_newline(l);
                    if h.chomp {
                        term = term.trim_start_matches('\t');
                    }
                    if term == h.name {
                        done = true;
                        break;
                    }
                    content.push_str(l);
                }
                if !done {
                    return Err(err(start, "unterminated heredoc".into()));
                }
                h.content = content;
                node.heredocs.push(h);
            }
        }
        node.end_line = current;
        nodes.push(node);
    }
    if nodes.is_empty() {
        return Err(err(current, "file with no instructions".into()));
    }
    Ok(Dockerfile { nodes, escape: d.escape, syntax: d.syntax, warnings })
}

/// Splits `CMD --flags... rest` and parses `rest` the way the instruction wants.
fn node_from_line(line: &str, escape: char) -> Result<Node, String> {
    let t = line.trim();
    let (cmd, rest) = match t.find(is_ws) {
        Some(p) => (&t[..p], t[p..].trim_start_matches(is_ws)),
        None => (t, ""),
    };
    let (rest, flags) = extract_flags(rest, escape);
    let rest = rest.trim();
    let args = match cmd.to_ascii_lowercase().as_str() {
        "add" | "copy" | "volume" => maybe_json_to_list(rest)?,
        "arg" => Args::Words(parse_words(rest, escape)),
        "cmd" | "entrypoint" | "run" | "shell" => maybe_json(rest)?,
        "env" | "label" => name_val(rest, &cmd.to_ascii_uppercase(), escape)?,
        "expose" | "from" => whitespace_list(rest),
        "healthcheck" => {
            let (kind, more) = match rest.find(char::is_whitespace) {
                Some(p) => (&rest[..p], rest[p..].trim_start()),
                None => (rest, ""),
            };
            if kind.is_empty() {
                Args::None
            } else {
                Args::Health { kind: kind.to_string(), cmd: Box::new(maybe_json(more)?) }
            }
        }
        "maintainer" | "stopsignal" | "user" | "workdir" => {
            if rest.is_empty() {
                Args::None
            } else {
                Args::Line(rest.to_string())
            }
        }
        "onbuild" => {
            if rest.is_empty() {
                Args::None
            } else {
                Args::Sub(Box::new(node_from_line(rest, escape)?))
            }
        }
        _ => Args::None,
    };
    Ok(Node {
        value: cmd.to_string(),
        flags,
        args,
        heredocs: Vec::new(),
        original: line.to_string(),
        start_line: 0,
        end_line: 0,
    })
}

fn is_ws(c: char) -> bool {
    matches!(c, '\t' | '\x0b' | '\x0c' | '\r' | ' ')
}

fn whitespace_list(rest: &str) -> Args {
    if rest.is_empty() {
        return Args::None;
    }
    Args::Words(rest.split(is_ws).filter(|s| !s.is_empty()).map(str::to_string).collect())
}

enum Json {
    Ok(Vec<String>),
    NotArray,
    NotStrings,
}

fn parse_json(rest: &str) -> Json {
    let r = rest.trim_start();
    if !r.starts_with('[') {
        return Json::NotArray;
    }
    match serde_json::from_str::<Vec<serde_json::Value>>(r) {
        Ok(v) => {
            let mut out = Vec::new();
            for x in v {
                match x {
                    serde_json::Value::String(s) => out.push(s),
                    _ => return Json::NotStrings,
                }
            }
            Json::Ok(out)
        }
        Err(_) => Json::NotArray,
    }
}

const NOT_STRINGS: &str = "when using JSON array syntax, arrays must be comprised of strings only";

fn maybe_json(rest: &str) -> Result<Args, String> {
    if rest.is_empty() {
        return Ok(Args::None);
    }
    match parse_json(rest) {
        Json::Ok(v) => Ok(Args::Json(v)),
        Json::NotStrings => Err(NOT_STRINGS.into()),
        Json::NotArray => Ok(Args::Line(rest.to_string())),
    }
}

fn maybe_json_to_list(rest: &str) -> Result<Args, String> {
    match parse_json(rest) {
        Json::Ok(v) => Ok(Args::Json(v)),
        Json::NotStrings => Err(NOT_STRINGS.into()),
        Json::NotArray => Ok(whitespace_list(rest)),
    }
}

/// Words split on white space, quotes and escapes kept (the frontend's parseWords).
pub fn parse_words(rest: &str, escape: char) -> Vec<String> {
    let cs: Vec<char> = rest.chars().collect();
    let mut words = Vec::new();
    let mut w = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut blank_ok = false;
    let mut i = 0;
    while i < cs.len() {
        let c = cs[i];
        if !in_word && quote.is_none() {
            if c.is_whitespace() {
                i += 1;
                continue;
            }
            in_word = true;
        }
        if let Some(q) = quote {
            if c == q {
                quote = None;
            } else if c == escape && q != '\'' {
                if i + 1 == cs.len() {
                    i += 1;
                    continue;
                }
                w.push(c);
                i += 1;
                w.push(cs[i]);
                i += 1;
                continue;
            }
            w.push(c);
            i += 1;
            continue;
        }
        if c.is_whitespace() {
            in_word = false;
            if blank_ok || !w.is_empty() {
                words.push(std::mem::take(&mut w));
            }
            blank_ok = false;
            i += 1;
            continue;
        }
        if c == '\'' || c == '"' {
            quote = Some(c);
            blank_ok = true;
        }
        if c == escape {
            if i + 1 == cs.len() {
                i += 1;
                continue;
            }
            w.push(c);
            i += 1;
        }
        w.push(cs[i]);
        i += 1;
    }
    if in_word && (blank_ok || !w.is_empty()) {
        words.push(w);
    }
    words
}

fn name_val(rest: &str, key: &str, escape: char) -> Result<Args, String> {
    let words = parse_words(rest, escape);
    if words.is_empty() {
        return Ok(Args::None);
    }
    if !words[0].contains('=') {
        let t = rest.trim_start_matches(is_ws);
        let Some(p) = t.find(is_ws) else { return Err(format!("{key} must have two arguments")) };
        let v = t[p..].trim_start_matches(is_ws);
        return Ok(Args::KeyValues { pairs: vec![(t[..p].to_string(), v.to_string())], legacy: true });
    }
    let mut pairs = Vec::new();
    for w in words {
        let Some((k, v)) = w.split_once('=') else {
            return Err(format!("Syntax error - can't find = in {w:?}. Must be of the form: name=value"));
        };
        pairs.push((k.to_string(), v.to_string()));
    }
    Ok(Args::KeyValues { pairs, legacy: false })
}

/// Leading `--name[=value]` words (the frontend's extractBuilderFlags); a bare `--` ends them.
fn extract_flags(line: &str, escape: char) -> (String, Vec<String>) {
    let cs: Vec<char> = line.chars().collect();
    let mut flags = Vec::new();
    let mut i = 0;
    loop {
        while i < cs.len() && cs[i].is_whitespace() {
            i += 1;
        }
        if i >= cs.len() {
            return (String::new(), flags);
        }
        if !(cs[i] == '-' && cs.get(i + 1) == Some(&'-')) {
            return (cs[i..].iter().collect(), flags);
        }
        let mut w = String::new();
        let mut quote: Option<char> = None;
        let mut blank_ok = false;
        while i < cs.len() {
            let c = cs[i];
            if let Some(q) = quote {
                if c == q {
                    quote = None;
                    i += 1;
                    continue;
                }
                if c == escape {
                    if i + 1 == cs.len() {
                        quote = None;
                        i += 1;
                        continue;
                    }
                    i += 1;
                }
                w.push(cs[i]);
                i += 1;
                continue;
            }
            if c.is_whitespace() {
                break;
            }
            if c == '\'' || c == '"' {
                quote = Some(c);
                blank_ok = true;
                i += 1;
                continue;
            }
            if c == escape {
                if i + 1 == cs.len() {
                    i += 1;
                    continue;
                }
                i += 1;
            }
            w.push(cs[i]);
            i += 1;
        }
        if w == "--" {
            return (cs[i..].iter().collect(), flags);
        }
        if blank_ok || !w.is_empty() {
            flags.push(w);
        }
    }
}

/// The heredocs a line opens, in order (`<<EOF`, `<<-EOF`, `<<'EOF'`, `3<<EOF`).
fn heredocs_from_line(line: &str) -> Result<Vec<Heredoc>, String> {
    let raw = Lex { escape: '\\', raw_quotes: true, skip_unset: true, skip_quotes: false };
    // The frontend lexes with raw escapes too; without them a `\` before `<<` would hide it
    // the same way, which is what matters here.
    let words = raw.process_words(line, &Vec::new()).unwrap_or_default();
    let mut out = Vec::new();
    for w in words {
        if let Some(h) = parse_heredoc(&w)? {
            out.push(h);
        }
    }
    Ok(out)
}

/// One word `^(\d*)<<(-?)\s*([^<]*)$` as a heredoc, when it is one.
pub fn parse_heredoc(word: &str) -> Result<Option<Heredoc>, String> {
    let digits: String = word.chars().take_while(char::is_ascii_digit).collect();
    let Some(rest) = word[digits.len()..].strip_prefix("<<") else { return Ok(None) };
    let (chomp, rest) = match rest.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, rest),
    };
    let rest = rest.trim_start();
    if rest.is_empty() || rest.contains('<') {
        return Ok(None);
    }
    let plain = Lex { escape: '\\', raw_quotes: false, skip_unset: true, skip_quotes: false };
    let words = plain.process_words(rest, &Vec::new()).map_err(|e| e.to_string())?;
    if words.len() != 1 {
        return Ok(None);
    }
    let raw = Lex { escape: '\\', raw_quotes: true, skip_unset: true, skip_quotes: false };
    let raw_words = raw.process_words(rest, &Vec::new()).map_err(|e| e.to_string())?;
    let quotes = |s: &str| s.matches(['\'', '"']).count();
    let expand = quotes(&words[0]) == raw_words.first().map_or(0, |w| quotes(w));
    Ok(Some(Heredoc { name: words[0].clone(), content: String::new(), expand, chomp, fd: digits.parse().unwrap_or(0) }))
}

/// `<<-` content: leading tabs removed from every line.
pub fn chomp_heredoc(s: &str) -> String {
    s.split_inclusive('\n').map(|l| l.trim_start_matches('\t')).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(src: &str) -> Node {
        let d = parse(src).unwrap();
        assert_eq!(d.nodes.len(), 1, "{:?}", d.nodes);
        d.nodes.into_iter().next().unwrap()
    }

    #[test]
    fn continuation_and_comments() {
        let d = parse("FROM busybox\n# comment\nRUN echo a \\\n  # inner comment\n  b \\\n\n  c\nCMD x\n").unwrap();
        assert_eq!(d.nodes.len(), 3);
        assert_eq!(d.nodes[1].args, Args::Line("echo a   b   c".into()));
        assert_eq!((d.nodes[1].start_line, d.nodes[1].end_line), (3, 7));
        assert_eq!(d.nodes[2].start_line, 8);
        assert_eq!(d.warnings.len(), 1);
    }

    #[test]
    fn directives() {
        let d = parse("# syntax=docker/dockerfile:1\n# escape=`\nFROM x\nRUN dir c:\\ `\n  && echo\n").unwrap();
        assert_eq!(d.escape, '`');
        assert_eq!(d.syntax.as_deref(), Some("docker/dockerfile:1"));
        assert_eq!(d.nodes[1].args, Args::Line("dir c:\\   && echo".into()));
        // After an instruction or a plain comment a directive is a comment.
        let d = parse("# hello\n# escape=`\nFROM x\nRUN a \\\n b\n").unwrap();
        assert_eq!(d.escape, '\\');
        assert_eq!(d.nodes[1].args, Args::Line("a  b".into()));
        assert!(parse("# escape=x\nFROM x\n").unwrap_err().to_string().contains("invalid escape token"));
        assert!(parse("# escape=`\n# escape=`\nFROM x\n").unwrap_err().to_string().contains("only one escape"));
        let e = parse("\n# just a comment\n").unwrap_err();
        assert_eq!(e.msg, "file with no instructions");
    }

    #[test]
    fn forms() {
        assert_eq!(one("CMD [\"a\", \"b c\"]").args, Args::Json(vec!["a".into(), "b c".into()]));
        assert_eq!(one("CMD [\"a\", \"b c\"").args, Args::Line("[\"a\", \"b c\"".into()));
        assert!(parse("CMD [\"a\", 1]").is_err());
        assert_eq!(one("COPY a b  c").args, Args::Words(vec!["a".into(), "b".into(), "c".into()]));
        assert_eq!(one("COPY [\"a b\", \"c\"]").args, Args::Json(vec!["a b".into(), "c".into()]));
        assert_eq!(one("EXPOSE 80  443/udp").args, Args::Words(vec!["80".into(), "443/udp".into()]));
        let n = one("COPY --from=build --chown=\"1:1\" --link a b");
        assert_eq!(n.flags, ["--from=build", "--chown=1:1", "--link"]);
        assert_eq!(one("COPY \"--link\" b").args, Args::Words(vec!["\"--link\"".into(), "b".into()]));
        assert_eq!(n.args, Args::Words(vec!["a".into(), "b".into()]));
        let n = one("RUN --mount=type=cache,target=/c -- --not-a-flag");
        assert_eq!(n.flags, ["--mount=type=cache,target=/c"]);
        assert_eq!(n.args, Args::Line("--not-a-flag".into()));
    }

    #[test]
    fn env_and_label() {
        let n = one("ENV A=1 B=\"two words\" C=three\\ words");
        assert_eq!(
            n.args,
            Args::KeyValues {
                pairs: vec![
                    ("A".into(), "1".into()),
                    ("B".into(), "\"two words\"".into()),
                    ("C".into(), "three\\ words".into())
                ],
                legacy: false
            }
        );
        assert_eq!(
            one("ENV PATH   /a b").args,
            Args::KeyValues { pairs: vec![("PATH".into(), "/a b".into())], legacy: true }
        );
        assert!(parse("ENV ONLY").unwrap_err().msg.contains("ENV must have two arguments"));
        assert!(parse("LABEL a=b c").unwrap_err().msg.contains("can't find = in \"c\""));
        assert_eq!(one("ARG A=\"x y\" B").args, Args::Words(vec!["A=\"x y\"".into(), "B".into()]));
    }

    #[test]
    fn heredocs() {
        let d = parse(
            "FROM x\nRUN <<EOF\necho $A\necho b\nEOF\nCOPY <<-\"ONE\" <<TWO /dst/\n\tone\n\tONE\ntwo\nTWO\nCMD c\n",
        )
        .unwrap();
        assert_eq!(d.nodes.len(), 4);
        let r = &d.nodes[1];
        assert_eq!(r.heredocs.len(), 1);
        assert_eq!(r.heredocs[0].name, "EOF");
        assert_eq!(r.heredocs[0].content, "echo $A\necho b\n");
        assert!(r.heredocs[0].expand);
        assert_eq!((r.start_line, r.end_line), (2, 5));
        let c = &d.nodes[2];
        assert_eq!(c.heredocs.len(), 2);
        assert_eq!((c.heredocs[0].name.as_str(), c.heredocs[0].chomp, c.heredocs[0].expand), ("ONE", true, false));
        assert_eq!(c.heredocs[0].content, "\tone\n");
        assert_eq!(chomp_heredoc(&c.heredocs[0].content), "one\n");
        assert_eq!(c.heredocs[1].content, "two\n");
        assert_eq!(d.nodes[3].args, Args::Line("c".into()));
        assert_eq!(parse("FROM x\nRUN <<EOF\nnever ends\n").unwrap_err().msg, "unterminated heredoc");
        // Not heredocs: a quoted "<<", a redirection into a file.
        assert!(one("RUN echo '<<EOF'").heredocs.is_empty());
        assert!(one("RUN cat <<EOF<x").heredocs.is_empty());
        let h = parse_heredoc("3<<'E'").unwrap().unwrap();
        assert_eq!((h.fd, h.expand, h.name.as_str()), (3, false, "E"));
    }

    #[test]
    fn healthcheck_and_onbuild() {
        let n = one("HEALTHCHECK --interval=5s CMD [\"true\"]");
        assert_eq!(n.flags, ["--interval=5s"]);
        assert_eq!(n.args, Args::Health { kind: "CMD".into(), cmd: Box::new(Args::Json(vec!["true".into()])) });
        let n = one("ONBUILD RUN echo hi");
        match n.args {
            Args::Sub(s) => assert_eq!((s.cmd(), s.args), ("run".into(), Args::Line("echo hi".into()))),
            other => panic!("{other:?}"),
        }
    }

    /// Go's strconv.Quote (printable Unicode kept).
    fn go_quote(v: &str) -> String {
        let mut o = String::from("\"");
        for c in v.chars() {
            match c {
                '"' => o.push_str("\\\""),
                '\\' => o.push_str("\\\\"),
                '\u{7}' => o.push_str("\\a"),
                '\u{8}' => o.push_str("\\b"),
                '\u{c}' => o.push_str("\\f"),
                '\n' => o.push_str("\\n"),
                '\r' => o.push_str("\\r"),
                '\t' => o.push_str("\\t"),
                '\u{b}' => o.push_str("\\v"),
                c if (c as u32) < 0x20 || c as u32 == 0x7f => o.push_str(&format!("\\x{:02x}", c as u32)),
                c => o.push(c),
            }
        }
        o.push('"');
        o
    }

    /// buildkit's `Node.Dump()`: `(cmd ["--flags"] "arg" ...)`.
    fn dump(n: &Node) -> String {
        let mut s = n.value.to_lowercase();
        if !n.flags.is_empty() {
            let f: Vec<String> = n.flags.iter().map(|f| go_quote(f)).collect();
            s.push_str(&format!(" [{}]", f.join(" ")));
        }
        fn args(a: &Args, s: &mut String) {
            let q = |v: &str| format!(" {}", go_quote(v));
            match a {
                Args::None => {}
                Args::Json(v) | Args::Words(v) => v.iter().for_each(|x| s.push_str(&q(x))),
                Args::Line(l) => s.push_str(&q(l)),
                Args::KeyValues { pairs, legacy } => {
                    for (k, v) in pairs {
                        s.push_str(&q(k));
                        s.push_str(&q(v));
                        s.push_str(&q(if *legacy { "" } else { "=" }));
                    }
                }
                Args::Health { kind, cmd } => {
                    s.push_str(&q(kind));
                    args(cmd, s);
                }
                Args::Sub(n) => s.push_str(&format!(" ({})", dump(n))),
            }
        }
        args(&n.args, &mut s);
        s.trim().to_string()
    }

    /// Every Dockerfile of moby/buildkit's frontend/dockerfile/parser/testfiles parses to the
    /// AST its `result` file shows; the negative ones fail.
    #[test]
    fn buildkit_testfiles() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/builder/testdata/parser");
        let mut n = 0;
        for e in std::fs::read_dir(&dir).unwrap() {
            let e = e.unwrap();
            if e.file_name() == "negative" {
                continue;
            }
            let df = std::fs::read_to_string(e.path().join("Dockerfile")).unwrap();
            let want = std::fs::read_to_string(e.path().join("result")).unwrap();
            let d = parse(&df).unwrap_or_else(|err| panic!("{}: {err}", e.path().display()));
            let got: String = d.nodes.iter().map(|n| format!("({})\n", dump(n))).collect();
            assert_eq!(got, want, "{}", e.path().display());
            n += 1;
        }
        assert!(n >= 30, "{n} testfiles");
        for e in std::fs::read_dir(dir.join("negative")).unwrap() {
            let p = e.unwrap().path();
            let df = std::fs::read_to_string(&p).unwrap();
            assert!(parse(&df).is_err(), "{} parsed", p.display());
        }
    }

    #[test]
    fn crlf_and_bom() {
        let d = parse("\u{feff}FROM x\r\nRUN a \\\r\n b\r\n").unwrap();
        assert_eq!(d.nodes[1].args, Args::Line("a  b".into()));
    }
}
