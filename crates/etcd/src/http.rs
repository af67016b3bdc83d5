//! Just enough HTTP/1.1 over rustls for JSON POSTs to the etcd gateway.

use std::{
    io::{self, Read, Write},
    net::{TcpStream, ToSocketAddrs},
    sync::Arc,
    time::Duration,
};

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs1KeyDer, PrivatePkcs8KeyDer, PrivateSec1KeyDer, ServerName};

use crate::{EtcdError, TlsMaterial};

fn bad(what: &'static str, e: impl std::error::Error + Send + Sync + 'static) -> EtcdError {
    EtcdError::Pem { what, source: Box::new(e) }
}

/// A rustls client config trusting only the etcd CA and presenting the client pair.
pub(crate) fn client_config(t: &TlsMaterial) -> Result<rustls::ClientConfig, EtcdError> {
    let mut roots = rustls::RootCertStore::empty();
    for block in pem::parse_many(&t.ca_pem).map_err(|e| bad("CA certificate", e))? {
        roots.add(CertificateDer::from(block.contents().to_vec())).map_err(|e| bad("CA certificate", e))?;
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
    let rest = endpoint.trim_start_matches("https://").trim_end_matches('/');
    if let Some(v6) = rest.strip_prefix('[') {
        if let Some((h, p)) = v6.split_once("]:") {
            return (h.to_string(), p.parse().unwrap_or(2379));
        }
    }
    match rest.rsplit_once(':') {
        Some((h, p)) => (h.to_string(), p.parse().unwrap_or(2379)),
        None => (rest.to_string(), 2379),
    }
}

/// POSTs `body` and returns the response body of a 2xx answer.
pub(crate) fn post(cfg: &Arc<rustls::ClientConfig>, endpoint: &str, path: &str, body: &str, timeout: Duration) -> Result<String, EtcdError> {
    let connect = |source| EtcdError::Connect { endpoint: endpoint.to_string(), source };
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
    let conn = rustls::ClientConnection::new(cfg.clone(), name).map_err(|e| EtcdError::Tls { endpoint: endpoint.into(), source: io::Error::other(e) })?;
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let tls_err = |source: io::Error| EtcdError::Tls { endpoint: endpoint.to_string(), source };
    tls.write_all(req.as_bytes()).map_err(tls_err)?;
    let mut raw = Vec::new();
    match tls.read_to_end(&mut raw) {
        Ok(_) => {}
        // Servers often close without close_notify after a complete response.
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof && !raw.is_empty() => {}
        Err(e) => return Err(tls_err(e)),
    }
    let (status, body) = parse_response(&raw).map_err(|m| EtcdError::Http { endpoint: endpoint.into(), path: path.into(), status: 0, message: m })?;
    if !(200..300).contains(&status) {
        let message = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("message").or_else(|| v.get("error")).and_then(|m| m.as_str()).map(str::to_string))
            .unwrap_or_else(|| body.chars().take(200).collect());
        return Err(EtcdError::Http { endpoint: endpoint.into(), path: path.into(), status, message });
    }
    Ok(body)
}

/// Status code and de-chunked body of an HTTP/1.1 response.
fn parse_response(raw: &[u8]) -> Result<(u16, String), String> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").ok_or("no end of headers")?;
    let head = std::str::from_utf8(&raw[..split]).map_err(|_| "headers are not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().ok_or("empty response")?;
    let status: u16 = status_line.split_whitespace().nth(1).and_then(|s| s.parse().ok()).ok_or("bad status line")?;
    let chunked = lines.any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    let mut body = raw[split + 4..].to_vec();
    if chunked {
        body = dechunk(&body)?;
    }
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

fn dechunk(mut b: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let eol = b.windows(2).position(|w| w == b"\r\n").ok_or("bad chunk")?;
        let size_text = std::str::from_utf8(&b[..eol]).map_err(|_| "bad chunk size")?;
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16).map_err(|_| "bad chunk size")?;
        b = &b[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        if b.len() < size {
            return Err("truncated chunk".into());
        }
        out.extend_from_slice(&b[..size]);
        b = b.get(size + 2..).unwrap_or(&[]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_and_plain_bodies() {
        let plain = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}";
        assert_eq!(parse_response(plain).unwrap(), (200, "{}".to_string()));
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{\"a\r\n4\r\n\":1}\r\n0\r\n\r\n";
        assert_eq!(parse_response(chunked).unwrap(), (200, "{\"a\":1}".to_string()));
    }

    #[test]
    fn endpoints_split() {
        assert_eq!(split("https://198.18.0.11:2379"), ("198.18.0.11".into(), 2379));
        assert_eq!(split("https://[::1]:2379"), ("::1".into(), 2379));
    }
}
