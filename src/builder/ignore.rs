//! `.dockerignore` with Docker's rules (moby/patternmatcher): one pattern a line, `#`
//! comments, surrounding white space trimmed, paths cleaned and made relative to the
//! context root, `*` `?` `[...]` and `\` as Go's filepath.Match, `**` for any number of
//! directories, `!` exceptions, the last matching pattern wins, and a path is excluded when
//! a pattern matches it or one of its parent directories.

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: line {line}: bad pattern {pattern:?}")]
pub struct IgnoreError {
    pub file: String,
    pub line: usize,
    pub pattern: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Pattern {
    /// Path segments of the cleaned pattern.
    segs: Vec<String>,
    exclusion: bool,
}

/// The patterns of one `.dockerignore`.
#[derive(Debug, Clone, Default)]
pub struct Ignore {
    pats: Vec<Pattern>,
}

/// Go's filepath.Clean of a relative path, without a leading `/`.
fn clean(p: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for s in p.split('/') {
        match s {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    out.join("/")
}

impl Ignore {
    /// Parses the content of a `.dockerignore` (`file` names it in errors).
    pub fn parse(file: &str, content: &str) -> Result<Ignore, IgnoreError> {
        let mut pats = Vec::new();
        for (i, line) in content.lines().enumerate() {
            if line.starts_with('#') {
                continue;
            }
            let mut p = line.trim();
            if p.is_empty() {
                continue;
            }
            let mut exclusion = false;
            if let Some(rest) = p.strip_prefix('!') {
                exclusion = true;
                p = rest.trim();
                if p.is_empty() {
                    return Err(IgnoreError { file: file.into(), line: i + 1, pattern: line.into() });
                }
            }
            let c = clean(p);
            if c.is_empty() {
                // "/" or "." ignores everything but is never a valid exception target.
                pats.push(Pattern { segs: vec!["**".into()], exclusion });
                continue;
            }
            let segs: Vec<String> = c.split('/').map(str::to_string).collect();
            for s in &segs {
                if s != "**" && glob(s, "").is_err() {
                    return Err(IgnoreError { file: file.into(), line: i + 1, pattern: line.into() });
                }
            }
            pats.push(Pattern { segs, exclusion });
        }
        Ok(Ignore { pats })
    }

    pub fn is_empty(&self) -> bool {
        self.pats.is_empty()
    }

    /// Whether an exception (`!pattern`) may match something below directory `rel`: an
    /// excluded directory must then still be walked, as docker does.
    pub fn may_include_below(&self, rel: &str) -> bool {
        let rel = clean(rel);
        let segs: Vec<&str> = if rel.is_empty() { Vec::new() } else { rel.split('/').collect() };
        self.pats.iter().filter(|p| p.exclusion).any(|p| prefix_may_match(&p.segs, &segs))
    }

    /// Whether the context path `rel` (relative, `/`-separated) is excluded.
    pub fn excluded(&self, rel: &str) -> bool {
        let rel = clean(rel);
        if rel.is_empty() {
            return false;
        }
        let segs: Vec<&str> = rel.split('/').collect();
        let mut out = false;
        for p in &self.pats {
            // A pattern matches the path or one of its parents.
            let hit = (1..=segs.len()).any(|n| match_segs(&p.segs, &segs[..n]));
            if hit {
                out = !p.exclusion;
            }
        }
        out
    }
}

/// Whether some path below `dir` (its segments) could match `pat`.
fn prefix_may_match(pat: &[String], dir: &[&str]) -> bool {
    match (pat.split_first(), dir.split_first()) {
        (_, None) => !pat.is_empty(),
        (None, Some(_)) => false,
        (Some((p, _)), Some(_)) if p == "**" => true,
        (Some((p, rest)), Some((d, drest))) => glob(p, d).unwrap_or(false) && prefix_may_match(rest, drest),
    }
}

fn match_segs(pat: &[String], path: &[&str]) -> bool {
    match pat.split_first() {
        None => path.is_empty(),
        Some((p, rest)) if p == "**" => (0..=path.len()).any(|i| match_segs(rest, &path[i..])),
        Some((p, rest)) => !path.is_empty() && glob(p, path[0]).unwrap_or(false) && match_segs(rest, &path[1..]),
    }
}

/// Go's filepath.Match on one path segment; Err for a malformed pattern. A `**` inside a
/// segment (`a**b`) acts as `*`.
pub fn glob(pat: &str, name: &str) -> Result<bool, ()> {
    let p: Vec<char> = pat.chars().collect();
    let n: Vec<char> = name.chars().collect();
    // Validate the pattern once (classes closed, escapes complete).
    let mut i = 0;
    while i < p.len() {
        match p[i] {
            '\\' => {
                if i + 1 >= p.len() {
                    return Err(());
                }
                i += 2;
            }
            '[' => {
                i = class_end(&p, i).ok_or(())?;
            }
            _ => i += 1,
        }
    }
    Ok(glob_at(&p, &n))
}

/// Index after the `]` of the class starting at `p[i] == '['`.
fn class_end(p: &[char], mut i: usize) -> Option<usize> {
    i += 1;
    if p.get(i) == Some(&'^') {
        i += 1;
    }
    let mut first = true;
    loop {
        match p.get(i)? {
            ']' if !first => return Some(i + 1),
            '\\' => i += 2,
            _ => i += 1,
        }
        first = false;
    }
}

fn class_match(p: &[char], start: usize, c: char) -> (bool, usize) {
    let end = class_end(p, start).unwrap_or(p.len());
    let mut i = start + 1;
    let neg = p.get(i) == Some(&'^');
    if neg {
        i += 1;
    }
    let mut hit = false;
    let mut first = true;
    while i < end - 1 || (first && i < end) {
        if p[i] == ']' && !first {
            break;
        }
        first = false;
        let mut lo = p[i];
        if lo == '\\' {
            i += 1;
            lo = p[i];
        }
        i += 1;
        let mut hi = lo;
        if p.get(i) == Some(&'-') && i + 1 < end - 1 {
            i += 1;
            hi = p[i];
            if hi == '\\' {
                i += 1;
                hi = p[i];
            }
            i += 1;
        }
        if lo <= c && c <= hi {
            hit = true;
        }
    }
    (hit != neg, end)
}

fn glob_at(p: &[char], n: &[char]) -> bool {
    // Memoised on (pattern index, name index): O(len(p) * len(n)^2) at worst, where trying every
    // split for every `*` took exponential time on `*a*a*a*...b`.
    let mut memo = vec![None; (p.len() + 1) * (n.len() + 1)];
    glob_from(p, 0, n, 0, &mut memo)
}

/// Whether `p[pi..]` matches `n[ni..]`.
fn glob_from(p: &[char], pi: usize, n: &[char], ni: usize, memo: &mut [Option<bool>]) -> bool {
    let key = pi * (n.len() + 1) + ni;
    if let Some(r) = memo[key] {
        return r;
    }
    let r = match p.get(pi) {
        None => ni == n.len(),
        Some('*') => {
            let mut k = pi;
            while k < p.len() && p[k] == '*' {
                k += 1;
            }
            // The star takes n[ni..i], never a '/'.
            let mut i = ni;
            loop {
                if glob_from(p, k, n, i, memo) {
                    break true;
                }
                if i == n.len() || n[i] == '/' {
                    break false;
                }
                i += 1;
            }
        }
        Some('?') => ni < n.len() && n[ni] != '/' && glob_from(p, pi + 1, n, ni + 1, memo),
        Some('[') => {
            if ni >= n.len() || n[ni] == '/' {
                false
            } else {
                let (ok, end) = class_match(p, pi, n[ni]);
                ok && glob_from(p, end, n, ni + 1, memo)
            }
        }
        Some('\\') => pi + 1 < p.len() && ni < n.len() && n[ni] == p[pi + 1] && glob_from(p, pi + 2, n, ni + 1, memo),
        Some(&c) => ni < n.len() && n[ni] == c && glob_from(p, pi + 1, n, ni + 1, memo),
    };
    memo[key] = Some(r);
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the coverage-guided fuzzer (fuzz/fuzz_targets/dockerignore.rs): a pattern with
    /// many `*` took exponential time against a long name (a `.dockerignore` hung a build).
    #[test]
    fn many_stars_match_in_polynomial_time() {
        let name = "a".repeat(80);
        let pat = "*a".repeat(30) + "*b";
        assert_eq!(glob(&pat, &name), Ok(false));
        assert_eq!(glob(&("*a".repeat(30) + "*"), &name), Ok(true));
        assert!(!ig(&format!("{pat}\n")).excluded(&name));
        // Against the plain recursive definition, on every short pattern and name.
        fn slow(p: &[char], n: &[char]) -> bool {
            if p.is_empty() {
                return n.is_empty();
            }
            match p[0] {
                '*' => {
                    let mut k = 0;
                    while k < p.len() && p[k] == '*' {
                        k += 1;
                    }
                    (0..=n.len()).any(|i| n[..i].iter().all(|&c| c != '/') && slow(&p[k..], &n[i..]))
                }
                '?' => !n.is_empty() && n[0] != '/' && slow(&p[1..], &n[1..]),
                '[' => {
                    if n.is_empty() || n[0] == '/' {
                        return false;
                    }
                    let (ok, end) = class_match(p, 0, n[0]);
                    ok && slow(&p[end..], &n[1..])
                }
                '\\' => p.len() > 1 && !n.is_empty() && n[0] == p[1] && slow(&p[2..], &n[1..]),
                c => !n.is_empty() && n[0] == c && slow(&p[1..], &n[1..]),
            }
        }
        let all = |len: usize, of: &[&str]| -> Vec<String> {
            let mut v = vec![String::new()];
            for _ in 0..len {
                let mut next: Vec<String> = v.iter().flat_map(|w| of.iter().map(move |c| format!("{w}{c}"))).collect();
                next.extend(v);
                next.sort();
                next.dedup();
                v = next;
            }
            v
        };
        for pat in all(3, &["a", "*", "?", "/", "[a]", "\\b"]) {
            let p: Vec<char> = pat.chars().collect();
            for name in all(4, &["a", "b", "/"]) {
                let n: Vec<char> = name.chars().collect();
                assert_eq!(glob_at(&p, &n), slow(&p, &n), "{pat:?} against {name:?}");
            }
        }
    }

    fn ig(s: &str) -> Ignore {
        Ignore::parse(".dockerignore", s).unwrap()
    }

    /// Cases from moby/patternmatcher's tests and Docker's documentation.
    #[test]
    fn docker_rules() {
        let i = ig("# comment\n*/temp*\n*/*/temp*\ntemp?\n");
        assert!(i.excluded("somedir/temporary.txt"));
        assert!(i.excluded("somedir/temp"));
        assert!(i.excluded("somedir/subdir/temporary.txt"));
        assert!(i.excluded("tempa"));
        assert!(!i.excluded("tempab"));
        assert!(!i.excluded("temporary.txt"));
        assert!(!i.excluded("# comment"));

        let i = ig("**/*.go\n");
        assert!(i.excluded("main.go"));
        assert!(i.excluded("a/b/c.go"));
        assert!(!i.excluded("a/b/c.rs"));

        let i = ig("*.md\n!README*.md\nREADME-secret.md\n");
        assert!(i.excluded("CHANGES.md"));
        assert!(!i.excluded("README.md"));
        assert!(i.excluded("README-secret.md"));

        let i = ig("*.md\nREADME-secret.md\n!README*.md\n");
        assert!(!i.excluded("README-secret.md"));

        // A matched directory excludes what is under it; patterns are cleaned.
        let i = ig("  ./build/  \n/logs\nsub/../tmp\n");
        assert!(i.excluded("build"));
        assert!(i.excluded("build/out/x.o"));
        assert!(i.excluded("logs/a.log"));
        assert!(i.excluded("tmp/x"));
        assert!(!i.excluded("src/build"));

        let i = ig("docs\n!docs/keep.md\n");
        assert!(i.excluded("docs/other.md"));
        assert!(!i.excluded("docs/keep.md"));
        assert!(i.excluded("docs") && i.may_include_below("docs"));
        assert!(!i.may_include_below("src") && !i.may_include_below("docs/sub"));
        assert!(ig("*\n!**/keep\n").may_include_below("any/dir"));

        let i = ig("a/**/b\n");
        assert!(i.excluded("a/b"));
        assert!(i.excluded("a/x/y/b"));
        assert!(i.excluded("a/x/b/c"));
        assert!(!i.excluded("x/a/b"));

        let i = ig("[a-c]?.txt\n\\*.log\n[^x]y\n");
        assert!(i.excluded("b1.txt"));
        assert!(!i.excluded("d1.txt"));
        assert!(i.excluded("*.log"));
        assert!(!i.excluded("a.log"));
        assert!(i.excluded("zy"));
        assert!(!i.excluded("xy"));
    }

    #[test]
    fn bad_patterns() {
        assert_eq!(Ignore::parse("f", "ok\n[abc\n").unwrap_err().line, 2);
        assert!(Ignore::parse("f", "x\\").is_err());
        assert!(Ignore::parse("f", "!").is_err());
        assert!(ig("").is_empty());
    }
}
