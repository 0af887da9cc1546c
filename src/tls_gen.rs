//! `palyrad tls self-signed`: a key and a certificate made the way rustls clients
//! (the CLI) accept them. `openssl req -x509` marks its certificate `CA:TRUE`, which
//! rustls refuses as a server's own; this one is an end-entity certificate (not a CA)
//! for serverAuth with every name as a subject alternative name.

use std::io::Write;
use std::path::{Path, PathBuf};

use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};

/// What was written.
#[derive(Debug)]
pub struct Written {
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
    /// `sha256:<hex>` of the certificate (DER), as the daemon logs it at start.
    pub fingerprint: String,
}

/// Writes `cert.pem` (0644) and `key.pem` (0600) into `dir` for `names` (DNS names or
/// IP addresses), valid for `days`. Refuses to overwrite either file.
pub fn self_signed(dir: &Path, names: &[String], days: u32) -> Result<Written, String> {
    if names.is_empty() {
        return Err("name at least one host (--name HOST)".into());
    }
    if !(1..=3650).contains(&days) {
        return Err("--days must be between 1 and 3650".into());
    }
    let mut params = CertificateParams::new(names.to_vec())
        .map_err(|e| format!("a name is not a host name or IP address: {e}"))?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, names[0].clone());
    params.distinguished_name = dn;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    // Whole days (rcgen's dates), from the start of yesterday, so a client whose clock
    // is a little behind still accepts it.
    let ymd = |t: chrono::DateTime<chrono::Utc>| {
        use chrono::Datelike;
        let month = u8::try_from(t.month()).unwrap_or(1);
        let day = u8::try_from(t.day()).unwrap_or(1);
        rcgen::date_time_ymd(t.year(), month, day)
    };
    let now = chrono::Utc::now();
    params.not_before = ymd(now - chrono::Duration::days(1));
    params.not_after = ymd(now + chrono::Duration::days(i64::from(days)));
    let key = KeyPair::generate().map_err(|e| format!("generating the key failed: {e}"))?;
    let cert = params
        .self_signed(&key)
        .map_err(|e| format!("signing the certificate failed: {e}"))?;
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let cert_path = dir.join("cert.pem");
    let key_path = dir.join("key.pem");
    write_new(&key_path, key.serialize_pem().as_bytes(), 0o600)?;
    write_new(&cert_path, cert.pem().as_bytes(), 0o644)?;
    let fingerprint = {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(cert.der().as_ref());
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        format!("sha256:{hex}")
    };
    Ok(Written {
        cert_path,
        key_path,
        fingerprint,
    })
}

fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), String> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| {
            format!(
                "{}: {e} (an existing file is never overwritten)",
                path.display()
            )
        })?;
    file.write_all(bytes)
        .map_err(|e| format!("{}: {e}", path.display()))
}
