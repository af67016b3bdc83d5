//! The grammars of the places cluster-file values land in: interface names, user names,
//! Kubernetes labels and taints, host paths, image repositories, time zones and SSH public
//! keys. A value that reaches a file or a command line on a host is checked against the
//! grammar of where it lands, so nothing rendered can break a config or run as a command.
//!
//! Each check returns `Err(why)` with a short reason in kubeha's words; [`crate::resolve`]
//! adds the field, the place in the file and how to fix it.

use base64::Engine;

/// At most this many characters of a user's value are echoed back in a message.
const ECHO_WIDTH: usize = 60;

/// `value` for a message: control characters escaped, cut to a sane width with an ellipsis,
/// so one enormous or binary value cannot flood the terminal.
pub fn shown(value: &str) -> String {
    let mut out = String::new();
    for (n, c) in value.chars().enumerate() {
        if n == ECHO_WIDTH {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// Linux network interface name: 1–15 bytes (IFNAMSIZ − 1), not `.` or `..`, and (stricter
/// than the kernel, which allows nearly anything but `/`, `:` and spaces) only letters,
/// digits, `_`, `.` and `-`, so it is the same word in keepalived.conf, netplan and `ip`.
pub fn interface(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("the interface name is empty".into());
    }
    if s.len() > 15 {
        return Err(format!(
            "'{}' is {} characters long; Linux interface names have at most 15",
            shown(s),
            s.chars().count()
        ));
    }
    if s == "." || s == ".." {
        return Err(format!("'{s}' cannot be an interface name"));
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
    {
        return Err(format!(
            "'{}' contains {}, which no interface name may hold",
            shown(s),
            describe(c)
        ));
    }
    if s.starts_with(['-', '.']) {
        return Err(format!("'{}' starts with '{}'", shown(s), &s[..1]));
    }
    Ok(())
}

/// A login name as Debian's `useradd` accepts it by default: a lower-case letter or `_`,
/// then lower-case letters, digits, `_` or `-`, at most 32 characters.
pub fn user_name(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("the user name is empty".into());
    }
    if s.len() > 32 {
        return Err(format!(
            "'{}' is longer than the 32 characters a user name may have",
            shown(s)
        ));
    }
    let mut chars = s.chars();
    let first = chars.next().unwrap_or('_');
    if !(first.is_ascii_lowercase() || first == '_') {
        return Err(format!(
            "'{}' must start with a lower-case letter or '_'",
            shown(s)
        ));
    }
    if let Some(c) =
        chars.find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-')))
    {
        return Err(format!(
            "'{}' contains {}; a user name holds only lower-case letters, digits, '_' and '-'",
            shown(s),
            describe(c)
        ));
    }
    Ok(())
}

fn describe(c: char) -> String {
    if c == ' ' {
        "a space".into()
    } else if c.is_whitespace() || c.is_control() {
        format!("the control character '{}'", c.escape_default())
    } else {
        format!("'{c}'")
    }
}

/// A Kubernetes name part (label name, taint key name, label value): at most 63 characters,
/// alphanumerics at both ends, `-`, `_` and `.` between.
fn k8s_name(s: &str, what: &str) -> Result<(), String> {
    if s.len() > 63 {
        return Err(format!(
            "{what} '{}' is longer than 63 characters",
            shown(s)
        ));
    }
    let ok_inner = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if let Some(c) = s.chars().find(|c| !ok_inner(*c)) {
        return Err(format!(
            "{what} '{}' contains {}; only letters, digits, '-', '_' and '.' are allowed",
            shown(s),
            describe(c)
        ));
    }
    let alnum = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    if !alnum(s.chars().next()) || !alnum(s.chars().last()) {
        return Err(format!(
            "{what} '{}' must start and end with a letter or digit",
            shown(s)
        ));
    }
    Ok(())
}

/// A DNS subdomain as Kubernetes means it: lower-case labels joined by dots, at most 253.
pub fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_dns_label)
}

/// A DNS label (RFC 1123): lower-case letters, digits and `-`, not at either end, at most 63.
pub fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// A label key or taint key: `[prefix/]name`, the prefix a DNS subdomain.
pub fn qualified_name(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("the key is empty".into());
    }
    let (prefix, name) = match s.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, s),
    };
    if let Some(p) = prefix
        && !is_dns_subdomain(p)
    {
        return Err(format!(
            "the prefix '{}' before '/' is not a lower-case DNS subdomain",
            shown(p)
        ));
    }
    if name.is_empty() {
        return Err(format!("'{}' has nothing after '/'", shown(s)));
    }
    k8s_name(name, "the name")
}

/// A label value or taint value: empty, or a name part.
pub fn label_value(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Ok(());
    }
    k8s_name(s, "the value")
}

/// System directories a data directory must never be: `kubeha node reset` removes it.
const SYSTEM_DIRS: [&str; 34] = [
    "/",
    "/bin",
    "/boot",
    "/dev",
    "/etc",
    "/etc/kubernetes",
    "/etc/systemd",
    "/home",
    "/lib",
    "/lib32",
    "/lib64",
    "/media",
    "/mnt",
    "/opt",
    "/proc",
    "/root",
    "/run",
    "/sbin",
    "/srv",
    "/sys",
    "/tmp",
    "/usr",
    "/usr/bin",
    "/usr/lib",
    "/usr/local",
    "/usr/local/bin",
    "/usr/sbin",
    "/var",
    "/var/lib",
    "/var/lib/containerd",
    "/var/lib/kubelet",
    "/var/log",
    "/var/run",
    "/var/tmp",
];

/// Trees whose content does not survive a reboot or is not a file system at all.
const VOLATILE_TREES: [&str; 6] = ["/proc", "/sys", "/dev", "/run", "/tmp", "/var/run"];

/// An absolute, normalized host path with no surprises for a systemd unit, a shell or YAML:
/// starts with `/`, no empty, `.` or `..` component, no trailing `/`, each component of
/// letters, digits, `.`, `_`, `-`, `+` and `@` only.
pub fn host_path(s: &str) -> Result<(), String> {
    if !s.starts_with('/') {
        return Err(format!("'{}' is not an absolute path", shown(s)));
    }
    if s.len() > 1024 {
        return Err("the path is longer than 1024 characters".into());
    }
    if s == "/" {
        return Ok(());
    }
    if s.ends_with('/') {
        return Err(format!("'{}' ends with '/'", shown(s)));
    }
    for part in s[1..].split('/') {
        if part.is_empty() {
            return Err(format!("'{}' contains '//'", shown(s)));
        }
        if part == "." || part == ".." {
            return Err(format!(
                "'{}' contains a '{part}' component; write the path it leads to",
                shown(s)
            ));
        }
        if let Some(c) = part
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '+' | '@')))
        {
            return Err(format!(
                "'{}' contains {}; a host path here holds only letters, digits, '.', '_', '-', '+', '@' and '/'",
                shown(s),
                describe(c)
            ));
        }
    }
    Ok(())
}

/// A directory kubeha may own outright (etcd's data dir: created, chowned, and removed by
/// `kubeha node reset`): a [`host_path`] of at least two components that is no system
/// directory and does not live on a volatile tree.
pub fn data_dir(s: &str) -> Result<(), String> {
    host_path(s)?;
    if SYSTEM_DIRS.contains(&s) {
        return Err(format!(
            "'{s}' is a system directory; etcd would own it and `kubeha node reset` would delete it"
        ));
    }
    if let Some(t) = VOLATILE_TREES
        .iter()
        .find(|t| s.strip_prefix(**t).is_some_and(|r| r.starts_with('/')))
    {
        return Err(format!(
            "'{}' lies under {t}, whose content does not survive a reboot",
            shown(s)
        ));
    }
    if s.split('/').filter(|p| !p.is_empty()).count() < 2 {
        return Err(format!(
            "'{s}' is a top-level directory; give etcd a directory of its own below one"
        ));
    }
    Ok(())
}

/// An executable's path: a [`host_path`] that is not a directory kubeha knows of.
pub fn binary_path(s: &str) -> Result<(), String> {
    host_path(s)?;
    if SYSTEM_DIRS.contains(&s) {
        return Err(format!("'{s}' is a directory, not a program"));
    }
    Ok(())
}

/// An image repository as container runtimes parse it: `host[:port][/path…]`; the host a
/// DNS name (letters, digits, `-`, dots) or `localhost`, path components lower-case
/// alphanumerics joined by `.`, `_` or `-`.
pub fn image_repository(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("the image repository is empty".into());
    }
    if s.len() > 255 {
        return Err("the image repository is longer than 255 characters".into());
    }
    let (host, path) = match s.split_once('/') {
        Some((h, p)) => (h, Some(p)),
        None => (s, None),
    };
    let (name, port) = match host.rsplit_once(':') {
        Some((n, p)) => (n, Some(p)),
        None => (host, None),
    };
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if !name.split('.').all(label_ok) {
        return Err(format!(
            "the registry host '{}' is not a DNS name",
            shown(host)
        ));
    }
    if let Some(p) = port
        && !p.parse::<u16>().is_ok_and(|p| p > 0)
    {
        return Err(format!(
            "the registry port '{}' is not a number from 1 to 65535",
            shown(p)
        ));
    }
    for part in path
        .map(|p| p.split('/').collect::<Vec<_>>())
        .unwrap_or_default()
    {
        let ok = !part.is_empty()
            && part.chars().all(|c| {
                c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-')
            })
            && part.starts_with(|c: char| c.is_ascii_alphanumeric())
            && part.ends_with(|c: char| c.is_ascii_alphanumeric());
        if !ok {
            return Err(format!(
                "the path component '{}' is not lower-case letters and digits joined by '.', '_' or '-'",
                shown(part)
            ));
        }
    }
    Ok(())
}

/// IANA's top-level areas. Zone names are `Area/Location[/Sub]`; the areas have not changed
/// in decades, while the locations follow tzdata releases, which differ between the
/// operator's machine and the hosts; so locations are checked for their form only.
const TZ_AREAS: [&str; 11] = [
    "Africa",
    "America",
    "Antarctica",
    "Arctic",
    "Asia",
    "Atlantic",
    "Australia",
    "Etc",
    "Europe",
    "Indian",
    "Pacific",
];

/// A time zone name: `UTC`, or `Area/Location[/Sub]` with a known IANA area and components
/// of at most 14 letters, digits, `_`, `-` or `+` (tzdata's own naming rules).
pub fn time_zone(s: &str) -> Result<(), String> {
    if s == "UTC" {
        return Ok(());
    }
    let mut parts = s.split('/');
    let area = parts.next().unwrap_or_default();
    let rest: Vec<&str> = parts.collect();
    if !TZ_AREAS.contains(&area) || rest.is_empty() || rest.len() > 2 {
        return Err(format!(
            "'{}' is not an IANA time zone name (Area/Location, the area one of {})",
            shown(s),
            TZ_AREAS.join(", ")
        ));
    }
    for part in rest {
        let ok = !part.is_empty()
            && part.len() <= 14
            && part.starts_with(|c: char| c.is_ascii_alphabetic())
            && part
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '+'));
        if !ok {
            return Err(format!(
                "'{}' is not an IANA time zone name: '{}' is not a location",
                shown(s),
                shown(part)
            ));
        }
    }
    Ok(())
}

/// Key types OpenSSH accepts in `authorized_keys` (DSA is disabled in current OpenSSH).
const SSH_KEY_TYPES: [&str; 6] = [
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
];

/// One length-prefixed SSH wire string, and what follows it.
fn ssh_string(b: &[u8]) -> Option<(&[u8], &[u8])> {
    let len = u32::from_be_bytes(b.get(..4)?.try_into().ok()?) as usize;
    let body = b.get(4..4usize.checked_add(len)?)?;
    Some((body, &b[4 + len..]))
}

/// Exactly `n` wire strings filling `r`.
fn ssh_fields(mut r: &[u8], n: usize) -> Option<Vec<&[u8]>> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let (f, next) = ssh_string(r)?;
        out.push(f);
        r = next;
    }
    r.is_empty().then_some(out)
}

/// An OpenSSH public key line: `TYPE BASE64 [COMMENT]`, the blob decoding to a key of that
/// type (RSA at least 2048 bits), no control characters. Placeholders fail here.
pub fn ssh_public_key(s: &str) -> Result<(), String> {
    if let Some(c) = s.chars().find(|c| c.is_control()) {
        return Err(format!(
            "the entry contains {}; give one key per list entry",
            describe(c)
        ));
    }
    let mut words = s.split_whitespace();
    let ty = words.next().unwrap_or_default();
    if !SSH_KEY_TYPES.contains(&ty) {
        return Err(format!(
            "'{}' does not start with a public key type ({})",
            shown(s),
            SSH_KEY_TYPES.join(", ")
        ));
    }
    let b64 = words.next().unwrap_or_default();
    let bad = || format!("the {ty} key '{}' is not a valid public key", shown(b64));
    let blob = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|_| bad())?;
    let (name, rest) = ssh_string(&blob).ok_or_else(bad)?;
    if name != ty.as_bytes() {
        return Err(format!(
            "the key data is a '{}' key, but the entry says {ty}",
            shown(&String::from_utf8_lossy(name))
        ));
    }
    match ty {
        "ssh-ed25519" => match ssh_fields(rest, 1).as_deref() {
            Some([k]) if k.len() == 32 => Ok(()),
            _ => Err(bad()),
        },
        "sk-ssh-ed25519@openssh.com" => match ssh_fields(rest, 2).as_deref() {
            Some([k, app]) if k.len() == 32 && !app.is_empty() => Ok(()),
            _ => Err(bad()),
        },
        "ssh-rsa" => match ssh_fields(rest, 2).as_deref() {
            Some([_e, n]) => {
                let n = n.strip_prefix(&[0u8][..]).unwrap_or(n);
                if n.len() * 8 < 2048 {
                    Err(format!(
                        "the ssh-rsa key has {} bits; use at least 2048 (or an ed25519 key)",
                        n.len() * 8
                    ))
                } else {
                    Ok(())
                }
            }
            _ => Err(bad()),
        },
        _ => {
            let curve = ty.trim_start_matches("ecdsa-sha2-");
            match ssh_fields(rest, 2).as_deref() {
                Some([c, point]) if *c == curve.as_bytes() && point.first() == Some(&4) => Ok(()),
                _ => Err(bad()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interfaces() {
        for ok in [
            "eth0",
            "enp0s2",
            "br-lan",
            "eth0.100",
            "wg_0",
            "abcdefghijklmno",
        ] {
            assert!(interface(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "eth0; reboot",
            "eth0 ",
            "a/b",
            "eth0:1",
            ".",
            "..",
            "-x",
            "abcdefghijklmnop",
            "eth\n0",
            "eth0$",
        ] {
            assert!(interface(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn user_names() {
        for ok in ["root", "k8sadmin", "_svc", "a-b_c1"] {
            assert!(user_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "root; rm -rf /",
            "Root",
            "1abc",
            "-x",
            "a b",
            "a$",
            "abcdefghijklmnopqrstuvwxyzabcdefg",
        ] {
            assert!(user_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn labels_and_taints() {
        for ok in [
            "team",
            "node.kubernetes.io/pool",
            "example.com/a_b.c-d",
            "A1",
        ] {
            assert!(qualified_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "bad key!",
            "Example.com/x",
            "a/",
            "/a",
            "a/b/c",
            "-a",
            "a-",
            &"x".repeat(64),
        ] {
            assert!(qualified_name(bad).is_err(), "{bad:?}");
        }
        for ok in ["", "general", "a.b-c_d", "1"] {
            assert!(label_value(ok).is_ok(), "{ok}");
        }
        for bad in ["a b", "a,b", "a=b", "-a", &"v".repeat(64)] {
            assert!(label_value(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn paths() {
        for ok in ["/var/lib/etcd", "/data/etcd", "/srv/etcd/data-1"] {
            assert!(data_dir(ok).is_ok(), "{ok}");
        }
        for bad in [
            "/",
            "/etc",
            "/var/lib",
            "/usr",
            "/home",
            "/var/lib/",
            "/var/lib/../..",
            "/var/lib/./etcd",
            "var/lib/etcd",
            "/var//lib/etcd",
            "/var/lib/et cd",
            "/var/lib/etcd\n",
            "/var/lib/$x",
            "/run/etcd",
            "/tmp/etcd",
            "/proc/1",
            "/etcd",
        ] {
            assert!(data_dir(bad).is_err(), "{bad:?}");
        }
        assert!(binary_path("/usr/bin/etcd").is_ok());
        assert!(binary_path("/usr/bin").is_err());
        assert!(binary_path("/usr/bin/etcd --x").is_err());
    }

    #[test]
    fn image_repositories() {
        for ok in [
            "registry.k8s.io",
            "registry.example.com:5000/k8s",
            "localhost:5000",
            "r.example.com/a/b-c.d_e",
        ] {
            assert!(image_repository(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "reg istry",
            "registry.k8s.io/",
            "registry.k8s.io/K8s",
            "r:0",
            "r:x",
            "-r.io",
            "r.io/a;b",
        ] {
            assert!(image_repository(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn time_zones() {
        for ok in [
            "UTC",
            "Europe/Kyiv",
            "America/Argentina/Buenos_Aires",
            "Etc/GMT+5",
            "America/Port-au-Prince",
        ] {
            assert!(time_zone(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "Mars/Olympus",
            "Europe",
            "Europe/",
            "Europe/Kyiv; reboot",
            "europe/kyiv",
            "Europe/../../etc/passwd",
            "Eurpoe/Kyiv",
            "Europe/AVeryLongLocationName",
        ] {
            assert!(time_zone(bad).is_err(), "{bad:?}");
        }
    }

    fn ssh_blob(parts: &[&[u8]]) -> String {
        let mut b = Vec::new();
        for p in parts {
            b.extend((p.len() as u32).to_be_bytes());
            b.extend(*p);
        }
        base64::engine::general_purpose::STANDARD.encode(b)
    }

    #[test]
    fn ssh_keys() {
        let ed = ssh_blob(&[b"ssh-ed25519", &[7u8; 32]]);
        assert!(ssh_public_key(&format!("ssh-ed25519 {ed} me@host")).is_ok());
        assert!(ssh_public_key(&format!("ssh-ed25519 {ed}")).is_ok());
        let n = [[0u8].as_slice(), &[0xc3; 256]].concat();
        let rsa = ssh_blob(&[b"ssh-rsa", &[1, 0, 1], &n]);
        assert!(ssh_public_key(&format!("ssh-rsa {rsa} x")).is_ok());
        let small = ssh_blob(&[b"ssh-rsa", &[1, 0, 1], &[0xc3; 128]]);
        assert!(ssh_public_key(&format!("ssh-rsa {small}")).is_err());
        let ec = ssh_blob(&[b"ecdsa-sha2-nistp256", b"nistp256", &[4u8; 65]]);
        assert!(ssh_public_key(&format!("ecdsa-sha2-nistp256 {ec}")).is_ok());
        let short = ssh_blob(&[b"ssh-ed25519", &[7u8; 31]]);
        for bad in [
            String::new(),
            "ssh-ed25519 AAAA...replace-with-your-public-key you@example".into(),
            format!("ssh-rsa {ed}"),
            format!("ssh-ed25519 {short}"),
            format!("ssh-dss {ed}"),
            format!("ssh-ed25519 {ed}\nssh-ed25519 {ed}"),
            "ssh-ed25519".into(),
            "-----BEGIN OPENSSH PRIVATE KEY-----".into(),
        ] {
            assert!(ssh_public_key(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn echoed_values_are_cut() {
        let long = "x".repeat(40_000);
        let s = shown(&long);
        assert!(
            s.chars().count() <= ECHO_WIDTH + 1 && s.ends_with('…'),
            "{s}"
        );
        assert_eq!(shown("a\nb"), "a\\nb");
    }
}
