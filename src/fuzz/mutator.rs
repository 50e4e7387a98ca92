//! A small mutation fuzzer for stable Rust, run as unit tests (`make fuzz`; CI runs a short
//! smoke pass). Not coverage-guided: cargo-fuzz's libFuzzer needs the targets in a library
//! crate and its tooling is not installed here. Instead it is outcome-guided: each target
//! returns a short description of what happened (which error, which kind of success), and an
//! input that produced a description not seen before joins the corpus, so inputs that reach
//! new error paths are mutated further. Inputs come from seeds (valid documents), byte-level
//! mutations (bit flips, interesting bytes and numbers, insertions, deletions, duplications),
//! tokens of a dictionary and splices of two corpus entries. A panic is a failure: the input
//! is saved under `target/fuzz-crashes/` and the test fails naming the file (then it becomes
//! a regression test).
//!
//! Budget: `BERTH_FUZZ_SECS` seconds per target (default 2), `BERTH_FUZZ_SEED` for the random
//! generator (default: the time; printed so a run can be repeated).

use std::collections::HashSet;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

const INTERESTING: &[&[u8]] = &[
    b"0",
    b"-1",
    b"4294967295",
    b"18446744073709551616",
    b"-9223372036854775809",
    b"1e308",
    b"null",
    b"true",
    b"\"\"",
    b"[]",
    b"{}",
    b"\\u0000",
    b"..",
    b"../",
    b"/",
    b"//",
    b"%",
    b"\xff",
    b"\x00",
    b" ",
    b"\n",
];

/// Statistics of one run, for the figures.
pub struct Stats {
    pub execs: u64,
    pub corpus: usize,
    pub outcomes: usize,
    pub secs: f64,
}

fn budget() -> Duration {
    let s = std::env::var("BERTH_FUZZ_SECS").ok().and_then(|v| v.parse::<f64>().ok()).unwrap_or(2.0);
    Duration::from_secs_f64(s)
}

fn mutate(rng: &mut Rng, corpus: &[Vec<u8>], dict: &[&[u8]], base: &[u8]) -> Vec<u8> {
    let mut v = base.to_vec();
    for _ in 0..1 + rng.below(4) {
        let len = v.len();
        match rng.below(9) {
            0 if len > 0 => {
                let i = rng.below(len);
                v[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                v[i] = rng.next() as u8;
            }
            2 => {
                let i = rng.below(len + 1);
                let n = 1 + rng.below(8);
                let bytes: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                v.splice(i..i, bytes);
            }
            3 if len > 0 => {
                let i = rng.below(len);
                let n = 1 + rng.below((len - i).min(32));
                v.drain(i..i + n);
            }
            4 if len > 0 => {
                let i = rng.below(len);
                let n = 1 + rng.below((len - i).min(64));
                let chunk = v[i..i + n].to_vec();
                let j = rng.below(v.len() + 1);
                v.splice(j..j, chunk);
            }
            5 => {
                let t = INTERESTING[rng.below(INTERESTING.len())];
                let i = rng.below(len + 1);
                v.splice(i..i, t.iter().copied());
            }
            6 if !dict.is_empty() => {
                let t = dict[rng.below(dict.len())];
                let i = rng.below(len + 1);
                v.splice(i..i, t.iter().copied());
            }
            7 if !corpus.is_empty() => {
                // Splice: our head, another entry's tail.
                let other = &corpus[rng.below(corpus.len())];
                let i = rng.below(len + 1);
                let j = rng.below(other.len() + 1);
                v.truncate(i);
                v.extend_from_slice(&other[j..]);
            }
            8 if len > 1 => {
                // A run of digits (or one byte) replaced by an interesting number.
                let i = rng.below(len);
                let t = INTERESTING[rng.below(6)];
                let end = (i + 1..len).find(|&k| !v[k].is_ascii_digit()).unwrap_or(len);
                v.splice(i..end, t.iter().copied());
            }
            _ => {}
        }
    }
    v.truncate(1 << 20);
    v
}

/// Runs `target` on the seeds, then on mutations for the time budget. Panics (failing the
/// test) when the target panics, after saving the input.
pub fn run(name: &str, seeds: &[Vec<u8>], dict: &[&[u8]], target: impl Fn(&[u8]) -> String) -> Stats {
    let seed = std::env::var("BERTH_FUZZ_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1)
    });
    let mut rng = Rng(seed | 1);
    let mut corpus: Vec<Vec<u8>> = seeds.to_vec();
    let mut seen: HashSet<String> = HashSet::new();
    let start = Instant::now();
    let limit = budget();
    let mut execs = 0u64;
    let mut i = 0usize;
    let mut failure = None;
    while failure.is_none() && (i < seeds.len() || start.elapsed() < limit) {
        let input = if i < seeds.len() {
            seeds[i].clone()
        } else {
            let base = corpus[rng.below(corpus.len())].clone();
            mutate(&mut rng, &corpus, dict, &base)
        };
        i += 1;
        execs += 1;
        match catch_unwind(AssertUnwindSafe(|| target(&input))) {
            Ok(outcome) => {
                if seen.insert(outcome) && corpus.len() < 4096 {
                    corpus.push(input);
                }
            }
            Err(p) => {
                let msg = p
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                failure = Some((input, msg));
            }
        }
    }
    if let Some((input, msg)) = failure {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/fuzz-crashes");
        let _ = std::fs::create_dir_all(&dir);
        let file = dir.join(format!("{name}-{:016x}", seed ^ execs));
        let _ = std::fs::write(&file, &input);
        panic!("fuzz target {name} panicked ({msg}) on the input saved at {} (seed {seed})", file.display());
    }
    let stats = Stats { execs, corpus: corpus.len(), outcomes: seen.len(), secs: start.elapsed().as_secs_f64() };
    eprintln!(
        "fuzz {name}: {} execs in {:.1} s, {} distinct outcomes, corpus {} (seed {seed})",
        stats.execs, stats.secs, stats.outcomes, stats.corpus
    );
    stats
}

/// The outcome description of a `Result`: `ok` or the error's text with quoted parts (where
/// messages repeat the input) and digits blurred (so "offset 17" and "offset 18" are one
/// outcome), cut to 60 characters.
pub fn outcome<T, E: std::fmt::Display>(r: &Result<T, E>) -> String {
    match r {
        Ok(_) => "ok".to_string(),
        Err(e) => {
            let mut quote: Option<char> = None;
            let mut escaped = false;
            let mut out = String::new();
            for c in e.to_string().chars() {
                match quote {
                    // Debug-formatted input escapes its quotes.
                    Some(_) if escaped => escaped = false,
                    Some(_) if c == '\\' => escaped = true,
                    Some(q) if c == q => {
                        quote = None;
                        out.push_str("..");
                    }
                    Some(_) => {}
                    None if matches!(c, '"' | '`') => quote = Some(c),
                    None => out.push(if c.is_ascii_digit() { '#' } else { c }),
                }
                if out.len() >= 60 {
                    break;
                }
            }
            out
        }
    }
}
