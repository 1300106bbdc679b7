//! The one access key berth's API accepts: from `BERTH_ACCESS_KEY_ID` and
//! `BERTH_SECRET_ACCESS_KEY`, else from `credentials` in the data directory,
//! created (mode 0600) on first start.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::Context;

use berth_client::CREDENTIALS_FILE as FILE;
pub use berth_client::Credentials;

/// Where the credentials came from, for the startup message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Environment,
    Created,
    File,
}

/// Fresh random credentials (from the OS's random source, via UUID v4).
pub fn generate() -> Credentials {
    let id = uuid::Uuid::new_v4().simple().to_string().to_uppercase();
    let secret = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    Credentials {
        access_key_id: format!("BKIA{}", &id[..16]),
        secret_access_key: secret,
    }
}

/// The environment's, else the data directory's (created when missing).
pub fn load(data_dir: &Path) -> anyhow::Result<(Credentials, Source)> {
    let id = std::env::var("BERTH_ACCESS_KEY_ID")
        .ok()
        .filter(|s| !s.is_empty());
    let secret = std::env::var("BERTH_SECRET_ACCESS_KEY")
        .ok()
        .filter(|s| !s.is_empty());
    match (id, secret) {
        (Some(access_key_id), Some(secret_access_key)) => {
            return Ok((
                Credentials {
                    access_key_id,
                    secret_access_key,
                },
                Source::Environment,
            ));
        }
        (None, None) => {}
        _ => anyhow::bail!("set both BERTH_ACCESS_KEY_ID and BERTH_SECRET_ACCESS_KEY, or neither"),
    }
    let path = data_dir.join(FILE);
    match std::fs::read(&path) {
        Ok(bytes) => {
            let c: Credentials = serde_json::from_slice(&bytes)
                .with_context(|| format!("reading credentials from {}", path.display()))?;
            Ok((c, Source::File))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let c = generate();
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .with_context(|| format!("creating {}", path.display()))?;
            let json = serde_json::to_vec_pretty(&c).context("encoding credentials")?;
            f.write_all(&json)
                .and_then(|()| f.sync_all())
                .with_context(|| format!("writing {}", path.display()))?;
            Ok((c, Source::Created))
        }
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Writes a fresh key to the data directory's file, in place of the one
/// there (written aside, then renamed over it, so a crash leaves one key or
/// the other whole). A running berth keeps the key it started with until
/// it restarts.
pub fn rotate(data_dir: &Path) -> anyhow::Result<Credentials> {
    let path = data_dir.join(FILE);
    anyhow::ensure!(
        path.exists(),
        "{} does not exist: berth creates it at its first start",
        path.display()
    );
    let c = generate();
    let aside = data_dir.join(format!("{FILE}.new"));
    let _ = std::fs::remove_file(&aside);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&aside)
        .with_context(|| format!("creating {}", aside.display()))?;
    let json = serde_json::to_vec_pretty(&c).context("encoding credentials")?;
    f.write_all(&json)
        .and_then(|()| f.sync_all())
        .with_context(|| format!("writing {}", aside.display()))?;
    std::fs::rename(&aside, &path).with_context(|| format!("replacing {}", path.display()))?;
    std::fs::File::open(data_dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing {}", data_dir.display()))?;
    Ok(c)
}

/// `berth credentials rotate`: the new key, and what to do with it.
pub fn run_rotate(data_dir: &Path) -> anyhow::Result<()> {
    let c = rotate(data_dir)?;
    let path = data_dir.join(FILE);
    if std::env::var_os("BERTH_ACCESS_KEY_ID").is_some() {
        println!(
            "berth: note: BERTH_ACCESS_KEY_ID is set here; a berth started with it uses that key, not {}",
            path.display()
        );
    }
    println!(
        "berth: a new key is in {}; a running berth accepts the old key until it restarts, then only the new one (give it to agents and clients too):",
        path.display()
    );
    println!("  export AWS_ACCESS_KEY_ID={}", c.access_key_id);
    println!("  export AWS_SECRET_ACCESS_KEY={}", c.secret_access_key);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn file_is_created_private_then_reused() {
        // The environment is process-wide; this test only runs when the
        // variables are unset, which is how the test suite runs.
        if std::env::var_os("BERTH_ACCESS_KEY_ID").is_some() {
            panic!("unset BERTH_ACCESS_KEY_ID to run the unit tests");
        }
        let dir = tempfile::tempdir().unwrap();
        let (a, s) = load(dir.path()).unwrap();
        assert_eq!(s, Source::Created);
        let mode = std::fs::metadata(dir.path().join(FILE))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
        let (b, s) = load(dir.path()).unwrap();
        assert_eq!(s, Source::File);
        assert_eq!(a, b);
        assert_ne!(a, generate());
        let c = rotate(dir.path()).unwrap();
        assert_ne!(c, a);
        let (d, s) = load(dir.path()).unwrap();
        assert_eq!((d, s), (c, Source::File));
        let mode = std::fs::metadata(dir.path().join(FILE))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
    }
}
