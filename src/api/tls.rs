//! `tcp://HOST:PORT` listeners, as dockerd's with `--tlsverify`: TLS (rustls, the registry
//! client's) with a client certificate required and checked against `--tlscacert`; a client
//! without one signed by that CA is refused at the handshake.
//!
//! The HTTP server and its hijacked streams (attach, exec, events) work on a unix stream:
//! each TLS connection is relayed to one end of a socketpair whose other end the ordinary
//! connection handler serves, so every endpoint behaves the same over either transport
//! (a client's close_notify or EOF is a half-close of the pair, as on a unix socket).

use super::ServiceError;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig, ServerConnection};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn invalid(path: &Path, what: &str) -> ServiceError {
    ServiceError::Invalid(format!("{}: {what}", path.display()))
}

fn read(path: &Path) -> Result<Vec<u8>, ServiceError> {
    std::fs::read(path).map_err(|err| ServiceError::Io { op: "read", path: path.to_path_buf(), err })
}

/// The server's TLS configuration from PEM files: the CA client certificates must chain to,
/// the server's certificate (chain) and its private key.
pub fn server_config(ca: &Path, cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, ServiceError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(&read(ca)?) {
        let c = c.map_err(|e| invalid(ca, &format!("not a PEM certificate: {e}")))?;
        roots.add(c).map_err(|e| invalid(ca, &format!("not a usable CA certificate: {e}")))?;
    }
    if roots.is_empty() {
        return Err(invalid(ca, "no certificate in it"));
    }
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&read(cert)?)
        .collect::<Result<_, _>>()
        .map_err(|e| invalid(cert, &format!("not a PEM certificate: {e}")))?;
    if chain.is_empty() {
        return Err(invalid(cert, "no certificate in it"));
    }
    let key_der =
        PrivateKeyDer::from_pem_slice(&read(key)?).map_err(|e| invalid(key, &format!("not a PEM private key: {e}")))?;
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| invalid(ca, &format!("client verifier: {e}")))?;
    let cfg = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ServiceError::Invalid(format!("tls: {e}")))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key_der)
        .map_err(|e| invalid(key, &format!("does not go with {}: {e}", cert.display())))?;
    Ok(Arc::new(cfg))
}

/// Serves one accepted TCP connection: the handshake (a client certificate required), then
/// the plaintext relayed to `serve` through a socketpair. Returns when both ways are done.
pub fn serve_conn(tcp: TcpStream, cfg: Arc<ServerConfig>, serve: impl FnOnce(UnixStream) + Send + 'static) {
    let Ok(mut conn) = ServerConnection::new(cfg) else { return };
    let mut t = tcp;
    // A client that stalls in the handshake does not hold the thread for ever.
    let _ = t.set_read_timeout(Some(Duration::from_secs(30)));
    while conn.is_handshaking() {
        if conn.complete_io(&mut t).is_err() {
            // The alert (e.g. certificate required) goes out before the close.
            let _ = conn.write_tls(&mut t);
            return;
        }
    }
    let _ = t.set_read_timeout(None);
    let Ok((mine, theirs)) = UnixStream::pair() else { return };
    let Ok(handler) = std::thread::Builder::new().name("api-conn".into()).spawn(move || serve(theirs)) else {
        return;
    };
    let conn = Arc::new(Mutex::new(conn));
    let (Ok(t2), Ok(mut u2)) = (t.try_clone(), mine.try_clone()) else { return };
    // Handler → client.
    let out = {
        let conn = conn.clone();
        let mut t2 = t2;
        std::thread::Builder::new().name("api-tls-out".into()).spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = match u2.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                let Ok(mut c) = conn.lock() else { break };
                if c.writer().write_all(&buf[..n]).is_err() {
                    break;
                }
                if flush(&mut c, &mut t2).is_err() {
                    break;
                }
            }
            if let Ok(mut c) = conn.lock() {
                c.send_close_notify();
                let _ = flush(&mut c, &mut t2);
            }
            // Ends the inbound relay's read too.
            let _ = t2.shutdown(Shutdown::Both);
        })
    };
    // Client → handler. The handshake may have read the first request already: the
    // plaintext is drained before each read from the client.
    let mut mine = mine;
    let mut buf = vec![0u8; 64 * 1024];
    let mut pending: &[u8] = &[];
    loop {
        let (plain, closed) = {
            let Ok(mut c) = conn.lock() else { break };
            let mut plain = Vec::new();
            let mut closed = drain(&mut c, &mut plain);
            while !closed && !pending.is_empty() {
                if c.read_tls(&mut pending).is_err() || c.process_new_packets().is_err() {
                    let _ = flush(&mut c, &mut t);
                    closed = true;
                    break;
                }
                closed = drain(&mut c, &mut plain);
            }
            let _ = flush(&mut c, &mut t);
            (plain, closed)
        };
        if !plain.is_empty() && mine.write_all(&plain).is_err() {
            break;
        }
        if closed {
            break;
        }
        if pending.is_empty() {
            match t.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => pending = &buf[..n],
            }
        }
    }
    // The client's end of the stream (close_notify or EOF): a half-close for the handler.
    let _ = mine.shutdown(Shutdown::Write);
    if let Ok(out) = out {
        let _ = out.join();
    }
    let _ = handler.join();
}

/// Moves the decrypted bytes waiting in `c` to `out`; true when the client has closed
/// (close_notify).
fn drain(c: &mut ServerConnection, out: &mut Vec<u8>) -> bool {
    let mut chunk = [0u8; 16 * 1024];
    loop {
        match c.reader().read(&mut chunk) {
            Ok(0) => return true,
            Ok(k) => out.extend_from_slice(&chunk[..k]),
            Err(e) => return e.kind() != std::io::ErrorKind::WouldBlock,
        }
    }
}

/// Writes the pending TLS records to the client.
fn flush(c: &mut ServerConnection, t: &mut TcpStream) -> std::io::Result<()> {
    while c.wants_write() {
        c.write_tls(t)?;
    }
    Ok(())
}
