//! Certificate pinning: trust exactly the server certificate whose SHA-256
//! fingerprint the user gave, whatever its issuer or names. Handshake
//! signatures are still verified, so a server must hold the pinned
//! certificate's private key.

use std::sync::Arc;

use rustls::DigitallySignedStruct;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// A verifier that accepts exactly one certificate, by fingerprint.
#[derive(Debug)]
pub(crate) struct PinVerifier {
    pin: [u8; 32],
    provider: Arc<CryptoProvider>,
}

/// Why a pinned handshake failed, as the user reads it: the fingerprint
/// the server presented (public), to hold against the pin.
#[derive(Debug)]
struct PinMismatch {
    presented: [u8; 32],
}

impl std::fmt::Display for PinMismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the server's certificate has SHA-256 fingerprint {}, not the pinned one \
             (compare the pin with the fingerprint `seccs kms serve` printed)",
            hex::encode(self.presented)
        )
    }
}

impl std::error::Error for PinMismatch {}

/// The words of a pin mismatch, when `tls` is the error one caused.
pub(crate) fn mismatch_of(tls: &rustls::Error) -> Option<String> {
    match tls {
        rustls::Error::InvalidCertificate(rustls::CertificateError::Other(other)) => other
            .0
            .downcast_ref::<PinMismatch>()
            .map(|m| format!("invalid peer certificate: {m}")),
        _ => None,
    }
}

impl PinVerifier {
    pub(crate) fn new(pin: [u8; 32], provider: Arc<CryptoProvider>) -> Self {
        Self { pin, provider }
    }
}

impl ServerCertVerifier for PinVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let fp: [u8; 32] = Sha256::digest(end_entity.as_ref()).into();
        if bool::from(fp.ct_eq(&self.pin)) {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::Other(rustls::OtherError(Arc::new(PinMismatch {
                    presented: fp,
                }))),
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
