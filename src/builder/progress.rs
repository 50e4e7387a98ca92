//! `--progress tty` (and `auto` on a terminal): a live view of the build as buildkit's
//! console shows it. The builder's plain progress (`#N ...` lines) and the RUN containers'
//! output go into a pipe instead of the terminal; a thread reads it and redraws, in place
//! (cursor up, clear to the end of the screen), a header with the elapsed time and the steps
//! done, each finished step with its time (or CACHED), and each running step with the last
//! lines of its output. The last frame stays on the terminal when the build ends.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Lines of a running step's output shown.
const TAIL: usize = 6;

/// Whether fd 2 (where progress goes) is a terminal.
pub fn stderr_is_tty() -> bool {
    // SAFETY: isatty on a descriptor number; no memory involved.
    unsafe { libc::isatty(2) == 1 }
}

struct Step {
    n: usize,
    title: String,
    started: Instant,
    /// "CACHED", "DONE 0.3s", or None while running.
    done: Option<String>,
    /// Sub-tasks shown even when done (writing image, naming to).
    subs: Vec<String>,
    tail: VecDeque<String>,
}

/// The live view; dropping it restores fd 2, draws the last frame and waits for the
/// drawing thread.
pub struct TtyView {
    saved: Option<OwnedFd>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl TtyView {
    /// Points fd 2 into the view's pipe. None when that cannot be done (the build then
    /// prints plain progress).
    pub fn start() -> Option<TtyView> {
        let mut p = [0; 2];
        // SAFETY: pipe2 fills the two-int array it is given.
        if unsafe { libc::pipe2(p.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return None;
        }
        // SAFETY: both descriptors were just made and are owned here.
        let (r, w) = unsafe { (OwnedFd::from_raw_fd(p[0]), OwnedFd::from_raw_fd(p[1])) };
        // SAFETY: a dup of fd 2, a descriptor of this process; checked.
        let term = unsafe { libc::fcntl(2, libc::F_DUPFD_CLOEXEC, 10) };
        if term < 0 {
            return None;
        }
        // SAFETY: `term` is a new descriptor that nothing else owns.
        let term = unsafe { OwnedFd::from_raw_fd(term) };
        let out = File::from(term.try_clone().ok()?);
        // SAFETY: both descriptors are valid; fd 2 now writes into the pipe.
        if unsafe { libc::dup2(w.as_raw_fd(), 2) } < 0 {
            return None;
        }
        drop(w);
        let stop = Arc::new(AtomicBool::new(false));
        let st = stop.clone();
        let thread = std::thread::spawn(move || draw(File::from(r), out, &st));
        Some(TtyView { saved: Some(term), stop, thread: Some(thread) })
    }
}

impl Drop for TtyView {
    fn drop(&mut self) {
        if let Some(t) = self.saved.take() {
            // SAFETY: both descriptors are valid; this closes the pipe's last write end
            // (the RUN containers, which shared it, have ended).
            unsafe { libc::dup2(t.as_raw_fd(), 2) };
        }
        // A process the build started that outlives it (none should) may still hold the
        // pipe: the view ends at the first quiet moment after this rather than at its end.
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The terminal's rows and columns (80x24 when it does not say).
fn size(f: &File) -> (usize, usize) {
    let mut ws = libc::winsize { ws_row: 0, ws_col: 0, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCGWINSZ fills the winsize it is given; the descriptor is open.
    let r = unsafe { libc::ioctl(f.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) };
    if r != 0 || ws.ws_row == 0 || ws.ws_col == 0 {
        return (24, 80);
    }
    (ws.ws_row as usize, ws.ws_col as usize)
}

/// `#N rest` → (N, rest).
fn step_line(l: &str) -> Option<(usize, &str)> {
    let rest = l.strip_prefix('#')?;
    let (n, rest) = rest.split_once(' ')?;
    Some((n.parse().ok()?, rest))
}

/// Whether a step's title names an instruction that reports its end (DONE or CACHED).
fn reports_end(title: &str) -> bool {
    let instr = title.rsplit_once("] ").map(|(_, i)| i).unwrap_or(title);
    let w = instr.split_whitespace().next().unwrap_or("").to_ascii_uppercase();
    matches!(w.as_str(), "RUN" | "COPY" | "ADD")
}

fn draw(input: File, mut out: File, stop: &AtomicBool) {
    let (tx, rx) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for l in BufReader::new(input).lines() {
            let Ok(l) = l else { break };
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    let start = Instant::now();
    let mut steps: Vec<Step> = Vec::new();
    let mut other: Vec<String> = Vec::new();
    let mut drawn = 0usize;
    let mut last_draw = Instant::now() - Duration::from_secs(1);
    loop {
        let ended = match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(l) => {
                take(&mut steps, &mut other, l);
                false
            }
            Err(mpsc::RecvTimeoutError::Timeout) => stop.load(Ordering::SeqCst),
            Err(mpsc::RecvTimeoutError::Disconnected) => true,
        };
        if ended {
            // A RUN, COPY or ADD that never reported its end failed or was interrupted.
            for s in steps.iter_mut().filter(|s| s.done.is_none()) {
                s.done = Some(format!("ERROR {:.1}s", s.started.elapsed().as_secs_f64()));
            }
        }
        if ended || last_draw.elapsed() >= Duration::from_millis(100) {
            let mut frame = render(&steps, &other, start.elapsed(), ended);
            // Fitted to the terminal: a wrapped line or a frame taller than the screen would
            // break the redraw (cursor up counts lines). The oldest lines after the header go
            // first, as buildkit's view drops its oldest finished steps.
            let (rows, cols) = size(&out);
            for l in frame.iter_mut() {
                if l.chars().count() >= cols {
                    *l = l.chars().take(cols.saturating_sub(1)).collect();
                }
            }
            if frame.len() >= rows && rows > 2 {
                let cut = frame.len() - (rows - 1);
                frame.drain(1..=cut);
            }
            let mut buf = String::new();
            if drawn > 0 {
                buf.push_str(&format!("\x1b[{drawn}A\r"));
            }
            buf.push_str("\x1b[J");
            buf.push_str(&frame.join("\n"));
            buf.push('\n');
            let _ = out.write_all(buf.as_bytes());
            let _ = out.flush();
            drawn = frame.len();
            last_draw = Instant::now();
        }
        if ended {
            return;
        }
    }
}

fn take(steps: &mut Vec<Step>, other: &mut Vec<String>, l: String) {
    let l = l.replace('\r', "");
    match step_line(&l) {
        Some((n, rest)) => match steps.iter_mut().find(|s| s.n == n) {
            Some(s) => {
                if rest == "CACHED" {
                    s.done = Some("CACHED".into());
                } else if rest.starts_with("DONE ") || rest.starts_with("ERROR") {
                    s.done = Some(rest.to_string());
                } else if rest.starts_with("writing image") || rest.starts_with("naming to") {
                    s.subs.push(rest.to_string());
                } else {
                    s.tail.push_back(rest.to_string());
                }
            }
            None => {
                let done = if rest.starts_with("writing image") {
                    steps.push(Step {
                        n,
                        title: "exporting to image".into(),
                        started: Instant::now(),
                        done: Some("DONE 0.0s".into()),
                        subs: vec![rest.to_string()],
                        tail: VecDeque::new(),
                    });
                    return;
                } else if reports_end(rest) {
                    None
                } else {
                    Some("DONE 0.0s".to_string())
                };
                steps.push(Step {
                    n,
                    title: rest.to_string(),
                    started: Instant::now(),
                    done,
                    subs: Vec::new(),
                    tail: VecDeque::new(),
                });
            }
        },
        None => match steps.iter_mut().rev().find(|s| s.done.is_none()) {
            Some(s) => s.tail.push_back(l),
            None => other.push(l),
        },
    }
    for s in steps.iter_mut() {
        while s.tail.len() > TAIL {
            s.tail.pop_front();
        }
    }
}

fn render(steps: &[Step], other: &[String], elapsed: Duration, finished: bool) -> Vec<String> {
    let done = steps.iter().filter(|s| s.done.as_deref().is_some_and(|d| !d.starts_with("ERROR"))).count();
    let mut v = vec![format!(
        "[+] Building {:.1}s ({done}/{}){}",
        elapsed.as_secs_f64(),
        steps.len(),
        if finished { " FINISHED" } else { "" }
    )];
    v.extend(other.iter().cloned());
    for s in steps {
        match &s.done {
            Some(d) if d == "CACHED" => v.push(format!(" => CACHED {}", s.title)),
            Some(d) if d.starts_with("ERROR") => {
                v.push(format!(" => ERROR {}  {}", s.title, d.trim_start_matches("ERROR").trim()))
            }
            Some(d) => {
                let t = d.strip_prefix("DONE ").unwrap_or(d);
                v.push(format!(" => {}  {t}", s.title));
            }
            None => {
                v.push(format!(" => {}  {:.1}s", s.title, s.started.elapsed().as_secs_f64()));
                for l in &s.tail {
                    v.push(format!(" => => # {l}"));
                }
            }
        }
        for l in &s.subs {
            v.push(format!(" => => {l}"));
        }
    }
    v
}
