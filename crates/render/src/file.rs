//! The unit of rendering output: one file with its final path, mode and owner.

use serde::Serialize;

use crate::error::{RenderError, Result};

/// One file exactly as it will land on a host (or, for operator files, in the output dir).
#[derive(Clone, PartialEq, Eq, Serialize)]
pub struct HostFile {
    /// Absolute path on the host, e.g. `/etc/kubernetes/pki/ca.crt`.
    pub path: String,
    /// Permission bits, e.g. `0o600`.
    pub mode: u32,
    /// `user:group`.
    pub owner: String,
    #[serde(skip)]
    pub content: String,
    /// Holds a private key or a secret: never print it, keep it 0600.
    pub sensitive: bool,
}

impl std::fmt::Debug for HostFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("HostFile");
        d.field("path", &self.path)
            .field("mode", &format_args!("{:o}", self.mode))
            .field("owner", &self.owner);
        if self.sensitive {
            d.field("content", &"<redacted>");
        } else {
            d.field("content", &self.content);
        }
        d.finish()
    }
}

impl HostFile {
    /// A root-owned 0644 file.
    pub fn public(path: impl Into<String>, content: impl Into<String>) -> Self {
        HostFile {
            path: path.into(),
            mode: 0o644,
            owner: "root:root".into(),
            content: content.into(),
            sensitive: false,
        }
    }

    /// A root-owned 0600 file that holds a key or secret.
    pub fn secret(path: impl Into<String>, content: impl Into<String>) -> Self {
        HostFile {
            path: path.into(),
            mode: 0o600,
            owner: "root:root".into(),
            content: content.into(),
            sensitive: true,
        }
    }

    /// A root-owned file with an explicit mode, not sensitive.
    pub fn with_mode(path: impl Into<String>, mode: u32, content: impl Into<String>) -> Self {
        HostFile {
            path: path.into(),
            mode,
            owner: "root:root".into(),
            content: content.into(),
            sensitive: false,
        }
    }
}

/// Where kubeadm keeps its PKI on every host.
pub const PKI_DIR: &str = "/etc/kubernetes/pki";
pub const KUBERNETES_DIR: &str = "/etc/kubernetes";
pub const MANIFESTS_DIR: &str = "/etc/kubernetes/manifests";

/// `<base>.crt` (0644) and `<base>.key` (0600) under the pki dir.
pub fn cert_files(base: &str, pair: &kubeha_pki::CertPair) -> [HostFile; 2] {
    [
        HostFile::public(format!("{PKI_DIR}/{base}.crt"), pair.cert_pem.clone()),
        HostFile::secret(format!("{PKI_DIR}/{base}.key"), pair.key_pem.clone()),
    ]
}

/// Only the certificate of a pair (`<base>.crt`), e.g. a CA whose key stays elsewhere.
pub fn cert_only(base: &str, pair: &kubeha_pki::CertPair) -> HostFile {
    HostFile::public(format!("{PKI_DIR}/{base}.crt"), pair.cert_pem.clone())
}

/// YAML text of any serializable value (typed Kubernetes objects, kubeconfigs, configs).
pub fn to_yaml<T: Serialize>(what: &str, value: &T) -> Result<String> {
    serde_saphyr::to_string(value).map_err(|e| RenderError::Serialize {
        what: what.to_string(),
        source: Box::new(e),
    })
}

/// JSON text (pretty, trailing newline).
pub fn to_json<T: Serialize>(what: &str, value: &T) -> Result<String> {
    let mut s = serde_json::to_string_pretty(value).map_err(|e| RenderError::Serialize {
        what: what.to_string(),
        source: Box::new(e),
    })?;
    s.push('\n');
    Ok(s)
}
