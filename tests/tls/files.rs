//! `DbConfig::check_tls_files`: the certificate and key files a
//! configuration names, read and checked as a connection would read them,
//! with no server involved (the configurations below point at a port
//! nobody listens on).

use std::path::{Path, PathBuf};
use std::process::Command;

use voidrunner_db::{DbConfig, Error};

use crate::tls_cluster;

/// A configuration for a server that is not there, with `params`.
fn nowhere(params: &str) -> DbConfig {
    DbConfig::from_url(&format!("postgres://app@127.0.0.1:1/app?{params}")).unwrap()
}

fn refused(params: &str) -> String {
    match nowhere(params).check_tls_files() {
        Err(Error::Config { message }) => message,
        other => panic!("{params}: {other:?}"),
    }
}

fn scratch(parent: &Path) -> PathBuf {
    let dir = parent.join(format!("check-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test]
async fn usable_files_pass_without_a_server() {
    let pki = &tls_cluster().await.pki;
    let (ca, crt, key) = (pki.crt("ca"), pki.crt("client"), pki.key("client"));
    for mode in ["verify-full", "verify-ca", "require"] {
        nowhere(&format!(
            "sslmode={mode}&sslrootcert={}&sslcert={}&sslkey={}",
            ca.display(),
            crt.display(),
            key.display()
        ))
        .check_tls_files()
        .unwrap_or_else(|e| panic!("{mode}: {e}"));
    }
    // Nothing named, nothing to read.
    nowhere("sslmode=require").check_tls_files().unwrap();
    // Files a mode does not read are not checked, as at connect.
    let missing = Path::new("/nonexistent/ca.pem").display().to_string();
    nowhere(&format!(
        "sslmode=disable&sslrootcert={missing}&sslcert={missing}&sslkey={missing}"
    ))
    .check_tls_files()
    .unwrap();
    nowhere(&format!("sslmode=prefer&sslrootcert={missing}"))
        .check_tls_files()
        .unwrap();
    // The settings themselves are checked first.
    let err = nowhere(&format!("sslmode=verify-full&sslcert={}", crt.display()))
        .check_tls_files()
        .unwrap_err();
    assert!(err.to_string().contains("go together"), "{err}");
}

#[tokio::test]
async fn each_unusable_file_is_named_with_what_is_wrong() {
    let pki = &tls_cluster().await.pki;
    let dir = scratch(pki.crt("ca").parent().unwrap());
    let key_text = std::fs::read_to_string(pki.key("client")).unwrap();
    let secret_line = key_text.lines().nth(1).unwrap().to_owned();
    let (ca, crt, key) = (pki.crt("ca"), pki.crt("client"), pki.key("client"));

    let file = |name: &str, content: &[u8]| {
        let path = dir.join(name);
        std::fs::write(&path, content).unwrap();
        crate::pki::private(&path).unwrap();
        path
    };
    let missing = dir.join("missing.pem");
    let empty = file("empty.pem", b"");
    let key_as_cert = file("key-as-cert.pem", key_text.as_bytes());
    let cert_as_key = file("cert-as-key.key", &std::fs::read(&crt).unwrap());
    let malformed = file(
        "malformed.pem",
        b"-----BEGIN CERTIFICATE-----\n@@not base64@@\n-----END CERTIFICATE-----\n",
    );
    let der = dir.join("ca.der");
    let converted = Command::new("openssl")
        .args(["x509", "-outform", "der", "-in"])
        .arg(&ca)
        .arg("-out")
        .arg(&der)
        .status()
        .unwrap();
    assert!(converted.success());
    let open_key = file("open.key", key_text.as_bytes());
    std::fs::set_permissions(
        &open_key,
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .unwrap();
    let other_key = pki.key("server");

    let root = |path: &Path| format!("sslmode=verify-full&sslrootcert={}", path.display());
    let pair = |cert: &Path, key: &Path| {
        format!(
            "sslmode=require&sslcert={}&sslkey={}",
            cert.display(),
            key.display()
        )
    };
    let mut cases = vec![
        (root(&missing), missing.clone(), "no such file"),
        (root(&dir), dir.clone(), "is a directory"),
        (root(&empty), empty.clone(), "the file is empty"),
        (
            root(&key_as_cert),
            key_as_cert.clone(),
            "holds a private key",
        ),
        (root(&der), der.clone(), "not text (a DER file?"),
        (root(&malformed), malformed.clone(), "malformed"),
        (
            pair(&key_as_cert, &key),
            key_as_cert.clone(),
            "no PEM certificate",
        ),
        (pair(&crt, &missing), missing.clone(), "no such file"),
        (
            pair(&crt, &cert_as_key),
            cert_as_key.clone(),
            "holds a certificate",
        ),
        (
            pair(&crt, &open_key),
            open_key.clone(),
            "group or world access",
        ),
        (
            pair(&crt, &other_key),
            other_key.clone(),
            "not the key of the (first) certificate",
        ),
    ];
    // Root reads every file whatever its mode: only another user can be
    // refused one.
    let unreadable = file("unreadable.pem", &std::fs::read(&ca).unwrap());
    std::fs::set_permissions(
        &unreadable,
        std::os::unix::fs::PermissionsExt::from_mode(0o000),
    )
    .unwrap();
    if std::fs::read(&unreadable).is_err() {
        cases.push((root(&unreadable), unreadable.clone(), "permission denied"));
    }
    for (params, names, says) in cases {
        let message = refused(&params);
        assert!(message.contains(&names.display().to_string()), "{message}");
        assert!(message.contains(says), "{params}: {message}");
        assert!(!message.contains(&secret_line), "{message}");
    }
    // The key itself is fine once the other file is.
    nowhere(&pair(&crt, &key)).check_tls_files().unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}
