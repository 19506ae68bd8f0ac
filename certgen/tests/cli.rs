//! The command line keeps one CA and issues one certificate per node with
//! only that node's names: it reuses the CA in its directory, creates one
//! only when asked and never replaces it, and refuses to let two members
//! speak for one address or be named by one host name.

use std::path::{Path, PathBuf};

use rpcnet_certs::cli::{run, Outcome};
use rpcnet_certs::Error;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{ExtendedKeyUsage, X509Certificate};

/// A fresh directory for one test, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(test: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("rpcnet-certs-cli-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        Self(dir)
    }

    fn certs(&self, flags: &[&str]) -> Result<Outcome, Error> {
        let mut args = vec!["--out".to_string(), self.0.display().to_string()];
        args.extend(flags.iter().map(|s| s.to_string()));
        run(args)
    }

    fn read(&self, file: &str) -> String {
        std::fs::read_to_string(self.0.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"))
    }

    fn files(&self) -> Vec<String> {
        let mut files: Vec<String> = std::fs::read_dir(&self.0)
            .map(|entries| {
                entries
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        files.sort();
        files
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn der(pem: &str) -> Vec<u8> {
    x509_parser::pem::parse_x509_pem(pem.as_bytes())
        .unwrap()
        .1
        .contents
}

/// A certificate's names as `DNS:x`, `IP:x`, `URI:x`.
fn names(pem: &str) -> Vec<String> {
    let der = der(pem);
    let (_, cert) = X509Certificate::from_der(&der).unwrap();
    let Some(san) = cert.subject_alternative_name().unwrap() else {
        return Vec::new();
    };
    san.value
        .general_names
        .iter()
        .map(|name| match name {
            GeneralName::DNSName(n) => format!("DNS:{n}"),
            GeneralName::URI(u) => format!("URI:{u}"),
            GeneralName::IPAddress(ip) => match ip.len() {
                4 => format!(
                    "IP:{}",
                    std::net::Ipv4Addr::from(<[u8; 4]>::try_from(*ip).unwrap())
                ),
                _ => format!(
                    "IP:{}",
                    std::net::Ipv6Addr::from(<[u8; 16]>::try_from(*ip).unwrap())
                ),
            },
            other => format!("{other:?}"),
        })
        .collect()
}

fn extended_key_usage(pem: &str) -> (bool, bool) {
    let der = der(pem);
    let (_, cert) = X509Certificate::from_der(&der).unwrap();
    let eku: ExtendedKeyUsage = cert.extended_key_usage().unwrap().unwrap().value.clone();
    (eku.server_auth, eku.client_auth)
}

/// Whether `ca_pem` signed `cert_pem`.
fn signed_by(cert_pem: &str, ca_pem: &str) -> bool {
    let (cert_der, ca_der) = (der(cert_pem), der(ca_pem));
    let (_, cert) = X509Certificate::from_der(&cert_der).unwrap();
    let (_, ca) = X509Certificate::from_der(&ca_der).unwrap();
    cert.issuer() == ca.subject() && cert.verify_signature(Some(ca.public_key())).is_ok()
}

use x509_parser::prelude::FromDer;

#[test]
fn without_a_ca_nothing_is_issued_and_the_error_names_new_ca() {
    let dir = Scratch::new("no-ca");
    let err = dir.certs(&["--member", "a"]).unwrap_err();
    assert!(matches!(&err, Error::NoCa(d) if d == &dir.0), "{err:?}");
    assert!(err.to_string().contains("--new-ca"), "{err}");
    assert!(dir.files().is_empty(), "{:?}", dir.files());
}

#[test]
fn the_ca_is_created_once_and_reused_by_later_runs() {
    let dir = Scratch::new("reuse");
    let created = dir.certs(&["--new-ca", "--member", "a", "--san", "10.0.0.2"]);
    assert!(
        matches!(created, Ok(Outcome::Issued { new_ca: true, .. })),
        "{created:?}"
    );
    let (ca, ca_key) = (dir.read("ca.pem"), dir.read("ca-key.pem"));

    let reused = dir.certs(&["--member", "b", "--san", "10.0.0.3"]);
    assert!(
        matches!(reused, Ok(Outcome::Issued { new_ca: false, .. })),
        "{reused:?}"
    );
    assert_eq!(
        (dir.read("ca.pem"), dir.read("ca-key.pem")),
        (ca.clone(), ca_key.clone())
    );
    assert!(signed_by(&dir.read("a.pem"), &ca));
    assert!(signed_by(&dir.read("b.pem"), &ca));
}

#[test]
fn an_existing_ca_is_never_replaced() {
    let dir = Scratch::new("no-replace");
    dir.certs(&["--new-ca"]).unwrap();
    let (ca, ca_key) = (dir.read("ca.pem"), dir.read("ca-key.pem"));
    let err = dir
        .certs(&["--new-ca", "--member", "a", "--san", "10.0.0.2"])
        .unwrap_err();
    assert!(matches!(err, Error::CaExists(_)), "{err:?}");
    assert_eq!((dir.read("ca.pem"), dir.read("ca-key.pem")), (ca, ca_key));
    assert_eq!(dir.files(), ["ca-key.pem", "ca.pem"]);
}

#[test]
fn a_ca_made_by_openssl_issues_certificates_too() {
    let dir = Scratch::new("openssl-ca");
    std::fs::create_dir_all(&dir.0).unwrap();
    let repo_certs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../certs");
    for file in ["ca.pem", "ca-key.pem"] {
        std::fs::copy(repo_certs.join(file), dir.0.join(file)).unwrap();
    }
    dir.certs(&["--node", "n"]).unwrap();
    assert!(signed_by(&dir.read("n.pem"), &dir.read("ca.pem")));
}

#[test]
fn each_member_certificate_names_only_its_own_node() {
    let dir = Scratch::new("per-node");
    dir.certs(&[
        "--new-ca",
        "--member",
        "worker-a",
        "--san",
        "worker-a.example",
        "--san",
        "10.0.0.2",
        "--member",
        "worker-b",
        "--san",
        "worker-b.example",
        "--san",
        "10.0.0.3:7001",
    ])
    .unwrap();
    assert_eq!(
        names(&dir.read("worker-a.pem")),
        [
            "DNS:worker-a",
            "DNS:worker-a.example",
            "IP:10.0.0.2",
            "URI:rpcnet-member://worker-a.example",
            "URI:rpcnet-member://10.0.0.2"
        ]
    );
    assert_eq!(
        names(&dir.read("worker-b.pem")),
        [
            "DNS:worker-b",
            "DNS:worker-b.example",
            "IP:10.0.0.3",
            "URI:rpcnet-member://worker-b.example",
            "URI:rpcnet-member://10.0.0.3:7001"
        ]
    );
    assert_eq!(extended_key_usage(&dir.read("worker-a.pem")), (true, true));
}

#[test]
fn client_and_node_certificates_carry_no_member_role() {
    let dir = Scratch::new("client");
    dir.certs(&[
        "--new-ca", "--client", "billing", "--node", "gateway", "--san", "10.0.0.9",
    ])
    .unwrap();
    let client = dir.read("billing.pem");
    assert_eq!(names(&client), ["DNS:billing"]);
    assert_eq!(extended_key_usage(&client), (false, true));
    let node = dir.read("gateway.pem");
    assert_eq!(names(&node), ["DNS:gateway", "IP:10.0.0.9"]);
    assert_eq!(extended_key_usage(&node), (true, true));
}

#[test]
fn two_members_never_speak_for_one_address() {
    let dir = Scratch::new("shared");
    // In one run: refused before the CA is even created.
    let err = dir
        .certs(&[
            "--new-ca",
            "--member",
            "a",
            "--san",
            "10.0.0.2",
            "--member",
            "b",
            "--san",
            "10.0.0.2:7001",
        ])
        .unwrap_err();
    assert!(
        matches!(&err, Error::SharedAddress { member, other, .. } if member == "b" && other == "a"),
        "{err:?}"
    );
    assert!(dir.files().is_empty(), "{:?}", dir.files());

    // Across runs: the member certificates already in the directory count.
    dir.certs(&["--new-ca", "--member", "a", "--san", "10.0.0.2"])
        .unwrap();
    let err = dir
        .certs(&["--member", "b", "--san", "10.0.0.2"])
        .unwrap_err();
    assert!(matches!(err, Error::SharedAddress { .. }), "{err:?}");
    assert!(!dir.0.join("b.pem").exists());

    // Distinct ports on one host are distinct addresses; reissuing a
    // member under its own name replaces its old addresses.
    dir.certs(&[
        "--member",
        "a",
        "--san",
        "127.0.0.1:7001",
        "--member",
        "b",
        "--san",
        "127.0.0.1:7002",
    ])
    .unwrap();
    dir.certs(&["--member", "c", "--san", "10.0.0.2"]).unwrap();
    // Plain certificates speak for no one.
    dir.certs(&["--node", "n", "--san", "10.0.0.2"]).unwrap();
}

#[test]
fn names_that_would_clobber_the_ca_or_a_key_are_refused() {
    let dir = Scratch::new("names");
    dir.certs(&["--new-ca"]).unwrap();
    for name in ["ca", "a-key", "../escape", ""] {
        let err = dir.certs(&["--node", name]).unwrap_err();
        assert!(matches!(err, Error::BadName { .. }), "{name}: {err:?}");
    }
    // localhost names every host, so it names no member.
    let err = dir
        .certs(&["--member", "m", "--san", "localhost"])
        .unwrap_err();
    assert!(matches!(err, Error::MemberWithoutAddress(_)), "{err:?}");
    assert_eq!(dir.files(), ["ca-key.pem", "ca.pem"]);
}

#[test]
fn a_member_is_named_by_its_dns_name() {
    let dir = Scratch::new("dns-member");
    dir.certs(&[
        "--new-ca",
        "--member",
        "worker-0",
        "--san",
        "worker-0.rpcnet-gossip.default.svc",
        "--member",
        "worker-1",
        "--san",
        "Worker-1.rpcnet-gossip.default.svc:7000",
    ])
    .unwrap();
    let worker_0 = names(&dir.read("worker-0.pem"));
    assert!(
        worker_0.contains(&"URI:rpcnet-member://worker-0.rpcnet-gossip.default.svc".to_string()),
        "{worker_0:?}"
    );
    assert!(
        worker_0.contains(&"DNS:worker-0.rpcnet-gossip.default.svc".to_string()),
        "{worker_0:?}"
    );
    assert_eq!(
        worker_0,
        [
            "DNS:worker-0",
            "DNS:worker-0.rpcnet-gossip.default.svc",
            "URI:rpcnet-member://worker-0.rpcnet-gossip.default.svc"
        ]
    );
    // NAME:PORT: the member URI has the port, the TLS name has none; both
    // are lowercase.
    assert_eq!(
        names(&dir.read("worker-1.pem")),
        [
            "DNS:worker-1",
            "DNS:worker-1.rpcnet-gossip.default.svc",
            "URI:rpcnet-member://worker-1.rpcnet-gossip.default.svc:7000"
        ]
    );
    assert_eq!(extended_key_usage(&dir.read("worker-0.pem")), (true, true));
}

#[test]
fn a_member_without_san_still_speaks_for_loopback() {
    let dir = Scratch::new("default-sans");
    dir.certs(&["--new-ca", "--member", "m"]).unwrap();
    assert_eq!(
        names(&dir.read("m.pem")),
        [
            "DNS:m",
            "DNS:localhost",
            "IP:127.0.0.1",
            "IP:::1",
            "URI:rpcnet-member://127.0.0.1",
            "URI:rpcnet-member://[::1]"
        ]
    );
}

#[test]
fn two_members_never_share_a_host_name() {
    let dir = Scratch::new("shared-name");
    // In one run, names compared ignoring case: refused before the CA is
    // created.
    let err = dir
        .certs(&[
            "--new-ca",
            "--member",
            "worker-0",
            "--san",
            "worker-0.rpcnet-gossip.default.svc",
            "--member",
            "impostor",
            "--san",
            "WORKER-0.rpcnet-gossip.default.svc:7000",
        ])
        .unwrap_err();
    assert!(
        matches!(&err, Error::SharedAddress { member, other, .. }
            if member == "impostor" && other == "worker-0"),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains("worker-0.rpcnet-gossip.default.svc:7000"),
        "{err}"
    );
    assert!(dir.files().is_empty(), "{:?}", dir.files());

    // Across runs: the member certificates already in the directory count.
    dir.certs(&[
        "--new-ca",
        "--member",
        "worker-0",
        "--san",
        "worker-0.rpcnet-gossip.default.svc",
    ])
    .unwrap();
    let err = dir
        .certs(&[
            "--member",
            "impostor",
            "--san",
            "Worker-0.RPCNET-gossip.default.svc",
        ])
        .unwrap_err();
    assert!(
        matches!(&err, Error::SharedAddress { member, other, .. }
            if member == "impostor" && other == "worker-0"),
        "{err:?}"
    );
    assert!(!dir.0.join("impostor.pem").exists());

    // Other names, and distinct ports of one name, are distinct; so are a
    // name and an IP address.
    dir.certs(&[
        "--member",
        "worker-1",
        "--san",
        "worker-1.rpcnet-gossip.default.svc",
        "--member",
        "w2a",
        "--san",
        "worker-2.example:7001",
        "--member",
        "w2b",
        "--san",
        "worker-2.example:7002",
        "--member",
        "by-ip",
        "--san",
        "10.0.0.2",
    ])
    .unwrap();
}

#[test]
fn a_member_name_that_is_no_host_name_is_refused_naming_it() {
    let dir = Scratch::new("bad-name");
    for (san, why) in [
        ("*.rpcnet-gossip.default.svc", "wildcard"),
        ("worker_0.example", "letters, digits"),
        ("worker-0.example.", "trailing dot"),
        ("worker-0.example:http", "port"),
    ] {
        let err = dir
            .certs(&["--new-ca", "--member", "w", "--san", san])
            .unwrap_err();
        assert!(
            matches!(&err, Error::BadMemberSan { member, san: s, .. } if member == "w" && s == san),
            "{san}: {err:?}"
        );
        let message = err.to_string();
        assert!(message.contains(san) && message.contains(why), "{message}");
        assert!(dir.files().is_empty(), "{:?}", dir.files());
    }
    // A node's names are TLS names only: a wildcard is fine there.
    dir.certs(&["--new-ca", "--node", "n", "--san", "*.example"])
        .unwrap();
    assert_eq!(names(&dir.read("n.pem")), ["DNS:n", "DNS:*.example"]);
}

#[test]
fn a_service_name_is_carried_for_tls_only_and_may_be_shared() {
    let dir = Scratch::new("tls-san");
    // Two members behind one service name: each speaks only for its own
    // name; the service name is a TLS name of both, never a member name.
    dir.certs(&[
        "--new-ca",
        "--member",
        "seed-0",
        "--san",
        "seed-0.rpcnet-gossip.default.svc",
        "--tls-san",
        "rpcnet.default.svc",
        "--member",
        "seed-1",
        "--san",
        "seed-1.rpcnet-gossip.default.svc",
        "--tls-san",
        "rpcnet.default.svc",
    ])
    .unwrap();
    assert_eq!(
        names(&dir.read("seed-0.pem")),
        [
            "DNS:seed-0",
            "DNS:seed-0.rpcnet-gossip.default.svc",
            "DNS:rpcnet.default.svc",
            "URI:rpcnet-member://seed-0.rpcnet-gossip.default.svc"
        ]
    );
    // The same name as a --san would be a member name, shared: refused.
    let err = Scratch::new("tls-san-shared")
        .certs(&[
            "--new-ca",
            "--member",
            "a",
            "--san",
            "a.example",
            "--san",
            "svc.example",
            "--member",
            "b",
            "--san",
            "b.example",
            "--san",
            "svc.example",
        ])
        .unwrap_err();
    assert!(matches!(err, Error::SharedAddress { .. }), "{err}");
}
