//! Redis URLs as the bench prints them. The bench's own `redis-server` is
//! [`broadcast_test_support::redis::RedisServer`], on a free loopback port,
//! never 6379: the machine's shared Redis is only used when given explicitly
//! (`--redis-url` / `REDIS_URL`).

/// A URL for logs: the password, if any, hidden.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://***@{}", &rest[at + 1..]),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn redacts_passwords() {
        assert_eq!(super::redact("redis://u:pw@h:1/0"), "redis://***@h:1/0");
        assert_eq!(super::redact("redis://127.0.0.1:7"), "redis://127.0.0.1:7");
    }
}
