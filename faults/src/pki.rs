//! The lab's certificates, issued at harness start into a temporary
//! directory with the `rpcnet-certs` API: a cluster CA, a member
//! certificate per host address (URI name `rpcnet-member://198.18.0.<i>`,
//! so each node may speak only for its own host), a plain CA-signed
//! certificate without the member role (an application client), and an
//! unrelated CA with its own member certificates (outsiders).
//!
//! Every certificate also names `localhost`, the server name rpcnet
//! clients verify by default.
//!
//! The `names` scenario issues its own ([`NamesPki`]): members named by DNS
//! names, with [`CaDir`] as `rpcnet-certs` does.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use rpcnet_certs::{CaDir, CertSpec, DevCa};

/// Files of one identity.
#[derive(Debug, Clone)]
pub struct Identity {
    /// Certificate (PEM).
    pub cert: PathBuf,
    /// Private key (PKCS#8 PEM).
    pub key: PathBuf,
    /// The CA its holder trusts (and whose clients it accepts).
    pub ca: PathBuf,
}

impl Identity {
    /// `--cert F --key F --ca F`, the flags every rpcnet binary and role
    /// of the harness takes.
    pub fn args(&self) -> Vec<String> {
        vec![
            "--cert".into(),
            self.cert.display().to_string(),
            "--key".into(),
            self.key.display().to_string(),
            "--ca".into(),
            self.ca.display().to_string(),
        ]
    }
}

/// The lab's certificates; the directory is removed on drop.
pub struct Pki {
    dir: PathBuf,
}

/// Name prefix of the certificate directories (then the harness's pid).
const DIR_PREFIX: &str = "rpcnet-faults-";

/// Removes the certificate directories of earlier runs whose harness is no
/// longer running.
pub fn sweep() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix(DIR_PREFIX) else {
            continue;
        };
        if pid.parse::<u32>().is_ok() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Hosts the lab can have certificates for (`198.18.0.1` to `.<HOSTS>`).
pub const HOSTS: u8 = 8;

fn host_ip(i: u8) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, 0, i)
}

impl Pki {
    /// Issues every certificate into a fresh directory under the system
    /// temporary directory.
    pub fn issue() -> Result<Pki, String> {
        let dir = std::env::temp_dir().join(format!("{DIR_PREFIX}{}", std::process::id()));
        let pki = Pki { dir };
        pki.write()
            .map_err(|e| format!("issuing the lab certificates: {e}"))?;
        Ok(pki)
    }

    fn write(&self) -> Result<(), Box<dyn std::error::Error>> {
        std::fs::create_dir_all(&self.dir)?;
        let cluster = DevCa::new("rpcnet-faults cluster CA")?;
        let app = cluster.node("app-client", &["localhost".into()])?;
        self.put("app.pem", &app.cert_pem)?;
        self.put("app-key.pem", &app.key_pem)?;
        for (prefix, ca) in [
            ("", cluster),
            ("other-", DevCa::new("rpcnet-faults unrelated CA")?),
        ] {
            self.put(&format!("{prefix}ca.pem"), ca.cert_pem())?;
            for i in 1..=HOSTS {
                let ip = host_ip(i).to_string();
                let member = ca.member(&format!("host-{i}"), &["localhost".into(), ip])?;
                self.put(&format!("{prefix}member-{i}.pem"), &member.cert_pem)?;
                self.put(&format!("{prefix}member-{i}-key.pem"), &member.key_pem)?;
            }
        }
        Ok(())
    }

    fn put(&self, name: &str, contents: &str) -> std::io::Result<()> {
        std::fs::write(self.dir.join(name), contents)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The member identity of host `i` (1-based, as in `198.18.0.<i>`).
    pub fn member(&self, i: usize) -> Identity {
        self.identity("", i)
    }

    /// An application client: a certificate from the cluster CA without
    /// the member role.
    pub fn app_client(&self) -> Identity {
        Identity {
            cert: self.path("app.pem"),
            key: self.path("app-key.pem"),
            ca: self.path("ca.pem"),
        }
    }

    /// A member identity for host `i` from the unrelated CA.
    pub fn outsider(&self, i: usize) -> Identity {
        self.identity("other-", i)
    }

    fn identity(&self, prefix: &str, i: usize) -> Identity {
        assert!(
            (1..=HOSTS as usize).contains(&i),
            "no certificate for host {i}"
        );
        Identity {
            cert: self.path(&format!("{prefix}member-{i}.pem")),
            key: self.path(&format!("{prefix}member-{i}-key.pem")),
            ca: self.path(&format!("{prefix}ca.pem")),
        }
    }

    /// The directory (for the interrupt handler).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Issues the `names` scenario's certificates (replacing those of an
    /// earlier call) under this directory.
    pub fn names(
        &self,
        members: &[&str],
        shared: &[&str],
        forged: &str,
    ) -> Result<NamesPki, String> {
        NamesPki::issue(&self.dir.join("names"), members, shared, forged)
            .map_err(|e| format!("issuing the names scenario's certificates: {e}"))
    }
}

/// Certificates for members known by DNS names, issued with [`CaDir`] (the
/// library behind `rpcnet-certs`) into a directory of their own:
///
/// * one member certificate per name, `CertSpec::member(name, [name])`:
///   its DNS name and URI `rpcnet-member://<name>`, nothing else;
/// * `shared`: one member certificate naming several hosts (the mistake
///   a node warns about at start), which `CaDir` issues since the names
///   belong to one member;
/// * `forged-<name>`: a member certificate for one of the names from
///   another CA, for a recorder that makes a genuine announcement claiming
///   that name (it never reaches the cluster under it).
///
/// Issuing also asks `CaDir` for two members sharing a name, in one
/// request (`twin-a`, `twin-b`: `twin.lab`) and against a name already
/// issued (`impostor`: the forged name); what it answered is kept
/// ([`refusals`](Self::refusals)).
pub struct NamesPki {
    dir: PathBuf,
    refusals: Vec<Result<(), String>>,
    forged_ca: PathBuf,
}

impl NamesPki {
    fn issue(
        dir: &Path,
        members: &[&str],
        shared: &[&str],
        forged: &str,
    ) -> Result<NamesPki, Box<dyn std::error::Error>> {
        if dir.exists() {
            std::fs::remove_dir_all(dir)?;
        }
        let ca = CaDir::create(dir.join("ca"), "rpcnet-faults names CA")?;
        let mut specs: Vec<CertSpec> = members
            .iter()
            .map(|name| CertSpec::member(*name, [*name]))
            .collect();
        specs.push(CertSpec::member("shared", shared.iter().copied()));
        ca.issue(&specs)?;
        // Two members for one name: refused in one request (a new name),
        // and against a member already in the directory (the name the
        // scenario's intruder claims). Nothing may be written.
        let twin = |n: &str| CertSpec::member(format!("twin-{n}"), ["twin.lab"]);
        let refusals = [
            vec![twin("a"), twin("b")],
            vec![CertSpec::member("impostor", [forged])],
        ]
        .iter()
        .map(|specs| {
            let result = ca.issue(specs).map(drop).map_err(|e| e.to_string());
            let written = specs
                .iter()
                .any(|s| ca.path().join(format!("{}.pem", s.name)).exists());
            match result {
                Ok(()) => Ok(()),
                Err(_) if written => Ok(()),
                Err(e) => Err(e),
            }
        })
        .collect();
        let other = CaDir::create(dir.join("other"), "rpcnet-faults forging CA")?;
        other.issue(&[CertSpec::member(format!("forged-{forged}"), [forged])])?;
        Ok(NamesPki {
            dir: dir.to_path_buf(),
            refusals,
            forged_ca: other.ca_cert_path(),
        })
    }

    /// The member certificate of `name` (or `shared`).
    pub fn member(&self, name: &str) -> Identity {
        let ca = self.dir.join("ca");
        Identity {
            cert: ca.join(format!("{name}.pem")),
            key: ca.join(format!("{name}-key.pem")),
            ca: ca.join("ca.pem"),
        }
    }

    /// The other CA's certificate for `name` (see [`NamesPki`]).
    pub fn forged(&self, name: &str) -> Identity {
        let other = self.dir.join("other");
        Identity {
            cert: other.join(format!("forged-{name}.pem")),
            key: other.join(format!("forged-{name}-key.pem")),
            ca: self.forged_ca.clone(),
        }
    }

    /// What `CaDir::issue` answered to two members sharing a name (in one
    /// request; against one already issued): `Err(message)` when it
    /// refused and wrote nothing, `Ok` when it issued either.
    pub fn refusals(&self) -> &[Result<(), String>] {
        &self.refusals
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
