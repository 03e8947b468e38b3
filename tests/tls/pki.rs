//! The certificates of the TLS tests, made with the openssl CLI: a CA, a
//! server certificate for `localhost` only, the same signed to have
//! expired, a client certificate for `certuser`, and an unrelated CA.

use std::io;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Extensions of each kind of certificate, and a minimal `openssl ca`
/// (the one openssl 3.0 command that signs with a start date in the past).
const OPENSSL_CNF: &str = "\
[req]
distinguished_name = dn
prompt = no

[dn]
CN = unused

[ca_ext]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash

[server_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid

[client_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid

[ca]
default_ca = test_ca

[test_ca]
dir = .
database = index.txt
new_certs_dir = issued
serial = serial
default_md = sha256
policy = any_name
unique_subject = no
email_in_dn = no

[any_name]
commonName = supplied
";

/// The files, in one directory.
#[derive(Debug, Clone)]
pub struct Pki {
    dir: PathBuf,
}

impl Pki {
    /// Makes every certificate and key in `dir` (created). Keys are 0600.
    pub fn generate(dir: &Path) -> io::Result<Pki> {
        std::fs::create_dir_all(dir.join("issued"))?;
        std::fs::write(dir.join("openssl.cnf"), OPENSSL_CNF)?;
        std::fs::write(dir.join("index.txt"), "")?;
        std::fs::write(dir.join("serial"), "1000\n")?;
        let pki = Pki {
            dir: dir.to_owned(),
        };
        pki.self_signed("ca", "voidrunner-db test CA")?;
        pki.self_signed("other_ca", "an unrelated CA")?;
        pki.signed("server", "localhost", "server_ext", &["-days", "30"])?;
        // Valid for a month in 2020: long expired.
        pki.signed(
            "expired",
            "localhost",
            "server_ext",
            &["-startdate", "200101000000Z", "-enddate", "200201000000Z"],
        )?;
        pki.signed("client", "certuser", "client_ext", &["-days", "30"])?;
        // A client certificate of a CA the server does not trust.
        pki.self_signed("rogue_client", "certuser")?;
        Ok(pki)
    }

    /// The certificates [`generate`](Self::generate) made in `dir`.
    pub fn open(dir: &Path) -> Pki {
        Pki {
            dir: dir.to_owned(),
        }
    }

    /// `{name}.crt`.
    pub fn crt(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.crt"))
    }

    /// `{name}.key`.
    pub fn key(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.key"))
    }

    fn self_signed(&self, name: &str, cn: &str) -> io::Result<()> {
        let (key, crt) = (format!("{name}.key"), format!("{name}.crt"));
        self.openssl(&[
            "req",
            "-x509",
            "-config",
            "openssl.cnf",
            "-extensions",
            "ca_ext",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &crt,
            "-days",
            "3650",
            "-subj",
            &format!("/CN={cn}"),
        ])?;
        private(&self.key(name))
    }

    fn signed(&self, name: &str, cn: &str, extensions: &str, validity: &[&str]) -> io::Result<()> {
        let (key, csr, crt) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.crt"),
        );
        self.openssl(&[
            "req",
            "-new",
            "-config",
            "openssl.cnf",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &csr,
            "-subj",
            &format!("/CN={cn}"),
        ])?;
        private(&self.key(name))?;
        let mut args = vec![
            "ca",
            "-batch",
            "-config",
            "openssl.cnf",
            "-cert",
            "ca.crt",
            "-keyfile",
            "ca.key",
            "-in",
            &csr,
            "-out",
            &crt,
            "-extensions",
            extensions,
            "-notext",
        ];
        args.extend_from_slice(validity);
        self.openssl(&args)
    }

    fn openssl(&self, args: &[&str]) -> io::Result<()> {
        let output = Command::new("openssl")
            .args(args)
            .current_dir(&self.dir)
            .output()
            .map_err(|e| io::Error::other(format!("running openssl (install it): {e}")))?;
        if output.status.success() {
            return Ok(());
        }
        Err(io::Error::other(format!(
            "openssl {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        )))
    }
}

/// Mode 0600, as the server and libpq's rule demand of a key.
pub fn private(path: &Path) -> io::Result<()> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
}
