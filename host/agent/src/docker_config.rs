//! The host's own Docker login (`docker login`, kept in
//! `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`): what a pull
//! uses when its container names no `repositoryCredentials`. Only logins
//! stored in the file itself (`auths`) are read; credential helpers
//! (`credsStore`, `credHelpers`) are not run.

use std::path::PathBuf;

use base64::Engine;
use berth_protocol::RegistryCredential;

/// The login the host's Docker config holds for the registry of `image`.
pub(crate) fn host_credential(image: &str) -> Option<RegistryCredential> {
    let text = std::fs::read_to_string(config_path()?).ok()?;
    credential_in(&text, registry_of(image))
}

fn config_path() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG") {
        return Some(PathBuf::from(dir).join("config.json"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker").join("config.json"))
}

/// The registry `image` is pulled from, as `docker login` names it: its
/// first path part when that is a host (has a `.` or `:`, or is
/// `localhost`), else Docker Hub.
fn registry_of(image: &str) -> &str {
    match image.split_once('/') {
        Some((first, _)) if first.contains(['.', ':']) || first == "localhost" => first,
        _ => "docker.io",
    }
}

/// Whether a key of `auths` (`127.0.0.1:5000`, `https://index.docker.io/v1/`) names `registry`.
fn names(key: &str, registry: &str) -> bool {
    let host = key
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap_or_default();
    host == registry
        || (registry == "docker.io" && matches!(host, "index.docker.io" | "registry-1.docker.io"))
}

/// The login for `registry` in a config file's text.
fn credential_in(config: &str, registry: &str) -> Option<RegistryCredential> {
    let v: serde_json::Value = serde_json::from_str(config).ok()?;
    let (_, entry) = v
        .get("auths")?
        .as_object()?
        .iter()
        .find(|(k, _)| names(k, registry))?;
    if let (Some(u), Some(p)) = (entry["username"].as_str(), entry["password"].as_str()) {
        return Some(RegistryCredential {
            username: u.to_owned(),
            password: p.to_owned(),
        });
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(entry["auth"].as_str()?)
        .ok()?;
    let (u, p) = std::str::from_utf8(&decoded).ok()?.split_once(':')?;
    Some(RegistryCredential {
        username: u.to_owned(),
        password: p.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_name_their_registry() {
        assert_eq!(registry_of("127.0.0.1:5000/berth/test:1"), "127.0.0.1:5000");
        assert_eq!(
            registry_of("registry.example.com/team/web"),
            "registry.example.com"
        );
        assert_eq!(registry_of("localhost/x"), "localhost");
        assert_eq!(registry_of("library/busybox"), "docker.io");
        assert_eq!(registry_of("busybox:1"), "docker.io");
    }

    #[test]
    fn logins_are_found_by_registry() {
        // base64("bot:pw:with:colons")
        let config = r#"{"auths": {
            "127.0.0.1:5000": {"auth": "Ym90OnB3OndpdGg6Y29sb25z"},
            "https://index.docker.io/v1/": {"username": "hub", "password": "hubpw"}
        }}"#;
        let c = credential_in(config, "127.0.0.1:5000").expect("found");
        assert_eq!(
            (c.username.as_str(), c.password.as_str()),
            ("bot", "pw:with:colons")
        );
        let hub = credential_in(config, "docker.io").expect("hub");
        assert_eq!(hub.username, "hub");
        assert!(credential_in(config, "other.example.com").is_none());
        assert!(credential_in("not json", "docker.io").is_none());
    }
}
