//! Just enough DER to write X.509 extensions in Go's order and to unwrap PKCS#8.
//!
//! rcgen writes its own extensions in its own order; kubeadm's certificates come from Go's
//! `crypto/x509`, whose order (KeyUsage, ExtKeyUsage, BasicConstraints, SubjectKeyId,
//! AuthorityKeyId, SubjectAltName) is reproduced here byte for byte.

use std::net::IpAddr;

pub(crate) const TAG_BOOLEAN: u8 = 0x01;
pub(crate) const TAG_INTEGER: u8 = 0x02;
pub(crate) const TAG_BIT_STRING: u8 = 0x03;
pub(crate) const TAG_OCTET_STRING: u8 = 0x04;
pub(crate) const TAG_SEQUENCE: u8 = 0x30;

/// One TLV with a definite length.
pub(crate) fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + 6);
    out.push(tag);
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
    out
}

pub(crate) fn sequence(parts: &[&[u8]]) -> Vec<u8> {
    tlv(TAG_SEQUENCE, &parts.concat())
}

/// Reads one TLV: `(tag, content, rest)`. Only definite lengths (DER).
pub(crate) fn read_tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > std::mem::size_of::<usize>() || rest.len() < n {
            return None;
        }
        let mut len = 0usize;
        for &b in &rest[..n] {
            len = (len << 8) | usize::from(b);
        }
        rest = &rest[n..];
        len
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

/// The RSAPrivateKey / ECPrivateKey inside a PKCS#8 `PrivateKeyInfo`.
pub(crate) fn pkcs8_inner_key(pkcs8: &[u8]) -> Option<&[u8]> {
    let (tag, body, _) = read_tlv(pkcs8)?;
    if tag != TAG_SEQUENCE {
        return None;
    }
    let (tag, _version, rest) = read_tlv(body)?;
    if tag != TAG_INTEGER {
        return None;
    }
    let (tag, _alg, rest) = read_tlv(rest)?;
    if tag != TAG_SEQUENCE {
        return None;
    }
    let (tag, key, _) = read_tlv(rest)?;
    if tag != TAG_OCTET_STRING {
        return None;
    }
    Some(key)
}

/// OID DER bytes (tag included) for the arcs kubeha needs.
pub(crate) mod oid {
    /// id-kp-serverAuth 1.3.6.1.5.5.7.3.1
    pub const SERVER_AUTH: &[u8] = &[0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x01];
    /// id-kp-clientAuth 1.3.6.1.5.5.7.3.2
    pub const CLIENT_AUTH: &[u8] = &[0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x02];
    pub const KEY_USAGE: &[u64] = &[2, 5, 29, 15];
    pub const EXT_KEY_USAGE: &[u64] = &[2, 5, 29, 37];
    pub const BASIC_CONSTRAINTS: &[u64] = &[2, 5, 29, 19];
    pub const SUBJECT_KEY_ID: &[u64] = &[2, 5, 29, 14];
    pub const AUTHORITY_KEY_ID: &[u64] = &[2, 5, 29, 35];
    pub const SUBJECT_ALT_NAME: &[u64] = &[2, 5, 29, 17];
}

/// KeyUsage BIT STRING as Go marshals it: bit 0 = digitalSignature, trailing zero bits
/// trimmed and counted as unused.
pub(crate) fn key_usage(bits: &[u8]) -> Vec<u8> {
    // `bits` are RFC 5280 bit numbers (0 = digitalSignature, 2 = keyEncipherment, 5 = keyCertSign).
    let mut value: u16 = 0;
    for &b in bits {
        value |= 0x8000 >> b;
    }
    let used_bits = 16 - value.trailing_zeros() as usize;
    let bytes = value.to_be_bytes();
    let nbytes = used_bits.div_ceil(8).max(1);
    let unused = (nbytes * 8 - used_bits) as u8;
    let mut content = vec![unused];
    content.extend_from_slice(&bytes[..nbytes]);
    tlv(TAG_BIT_STRING, &content)
}

/// BasicConstraints: `SEQUENCE { BOOLEAN TRUE }` for a CA, an empty SEQUENCE otherwise.
pub(crate) fn basic_constraints(is_ca: bool) -> Vec<u8> {
    if is_ca {
        sequence(&[&tlv(TAG_BOOLEAN, &[0xff])])
    } else {
        sequence(&[])
    }
}

/// AuthorityKeyIdentifier with only `[0] keyIdentifier`.
pub(crate) fn authority_key_id(key_id: &[u8]) -> Vec<u8> {
    sequence(&[&tlv(0x80, key_id)])
}

/// SubjectAltName: DNS names (`[2]`) first, then IP addresses (`[7]`), as Go writes them.
pub(crate) fn subject_alt_name(dns: &[String], ips: &[IpAddr]) -> Vec<u8> {
    let mut body = Vec::new();
    for d in dns {
        body.extend(tlv(0x82, d.as_bytes()));
    }
    for ip in ips {
        match ip {
            IpAddr::V4(v4) => body.extend(tlv(0x87, &v4.octets())),
            IpAddr::V6(v6) => body.extend(tlv(0x87, &v6.octets())),
        }
    }
    tlv(TAG_SEQUENCE, &body)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn key_usage_matches_go() {
        // digitalSignature + keyEncipherment: 03 02 05 a0
        assert_eq!(key_usage(&[0, 2]), vec![0x03, 0x02, 0x05, 0xa0]);
        // + keyCertSign: 03 02 02 a4
        assert_eq!(key_usage(&[0, 2, 5]), vec![0x03, 0x02, 0x02, 0xa4]);
    }

    #[test]
    fn long_lengths_round_trip() {
        let content = vec![7u8; 300];
        let enc = tlv(TAG_OCTET_STRING, &content);
        assert_eq!(&enc[..4], &[0x04, 0x82, 0x01, 0x2c]);
        let (tag, body, rest) = read_tlv(&enc).unwrap();
        assert_eq!((tag, body.len(), rest.len()), (TAG_OCTET_STRING, 300, 0));
        assert!(read_tlv(&enc[..enc.len() - 1]).is_none());
    }

    #[test]
    fn basic_constraints_encodings() {
        assert_eq!(basic_constraints(true), vec![0x30, 0x03, 0x01, 0x01, 0xff]);
        assert_eq!(basic_constraints(false), vec![0x30, 0x00]);
    }
}
