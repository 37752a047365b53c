//! The HTTP client for the server's outbound calls: event targets, chat
//! messages and Step Functions HTTP tasks.
//!
//! TLS is rustls with the Mozilla root certificates built in, plus the
//! certificates of `Config::extra_ca_certs` (a PEM bundle; `gantry server`
//! reads `GANTRY_EXTRA_CA_CERTS`) for endpoints behind a private CA.
//! Redirects are not followed: a 3xx is an answer like any other.

use std::time::Duration;

use crate::config::Config;

/// A client with the server's trust roots; the error names the CA file.
pub(crate) fn client(config: &Config, timeout: Duration) -> Result<reqwest::Client, String> {
    let mut builder = reqwest::Client::builder()
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none());
    if let Some(path) = &config.extra_ca_certs {
        let pem = std::fs::read(path)
            .map_err(|e| format!("reading the extra CA certificates {}: {e}", path.display()))?;
        let certificates = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
            format!(
                "the extra CA certificates {} are not a PEM bundle: {e}",
                path.display()
            )
        })?;
        if certificates.is_empty() {
            return Err(format!(
                "the extra CA certificates {} hold no certificate",
                path.display()
            ));
        }
        for certificate in certificates {
            builder = builder.add_root_certificate(certificate);
        }
    }
    builder
        .build()
        .map_err(|e| format!("building the HTTP client: {e}"))
}
