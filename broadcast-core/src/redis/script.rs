//! Lua scripts called by their hash (`EVALSHA`), so that a script's text
//! is not sent, nor hashed by Redis, on every call.
//!
//! Redis keeps loaded scripts per node and forgets them on restart or
//! `SCRIPT FLUSH`: a `NOSCRIPT` answer is followed by one `EVAL` with the
//! text, which runs the script and loads it on the node that answered
//! (routed by the same keys, so this holds on Redis Cluster too, where each
//! node loads it the first time it runs it).

use fred::interfaces::LuaInterface;
use fred::types::{FromValue, Value};
use sha1::{Digest, Sha1};

/// A script's text and its SHA-1, as `EVALSHA` names it.
pub(crate) struct Script {
    text: &'static str,
    sha: String,
}

impl Script {
    pub(crate) fn new(text: &'static str) -> Self {
        let sha = Sha1::digest(text.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Self { text, sha }
    }

    /// Runs the script with the keys and arguments `call` makes (made again
    /// only when Redis does not know the script yet).
    pub(crate) async fn run<R, C>(
        &self,
        client: &C,
        call: impl Fn() -> (Vec<String>, Vec<Value>) + Send,
    ) -> Result<R, fred::error::Error>
    where
        R: FromValue,
        C: LuaInterface + Sync,
    {
        let (keys, args) = call();
        match client.evalsha(self.sha.as_str(), keys, args).await {
            Err(e) if e.details().starts_with("NOSCRIPT") => {
                let (keys, args) = call();
                client.eval(self.text, keys, args).await
            }
            answer => answer,
        }
    }

    #[cfg(test)]
    pub(crate) fn sha(&self) -> &str {
        &self.sha
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_is_the_one_redis_computes() {
        // `redis-cli SCRIPT LOAD "return 1"`
        assert_eq!(
            Script::new("return 1").sha(),
            "e0e1f9fabfc9d4800c877a703b823ac0578ff8db"
        );
    }
}
