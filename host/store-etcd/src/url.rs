//! `etcd://H1:2379,H2:2379[/prefix]`: where a store on etcd lives.

use std::fmt;

/// The prefix every key of a store lives under when the URL names none.
pub const DEFAULT_PREFIX: &str = "/berth";

/// A parsed `etcd://` store URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdUrl {
    /// `host:port` of each member, as given.
    pub endpoints: Vec<String>,
    /// The key prefix, starting with `/` and without a trailing one.
    pub prefix: String,
}

/// Why a store URL was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("store URL `{url}`: {reason}")]
pub struct UrlError {
    /// The URL as given.
    pub url: String,
    /// What is wrong with it.
    pub reason: String,
}

impl EtcdUrl {
    /// Parses `etcd://H1:P1,H2:P2[/prefix]`.
    pub fn parse(url: &str) -> Result<EtcdUrl, UrlError> {
        let bad = |reason: &str| UrlError {
            url: url.to_owned(),
            reason: reason.to_owned(),
        };
        let rest = url
            .strip_prefix("etcd://")
            .ok_or_else(|| bad("must start with etcd://"))?;
        let (hosts, prefix) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, DEFAULT_PREFIX),
        };
        let prefix = prefix.trim_end_matches('/');
        let prefix = if prefix.is_empty() {
            DEFAULT_PREFIX
        } else {
            prefix
        };
        if prefix.contains('\0') {
            return Err(bad("the prefix contains NUL"));
        }
        let mut endpoints = Vec::new();
        for host in hosts.split(',') {
            let (name, port) = host
                .rsplit_once(':')
                .ok_or_else(|| bad(&format!("member `{host}` has no :port")))?;
            if name.is_empty() {
                return Err(bad(&format!("member `{host}` has no host")));
            }
            port.parse::<u16>()
                .map_err(|_| bad(&format!("member `{host}`: `{port}` is not a port")))?;
            endpoints.push(host.to_owned());
        }
        Ok(EtcdUrl {
            endpoints,
            prefix: prefix.to_owned(),
        })
    }

    /// The members as gRPC endpoints.
    pub fn grpc_endpoints(&self) -> Vec<String> {
        self.endpoints
            .iter()
            .map(|e| format!("http://{e}"))
            .collect()
    }
}

impl fmt::Display for EtcdUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "etcd://{}{}", self.endpoints.join(","), self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_members_and_prefix() {
        let u = EtcdUrl::parse("etcd://10.0.0.1:2379,h2:2379/prod/berth/").expect("parses");
        assert_eq!(u.endpoints, vec!["10.0.0.1:2379", "h2:2379"]);
        assert_eq!(u.prefix, "/prod/berth");
        assert_eq!(u.to_string(), "etcd://10.0.0.1:2379,h2:2379/prod/berth");
        let u = EtcdUrl::parse("etcd://127.0.0.1:2379").expect("parses");
        assert_eq!(u.prefix, DEFAULT_PREFIX);
        assert_eq!(u.grpc_endpoints(), vec!["http://127.0.0.1:2379"]);
    }

    #[test]
    fn refuses_what_it_cannot_use_naming_it() {
        for (url, says) in [
            ("http://h:1", "etcd://"),
            ("etcd://h", "no :port"),
            ("etcd://h:port", "`port` is not a port"),
            ("etcd://:2379", "no host"),
            ("etcd://h:1,", "member ``"),
        ] {
            let e = EtcdUrl::parse(url).expect_err(url);
            assert!(e.to_string().contains(says), "{url}: {e}");
        }
    }
}
