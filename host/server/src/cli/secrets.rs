//! `berth secrets put|ls|rm`: registry credentials that task definitions
//! name in `repositoryCredentials.credentialsParameter`. The password is
//! read from stdin, sent once, and never printed back.

use std::io::Read;

use clap::Subcommand;
use serde::Deserialize;
use serde_json::json;

use super::{CliError, Client, Conn, Result, table, when};

#[derive(Debug, Subcommand)]
pub enum SecretsCommand {
    /// Store (or replace) a registry login under NAME.
    Put {
        /// The name `repositoryCredentials.credentialsParameter` gives.
        name: String,
        /// The registry user.
        #[arg(long)]
        username: String,
        /// Read the password (or token) from stdin, its last line end dropped.
        #[arg(long, required = true)]
        password_stdin: bool,
    },
    /// Stored secrets: names and users, never passwords.
    Ls,
    /// Forget a stored secret.
    Rm { name: String },
}

/// What the server shows of a secret.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Summary {
    name: String,
    username: String,
    updated_at: Option<f64>,
}

fn summaries(op: &str, v: &serde_json::Value, field: &str) -> Result<Vec<Summary>> {
    let found = if field == "secret" {
        serde_json::from_value::<Summary>(v[field].clone()).map(|s| vec![s])
    } else {
        serde_json::from_value::<Vec<Summary>>(v[field].clone())
    };
    found.map_err(|e| CliError::Local(format!("{op}: unexpected answer: {e}")))
}

fn read_password() -> Result<String> {
    let mut password = String::new();
    std::io::stdin()
        .read_to_string(&mut password)
        .map_err(|e| CliError::Usage(format!("reading the password from stdin: {e}")))?;
    let password = password
        .strip_suffix('\n')
        .map(|p| p.strip_suffix('\r').unwrap_or(p))
        .unwrap_or(&password)
        .to_owned();
    if password.is_empty() {
        return Err(CliError::Usage(
            "--password-stdin: stdin gave no password".into(),
        ));
    }
    Ok(password)
}

pub async fn run(c: &Client, what: SecretsCommand, conn: &Conn) -> Result<()> {
    let (op, v, field) = match what {
        SecretsCommand::Put { name, username, .. } => {
            let password = read_password()?;
            let body = json!({"name": name, "username": username, "password": password});
            ("PutSecret", c.berth("PutSecret", body).await?, "secret")
        }
        SecretsCommand::Ls => (
            "ListSecrets",
            c.berth("ListSecrets", json!({})).await?,
            "secrets",
        ),
        SecretsCommand::Rm { name } => (
            "DeleteSecret",
            c.berth("DeleteSecret", json!({"name": name})).await?,
            "secret",
        ),
    };
    if conn.json() {
        println!("{v}");
        return Ok(());
    }
    let rows = summaries(op, &v, field)?
        .into_iter()
        .map(|s| vec![s.name, s.username, when(s.updated_at)])
        .collect();
    table(&["NAME", "USERNAME", "UPDATED"], rows);
    Ok(())
}
