//! Certificates for TLS test servers, made at test time with the `openssl`
//! CLI, and the harness's own TLS client settings.
//!
//! [`TestCerts::generate`] makes a CA and, signed by it, a server
//! certificate for `127.0.0.1` (an IP SAN, as rustls verifies it; also for
//! client auth, as cluster nodes present it to each other on the bus) and a
//! client certificate, all ECDSA P-256 (fast to make), valid for two days.
//! `openssl` falls under the skip policy of [`crate::env`]: `Ok(None)` (loud
//! skip) when absent outside CI, an error in CI.
//!
//! ```no_run
//! # use broadcast_test_support::redis::{AuthClients, HarnessError, Options, RedisServer, TestCerts, TlsOptions};
//! # async fn demo() -> Result<(), HarnessError> {
//! let Some(certs) = TestCerts::generate()? else { return Ok(()) };
//! let options = Options {
//!     tls: Some(TlsOptions { certs: certs.clone(), auth_clients: AuthClients::Yes }),
//!     ..Options::default()
//! };
//! let Some(server) = RedisServer::start_with(options).await? else { return Ok(()) };
//! assert!(server.url().starts_with("rediss://"));
//! # Ok(())
//! # }
//! ```

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use fred::rustls;
use fred::rustls::pki_types::pem::PemObject;
use fred::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use fred::types::config::{TlsConfig, TlsConnector};

use crate::env::{TempDir, current_test_name, locate_binary};
use crate::error::{HarnessError, io_err};
use crate::ports::LOOPBACK;

/// Prefix of the certificates' temp dirs.
const DIR_PREFIX: &str = "redis-tls-certs";

/// How a TLS test server treats client certificates (`--tls-auth-clients`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthClients {
    /// A client must present a certificate signed by the CA.
    Yes,
    /// A client may present one; if it does, it must be valid.
    Optional,
    /// Client certificates are not asked for.
    No,
}

impl AuthClients {
    fn arg(self) -> &'static str {
        match self {
            AuthClients::Yes => "yes",
            AuthClients::Optional => "optional",
            AuthClients::No => "no",
        }
    }
}

/// How a [`RedisServer`](super::RedisServer) serves TLS: only on its TLS
/// port (`--port 0`), with these certificates.
#[derive(Debug, Clone)]
pub struct TlsOptions {
    /// The CA and the server's certificate (the harness connects with the
    /// client certificate).
    pub certs: TestCerts,
    /// Whether clients must present a certificate.
    pub auth_clients: AuthClients,
}

impl TlsOptions {
    /// The `redis-server` arguments for the TLS port `port`.
    pub(crate) fn args(&self, port: u16) -> Vec<std::ffi::OsString> {
        let c = &self.certs;
        let mut args: Vec<std::ffi::OsString> = Vec::new();
        args.extend(["--port", "0", "--tls-port"].map(Into::into));
        args.push(port.to_string().into());
        args.push("--tls-cert-file".into());
        args.push(c.server_cert().into());
        args.push("--tls-key-file".into());
        args.push(c.server_key().into());
        args.push("--tls-ca-cert-file".into());
        args.push(c.ca().into());
        args.push("--tls-auth-clients".into());
        args.push(self.auth_clients.arg().into());
        args
    }
}

/// A CA, a server certificate for `127.0.0.1` and a client certificate, in
/// a temp dir removed when the last clone is dropped.
#[derive(Debug, Clone)]
pub struct TestCerts {
    dir: Arc<TempDir>,
}

impl TestCerts {
    /// Makes the certificates. `Ok(None)`: `openssl` is absent and not CI
    /// (skip message printed).
    pub fn generate() -> Result<Option<TestCerts>, HarnessError> {
        let Some(openssl) = locate_binary("openssl", &current_test_name())? else {
            return Ok(None);
        };
        let certs = TestCerts {
            dir: Arc::new(TempDir::new(DIR_PREFIX)?),
        };
        certs.make(&openssl)?;
        Ok(Some(certs))
    }

    fn make(&self, openssl: &Path) -> Result<(), HarnessError> {
        let d = self.dir.path();
        let write = |name: &str, text: String| {
            std::fs::write(d.join(name), text).map_err(io_err(format!("writing {name}")))
        };
        write(
            "ca.cnf",
            "[req]\ndistinguished_name = dn\n[dn]\n[v3_ca]\n\
             basicConstraints = critical,CA:TRUE\n\
             keyUsage = critical,keyCertSign,cRLSign\n\
             subjectKeyIdentifier = hash\n"
                .into(),
        )?;
        write(
            "server.ext",
            format!(
                "basicConstraints = CA:FALSE\nkeyUsage = critical,digitalSignature\n\
                 extendedKeyUsage = serverAuth,clientAuth\nsubjectAltName = IP:{LOOPBACK}\n"
            ),
        )?;
        write(
            "client.ext",
            "basicConstraints = CA:FALSE\nkeyUsage = critical,digitalSignature\n\
             extendedKeyUsage = clientAuth\n"
                .into(),
        )?;
        let run = |step: &str, args: &[&str]| run_openssl(openssl, d, step, args);
        let key = |name: &str| {
            run(
                &format!("making {name}"),
                &[
                    "genpkey",
                    "-algorithm",
                    "EC",
                    "-pkeyopt",
                    "ec_paramgen_curve:P-256",
                    "-out",
                    name,
                ],
            )
        };
        key("ca.key")?;
        run(
            "making the CA certificate",
            &[
                "req",
                "-x509",
                "-new",
                "-key",
                "ca.key",
                "-out",
                "ca.crt",
                "-days",
                "2",
                "-subj",
                "/CN=broadcast test CA",
                "-config",
                "ca.cnf",
                "-extensions",
                "v3_ca",
            ],
        )?;
        for (who, cn) in [("server", LOOPBACK), ("client", "broadcast test client")] {
            key(&format!("{who}.key"))?;
            let (csr, crt, ext) = (
                format!("{who}.csr"),
                format!("{who}.crt"),
                format!("{who}.ext"),
            );
            run(
                &format!("making the {who} request"),
                &[
                    "req",
                    "-new",
                    "-key",
                    &format!("{who}.key"),
                    "-out",
                    &csr,
                    "-subj",
                    &format!("/CN={cn}"),
                    "-config",
                    "ca.cnf",
                ],
            )?;
            run(
                &format!("signing the {who} certificate"),
                &[
                    "x509",
                    "-req",
                    "-in",
                    &csr,
                    "-CA",
                    "ca.crt",
                    "-CAkey",
                    "ca.key",
                    "-set_serial",
                    if who == "server" { "2" } else { "3" },
                    "-out",
                    &crt,
                    "-days",
                    "2",
                    "-extfile",
                    &ext,
                ],
            )?;
        }
        Ok(())
    }

    /// The CA certificate (PEM).
    pub fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.crt")
    }

    /// The server's certificate for `127.0.0.1` (PEM).
    pub fn server_cert(&self) -> PathBuf {
        self.dir.path().join("server.crt")
    }

    /// The server's private key (PEM).
    pub fn server_key(&self) -> PathBuf {
        self.dir.path().join("server.key")
    }

    /// The client certificate (PEM).
    pub fn client_cert(&self) -> PathBuf {
        self.dir.path().join("client.crt")
    }

    /// The client's private key (PEM, PKCS#8).
    pub fn client_key(&self) -> PathBuf {
        self.dir.path().join("client.key")
    }

    /// fred's TLS settings for the harness's own connections: trusts this
    /// CA, presents the client certificate.
    pub fn client_tls(&self) -> Result<TlsConfig, HarnessError> {
        let tls_err = |what: &Path, reason: String| HarnessError::Tls {
            what: what.display().to_string(),
            reason,
        };
        let load_certs = |path: &Path| {
            CertificateDer::pem_file_iter(path)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|e| tls_err(path, e.to_string()))
        };
        let mut roots = rustls::RootCertStore::empty();
        for cert in load_certs(&self.ca())? {
            roots
                .add(cert)
                .map_err(|e| tls_err(&self.ca(), e.to_string()))?;
        }
        let key = PrivateKeyDer::from_pem_file(self.client_key())
            .map_err(|e| tls_err(&self.client_key(), e.to_string()))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| tls_err(&self.ca(), e.to_string()))?
            .with_root_certificates(roots)
            .with_client_auth_cert(load_certs(&self.client_cert())?, key)
            .map_err(|e| tls_err(&self.client_cert(), e.to_string()))?;
        Ok(TlsConfig::from(TlsConnector::from(config)))
    }
}

fn run_openssl(openssl: &Path, dir: &Path, step: &str, args: &[&str]) -> Result<(), HarnessError> {
    let out = Command::new(openssl)
        .args(args)
        .current_dir(dir)
        .output()
        .map_err(io_err(format!("running openssl ({step})")))?;
    if out.status.success() {
        return Ok(());
    }
    Err(HarnessError::Openssl {
        step: step.to_owned(),
        status: out.status.to_string(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn makes_a_ca_a_server_and_a_client_certificate() {
        let Some(certs) = TestCerts::generate().unwrap() else {
            return;
        };
        for f in [
            certs.ca(),
            certs.server_cert(),
            certs.server_key(),
            certs.client_cert(),
            certs.client_key(),
        ] {
            assert!(f.is_file(), "{}", f.display());
        }
        certs.client_tls().unwrap();
        let dir = certs.dir.path().to_path_buf();
        drop(certs);
        assert!(!dir.exists());
    }
}
