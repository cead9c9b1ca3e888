//! Files that hold secrets (an AppSecret, a private key, an API token): read only when no
//! other user may read them.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// A read error, named as what it is: out of descriptors is not a problem with the file.
fn cannot_read(path: &Path, e: &std::io::Error) -> String {
    if e.raw_os_error() == Some(24) {
        format!(
            "{}: cannot be opened now: this process has no file descriptor left (EMFILE), the file itself may be fine",
            path.display()
        )
    } else {
        format!("{}: cannot read: {e}", path.display())
    }
}

/// Reads a file holding a secret (an AppSecret, a private key), refusing one that group or
/// others may access.
pub fn read_private_file(path: &Path) -> Result<Vec<u8>, String> {
    let meta = std::fs::metadata(path).map_err(|e| cannot_read(path, &e))?;
    let mode = meta.permissions().mode();
    // systemd's credentials directory is private to the service whatever the file modes.
    let credential = std::env::var_os("CREDENTIALS_DIRECTORY")
        .is_some_and(|d| !d.is_empty() && path.starts_with(Path::new(&d)));
    if mode & 0o077 != 0 && !credential {
        return Err(format!(
            "{}: permissions {:04o} let other users read it; run: chmod 600 {}",
            path.display(),
            mode & 0o7777,
            path.display()
        ));
    }
    std::fs::read(path).map_err(|e| cannot_read(path, &e))
}

/// Reads a secret (an AppSecret) from a file the daemon alone may read.
///
/// Refused when group or others have any access: a secret readable by every account on a
/// shared till is not a secret.
pub fn read_secret_file(path: &Path) -> Result<String, String> {
    let bytes = read_private_file(path)?;
    let text = String::from_utf8(bytes)
        .map_err(|_| format!("{}: the secret is not UTF-8 text", path.display()))?;
    let secret = text.trim().to_string();
    if secret.is_empty() {
        return Err(format!("{}: the file is empty", path.display()));
    }
    Ok(secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_descriptors_is_named_as_such() {
        let e = std::io::Error::from_raw_os_error(24);
        let m = cannot_read(Path::new("/etc/redeemd/appsecret"), &e);
        assert!(m.contains("no file descriptor left (EMFILE)"), "{m}");
    }

    #[test]
    fn secret_file_permissions() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s");
        std::fs::write(&p, "topsecret\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = read_secret_file(&p).unwrap_err();
        assert!(e.contains("0644") && e.contains("chmod 600"), "{e}");
        assert!(!e.contains("topsecret"));
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(read_secret_file(&p).unwrap(), "topsecret");
    }
}
