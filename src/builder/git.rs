//! `ADD` of a git repository, as buildkit's git source: `URL[#REF][:SUBDIR]` for `git://`,
//! `ssh://`, `git@host:path` and http(s) URLs whose path ends in `.git`. The repository is
//! fetched with the host's `git` (as buildkit runs git) into the build's scratch dir, REF (a
//! branch, a tag or a commit; the remote's HEAD without one) resolved to its commit, which is
//! what the step's cache key holds, and checked out; the `.git` directory is dropped unless
//! `--keep-git-dir=true`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A git source of ADD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitSource {
    pub url: String,
    pub reference: Option<String>,
    pub subdir: Option<String>,
}

/// Whether ADD's source names a git repository (buildkit's rules).
pub fn is_git_url(s: &str) -> bool {
    let base = s.split('#').next().unwrap_or(s);
    if s.starts_with("git://") || s.starts_with("ssh://") || s.starts_with("git@") {
        return true;
    }
    (s.starts_with("http://") || s.starts_with("https://")) && base.trim_end_matches('/').ends_with(".git")
}

/// Splits `URL#REF:SUBDIR`.
pub fn parse(s: &str) -> GitSource {
    let (url, frag) = match s.split_once('#') {
        Some((u, f)) => (u.to_string(), Some(f)),
        None => (s.to_string(), None),
    };
    let (reference, subdir) = match frag {
        None => (None, None),
        Some(f) => {
            let (r, d) = match f.split_once(':') {
                Some((r, d)) => (r, Some(d)),
                None => (f, None),
            };
            (
                Some(r.to_string()).filter(|r| !r.is_empty()),
                d.map(|d| d.trim_matches('/').to_string()).filter(|d| !d.is_empty()),
            )
        }
    };
    GitSource { url, reference, subdir }
}

fn git(dir: &Path, args: &[&str]) -> Result<String, String> {
    let o = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "advice.detachedHead=false", "-c", "init.defaultBranch=main", "-c", "protocol.file.allow=never"])
        .args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("run git: {e}"))?;
    if !o.status.success() {
        let err = String::from_utf8_lossy(&o.stderr);
        let last = err.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").trim().to_string();
        return Err(format!("git {}: {last}", args.first().copied().unwrap_or("")));
    }
    Ok(String::from_utf8_lossy(&o.stdout).trim().to_string())
}

/// Fetches and checks out `src` into `dir` (made here; left for the build's scratch
/// cleanup); returns the checkout's root and the resolved commit.
pub fn checkout(src: &GitSource, dir: &Path, keep_git_dir: bool) -> Result<(PathBuf, String), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    git(dir, &["init", "-q"])?;
    git(
        dir,
        &[
            "fetch",
            "-q",
            "--no-recurse-submodules",
            "--",
            &src.url,
            "+HEAD:refs/berth/HEAD",
            "+refs/heads/*:refs/berth/heads/*",
            "+refs/tags/*:refs/tags/*",
        ],
    )
    .map_err(|e| format!("fetch {}: {e}", src.url))?;
    let candidates: Vec<String> = match &src.reference {
        None => vec!["refs/berth/HEAD".into()],
        Some(r) => {
            let mut v = vec![format!("refs/berth/heads/{r}"), format!("refs/tags/{r}")];
            if let Some(b) = r.strip_prefix("refs/heads/") {
                v.push(format!("refs/berth/heads/{b}"));
            } else if r.starts_with("refs/tags/") {
                v.push(r.clone());
            }
            if r.len() >= 7 && r.len() <= 64 && r.bytes().all(|b| b.is_ascii_hexdigit()) {
                v.push(r.clone());
            }
            v
        }
    };
    let commit = candidates
        .iter()
        .find_map(|c| git(dir, &["rev-parse", "--verify", "-q", &format!("{c}^{{commit}}")]).ok())
        .ok_or_else(|| format!("{}: git ref {:?} not found", src.url, src.reference.as_deref().unwrap_or("HEAD")))?;
    git(dir, &["checkout", "-q", "--detach", &commit])?;
    if !keep_git_dir {
        let g = dir.join(".git");
        std::fs::remove_dir_all(&g).map_err(|e| format!("remove {}: {e}", g.display()))?;
    }
    Ok((dir.to_path_buf(), commit))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn git_urls_and_fragments() {
        assert!(is_git_url("git://h/r.git"));
        assert!(is_git_url("git@github.com:o/r.git#main"));
        assert!(is_git_url("https://h/p/r.git#v1:sub"));
        assert!(!is_git_url("https://h/p/r.tar.gz"));
        assert_eq!(
            parse("https://h/r.git#v1:a/b/"),
            GitSource { url: "https://h/r.git".into(), reference: Some("v1".into()), subdir: Some("a/b".into()) }
        );
        assert_eq!(
            parse("git://h/r.git#:sub"),
            GitSource { url: "git://h/r.git".into(), reference: None, subdir: Some("sub".into()) }
        );
        assert_eq!(parse("git@h:r.git"), GitSource { url: "git@h:r.git".into(), reference: None, subdir: None });
    }
}
