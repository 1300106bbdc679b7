//! Registry credentials (`berth secrets put|ls|rm`): berth's own
//! `PutSecret`, `ListSecrets` and `DeleteSecret`, kept in the table
//! `berth_secrets` of the store, so that every server over the store, and
//! through it every agent (in its task manifest), reads the same ones.
//! A container definition's `repositoryCredentials.credentialsParameter`
//! names one. No answer ever carries a password back.

use berth_core::validate::valid_secret_name;
use berth_protocol::RegistryCredential;
use berth_store::{Record, Txn};
use serde::{Deserialize, Serialize};

use super::{Control, ControlError, all_with_prefix, now};

/// A stored registry login, keyed by its name.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredSecret {
    pub name: String,
    pub username: String,
    pub password: String,
    pub created_at: f64,
    pub updated_at: f64,
}

impl std::fmt::Debug for StoredSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredSecret")
            .field("name", &self.name)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

impl Record for StoredSecret {
    const TABLE: &'static str = "berth_secrets";
    fn key(&self) -> String {
        self.name.clone()
    }
}

/// `PutSecret`: stores (or replaces) a registry login.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PutSecretRequest {
    pub name: String,
    pub username: String,
    pub password: String,
}

/// What is shown of a secret: never its password.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretSummary {
    pub name: String,
    pub username: String,
    pub created_at: f64,
    pub updated_at: f64,
}

impl From<&StoredSecret> for SecretSummary {
    fn from(s: &StoredSecret) -> Self {
        SecretSummary {
            name: s.name.clone(),
            username: s.username.clone(),
            created_at: s.created_at,
            updated_at: s.updated_at,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretResponse {
    pub secret: SecretSummary,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListSecretsRequest {}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListSecretsResponse {
    pub secrets: Vec<SecretSummary>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeleteSecretRequest {
    pub name: String,
}

fn check_name(name: &str) -> Result<(), ControlError> {
    if valid_secret_name(name) {
        Ok(())
    } else {
        Err(ControlError::invalid(
            "name",
            format!("`{name}` is not a secret name (1-255 letters, digits, `-`, `_`, `.`, `/`)"),
        ))
    }
}

/// The credential stored as `name`, if any, read in `txn`.
pub(super) fn registry_credential(
    txn: &mut Txn,
    name: &str,
) -> Result<Option<RegistryCredential>, ControlError> {
    Ok(txn.get::<StoredSecret>(name)?.map(|s| RegistryCredential {
        username: s.value.username,
        password: s.value.password,
    }))
}

impl Control {
    /// PutSecret: a registry login under `name`, created or replaced.
    pub fn put_secret(&self, req: PutSecretRequest) -> Result<SecretResponse, ControlError> {
        check_name(&req.name)?;
        if req.username.is_empty() {
            return Err(ControlError::invalid("username", "must not be empty"));
        }
        if req.password.is_empty() {
            return Err(ControlError::invalid("password", "must not be empty"));
        }
        let up = self
            .store
            .update(|txn| -> Result<StoredSecret, ControlError> {
                let t = now();
                let created_at = txn
                    .get::<StoredSecret>(&req.name)?
                    .map_or(t, |s| s.value.created_at);
                let s = StoredSecret {
                    name: req.name.clone(),
                    username: req.username.clone(),
                    password: req.password.clone(),
                    created_at,
                    updated_at: t,
                };
                txn.put(&s)?;
                Ok(s)
            })?;
        Ok(SecretResponse {
            secret: SecretSummary::from(&up.value),
        })
    }

    /// ListSecrets: every stored secret's name and user, by name.
    pub fn list_secrets(
        &self,
        _req: ListSecretsRequest,
    ) -> Result<ListSecretsResponse, ControlError> {
        let txn = self.store.begin()?;
        let secrets = all_with_prefix::<StoredSecret>(&txn, "")?
            .iter()
            .map(|s| SecretSummary::from(&s.value))
            .collect();
        Ok(ListSecretsResponse { secrets })
    }

    /// DeleteSecret: forgets `name`. Tasks not yet started that pull with it
    /// then fail (CannotPullContainerError naming it).
    pub fn delete_secret(&self, req: DeleteSecretRequest) -> Result<SecretResponse, ControlError> {
        check_name(&req.name)?;
        let up = self
            .store
            .update(|txn| -> Result<StoredSecret, ControlError> {
                let Some(s) = txn.get::<StoredSecret>(&req.name)? else {
                    return Err(ControlError::Client(format!(
                        "name: no secret named `{}`",
                        req.name
                    )));
                };
                txn.delete::<StoredSecret>(&req.name)?;
                Ok(s.value)
            })?;
        Ok(SecretResponse {
            secret: SecretSummary::from(&up.value),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn control() -> (tempfile::TempDir, Control) {
        let d = tempfile::tempdir().unwrap();
        let store = berth_store::Store::open(d.path().join("s.redb")).unwrap();
        (
            d,
            Control::new(std::sync::Arc::new(store), Default::default()),
        )
    }

    fn put(c: &Control, name: &str, password: &str) -> Result<SecretResponse, ControlError> {
        c.put_secret(PutSecretRequest {
            name: name.into(),
            username: "bot".into(),
            password: password.into(),
        })
    }

    #[test]
    fn secrets_are_stored_listed_replaced_and_removed_and_never_shown() {
        let (_d, c) = control();
        let made = put(&c, "registry/ci", "hunter2").unwrap();
        let shown = serde_json::to_string(&made).unwrap();
        assert!(!shown.contains("hunter2"), "{shown}");
        put(&c, "registry/ci", "hunter3").unwrap();
        let all = c.list_secrets(ListSecretsRequest::default()).unwrap();
        assert_eq!(all.secrets.len(), 1);
        assert_eq!(all.secrets[0].username, "bot");
        assert!(!serde_json::to_string(&all).unwrap().contains("hunter"));
        let mut txn = c.store.begin().unwrap();
        let cred = registry_credential(&mut txn, "registry/ci")
            .unwrap()
            .unwrap();
        assert_eq!(cred.password, "hunter3");
        assert!(!format!("{cred:?}").contains("hunter3"));
        c.delete_secret(DeleteSecretRequest {
            name: "registry/ci".into(),
        })
        .unwrap();
        let gone = c
            .delete_secret(DeleteSecretRequest {
                name: "registry/ci".into(),
            })
            .unwrap_err();
        assert_eq!(gone.code(), "ClientException");
    }

    #[test]
    fn bad_secrets_are_refused_naming_the_field() {
        let (_d, c) = control();
        let e = put(&c, "no spaces", "x").unwrap_err();
        assert!(e.to_string().starts_with("name: `no spaces`"), "{e}");
        let e = put(&c, "ok", "").unwrap_err();
        assert_eq!(e.to_string(), "password: must not be empty");
    }
}
