//! AWS Signature Version 4: verifying the requests clients sign. The
//! canonical request and the signing key are berth-client's, which signs.

use axum::http::HeaderMap;
use berth_client::sigv4::{
    AMZ_DATE_FORMAT, canonical_request, sha256_hex, signing_key, string_to_sign,
};
use chrono::{DateTime, NaiveDateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::credentials::Credentials;

type HmacSha256 = Hmac<Sha256>;

/// Largest difference allowed between the request's time and the server's.
pub const MAX_SKEW_SECS: i64 = 300;

/// Why a request's signature was refused; each is one AWS error code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("Missing Authentication Token")]
    Missing,
    #[error("{0}")]
    Incomplete(String),
    #[error("The security token included in the request is invalid: unknown access key `{0}`")]
    UnknownKey(String),
    #[error(
        "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method."
    )]
    BadSignature,
    #[error("Signature expired: {0}")]
    Expired(String),
}

impl AuthError {
    /// The AWS error code and HTTP status.
    pub fn code_and_status(&self) -> (&'static str, u16) {
        match self {
            AuthError::Missing => ("MissingAuthenticationTokenException", 403),
            AuthError::Incomplete(_) => ("IncompleteSignatureException", 400),
            AuthError::UnknownKey(_) => ("UnrecognizedClientException", 403),
            AuthError::BadSignature => ("InvalidSignatureException", 403),
            AuthError::Expired(_) => ("InvalidSignatureException", 403),
        }
    }
}

/// The parts of an `Authorization: AWS4-HMAC-SHA256 ...` header.
#[derive(Debug, PartialEq, Eq)]
struct Authorization {
    key_id: String,
    date: String,
    region: String,
    service: String,
    signed: Vec<String>,
    signature: String,
}

fn parse_authorization(h: &str) -> Result<Authorization, AuthError> {
    let incomplete = |m: &str| AuthError::Incomplete(format!("Authorization header: {m}"));
    let rest = h
        .strip_prefix("AWS4-HMAC-SHA256 ")
        .ok_or_else(|| incomplete("only AWS4-HMAC-SHA256 is supported"))?;
    let (mut cred, mut signed, mut sig) = (None, None, None);
    for part in rest.split(',') {
        let (k, v) = part.trim().split_once('=').ok_or_else(|| {
            incomplete(&format!(
                "`{}` is not key=value",
                berth_core::quote::Quoted(part.trim())
            ))
        })?;
        match k {
            "Credential" => cred = Some(v),
            "SignedHeaders" => signed = Some(v),
            "Signature" => sig = Some(v),
            _ => {}
        }
    }
    let cred = cred.ok_or_else(|| incomplete("no Credential"))?;
    let signed = signed.ok_or_else(|| incomplete("no SignedHeaders"))?;
    let signature = sig.ok_or_else(|| incomplete("no Signature"))?;
    let c: Vec<&str> = cred.split('/').collect();
    let [key_id, date, region, service, term] = c[..] else {
        return Err(incomplete(
            "Credential is not KEY/DATE/REGION/SERVICE/aws4_request",
        ));
    };
    if term != "aws4_request" {
        return Err(incomplete("Credential does not end in aws4_request"));
    }
    Ok(Authorization {
        key_id: key_id.into(),
        date: date.into(),
        region: region.into(),
        service: service.into(),
        signed: signed.split(';').map(str::to_ascii_lowercase).collect(),
        signature: signature.into(),
    })
}

/// All headers as (lowercase name, value) pairs; values that are not text are dropped.
fn header_pairs(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .filter_map(|(n, v)| {
            v.to_str()
                .ok()
                .map(|v| (n.as_str().to_owned(), v.to_owned()))
        })
        .collect()
}

/// What [`precheck`] found in the headers: the parsed Authorization and
/// the request's time, for [`verify_signature`] once the body is read.
#[derive(Debug)]
pub struct Prechecked {
    auth: Authorization,
    amz_date: String,
}

/// Everything about a request's signature that the headers alone can tell:
/// the Authorization header parses, names the server's key, and its time is
/// within [`MAX_SKEW_SECS`] of `now`. A request that fails here is refused
/// before a byte of its body is read.
pub fn precheck(
    creds: &Credentials,
    headers: &HeaderMap,
    now: DateTime<Utc>,
) -> Result<Prechecked, AuthError> {
    let auth = headers.get("authorization").ok_or(AuthError::Missing)?;
    let auth = parse_authorization(
        auth.to_str()
            .map_err(|_| AuthError::Incomplete("Authorization header is not text".into()))?,
    )?;
    let amz_date = headers
        .get("x-amz-date")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| AuthError::Incomplete("no X-Amz-Date header".into()))?;
    let when = NaiveDateTime::parse_from_str(amz_date, AMZ_DATE_FORMAT)
        .map_err(|_| {
            AuthError::Incomplete(format!(
                "X-Amz-Date `{}` is not YYYYMMDDTHHMMSSZ",
                berth_core::quote::Quoted(amz_date)
            ))
        })?
        .and_utc();
    if !amz_date.starts_with(&auth.date) {
        return Err(AuthError::Incomplete(format!(
            "Credential date {} is not the date of X-Amz-Date {amz_date}",
            berth_core::quote::Quoted(&auth.date)
        )));
    }
    if !auth.signed.iter().any(|h| h == "host") {
        return Err(AuthError::Incomplete(
            "SignedHeaders must include host".into(),
        ));
    }
    if auth.key_id != creds.access_key_id {
        return Err(AuthError::UnknownKey(
            berth_core::quote::Quoted(&auth.key_id).to_string(),
        ));
    }
    let skew = (now - when).num_seconds();
    if skew.abs() > MAX_SKEW_SECS {
        return Err(AuthError::Expired(format!(
            "request time {amz_date} is {}s from the server's time {}; at most {MAX_SKEW_SECS}s are allowed",
            skew.abs(),
            now.format(AMZ_DATE_FORMAT)
        )));
    }
    Ok(Prechecked {
        auth,
        amz_date: amz_date.to_owned(),
    })
}

/// The signature itself, over the headers and the body read.
pub fn verify_signature(
    creds: &Credentials,
    pre: &Prechecked,
    method: &str,
    path: &str,
    query: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), AuthError> {
    let auth = &pre.auth;
    let payload_hash = sha256_hex(body);
    if let Some(h) = headers
        .get("x-amz-content-sha256")
        .and_then(|v| v.to_str().ok())
        && h != "UNSIGNED-PAYLOAD"
        && h != payload_hash
    {
        return Err(AuthError::BadSignature);
    }
    let canonical = canonical_request(
        method,
        path,
        query,
        &header_pairs(headers),
        &auth.signed,
        &payload_hash,
    );
    let scope = format!(
        "{}/{}/{}/aws4_request",
        auth.date, auth.region, auth.service
    );
    let sts = string_to_sign(&pre.amz_date, &scope, &canonical);
    let key = signing_key(
        &creds.secret_access_key,
        &auth.date,
        &auth.region,
        &auth.service,
    );
    let given = hex::decode(&auth.signature).map_err(|_| AuthError::BadSignature)?;
    let mut mac = <HmacSha256 as Mac>::new_from_slice(&key).map_err(|_| AuthError::BadSignature)?;
    mac.update(sts.as_bytes());
    // Constant-time comparison.
    mac.verify_slice(&given)
        .map_err(|_| AuthError::BadSignature)
}

/// Verifies a request's SigV4 signature against `creds`, at time `now`:
/// [`precheck`], then [`verify_signature`] (the API runs the two apart,
/// reading the body in between).
#[cfg(test)]
pub fn verify(
    creds: &Credentials,
    method: &str,
    path: &str,
    query: &str,
    headers: &HeaderMap,
    body: &[u8],
    now: DateTime<Utc>,
) -> Result<(), AuthError> {
    let pre = precheck(creds, headers, now)?;
    verify_signature(creds, &pre, method, path, query, headers, body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::header::{HeaderName, HeaderValue};
    use chrono::TimeZone;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.append(
                HeaderName::from_bytes(n.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    fn example_creds() -> Credentials {
        Credentials {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
        }
    }

    /// AWS's SigV4 test suite, `get-vanilla`.
    #[test]
    fn aws_test_suite_get_vanilla() {
        let h = headers(&[
            ("host", "example.amazonaws.com"),
            ("x-amz-date", "20150830T123600Z"),
            (
                "authorization",
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
            ),
        ]);
        let now = Utc.with_ymd_and_hms(2015, 8, 30, 12, 36, 0).unwrap();
        assert_eq!(
            verify(&example_creds(), "GET", "/", "", &h, b"", now),
            Ok(())
        );
    }

    /// An ECS ListClusters request as botocore 1.43 signed it (computed
    /// with botocore's SigV4Auth, pasted here).
    fn botocore_list_clusters() -> HeaderMap {
        headers(&[
            ("host", "127.0.0.1:7171"),
            ("content-type", "application/x-amz-json-1.1"),
            (
                "x-amz-target",
                "AmazonEC2ContainerServiceV20141113.ListClusters",
            ),
            ("x-amz-date", "20261125T160104Z"),
            (
                "authorization",
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261125/us-east-1/ecs/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature=c681554a3d47aba2e057c8d10dc8fba431b54060ac0c54cbefc63d7ba3f194f5",
            ),
        ])
    }

    #[test]
    fn botocore_vector_verifies_and_tampering_fails() {
        let now = Utc.with_ymd_and_hms(2026, 11, 25, 16, 3, 0).unwrap();
        let h = botocore_list_clusters();
        assert_eq!(
            verify(&example_creds(), "POST", "/", "", &h, b"{}", now),
            Ok(())
        );
        // Another body, another secret, another key id, a later time: refused.
        assert_eq!(
            verify(&example_creds(), "POST", "/", "", &h, b"{ }", now),
            Err(AuthError::BadSignature)
        );
        let other = Credentials {
            secret_access_key: "x".into(),
            ..example_creds()
        };
        assert_eq!(
            verify(&other, "POST", "/", "", &h, b"{}", now),
            Err(AuthError::BadSignature)
        );
        let other = Credentials {
            access_key_id: "AKIDOTHER".into(),
            ..example_creds()
        };
        assert!(matches!(
            verify(&other, "POST", "/", "", &h, b"{}", now),
            Err(AuthError::UnknownKey(_))
        ));
        let late = Utc.with_ymd_and_hms(2026, 11, 25, 16, 6, 5).unwrap();
        assert!(matches!(
            verify(&example_creds(), "POST", "/", "", &h, b"{}", late),
            Err(AuthError::Expired(_))
        ));
        let mut h2 = h.clone();
        h2.insert(
            "x-amz-target",
            HeaderValue::from_static("AmazonEC2ContainerServiceV20141113.DeleteCluster"),
        );
        assert_eq!(
            verify(&example_creds(), "POST", "/", "", &h2, b"{}", now),
            Err(AuthError::BadSignature)
        );
    }

    #[test]
    fn missing_and_malformed_headers_are_named() {
        let now = Utc::now();
        assert_eq!(
            verify(
                &example_creds(),
                "POST",
                "/",
                "",
                &HeaderMap::new(),
                b"",
                now
            ),
            Err(AuthError::Missing)
        );
        for bad in [
            "Basic abc",
            "AWS4-HMAC-SHA256 Credential=A/B, SignedHeaders=host, Signature=00",
            "AWS4-HMAC-SHA256 garbage",
        ] {
            let h = headers(&[
                ("authorization", bad),
                ("x-amz-date", "20261125T160104Z"),
                ("host", "h"),
            ]);
            assert!(
                matches!(
                    verify(&example_creds(), "POST", "/", "", &h, b"", now),
                    Err(AuthError::Incomplete(_))
                ),
                "{bad}"
            );
        }
    }
}
