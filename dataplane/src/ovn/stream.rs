//! Byte streams to an OVSDB server: unix socket, TCP, or TLS over TCP (rustls, `ring`
//! provider).
//!
//! TLS is mutual as OVS requires (the server refuses a client without a certificate), and
//! like OVS (lib/stream-ssl.c) the client checks the server's chain against the CA but not
//! its name: certificates made by `ovs-pki` name no host. [`NoHostnameVerifier`] wraps
//! rustls' WebPKI verifier and forgives only the "not valid for this name" error.
//!
//! Sockets are blocking with a read timeout: the client runs on its own control thread.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, ClientConnection, DigitallySignedStruct, RootCertStore,
    SignatureScheme, StreamOwned,
};

use super::remote::Remote;

/// The PEM files of an `ssl:` remote, as `ovn-nbctl --private-key/--certificate/--ca-cert`
/// take them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The client's private key (PKCS#8, PKCS#1 or SEC1 PEM). `None` with `certificate`
    /// `None` connects without a client certificate (which OVS servers refuse).
    pub private_key: Option<PathBuf>,
    /// The client's certificate chain (PEM), the leaf first.
    pub certificate: Option<PathBuf>,
    /// The CA certificate(s) the server's chain must lead to (PEM).
    pub ca_cert: PathBuf,
}

/// Builds the rustls client configuration from the PEM files; errors name the file.
pub fn tls_config(files: &TlsFiles) -> Result<Arc<ClientConfig>, String> {
    // Deprecated in rustls 0.23.48 only because ring has no post-quantum key exchange;
    // ovsdb-server (OpenSSL 3.0 in Debian 12) offers none either, and aws-lc-rs builds C.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    for cert in certs(&files.ca_cert)? {
        roots.add(cert).map_err(|e| {
            format!(
                "{}: not a usable CA certificate: {e}",
                files.ca_cert.display()
            )
        })?;
    }
    let inner = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| format!("{}: {e}", files.ca_cert.display()))?;
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(NoHostnameVerifier { inner }));
    let config = match (&files.certificate, &files.private_key) {
        (Some(cert), Some(key)) => {
            let chain = certs(cert)?;
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| format!("{}: no private key: {e}", key.display()))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("{}: {e}", cert.display()))?
        }
        (None, None) => builder.with_no_client_auth(),
        _ => return Err("TLS: give both a certificate and a private key, or neither".into()),
    };
    Ok(Arc::new(config))
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let list = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if list.is_empty() {
        return Err(format!("{}: no certificate in the file", path.display()));
    }
    Ok(list)
}

/// Checks the server's chain against the CA as WebPKI does, but accepts a certificate that is
/// not valid for the name dialled (OVS checks no hostname).
#[derive(Debug)]
pub struct NoHostnameVerifier {
    inner: Arc<WebPkiServerVerifier>,
}

impl ServerCertVerifier for NoHostnameVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// An open connection to one remote.
pub enum Stream {
    /// `unix:`
    Unix(UnixStream),
    /// `tcp:`
    Tcp(TcpStream),
    /// `ssl:`
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl Stream {
    /// Connects (TCP within `timeout`) and, for `ssl:`, completes the TLS handshake.
    pub fn connect(
        remote: &Remote,
        tls: Option<&Arc<ClientConfig>>,
        timeout: Duration,
    ) -> io::Result<Stream> {
        let s = match remote {
            Remote::Unix(p) => Stream::Unix(UnixStream::connect(p)?),
            Remote::Tcp(a) => {
                let s = TcpStream::connect_timeout(a, timeout)?;
                s.set_nodelay(true)?;
                Stream::Tcp(s)
            }
            Remote::Ssl(a) => {
                let config = tls.ok_or_else(|| {
                    io::Error::new(io::ErrorKind::InvalidInput, "ssl: remote without TLS files")
                })?;
                let mut sock = TcpStream::connect_timeout(a, timeout)?;
                sock.set_nodelay(true)?;
                sock.set_read_timeout(Some(timeout))?;
                let name = ServerName::IpAddress(a.ip().into());
                let mut conn =
                    ClientConnection::new(config.clone(), name).map_err(io::Error::other)?;
                while conn.is_handshaking() {
                    conn.complete_io(&mut sock)?;
                }
                Stream::Tls(Box::new(StreamOwned::new(conn, sock)))
            }
        };
        Ok(s)
    }

    /// Sets how long one read may block.
    pub fn set_read_timeout(&self, d: Duration) -> io::Result<()> {
        match self {
            Stream::Unix(s) => s.set_read_timeout(Some(d)),
            Stream::Tcp(s) => s.set_read_timeout(Some(d)),
            Stream::Tls(s) => s.sock.set_read_timeout(Some(d)),
        }
    }

    /// Closes both directions (a TLS close_notify first).
    pub fn shutdown(&mut self) {
        match self {
            Stream::Unix(s) => {
                let _ = s.shutdown(Shutdown::Both);
            }
            Stream::Tcp(s) => {
                let _ = s.shutdown(Shutdown::Both);
            }
            Stream::Tls(s) => {
                s.conn.send_close_notify();
                let _ = s.conn.complete_io(&mut s.sock);
                let _ = s.sock.shutdown(Shutdown::Both);
            }
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Unix(s) => s.read(buf),
            Stream::Tcp(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Unix(s) => s.write(buf),
            Stream::Tcp(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Unix(s) => s.flush(),
            Stream::Tcp(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}
