//! The lab's certificates, issued at harness start into a temporary
//! directory with the `rpcnet-certs` API: a cluster CA, a member
//! certificate per host address (URI name `rpcnet-member://198.18.0.<i>`,
//! so each node may speak only for its own host), a plain CA-signed
//! certificate without the member role (an application client), and an
//! unrelated CA with its own member certificates (outsiders).
//!
//! Every certificate also names `localhost`, the server name rpcnet
//! clients verify by default.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use rpcnet_certs::DevCa;

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
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
