//! Just enough HTTP/1.1 over rustls for JSON POSTs to the etcd gateway.

use std::{
    io::{self, BufRead, BufReader, Read, Write},
    net::{TcpStream, ToSocketAddrs},
    sync::Arc,
    time::Duration,
};

use rustls::pki_types::{
    CertificateDer, PrivateKeyDer, PrivatePkcs1KeyDer, PrivatePkcs8KeyDer, PrivateSec1KeyDer,
    ServerName,
};

use crate::{EtcdError, TlsMaterial};

fn bad(what: &'static str, e: impl std::error::Error + Send + Sync + 'static) -> EtcdError {
    EtcdError::Pem {
        what,
        source: Box::new(e),
    }
}

/// A rustls client config trusting only the etcd CA and presenting the client pair.
pub(crate) fn client_config(t: &TlsMaterial) -> Result<rustls::ClientConfig, EtcdError> {
    let mut roots = rustls::RootCertStore::empty();
    for block in pem::parse_many(&t.ca_pem).map_err(|e| bad("CA certificate", e))? {
        roots
            .add(CertificateDer::from(block.contents().to_vec()))
            .map_err(|e| bad("CA certificate", e))?;
    }
    let chain: Vec<CertificateDer<'static>> = pem::parse_many(&t.cert_pem)
        .map_err(|e| bad("client certificate", e))?
        .into_iter()
        .map(|b| CertificateDer::from(b.contents().to_vec()))
        .collect();
    let key_block = pem::parse(&t.key_pem).map_err(|e| bad("client key", e))?;
    let der = key_block.contents().to_vec();
    let key: PrivateKeyDer<'static> = match key_block.tag() {
        "RSA PRIVATE KEY" => PrivatePkcs1KeyDer::from(der).into(),
        "EC PRIVATE KEY" => PrivateSec1KeyDer::from(der).into(),
        _ => PrivatePkcs8KeyDer::from(der).into(),
    };
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad("TLS protocol versions", e))?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(|e| bad("client certificate and key", e))
}

/// `https://host:port` → (host, port).
fn split(endpoint: &str) -> (String, u16) {
    let rest = endpoint
        .trim_start_matches("https://")
        .trim_end_matches('/');
    if let Some((h, p)) = rest.strip_prefix('[').and_then(|v6| v6.split_once("]:")) {
        return (h.to_string(), p.parse().unwrap_or(2379));
    }
    match rest.rsplit_once(':') {
        Some((h, p)) => (h.to_string(), p.parse().unwrap_or(2379)),
        None => (rest.to_string(), 2379),
    }
}

type Tls = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// The body of a 2xx answer, read as it arrives (chunked transfer encoding undone).
pub(crate) type Stream = Body<BufReader<Tls>>;

/// Sends the request and reads the status line and headers.
fn open(
    cfg: &Arc<rustls::ClientConfig>,
    endpoint: &str,
    path: &str,
    body: &str,
    timeout: Duration,
) -> Result<(u16, Stream), EtcdError> {
    let connect = |source| EtcdError::Connect {
        endpoint: endpoint.to_string(),
        source,
    };
    let (host, port) = split(endpoint);
    let addr = (host.as_str(), port)
        .to_socket_addrs()
        .map_err(connect)?
        .next()
        .ok_or_else(|| connect(io::Error::new(io::ErrorKind::NotFound, "no address")))?;
    let tcp = TcpStream::connect_timeout(&addr, timeout).map_err(connect)?;
    tcp.set_read_timeout(Some(timeout)).map_err(connect)?;
    tcp.set_write_timeout(Some(timeout)).map_err(connect)?;
    let _ = tcp.set_nodelay(true);
    let name = ServerName::try_from(host.clone()).map_err(|e| bad("server name", e))?;
    let conn = rustls::ClientConnection::new(cfg.clone(), name).map_err(|e| EtcdError::Tls {
        endpoint: endpoint.into(),
        source: io::Error::other(e),
    })?;
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let tls_err = |source: io::Error| EtcdError::Tls {
        endpoint: endpoint.to_string(),
        source,
    };
    tls.write_all(req.as_bytes()).map_err(tls_err)?;
    let mut reader = BufReader::with_capacity(64 * 1024, tls);
    let (status, framing) = read_head(&mut reader).map_err(|e| match e {
        Head::Io(source) => tls_err(source),
        Head::Bad(message) => EtcdError::Http {
            endpoint: endpoint.into(),
            path: path.into(),
            status: 0,
            message,
        },
    })?;
    Ok((status, Body { r: reader, framing }))
}

/// The etcd error text of a non-2xx answer.
fn error_message(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            v.get("message")
                .or_else(|| v.get("error"))
                .and_then(|m| m.as_str())
                .map(str::to_string)
        })
        .unwrap_or_else(|| body.chars().take(200).collect())
}

/// Reads the whole body; a non-2xx answer becomes [`EtcdError::Http`] with etcd's message.
fn finish(endpoint: &str, path: &str, status: u16, mut body: Stream) -> Result<String, EtcdError> {
    let mut raw = Vec::new();
    body.read_to_end(&mut raw)
        .map_err(|source| EtcdError::Tls {
            endpoint: endpoint.to_string(),
            source,
        })?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    if !(200..300).contains(&status) {
        return Err(EtcdError::Http {
            endpoint: endpoint.into(),
            path: path.into(),
            status,
            message: error_message(&text),
        });
    }
    Ok(text)
}

/// POSTs `body` and returns the response body of a 2xx answer.
pub(crate) fn post(
    cfg: &Arc<rustls::ClientConfig>,
    endpoint: &str,
    path: &str,
    body: &str,
    timeout: Duration,
) -> Result<String, EtcdError> {
    let (status, stream) = open(cfg, endpoint, path, body, timeout)?;
    finish(endpoint, path, status, stream)
}

/// POSTs `body` and returns the body of a 2xx answer as a reader, for streamed answers
/// (`timeout` bounds each read, not the whole stream).
pub(crate) fn post_stream(
    cfg: &Arc<rustls::ClientConfig>,
    endpoint: &str,
    path: &str,
    body: &str,
    timeout: Duration,
) -> Result<Stream, EtcdError> {
    let (status, stream) = open(cfg, endpoint, path, body, timeout)?;
    if !(200..300).contains(&status) {
        finish(endpoint, path, status, stream)?;
        return Err(EtcdError::Http {
            endpoint: endpoint.into(),
            path: path.into(),
            status,
            message: String::new(),
        });
    }
    Ok(stream)
}

enum Head {
    Io(io::Error),
    Bad(String),
}

/// How the body's end is found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// Bytes left in the current chunk; `None` before a size line; `done` after the last chunk.
    Chunked {
        left: Option<usize>,
        done: bool,
    },
    Length(u64),
    /// `Connection: close` without a length: the body ends when the server closes.
    UntilClose,
}

const MAX_LINE: usize = 16 * 1024;

/// One line ending in LF, without CR LF; an error past [`MAX_LINE`] bytes.
fn line<R: BufRead>(r: &mut R) -> io::Result<String> {
    let mut buf = Vec::new();
    let n = r
        .by_ref()
        .take(MAX_LINE as u64)
        .read_until(b'\n', &mut buf)?;
    if n == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed mid-response",
        ));
    }
    if buf.last() != Some(&b'\n') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "line too long or cut short",
        ));
    }
    while matches!(buf.last(), Some(b'\n' | b'\r')) {
        buf.pop();
    }
    String::from_utf8(buf)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "line is not UTF-8"))
}

/// The status code and body framing from the status line and headers.
fn read_head<R: BufRead>(r: &mut R) -> Result<(u16, Framing), Head> {
    let status_line = line(r).map_err(Head::Io)?;
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| Head::Bad(format!("bad status line {status_line:?}")))?;
    let mut framing = Framing::UntilClose;
    for _ in 0..200 {
        let l = line(r).map_err(Head::Io)?;
        if l.is_empty() {
            return Ok((status, framing));
        }
        let Some((name, value)) = l.split_once(':') else {
            continue;
        };
        let (name, value) = (
            name.trim().to_ascii_lowercase(),
            value.trim().to_ascii_lowercase(),
        );
        if name == "transfer-encoding" && value.contains("chunked") {
            framing = Framing::Chunked {
                left: None,
                done: false,
            };
        } else if name == "content-length" && !matches!(framing, Framing::Chunked { .. }) {
            framing = Framing::Length(
                value
                    .parse()
                    .map_err(|_| Head::Bad(format!("bad content-length {value:?}")))?,
            );
        }
    }
    Err(Head::Bad("too many headers".into()))
}

/// A response body that ends where its framing says, whatever the connection does after.
pub(crate) struct Body<R> {
    r: R,
    framing: Framing,
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

impl<R: BufRead> Read for Body<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        match &mut self.framing {
            Framing::Length(0) => Ok(0),
            Framing::Length(left) => {
                let want = buf.len().min(usize::try_from(*left).unwrap_or(usize::MAX));
                let n = self.r.read(&mut buf[..want])?;
                if n == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "body shorter than its content-length",
                    ));
                }
                *left -= n as u64;
                Ok(n)
            }
            Framing::UntilClose => match self.r.read(buf) {
                // Servers often close without TLS close_notify after a complete response.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(0),
                other => other,
            },
            Framing::Chunked { done: true, .. } => Ok(0),
            Framing::Chunked { left, done } => {
                let size = match *left {
                    Some(n) if n > 0 => n,
                    _ => {
                        let size_line = line(&mut self.r)?;
                        let hex = size_line.split(';').next().unwrap_or("").trim();
                        let n = usize::from_str_radix(hex, 16)
                            .map_err(|_| invalid("bad chunk size"))?;
                        if n == 0 {
                            // Trailer headers, then the empty line that ends the message.
                            while !line(&mut self.r)?.is_empty() {}
                            *done = true;
                            return Ok(0);
                        }
                        n
                    }
                };
                let want = buf.len().min(size);
                let n = self.r.read(&mut buf[..want])?;
                if n == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "connection closed inside a chunk",
                    ));
                }
                let rest = size - n;
                if rest == 0 {
                    // Each chunk's data ends with CR LF.
                    if !line(&mut self.r)?.is_empty() {
                        return Err(invalid("chunk longer than its size"));
                    }
                }
                *left = Some(rest);
                Ok(n)
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn parse(raw: &[u8]) -> Result<(u16, String), String> {
        let mut r = io::BufReader::with_capacity(3, raw);
        let (status, framing) = read_head(&mut r).map_err(|e| match e {
            Head::Io(e) => e.to_string(),
            Head::Bad(m) => m,
        })?;
        let mut body = String::new();
        Body { r, framing }
            .read_to_string(&mut body)
            .map_err(|e| e.to_string())?;
        Ok((status, body))
    }

    #[test]
    fn chunked_and_plain_bodies() {
        let plain = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}trailing garbage";
        assert_eq!(parse(plain).unwrap(), (200, "{}".to_string()));
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{\"a\r\n4;ext=1\r\n\":1}\r\n0\r\n\r\nafter";
        assert_eq!(parse(chunked).unwrap(), (200, "{\"a\":1}".to_string()));
        let close = b"HTTP/1.1 404 Not Found\r\nConnection: close\r\n\r\n{\"message\":\"x\"}";
        assert_eq!(
            parse(close).unwrap(),
            (404, "{\"message\":\"x\"}".to_string())
        );
    }

    #[test]
    fn cut_bodies_are_errors() {
        assert!(parse(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\nabc").is_err());
        assert!(
            parse(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n").is_err()
        );
        assert!(parse(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab").is_err());
        assert!(parse(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n").is_err());
        assert!(parse(b"garbage\r\n\r\n").is_err());
    }

    #[test]
    fn etcd_error_messages() {
        let body = r#"{"error":"etcdserver: member not found","message":"etcdserver: member not found","code":5}"#;
        assert_eq!(error_message(body), "etcdserver: member not found");
        assert_eq!(error_message("plain text"), "plain text");
    }

    #[test]
    fn endpoints_split() {
        assert_eq!(
            split("https://198.18.0.11:2379"),
            ("198.18.0.11".into(), 2379)
        );
        assert_eq!(split("https://[::1]:2379"), ("::1".into(), 2379));
    }
}
