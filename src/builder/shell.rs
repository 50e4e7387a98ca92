//! Word expansion with the Dockerfile frontend's rules (moby/buildkit's shell lexer):
//! `$VAR`, `${VAR}`, `${VAR:-x}`, `${VAR-x}`, `${VAR:+x}`, `${VAR+x}`, `${VAR?msg}`,
//! `${VAR:?msg}`, `${VAR#pat}`, `${VAR##pat}`, `${VAR%pat}`, `${VAR%%pat}`,
//! `${VAR/pat/repl}`, `${VAR//pat/repl}`, single and double quotes, and the escape
//! character (`\`, or `` ` `` under `# escape=``).

/// A variable lookup (build args and ENV in effect).
pub trait Env {
    fn get(&self, name: &str) -> Option<String>;
}

impl Env for [(String, String)] {
    fn get(&self, name: &str) -> Option<String> {
        self.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    }
}

impl Env for Vec<(String, String)> {
    fn get(&self, name: &str) -> Option<String> {
        Env::get(self.as_slice(), name)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("failed to process {word:?}: {msg}")]
pub struct ShellError {
    pub word: String,
    pub msg: String,
}

/// The expander. `raw_quotes` keeps quote characters and `skip_unset` leaves unset
/// variables as written (what the frontend uses for some instructions).
#[derive(Debug, Clone)]
pub struct Lex {
    pub escape: char,
    pub raw_quotes: bool,
    pub skip_unset: bool,
    /// Quotes are plain characters (heredoc contents).
    pub skip_quotes: bool,
}

impl Lex {
    pub fn new(escape: char) -> Lex {
        Lex { escape, raw_quotes: false, skip_unset: false, skip_quotes: false }
    }

    /// The word with variables expanded and quotes removed (spaces kept).
    pub fn process_word(&self, word: &str, env: &dyn Env) -> Result<String, ShellError> {
        self.run(word, env).map(|r| r.0)
    }

    /// The word expanded then split into words on unquoted white space.
    pub fn process_words(&self, word: &str, env: &dyn Env) -> Result<Vec<String>, ShellError> {
        self.run(word, env).map(|r| r.1)
    }

    fn run(&self, word: &str, env: &dyn Env) -> Result<(String, Vec<String>), ShellError> {
        let mut sw = Word { lex: self, chars: word.chars().collect(), pos: 0, env, raw_escapes: false };
        sw.stop_on(None, false).map_err(|msg| ShellError { word: word.to_string(), msg })
    }
}

struct Word<'a> {
    lex: &'a Lex,
    chars: Vec<char>,
    pos: usize,
    env: &'a dyn Env,
    raw_escapes: bool,
}

#[derive(Default)]
struct Words {
    buf: String,
    words: Vec<String>,
    in_word: bool,
}

impl Words {
    fn add_char(&mut self, c: char) {
        if c.is_whitespace() && self.in_word {
            if !self.buf.is_empty() {
                self.words.push(std::mem::take(&mut self.buf));
                self.in_word = false;
            }
        } else if !c.is_whitespace() {
            self.add_raw_char(c);
        }
    }
    fn add_raw_char(&mut self, c: char) {
        self.buf.push(c);
        self.in_word = true;
    }
    fn add_string(&mut self, s: &str) {
        for c in s.chars() {
            self.add_char(c);
        }
    }
    fn add_raw_string(&mut self, s: &str) {
        self.buf.push_str(s);
        self.in_word = true;
    }
    fn finish(mut self) -> Vec<String> {
        if !self.buf.is_empty() {
            self.words.push(std::mem::take(&mut self.buf));
        }
        self.words
    }
}

type Res<T> = Result<T, String>;

impl Word<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }
    fn next(&mut self) -> Option<char> {
        let c = self.peek();
        if c.is_some() {
            self.pos += 1;
        }
        c
    }

    fn stop_on(&mut self, stop: Option<char>, raw_escapes: bool) -> Res<(String, Vec<String>)> {
        let saved = self.raw_escapes;
        self.raw_escapes = raw_escapes;
        let r = self.stop_on_inner(stop);
        self.raw_escapes = saved;
        r
    }

    fn stop_on_inner(&mut self, stop: Option<char>) -> Res<(String, Vec<String>)> {
        let mut result = String::new();
        let mut words = Words::default();
        while let Some(c) = self.peek() {
            if stop == Some(c) {
                self.next();
                return Ok((result, words.finish()));
            }
            let special = match c {
                '$' => Some(self.dollar()?),
                '<' => Some(self.possible_heredoc()),
                '\'' if !self.lex.skip_quotes => Some(self.single_quote()?),
                '"' if !self.lex.skip_quotes => Some(self.double_quote()?),
                _ => None,
            };
            if let Some(tmp) = special {
                result.push_str(&tmp);
                if c == '$' {
                    words.add_string(&tmp);
                } else {
                    words.add_raw_string(&tmp);
                }
                continue;
            }
            let mut c = self.next().unwrap_or_default();
            if c == self.lex.escape {
                if self.raw_escapes {
                    words.add_raw_char(c);
                    result.push(c);
                }
                match self.next() {
                    None => break,
                    Some(n) => c = n,
                }
                words.add_raw_char(c);
            } else {
                words.add_char(c);
            }
            result.push(c);
        }
        if let Some(s) = stop {
            return Err(format!("unexpected end of statement while looking for matching {s}"));
        }
        Ok((result, words.finish()))
    }

    fn single_quote(&mut self) -> Res<String> {
        let mut out = String::new();
        let q = self.next().unwrap_or('\'');
        if self.lex.raw_quotes {
            out.push(q);
        }
        loop {
            match self.next() {
                None => return Err("unexpected end of statement while looking for matching single-quote".into()),
                Some('\'') => {
                    if self.lex.raw_quotes {
                        out.push('\'');
                    }
                    return Ok(out);
                }
                Some(c) => out.push(c),
            }
        }
    }

    fn double_quote(&mut self) -> Res<String> {
        let mut out = String::new();
        let q = self.next().unwrap_or('"');
        if self.lex.raw_quotes {
            out.push(q);
        }
        loop {
            match self.peek() {
                None => return Err("unexpected end of statement while looking for matching double-quote".into()),
                Some('"') => {
                    self.next();
                    if self.lex.raw_quotes {
                        out.push('"');
                    }
                    return Ok(out);
                }
                Some('$') => {
                    let v = self.dollar()?;
                    out.push_str(&v);
                }
                Some(_) => {
                    let mut c = self.next().unwrap_or_default();
                    if c == self.lex.escape {
                        if self.raw_escapes {
                            out.push(c);
                        }
                        match self.peek() {
                            None => continue,
                            Some(n) if n == '"' || n == '$' || n == self.lex.escape => {
                                c = n;
                                self.next();
                            }
                            _ => {}
                        }
                    }
                    out.push(c);
                }
            }
        }
    }

    fn get_env(&mut self, name: &str) -> Option<String> {
        self.env.get(name)
    }

    fn dollar(&mut self) -> Res<String> {
        self.next();
        if self.peek() != Some('{') {
            let name = self.name();
            if name.is_empty() {
                return Ok("$".into());
            }
            return Ok(match self.get_env(&name) {
                Some(v) => v,
                None if self.lex.skip_unset => format!("${name}"),
                None => String::new(),
            });
        }
        self.next();
        match self.peek() {
            None => return Err("syntax error: missing '}'".into()),
            Some('{' | '}' | ':') => return Err("syntax error: bad substitution".into()),
            _ => {}
        }
        let name = self.name();
        let Some(mut ch) = self.next() else { return Err("syntax error: missing '}'".into()) };
        let mut chs = ch.to_string();
        let mut null_is_unset = false;
        match ch {
            '}' => Ok(match self.get_env(&name) {
                Some(v) => v,
                None if self.lex.skip_unset => format!("${{{name}}}"),
                None => String::new(),
            }),
            ':' | '+' | '-' | '?' | '#' | '%' => {
                if ch == ':' {
                    null_is_unset = true;
                    ch = self.next().unwrap_or('\0');
                    chs.push(ch);
                }
                let raw = ch == '#' || ch == '%';
                if null_is_unset && raw {
                    return Err(format!("unsupported modifier ({chs}) in substitution"));
                }
                if !matches!(ch, '+' | '-' | '?' | '#' | '%') {
                    return Err(format!("unsupported modifier ({chs}) in substitution"));
                }
                let word = match self.stop_on(Some('}'), raw) {
                    Ok((w, _)) => w,
                    Err(e) => {
                        if self.peek().is_none() {
                            return Err("syntax error: missing '}'".into());
                        }
                        return Err(e);
                    }
                };
                let value = self.get_env(&name);
                if self.lex.skip_unset && value.is_none() {
                    return Ok(format!("${{{name}{chs}{word}}}"));
                }
                let empty = null_is_unset && value.as_deref() == Some("");
                match ch {
                    '-' => Ok(if value.is_none() || empty { word } else { value.unwrap_or_default() }),
                    '+' => Ok(if value.is_none() || empty { String::new() } else { word }),
                    '?' => match value {
                        None => Err(format!(
                            "{name}: {}",
                            if word.is_empty() { "is not allowed to be unset" } else { &word }
                        )),
                        Some(v) if null_is_unset && v.is_empty() => Err(format!(
                            "{name}: {}",
                            if word.is_empty() { "is not allowed to be empty" } else { &word }
                        )),
                        Some(v) => Ok(v),
                    },
                    _ => {
                        let value = value.unwrap_or_default();
                        let (greedy, pat) = match word.strip_prefix(ch) {
                            Some(rest) => (true, rest.to_string()),
                            None => (false, word),
                        };
                        let pat = Pattern::parse(&pat)?;
                        if ch == '#' {
                            pat.trim_prefix(&value, greedy)
                        } else {
                            pat.trim_suffix(&value, greedy)
                        }
                    }
                }
            }
            '/' => {
                let all = self.peek() == Some('/');
                if all {
                    self.next();
                }
                let pattern = match self.stop_on(Some('/'), true) {
                    Ok((w, _)) => w,
                    Err(e) => {
                        return Err(if self.peek().is_none() { "syntax error: missing '/' in ${}".into() } else { e })
                    }
                };
                let repl = match self.stop_on(Some('}'), true) {
                    Ok((w, _)) => w,
                    Err(e) => return Err(if self.peek().is_none() { "syntax error: missing '}'".into() } else { e }),
                };
                let value = self.get_env(&name);
                if self.lex.skip_unset && value.is_none() {
                    return Ok(format!("${{{name}/{pattern}/{repl}}}"));
                }
                let pat = Pattern::parse_replace(&pattern)?;
                pat.replace(&value.unwrap_or_default(), &repl, all)
            }
            _ => Err(format!("unsupported modifier ({chs}) in substitution")),
        }
    }

    fn name(&mut self) -> String {
        let mut name = String::new();
        while let Some(c) = self.peek() {
            if name.is_empty() && c.is_ascii_digit() {
                while let Some(d) = self.peek().filter(char::is_ascii_digit) {
                    name.push(d);
                    self.next();
                }
                return name;
            }
            if name.is_empty() && matches!(c, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0') {
                self.next();
                return c.to_string();
            }
            if !c.is_alphanumeric() && c != '_' {
                break;
            }
            name.push(c);
            self.next();
        }
        name
    }

    fn possible_heredoc(&mut self) -> String {
        self.next();
        if self.peek() != Some('<') {
            return "<".into();
        }
        self.next();
        let mut out = String::from("<<");
        while let Some(c) = self.peek().filter(|c| matches!(c, '\t' | '\r' | ' ')) {
            out.push(c);
            self.next();
        }
        out
    }
}

/// A shell pattern of `${VAR#...}` and friends: `*`, `?`, and `\` escapes.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Any,
    One,
    Lit(char),
}

struct Pattern(Vec<Tok>);

impl Pattern {
    fn parse(p: &str) -> Res<Pattern> {
        Self::parse_with(p, false)
    }
    fn parse_replace(p: &str) -> Res<Pattern> {
        Self::parse_with(p, true)
    }
    fn parse_with(p: &str, _replace: bool) -> Res<Pattern> {
        let cs: Vec<char> = p.chars().collect();
        let mut out = Vec::new();
        let mut i = 0;
        while i < cs.len() {
            match cs[i] {
                '*' => out.push(Tok::Any),
                '?' => out.push(Tok::One),
                '\\' => {
                    if matches!(cs.get(i + 1), Some('}' | '/')) {
                        i += 1;
                        continue;
                    }
                    match cs.get(i + 1) {
                        Some(&c) if matches!(c, '*' | '?' | '\\') => {
                            out.push(Tok::Lit(c));
                            i += 1;
                        }
                        Some(c) => {
                            return Err(format!("invalid pattern ({p}) in substitution: invalid escape '\\{c}'"))
                        }
                        None => return Err(format!("invalid pattern ({p}) in substitution: trailing escape")),
                    }
                }
                c => out.push(Tok::Lit(c)),
            }
            i += 1;
        }
        Ok(Pattern(out))
    }

    /// Whether the pattern matches all of `s`. Iterative, keeping only the last `*`'s
    /// position to go back to: O(len(toks) * len(s)) whatever the pattern (a recursive try of
    /// every split per `*` took exponential time on `${A%*****...}`).
    fn full(toks: &[Tok], s: &[char]) -> bool {
        let (mut t, mut i) = (0, 0);
        // The token after the last `*` seen, and where in `s` that `*`'s match ends so far.
        let mut star: Option<(usize, usize)> = None;
        while i < s.len() {
            match toks.get(t) {
                Some(Tok::Any) => {
                    t += 1;
                    star = Some((t, i));
                }
                Some(Tok::One) => (t, i) = (t + 1, i + 1),
                Some(Tok::Lit(c)) if *c == s[i] => (t, i) = (t + 1, i + 1),
                _ => match star {
                    Some((after, end)) => {
                        star = Some((after, end + 1));
                        (t, i) = (after, end + 1);
                    }
                    None => return false,
                },
            }
        }
        toks[t..].iter().all(|x| *x == Tok::Any)
    }

    /// [`Pattern::full`] within the budget of one substitution: `steps` counts the characters
    /// compared so far, and past [`MAX_MATCH_STEPS`] the substitution fails rather than run
    /// for hours (replacing in a long value tries every start and every length).
    fn full_within(&self, s: &[char], steps: &mut u64) -> Res<bool> {
        *steps += (s.len() as u64 + 1) * (self.0.len() as u64 + 1);
        if *steps > MAX_MATCH_STEPS {
            return Err("pattern too costly to match in substitution".into());
        }
        Ok(Self::full(&self.0, s))
    }

    fn trim_prefix(&self, v: &str, greedy: bool) -> Res<String> {
        let cs: Vec<char> = v.chars().collect();
        let lens: Box<dyn Iterator<Item = usize>> =
            if greedy { Box::new((0..=cs.len()).rev()) } else { Box::new(0..=cs.len()) };
        let mut steps = 0;
        for n in lens {
            if self.full_within(&cs[..n], &mut steps)? {
                return Ok(cs[n..].iter().collect());
            }
        }
        Ok(v.to_string())
    }

    fn trim_suffix(&self, v: &str, greedy: bool) -> Res<String> {
        let cs: Vec<char> = v.chars().collect();
        let starts: Box<dyn Iterator<Item = usize>> =
            if greedy { Box::new(0..=cs.len()) } else { Box::new((0..=cs.len()).rev()) };
        let mut steps = 0;
        for s in starts {
            if self.full_within(&cs[s..], &mut steps)? {
                return Ok(cs[..s].iter().collect());
            }
        }
        Ok(v.to_string())
    }

    /// First (or every) leftmost-longest match replaced. The result may not grow past
    /// [`MAX_EXPANSION`] (nested replacements multiply lengths).
    fn replace(&self, v: &str, repl: &str, all: bool) -> Res<String> {
        let cs: Vec<char> = v.chars().collect();
        let mut out = String::new();
        let mut i = 0;
        let mut done = false;
        let mut steps = 0;
        while i <= cs.len() {
            if out.len() > MAX_EXPANSION {
                return Err(format!("substitution result longer than {MAX_EXPANSION} bytes"));
            }
            if !done {
                let mut found = None;
                for n in (0..=cs.len() - i).rev() {
                    if self.full_within(&cs[i..i + n], &mut steps)? {
                        found = Some(n);
                        break;
                    }
                }
                if let Some(n) = found {
                    out.push_str(repl);
                    if !all {
                        done = true;
                    }
                    if n > 0 {
                        i += n;
                        continue;
                    }
                }
            }
            if i < cs.len() {
                out.push(cs[i]);
            }
            i += 1;
        }
        Ok(out)
    }
}

/// The longest result of one `${VAR/pattern/replacement}`: 1 MiB, eight times what the kernel
/// takes as one argument or environment string (MAX_ARG_STRLEN, 128 KiB).
const MAX_EXPANSION: usize = 1 << 20;
/// Characters compared for one substitution's pattern, at most (about a second of work).
const MAX_MATCH_STEPS: u64 = 200_000_000;

#[cfg(test)]
mod tests {
    use super::*;

    fn env(v: &[&str]) -> Vec<(String, String)> {
        v.iter()
            .map(|e| {
                let (k, v) = e.split_once('=').unwrap_or((e, ""));
                (k.to_string(), v.to_string())
            })
            .collect()
    }

    /// moby/buildkit frontend/dockerfile/shell/envVarTest, every Unix case.
    #[test]
    fn buildkit_env_var_cases() {
        let data = include_str!("testdata/envVarTest");
        let e = env(&["PWD=/home", "SHELL=bash", "KOREAN=한국어", "NULL="]);
        let lex = Lex::new('\\');
        let mut n = 0;
        for (i, line) in data.lines().enumerate() {
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            let parts: Vec<&str> = line.trim().split('|').collect();
            assert_eq!(parts.len(), 3, "line {}", i + 1);
            let (plat, src, want) = (parts[0].trim(), parts[1].trim(), parts[2].trim());
            if plat == "W" {
                continue;
            }
            let got = lex.process_word(src, &e);
            if want == "error" {
                assert!(got.is_err(), "line {}: {src:?} gave {got:?}", i + 1);
            } else {
                assert_eq!(got.as_deref(), Ok(want), "line {}: {src:?}", i + 1);
            }
            n += 1;
        }
        assert!(n > 200, "{n} cases");
    }

    /// moby/buildkit frontend/dockerfile/shell/wordsTest.
    #[test]
    fn buildkit_words_cases() {
        let data = include_str!("testdata/wordsTest");
        let lex = Lex::new('\\');
        let mut envs: Vec<String> = Vec::new();
        let mut n = 0;
        for (i, line) in data.lines().enumerate() {
            if line.starts_with('#') {
                continue;
            }
            if let Some(rest) = line.strip_prefix("ENV ") {
                envs.push(rest.trim_start_matches(' ').to_string());
                continue;
            }
            let (test, want) = line.split_once('|').unwrap();
            let want: Vec<&str> = want.trim_start_matches(' ').split(',').collect();
            let e = env(&envs.iter().map(String::as_str).collect::<Vec<_>>());
            let got = lex.process_words(test.trim(), &e).unwrap_or_else(|_| vec!["error".into()]);
            assert_eq!(got, want, "line {}: {test:?}", i + 1);
            n += 1;
        }
        assert!(n > 20);
    }

    #[test]
    fn mandatory_vars() {
        let lex = Lex::new('\\');
        let no_empty = "${VAR:?message here$ARG}";
        let no_unset = "${VAR?message here$ARG}";
        let set = env(&["VAR=plain", "ARG=x"]);
        let empty = env(&["VAR=", "ARG=x"]);
        let unset = env(&["ARG=x"]);
        assert_eq!(lex.process_word(no_empty, &set).unwrap(), "plain");
        assert!(lex.process_word(no_empty, &empty).unwrap_err().to_string().contains("message herex"));
        assert!(lex.process_word(no_empty, &unset).unwrap_err().to_string().contains("message herex"));
        assert_eq!(lex.process_word(no_unset, &set).unwrap(), "plain");
        assert_eq!(lex.process_word(no_unset, &empty).unwrap(), "");
        assert!(lex.process_word(no_unset, &unset).unwrap_err().to_string().contains("message herex"));
    }

    /// Prefix/suffix trimming and replacement (buildkit's lex_test cases).
    /// Found by the coverage-guided fuzzer (fuzz/fuzz_targets/word_expansion.rs): many `*` in a
    /// pattern took exponential time (a Dockerfile's `${A%****...}` hung the build).
    #[test]
    fn many_stars_match_in_polynomial_time() {
        let e = env(&["A=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.b"]);
        let stars = "*".repeat(60);
        let lex = Lex::new('\\');
        assert_eq!(
            lex.process_word(&format!("${{A%{stars}x}}"), &e).unwrap(),
            "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.b"
        );
        assert_eq!(
            lex.process_word(&format!("${{A%{stars}.b}}"), &e).unwrap(),
            "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
        );
        assert_eq!(lex.process_word(&format!("${{A##{stars}a}}"), &e).unwrap(), ".b");
        assert_eq!(lex.process_word(&format!("${{A/{stars}?b/x}}"), &e).unwrap(), "x");
        // The matcher against the obvious definition, on every short pattern and string.
        let alphabet = ['a', 'b', '*', '?'];
        fn slow(toks: &[Tok], s: &[char]) -> bool {
            match toks.split_first() {
                None => s.is_empty(),
                Some((Tok::Any, rest)) => (0..=s.len()).any(|i| slow(rest, &s[i..])),
                Some((Tok::One, rest)) => !s.is_empty() && slow(rest, &s[1..]),
                Some((Tok::Lit(c), rest)) => s.first() == Some(c) && slow(rest, &s[1..]),
            }
        }
        let all = |n: usize, of: &[char]| -> Vec<String> {
            let mut v = vec![String::new()];
            for _ in 0..n {
                v = v.iter().flat_map(|w| of.iter().map(move |c| format!("{w}{c}"))).chain(v.clone()).collect();
                v.sort();
                v.dedup();
            }
            v
        };
        for p in all(4, &alphabet) {
            let toks = Pattern::parse(&p).unwrap().0;
            for w in all(4, &['a', 'b']) {
                let w: Vec<char> = w.chars().collect();
                assert_eq!(Pattern::full(&toks, &w), slow(&toks, &w), "{p:?} against {w:?}");
            }
        }
    }

    /// Found by the coverage-guided fuzzer (fuzz/fuzz_targets/word_expansion.rs): nested
    /// replacements multiply lengths (`${A//x/${A//y/...}}` grew past gigabytes), and replacing
    /// in a long value tried every start and length: both now fail with one error.
    #[test]
    fn runaway_replacements_fail() {
        let e = env(&["A=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"]);
        let lex = Lex::new('\\');
        let mut w = "x".to_string();
        for _ in 0..8 {
            w = format!("${{A//a/{w}}}");
        }
        let err = lex.process_word(&w, &e).unwrap_err();
        assert!(err.msg.contains("substitution result longer than 1048576 bytes"), "{err}");
        let long = env(&[&format!("A={}", "ab".repeat(100_000))]);
        let err = lex.process_word("${A//*c/x}", &long).unwrap_err();
        assert!(err.msg.contains("pattern too costly"), "{err}");
        // Short values still work, nested or not.
        assert_eq!(
            lex.process_word("${A//a/${A#aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa}}", &e)
                .unwrap(),
            "a".repeat(66)
        );
        assert_eq!(
            lex.process_word("${A/%a/b}", &e).unwrap(),
            "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
        );
    }

    #[test]
    fn patterns() {
        let lex = Lex::new('\\');
        let e = env(&["X=abcabc", "P=/usr/local/bin/app.tar.gz", "S=a*c"]);
        let cases = [
            ("${X#a}", "bcabc"),
            ("${X#*b}", "cabc"),
            ("${X##*b}", "c"),
            ("${X%c}", "abcab"),
            ("${X%b*}", "abca"),
            ("${X%%b*}", "a"),
            ("${P##*/}", "app.tar.gz"),
            ("${P%.*}", "/usr/local/bin/app.tar"),
            ("${P%%.*}", "/usr/local/bin/app"),
            ("${X/b/B}", "aBcabc"),
            ("${X//b/B}", "aBcaBc"),
            ("${X/b*/Z}", "aZ"),
            ("${S#a\\*}", "c"),
            ("${UNSET#x}", ""),
        ];
        for (w, want) in cases {
            assert_eq!(lex.process_word(w, &e).unwrap(), want, "{w}");
        }
        assert!(lex.process_word("${X:#a}", &e).is_err());
        assert!(lex.process_word("${X#\\x}", &e).is_err());
    }

    #[test]
    fn backtick_escape_and_skip_unset() {
        let lex = Lex::new('`');
        let e = env(&["A=1"]);
        assert_eq!(lex.process_word("C:\\dir `$A $A", &e).unwrap(), "C:\\dir $A 1");
        let keep = Lex { escape: '\\', raw_quotes: true, skip_unset: true, skip_quotes: false };
        assert_eq!(keep.process_word("'$A' $B ${B:-x} \"$A\"", &e).unwrap(), "'$A' $B ${B:-x} \"1\"");
        let heredoc = Lex { escape: '\\', raw_quotes: false, skip_unset: false, skip_quotes: true };
        assert_eq!(heredoc.process_word("echo '$A' \"$A\"\n", &e).unwrap(), "echo '1' \"1\"\n");
    }
}
