//! A CA kept in a directory with the certificates it issued.
//!
//! The directory holds `ca.pem` and `ca-key.pem`, and `<name>.pem` /
//! `<name>-key.pem` per certificate. A CA is created once
//! ([`CaDir::create`], which never replaces one) and reused after that
//! ([`CaDir::open`]); reissuing a certificate under its name replaces it
//! (renewal). Before anything is written, the member certificates of a run
//! are checked against each other and against the member certificates
//! this CA already issued into the directory: no two may speak for one
//! address, and no two may be named by one host name (compared ignoring
//! case).

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::{member_addresses_of, CertSpec, DevCa, Error, MemberAddress, Role};

/// The CA certificate's file name.
const CA_CERT: &str = "ca.pem";
/// The CA key's file name.
const CA_KEY: &str = "ca-key.pem";

/// A CA and the directory its certificates are written to.
pub struct CaDir {
    dir: PathBuf,
    ca: DevCa,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl CaDir {
    /// The CA already in `dir`.
    ///
    /// # Errors
    /// [`Error::NoCa`] without `ca.pem`; [`Error::CaKeyMissing`] without
    /// `ca-key.pem`; [`Error::CaKeyMismatch`] or [`Error::Certificate`]
    /// if they are not a CA certificate and its key.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, Error> {
        let dir = dir.into();
        let cert_path = dir.join(CA_CERT);
        let key_path = dir.join(CA_KEY);
        if !cert_path.exists() {
            return Err(Error::NoCa(dir));
        }
        if !key_path.exists() {
            return Err(Error::CaKeyMissing(key_path));
        }
        let cert = std::fs::read_to_string(&cert_path).map_err(io(&cert_path))?;
        let key = std::fs::read_to_string(&key_path).map_err(io(&key_path))?;
        let ca = DevCa::from_pem(&cert, &key)?;
        Ok(Self { dir, ca })
    }

    /// Creates a new CA named `name` in `dir` (creating the directory).
    ///
    /// # Errors
    /// [`Error::CaExists`] if `dir` already has `ca.pem` or `ca-key.pem`:
    /// a CA is never replaced, since every certificate it issued would
    /// stop being trusted.
    pub fn create(dir: impl Into<PathBuf>, name: &str) -> Result<Self, Error> {
        let dir = dir.into();
        if dir.join(CA_CERT).exists() || dir.join(CA_KEY).exists() {
            return Err(Error::CaExists(dir));
        }
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let ca = DevCa::new(name)?;
        for (file, contents, secret) in [
            (CA_CERT, ca.cert_pem(), false),
            (CA_KEY, ca.key_pem(), true),
        ] {
            let path = dir.join(file);
            write_file(&path, contents, Replace::No, secret).map_err(|source| {
                if source.kind() == std::io::ErrorKind::AlreadyExists {
                    Error::CaExists(dir.clone())
                } else {
                    Error::Io { path, source }
                }
            })?;
        }
        Ok(Self { dir, ca })
    }

    /// The CA.
    pub fn ca(&self) -> &DevCa {
        &self.ca
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// The CA certificate's path (what nodes and clients trust).
    pub fn ca_cert_path(&self) -> PathBuf {
        self.dir.join(CA_CERT)
    }

    /// The CA key's path.
    pub fn ca_key_path(&self) -> PathBuf {
        self.dir.join(CA_KEY)
    }

    /// Issues every certificate of `specs` and writes `<name>.pem` and
    /// `<name>-key.pem` for each; returns the files written. Nothing is
    /// written if any of them is refused.
    ///
    /// # Errors
    /// [`Error::BadName`] for a name that is no file name, is reserved
    /// (`ca`, `*-key`) or appears twice; [`Error::SharedAddress`] when two
    /// members (of `specs`, or one of `specs` and one this CA issued into
    /// the directory earlier under another name) would speak for one
    /// address (the same IP address or host name, ignoring case, with a
    /// port in common); [`Error::MemberWithoutAddress`];
    /// [`Error::BadMemberSan`]; [`Error::Certificate`], [`Error::Io`].
    pub fn issue(&self, specs: &[CertSpec]) -> Result<Vec<PathBuf>, Error> {
        check(specs, self.members_on_disk(specs)?)?;
        let issued = specs
            .iter()
            .map(|spec| Ok((spec, self.ca.issue(spec)?)))
            .collect::<Result<Vec<_>, Error>>()?;
        let mut written = Vec::new();
        for (spec, cert) in issued {
            let cert_path = self.dir.join(format!("{}.pem", spec.name));
            let key_path = self.dir.join(format!("{}-key.pem", spec.name));
            write_file(&key_path, &cert.key_pem, Replace::Yes, true).map_err(io(&key_path))?;
            write_file(&cert_path, &cert.cert_pem, Replace::Yes, false).map_err(io(&cert_path))?;
            written.push(cert_path);
            written.push(key_path);
        }
        Ok(written)
    }

    /// The member certificates this CA issued into the directory, except
    /// those `specs` reissue: (name, addresses).
    fn members_on_disk(
        &self,
        specs: &[CertSpec],
    ) -> Result<Vec<(String, Vec<MemberAddress>)>, Error> {
        let mut members = Vec::new();
        let entries = std::fs::read_dir(&self.dir).map_err(io(&self.dir))?;
        for entry in entries.flatten() {
            let file = entry.file_name().to_string_lossy().into_owned();
            let Some(name) = file.strip_suffix(".pem") else {
                continue;
            };
            if name == "ca" || name.ends_with("-key") || specs.iter().any(|s| s.name == name) {
                continue;
            }
            let Ok(pem) = std::fs::read_to_string(entry.path()) else {
                continue;
            };
            if let Some((addresses, true)) = member_addresses_of(&pem, self.ca.cert_pem()) {
                if !addresses.is_empty() {
                    members.push((name.to_string(), addresses));
                }
            }
        }
        members.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(members)
    }
}

/// The checks of [`CaDir::issue`] before anything is issued: names, each
/// member's addresses, and that no member of `specs` shares an address or
/// a host name with another or with `members` (already issued).
pub(crate) fn check(
    specs: &[CertSpec],
    mut members: Vec<(String, Vec<MemberAddress>)>,
) -> Result<(), Error> {
    for (i, spec) in specs.iter().enumerate() {
        check_name(&spec.name)?;
        if specs[..i].iter().any(|s| s.name == spec.name) {
            return Err(Error::BadName {
                name: spec.name.clone(),
                why: "asked for twice",
            });
        }
    }
    for spec in specs {
        let addresses = spec.member_addresses()?;
        if spec.role == Role::Member && addresses.is_empty() {
            return Err(Error::MemberWithoutAddress(spec.name.clone()));
        }
        for (other, theirs) in &members {
            if let Some(address) = addresses
                .iter()
                .find(|a| theirs.iter().any(|t| a.overlaps(t)))
            {
                return Err(Error::SharedAddress {
                    member: spec.name.clone(),
                    other: other.clone(),
                    address: address.clone(),
                });
            }
        }
        if !addresses.is_empty() {
            members.push((spec.name.clone(), addresses));
        }
    }
    Ok(())
}

fn check_name(name: &str) -> Result<(), Error> {
    let why = if name.is_empty() {
        Some("empty")
    } else if name.starts_with(['.', '-']) || !name.chars().all(is_name_char) {
        Some("use letters, digits, '.', '_' and '-' (not first)")
    } else if name == "ca" || name.ends_with("-key") {
        Some("reserved for the CA's and the keys' files")
    } else {
        None
    };
    match why {
        Some(why) => Err(Error::BadName {
            name: name.to_string(),
            why,
        }),
        None => Ok(()),
    }
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')
}

/// Whether writing a file may replace one of that name.
#[derive(PartialEq)]
enum Replace {
    Yes,
    No,
}

/// Writes a file; a `secret` (a private key) is readable by its owner only
/// (on Unix).
fn write_file(path: &Path, contents: &str, replace: Replace, secret: bool) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true);
    if replace == Replace::Yes {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = secret;
    options.open(path)?.write_all(contents.as_bytes())
}
