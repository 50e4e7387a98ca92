//! `--log`, `--log-format` and `--debug`: runc writes JSON lines `{"level","msg","time"}` to the
//! log file, and containerd reads the last error from that file. berth does the same and also
//! prints errors on stderr as one line. Without `--log`, warnings (and `--debug`'s lines) go to
//! stderr as runc's text lines `time="..." level=warning msg="..."`.

use std::io::Write;
use std::sync::OnceLock;

struct Logger {
    file: Option<std::fs::File>,
    json: bool,
    debug: bool,
}

static LOGGER: OnceLock<Logger> = OnceLock::new();

pub fn init(path: Option<&str>, json: bool, debug: bool) -> Result<(), std::io::Error> {
    let file = match path {
        Some(p) if !p.is_empty() && p != "/dev/stderr" => Some(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .map_err(|e| std::io::Error::new(e.kind(), format!("open log file {p}: {e}")))?,
        ),
        _ => None,
    };
    let _ = LOGGER.set(Logger { file, json, debug });
    Ok(())
}

pub fn debug_enabled() -> bool {
    LOGGER.get().map(|l| l.debug).unwrap_or(false)
}

/// RFC 3339 UTC time with nanoseconds, e.g. 2026-11-23T12:00:00.000000001Z.
pub fn now_rfc3339() -> String {
    let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    rfc3339(d.as_secs() as i64, d.subsec_nanos())
}

pub fn rfc3339(secs: i64, nanos: u32) -> String {
    let days = secs.div_euclid(86400);
    let rem = secs.rem_euclid(86400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:09}Z", y, m, d, rem / 3600, (rem % 3600) / 60, rem % 60, nanos)
}

/// One log line as runc's logrus writes it: `{"level","msg","time"}` JSON, or
/// `time="..." level=... msg="..."` text.
fn line(json: bool, level: &str, msg: &str) -> String {
    if json {
        let v = serde_json::json!({"level": level, "msg": msg, "time": now_rfc3339()});
        format!("{v}\n")
    } else {
        format!("time=\"{}\" level={} msg={:?}\n", now_rfc3339(), level, msg)
    }
}

fn write(level: &str, msg: &str) {
    let Some(l) = LOGGER.get() else { return };
    match l.file.as_ref() {
        Some(mut f) => {
            let _ = f.write_all(line(l.json, level, msg).as_bytes());
        }
        // Without --log the lines go to stderr, as runc's logrus does: warnings always, debug
        // lines with --debug (debug() filters). Errors are printed there anyway, as the one
        // line "berth: ...", so not again.
        None if level != "error" => {
            let _ = std::io::stderr().write_all(line(l.json, level, msg).as_bytes());
        }
        None => {}
    }
}

pub fn error(msg: &str) {
    write("error", msg);
}

pub fn warn(msg: &str) {
    write("warning", msg);
}

/// `--debug`'s lines: `debug!("...", args)` formats only when debug logging is on.
#[macro_export]
macro_rules! debug {
    ($($arg:tt)*) => {
        if $crate::logging::debug_enabled() {
            $crate::logging::debug(&format!($($arg)*));
        }
    };
}

pub fn debug(msg: &str) {
    if debug_enabled() {
        write("debug", msg);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc3339_known_dates() {
        assert_eq!(super::rfc3339(0, 0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(super::rfc3339(1_795_000_000, 5), "2026-11-18T11:06:40.000000005Z");
        assert_eq!(super::rfc3339(951_782_400, 0), "2000-02-29T00:00:00.000000000Z");
    }
}
