//! Fuzz targets of the engine's front-end parsers: the Dockerfile parser, the builder's word
//! expansion and `.dockerignore` matcher (src/builder/), the `--format` Go-template module
//! (src/template/), and the Engine API's HTTP request reader and create-body translation
//! (src/api/). Run by the mutation fuzzer of mutator.rs as the binary's unit tests:
//! `cargo test --bin berth fuzz_` (CI: 2 s per target; `make fuzz`: `BERTH_FUZZ_SECS` each).

use crate::builder::ignore::{glob, Ignore};
use crate::builder::parser;
use crate::builder::shell::Lex;
use crate::fuzz_mutator::{outcome, run};
use std::collections::BTreeMap;

fn seeds_of(items: &[&str]) -> Vec<Vec<u8>> {
    items.iter().map(|s| s.as_bytes().to_vec()).collect()
}

#[test]
fn fuzz_dockerfile_parse() {
    let seeds = seeds_of(&[
        "# syntax=docker/dockerfile:1\n# escape=`\nFROM busybox AS base\nRUN echo a `\n  && echo b\nCOPY --chown=1:1 [\"a b\", \"/c\"]\n",
        "FROM alpine\nARG X=1\nENV A=$X B=\"two words\"\nRUN <<EOF\necho hi\nEOF\nCOPY <<-EOT /f\n\tx\n\tEOT\n",
        "FROM scratch\nLABEL a=b \\\n  c=\"d e\"\nHEALTHCHECK --interval=5s CMD [\"true\"]\nONBUILD RUN x\nCMD [\"sh\", \"-c\", \"x\"]\n",
    ]);
    let dict: &[&[u8]] = &[
        b"\\\n",
        b"`\n",
        b"<<EOF\n",
        b"EOF\n",
        b"<<-",
        b"# escape=",
        b"[\"",
        b"\"]",
        b"ONBUILD ",
        b"--mount=type=cache",
        b"${A:-b}",
        b"\t",
    ];
    run("dockerfile", &seeds, dict, |d| {
        let s = String::from_utf8_lossy(d);
        match parser::parse(&s) {
            Ok(df) => {
                for n in &df.nodes {
                    let _ = n.cmd();
                }
                let words = s.lines().next().map(|l| parser::parse_words(l, df.escape).len());
                let here = s.split_whitespace().find(|w| w.starts_with("<<")).map(|w| parser::parse_heredoc(w).is_ok());
                format!("ok {} {words:?} {here:?}", df.nodes.len().min(4))
            }
            Err(e) => format!("err: {}", outcome::<(), _>(&Err(e))),
        }
    });
}

#[test]
fn fuzz_builder_word_expansion() {
    let seeds = seeds_of(&[
        "${A:-def} $B ${C:+x} '${A}' \"$A b\"",
        "${A#*/} ${A##*/} ${A%.*} ${A%%.*} ${A/x/y} ${A//x/y}",
        "${U?unset} \\$A ${A:?msg} $",
        "`${A}` ${A:-${B:-${C}}}",
    ]);
    let dict: &[&[u8]] = &[b"${", b"}", b":-", b"//", b"%%", b"##", b"?", b"\\", b"'", b"\"", b"$", b"*", b"[a-z]"];
    let env: Vec<(String, String)> =
        vec![("A".into(), "a/b.c/d.e".into()), ("B".into(), "two words".into()), ("E".into(), String::new())];
    run("word-expansion", &seeds, dict, |d| {
        // The first byte picks the escape character and the lexer's modes.
        let (mode, word) = d.split_first().map_or((0, &[][..]), |(m, w)| (*m, w));
        let word = String::from_utf8_lossy(word);
        let mut lex = Lex::new(if mode & 1 == 0 { '\\' } else { '`' });
        lex.raw_quotes = mode & 2 != 0;
        lex.skip_unset = mode & 4 != 0;
        lex.skip_quotes = mode & 8 != 0;
        let one = lex.process_word(&word, &env);
        let many = lex.process_words(&word, &env);
        let shape = |w: &str| (w.contains('$'), w.contains(' '), w.len().min(4));
        format!(
            "{mode:x} {} {:?} / {} {:?}",
            outcome(&one),
            one.as_deref().map(shape).ok(),
            outcome(&many),
            many.as_ref().map(Vec::len).ok().map(|n| n.min(4))
        )
    });
}

#[test]
fn fuzz_dockerignore() {
    // The ignore file, then a NUL, then paths to match, one a line.
    let seeds = seeds_of(&[
        "*.md\n!README.md\n**/tmp\n# c\n/abs/../x\n\0README.md\nREADME.mdx\na/tmp/b\nabs/x\n",
        "**\n!keep/**\n[a-c]?/*\n\\#x\n\0keep/a/b\nb1/z\n#x\n",
        "dir/\n!dir/in\n../up\n\0dir\ndir/in\ndir/out\n",
    ]);
    let dict: &[&[u8]] = &[b"**", b"*", b"?", b"[", b"]", b"[^", b"\\", b"!", b"/", b"..", b"\n", b"\0"];
    run("dockerignore", &seeds, dict, |d| {
        let s = String::from_utf8_lossy(d);
        let (file, paths) = s.split_once('\0').unwrap_or((&s, ""));
        let ig = match Ignore::parse(".dockerignore", file) {
            Ok(ig) => ig,
            Err(e) => return format!("err: {}", outcome::<(), _>(&Err(e))),
        };
        let mut seen = String::new();
        for p in paths.lines().take(8) {
            seen.push(if ig.excluded(p) { 'x' } else { '-' });
            seen.push(if ig.may_include_below(p) { 'b' } else { '-' });
            for pat in file.lines().take(8) {
                seen.push(match glob(pat, p) {
                    Ok(true) => 'm',
                    Ok(false) => '.',
                    Err(()) => 'e',
                });
            }
        }
        format!("ok {} {seen}", ig.is_empty())
    });
}

#[test]
fn fuzz_go_template() {
    let seeds = seeds_of(&[
        "table {{.ID}}\\t{{.Names}}\\t{{.Status}}",
        "{{json .}}",
        "{{.Name | upper}} {{index .Labels \"a\"}} {{join .Ports \",\"}} {{len .Ports}}",
        "{{.State.Status}} {{lower .Name}} {{title .Name}} {{json .Labels}}",
        "json",
    ]);
    let dict: &[&[u8]] =
        &[b"{{", b"}}", b"{{.", b" | ", b"json ", b"index ", b"join ", b"len ", b"table ", b"\\t", b"\\n", b"\""];
    let rows = vec![
        serde_json::json!({"ID": "abc", "Names": "web", "Name": "web", "Status": "Up", "Labels": {"a": "b"},
                           "Ports": ["80/tcp", "53/udp"], "State": {"Status": "running", "Pid": 7}}),
        serde_json::json!({"ID": "def", "Name": null, "Labels": {}, "Ports": [], "State": null}),
        serde_json::json!("a string row"),
    ];
    let names: BTreeMap<&str, &str> =
        [("ID", "CONTAINER ID"), ("Names", "NAMES"), ("Status", "STATUS")].into_iter().collect();
    run("go-template", &seeds, dict, |d| {
        let s = String::from_utf8_lossy(d);
        let r = crate::template::render_rows(&s, &rows, &names);
        outcome(&r.map(|t| t.len().min(1)))
    });
}

#[test]
fn fuzz_api_http_request() {
    let seeds = seeds_of(&[
        "GET /v1.41/containers/json?all=1&filters=%7B%22status%22%3A%5B%22running%22%5D%7D HTTP/1.1\r\nHost: x\r\n\r\n",
        "POST /containers/create?name=a%20b HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}",
        "POST /v1.43/build HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n2\r\nde\r\n0\r\nTrailer: t\r\n\r\n",
        "\r\n\r\nHEAD /_ping HTTP/1.0\r\nConnection: close\r\n\r\nGET / HTTP/1.1\r\n\r\n",
    ]);
    let dict: &[&[u8]] = &[
        b"\r\n",
        b"Content-Length: ",
        b"Transfer-Encoding: chunked\r\n",
        b"ffffffffffffffff\r\n",
        b"18446744073709551615",
        b"%",
        b"%zz",
        b"?",
        b"&",
        b"/v1.41",
        b"HTTP/1.1",
    ];
    run("api-http-request", &seeds, dict, |d| {
        let mut r = std::io::BufReader::new(std::io::Cursor::new(d.to_vec()));
        let mut out = String::new();
        // Every request on the connection, as serve_conn reads them, until an error or the end.
        for _ in 0..4 {
            match crate::api::http::read_request(&mut r) {
                Ok(Some(req)) => {
                    let _ = (req.q("all"), req.flag("all"), req.header("host"));
                    let _ = crate::api::body_json(&req);
                    out.push_str(&format!("{} ", req.method.len().min(5)));
                }
                Ok(None) => return format!("{out}end"),
                Err(e) => return format!("{out}{}", outcome::<(), _>(&Err(e))),
            }
        }
        out
    });
}

#[test]
fn fuzz_api_create_body() {
    let seeds = seeds_of(&[
        r#"{"Image":"busybox","Cmd":["sh","-c","x"],"Env":["A=b"],"Tty":true,"OpenStdin":true,"WorkingDir":"/w",
            "Labels":{"a":"b"},"ExposedPorts":{"80/tcp":{}},"StopSignal":"SIGTERM","StopTimeout":3,
            "HostConfig":{"Binds":["/tmp:/t:ro"],"PortBindings":{"80/tcp":[{"HostIp":"127.0.0.1","HostPort":"8080"}]},
            "Memory":1048576,"NanoCpus":500000000,"RestartPolicy":{"Name":"on-failure","MaximumRetryCount":2},
            "CapAdd":["NET_ADMIN"],"Mounts":[{"Type":"volume","Source":"v","Target":"/v"}],"Tmpfs":{"/t":"size=1m"},
            "Ulimits":[{"Name":"nofile","Soft":10,"Hard":20}],"LogConfig":{"Type":"json-file","Config":{"max-size":"1k"}}},
            "NetworkingConfig":{"EndpointsConfig":{"n":{"Aliases":["a"],"IPAMConfig":{"IPv4Address":"10.1.0.5"}}}}}"#,
        r#"{"Image":"x","Entrypoint":"sh","Healthcheck":{"Test":["CMD","true"],"Interval":1000000000},"User":"1:1",
            "HostConfig":{"NetworkMode":"host","Privileged":true,"Devices":[{"PathOnHost":"/dev/null","PathInContainer":"/dev/n","CgroupPermissions":"rwm"}],
            "Sysctls":{"net.ipv4.ip_forward":"1"},"ShmSize":65536,"Dns":["1.1.1.1"],"ExtraHosts":["h:1.2.3.4"]}}"#,
    ]);
    let dict: &[&[u8]] =
        &[b"null", b"[]", b"{}", b"-1", b"1e400", b"18446744073709551616", b"\"\"", b"\"HostConfig\":{", b"true"];
    run("api-create-body", &seeds, dict, |d| {
        let body = match serde_json::from_slice::<serde_json::Value>(d) {
            Ok(v) => v,
            Err(_) => return "json".into(),
        };
        let opts = match crate::api::containers::create_opts(&body, Some("fuzz".into())) {
            Ok(o) => o,
            Err(e) => return format!("api {}", e.status),
        };
        outcome(&crate::engine::opts::parse(&opts).map(|_| ()))
    });
}
