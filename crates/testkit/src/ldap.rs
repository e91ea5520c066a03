//! A real LDAP directory for tests: OpenLDAP's slapd (Debian package `slapd`) on a loopback
//! port in a temporary directory, with the suffix `dc=example,dc=test`, people under
//! `ou=people` (inetOrgPerson: `uid`, `cn`, `sn`, `mail`, `userPassword`) and the root account
//! `cn=admin,dc=example,dc=test` / `adminpw`, who may write everything; anyone may read
//! everything but passwords.
//!
//! The configuration is a cn=config directory made offline with `slapadd -n0` (the schemas
//! core, cosine and inetorgperson copied into it, so nothing is read from `/etc/ldap` at run
//! time), the first entries are loaded with `slapadd`, then slapd runs in the foreground as
//! the test's child (`-d stats`: its connection log goes to `DIR/slapd.log`, see
//! [`LdapServer::log_tail`]). Entries get their `entryUUID` from slapd. Changes are made with
//! [`LdapServer::add_person`], [`LdapServer::modify_person`] and
//! [`LdapServer::delete_person`], over LDAP as the root account.
//!
//! slapd is killed on drop, and by a watchdog when the test process is gone; set
//! `BRAMBLE_TEST_KEEP_DIRS=1` to keep the directory.

use std::collections::HashSet;
use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rand::Rng;

/// The directory's suffix.
pub const BASE_DN: &str = "dc=example,dc=test";
/// Where the people are.
pub const PEOPLE_DN: &str = "ou=people,dc=example,dc=test";
/// The root account, who may write everything.
pub const ADMIN_DN: &str = "cn=admin,dc=example,dc=test";
/// Its password.
pub const ADMIN_PASSWORD: &str = "adminpw";

/// Ports to listen on: below the ephemeral range and away from the mail stacks' bases.
const PORTS: std::ops::RangeInclusive<u16> = 28000..=32767;
const ATTEMPTS: usize = 20;
const READY_TIMEOUT: Duration = Duration::from_secs(20);
const LOG_NAME: &str = "slapd.log";
const SLAPD: &str = "/usr/sbin/slapd";
const SLAPADD: &str = "/usr/sbin/slapadd";

/// One person of the directory: `uid=UID,ou=people,dc=example,dc=test`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    /// The `uid`, which names the entry.
    pub uid: String,
    /// The full name (`cn`).
    pub name: String,
    /// The mail address (`mail`).
    pub mail: String,
}

impl Person {
    /// A person.
    pub fn new(uid: &str, name: &str, mail: &str) -> Person {
        Person {
            uid: uid.to_owned(),
            name: name.to_owned(),
            mail: mail.to_owned(),
        }
    }

    /// The entry's DN.
    pub fn dn(&self) -> String {
        person_dn(&self.uid)
    }
}

/// The DN of the person with this `uid`.
pub fn person_dn(uid: &str) -> String {
    format!("uid={},{PEOPLE_DN}", ldap3::dn_escape(uid))
}

/// A running slapd; killed on drop.
#[derive(Debug)]
pub struct LdapServer {
    dir: PathBuf,
    temp: Option<tempfile::TempDir>,
    port: u16,
    child: Child,
    watchdog: Option<Child>,
    _lock: File,
}

impl LdapServer {
    /// Starts slapd on a free port with these people (and `ou=people`), and waits until it
    /// accepts connections.
    ///
    /// Fails when slapd is not installed (Debian packages `slapd` and `ldap-utils`; run
    /// `scripts/test-deps.sh`) or does not start.
    pub fn start(people: &[Person]) -> Result<LdapServer> {
        for program in [SLAPD, SLAPADD] {
            if !Path::new(program).exists() {
                bail!(
                    "{program} is missing: install the Debian package slapd \
                     (scripts/test-deps.sh does)"
                );
            }
        }
        let mut uids = HashSet::new();
        for p in people {
            check_value(&p.uid)?;
            check_value(&p.name)?;
            check_value(&p.mail)?;
            if !uids.insert(p.uid.as_str()) {
                bail!("two people with uid {:?}", p.uid);
            }
        }
        let mut failures = Vec::new();
        let mut rng = rand::rng();
        for _ in 0..ATTEMPTS {
            let port = rng.random_range(PORTS);
            let Some(lock) = crate::port::lock_file(&format!("ldap-{port}"))? else {
                continue;
            };
            if std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_err() {
                continue;
            }
            match Self::start_at(port, lock, people)? {
                Ok(server) => return Ok(server),
                Err(why) => failures.push(format!("port {port}: {why}")),
            }
        }
        bail!(
            "slapd did not start on any of {ATTEMPTS} ports:\n  {}",
            failures.join("\n  ")
        )
    }

    fn start_at(port: u16, lock: File, people: &[Person]) -> Result<Result<LdapServer, String>> {
        let temp = tempfile::Builder::new()
            .prefix("bramble-ldap-")
            .tempdir()
            .context("creating a temp dir for slapd")?;
        let dir = temp.path().to_owned();
        std::fs::create_dir(dir.join("slapd.d")).context("creating slapd.d")?;
        std::fs::create_dir(dir.join("data")).context("creating data")?;
        write(&dir.join("config.ldif"), &config_ldif(&dir))?;
        write(&dir.join("data.ldif"), &data_ldif(people))?;
        slapadd(&dir, &["-n0", "-l"], "config.ldif")?;
        slapadd(&dir, &["-q", "-b", BASE_DN, "-l"], "data.ldif")?;

        let log = File::create(dir.join(LOG_NAME)).context("creating slapd.log")?;
        let log2 = log.try_clone().context("opening slapd.log")?;
        let child = Command::new(SLAPD)
            .arg("-d")
            .arg("stats")
            .arg("-h")
            .arg(format!("ldap://127.0.0.1:{port}/"))
            .arg("-F")
            .arg(dir.join("slapd.d"))
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .process_group(0)
            .spawn()
            .context("starting slapd")?;
        let mut server = LdapServer {
            dir,
            temp: Some(temp),
            port,
            child,
            watchdog: None,
            _lock: lock,
        };
        server.watchdog = Some(server.spawn_watchdog()?);
        match server.wait_ready() {
            Ok(()) => Ok(Ok(server)),
            Err(e) => {
                let tail = server.log_tail();
                if tail.contains("Address already in use") || tail.contains("errno=98") {
                    return Ok(Err("address in use".to_owned()));
                }
                Err(e.context(format!("slapd started but does not answer\n{tail}")))
            }
        }
    }

    /// A watchdog that kills slapd and removes the directory when this process is gone.
    fn spawn_watchdog(&self) -> Result<Child> {
        crate::port::watchdog(
            "ldap",
            &format!("kill -9 {} 2>/dev/null", self.child.id()),
            &self.dir,
        )
    }

    /// Until the port accepts a connection; fails early when slapd exits.
    fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        loop {
            if let Some(status) = self.child.try_wait().context("waiting for slapd")? {
                bail!("slapd exited with {status}");
            }
            match TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
                Ok(_) => return Ok(()),
                Err(e) if Instant::now() >= deadline => {
                    bail!("{addr} did not accept within {READY_TIMEOUT:?}: {e}")
                }
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    /// `ldap://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("ldap://127.0.0.1:{}", self.port)
    }

    /// The port slapd listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's directory: config, data, the log.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Adds a person.
    pub async fn add_person(&self, p: &Person) -> Result<()> {
        check_value(&p.uid)?;
        check_value(&p.name)?;
        check_value(&p.mail)?;
        let sn = surname(&p.name);
        let mut ldap = self.admin().await?;
        let attrs = vec![
            ("objectClass", HashSet::from(["inetOrgPerson"])),
            ("uid", HashSet::from([p.uid.as_str()])),
            ("cn", HashSet::from([p.name.as_str()])),
            ("sn", HashSet::from([sn])),
            ("mail", HashSet::from([p.mail.as_str()])),
        ];
        ldap.add(&p.dn(), attrs)
            .await
            .and_then(|r| r.success())
            .with_context(|| format!("adding {}", p.dn()))?;
        let _ = ldap.unbind().await;
        Ok(())
    }

    /// Replaces attributes of the person with this `uid`: `[("cn", "New Name")]`.
    pub async fn modify_person(&self, uid: &str, changes: &[(&str, &str)]) -> Result<()> {
        let mut ldap = self.admin().await?;
        let mods = changes
            .iter()
            .map(|(attr, value)| ldap3::Mod::Replace(*attr, HashSet::from([*value])))
            .collect();
        ldap.modify(&person_dn(uid), mods)
            .await
            .and_then(|r| r.success())
            .with_context(|| format!("modifying {}", person_dn(uid)))?;
        let _ = ldap.unbind().await;
        Ok(())
    }

    /// Deletes the person with this `uid`.
    pub async fn delete_person(&self, uid: &str) -> Result<()> {
        let mut ldap = self.admin().await?;
        ldap.delete(&person_dn(uid))
            .await
            .and_then(|r| r.success())
            .with_context(|| format!("deleting {}", person_dn(uid)))?;
        let _ = ldap.unbind().await;
        Ok(())
    }

    /// The `entryUUID` slapd gave the person with this `uid`.
    pub async fn entry_uuid(&self, uid: &str) -> Result<String> {
        let mut ldap = self.admin().await?;
        let (entries, _) = ldap
            .search(
                &person_dn(uid),
                ldap3::Scope::Base,
                "(objectClass=*)",
                vec!["entryUUID"],
            )
            .await
            .and_then(|r| r.success())
            .with_context(|| format!("reading {}", person_dn(uid)))?;
        let _ = ldap.unbind().await;
        let entry = entries
            .into_iter()
            .next()
            .map(ldap3::SearchEntry::construct)
            .with_context(|| format!("no entry {}", person_dn(uid)))?;
        entry
            .attrs
            .get("entryUUID")
            .and_then(|v| v.first())
            .cloned()
            .with_context(|| format!("{} has no entryUUID", person_dn(uid)))
    }

    async fn admin(&self) -> Result<ldap3::Ldap> {
        let (conn, mut ldap) = ldap3::LdapConnAsync::new(&self.url())
            .await
            .with_context(|| format!("connecting to slapd at {}", self.url()))?;
        ldap3::drive!(conn);
        ldap.simple_bind(ADMIN_DN, ADMIN_PASSWORD)
            .await
            .and_then(|r| r.success())
            .context("binding as the directory's root account")?;
        Ok(ldap)
    }

    /// Kills slapd (SIGKILL) and waits for it: the directory is down from now on.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The last lines of slapd's log, for a failure message.
    pub fn log_tail(&self) -> String {
        crate::port::log_tail(&self.dir, LOG_NAME)
    }
}

impl Drop for LdapServer {
    fn drop(&mut self) {
        self.kill();
        if let Some(mut watchdog) = self.watchdog.take() {
            let _ = watchdog.kill();
            let _ = watchdog.wait();
        }
        if let Some(temp) = self.temp.take() {
            if crate::port::keep_dirs() {
                eprintln!("kept slapd's directory {}", temp.keep().display());
            } else if let Err(e) = temp.close() {
                eprintln!("removing {}: {e}", self.dir.display());
            }
        }
    }
}

/// cn=config for one MDB database of `dc=example,dc=test` in `dir/data`. Debian builds the
/// backends as modules; the `include:` lines make slapadd copy the schemas into slapd.d.
fn config_ldif(dir: &Path) -> String {
    let d = dir.display();
    format!(
        "dn: cn=config
objectClass: olcGlobal
cn: config
olcPidFile: {d}/slapd.pid
olcArgsFile: {d}/slapd.args

dn: cn=module{{0}},cn=config
objectClass: olcModuleList
cn: module{{0}}
olcModulePath: /usr/lib/ldap
olcModuleLoad: back_mdb

dn: cn=schema,cn=config
objectClass: olcSchemaConfig
cn: schema

include: file:///etc/ldap/schema/core.ldif
include: file:///etc/ldap/schema/cosine.ldif
include: file:///etc/ldap/schema/inetorgperson.ldif

dn: olcDatabase={{-1}}frontend,cn=config
objectClass: olcDatabaseConfig
objectClass: olcFrontendConfig
olcDatabase: {{-1}}frontend

dn: olcDatabase={{0}}config,cn=config
objectClass: olcDatabaseConfig
olcDatabase: {{0}}config
olcAccess: {{0}}to * by * none

dn: olcDatabase={{1}}mdb,cn=config
objectClass: olcDatabaseConfig
objectClass: olcMdbConfig
olcDatabase: {{1}}mdb
olcSuffix: {BASE_DN}
olcRootDN: {ADMIN_DN}
olcRootPW: {ADMIN_PASSWORD}
olcDbDirectory: {d}/data
olcDbMaxSize: 268435456
olcSizeLimit: size.soft=500 size.hard=500 size.prtotal=unlimited
olcDbIndex: objectClass eq
olcDbIndex: uid,mail eq,sub
olcDbIndex: cn,sn,givenName eq,sub
olcAccess: {{0}}to attrs=userPassword by self write by anonymous auth by * none
olcAccess: {{1}}to * by * read
"
    )
}

fn data_ldif(people: &[Person]) -> String {
    let mut out = format!(
        "dn: {BASE_DN}\nobjectClass: dcObject\nobjectClass: organization\ndc: example\n\
         o: Example Test\n\ndn: {PEOPLE_DN}\nobjectClass: organizationalUnit\nou: people\n\n"
    );
    for p in people {
        out.push_str(&format!(
            "dn: {}\nobjectClass: inetOrgPerson\nuid: {}\ncn: {}\nsn: {}\nmail: {}\n\n",
            p.dn(),
            p.uid,
            p.name,
            surname(&p.name),
            p.mail
        ));
    }
    out
}

fn slapadd(dir: &Path, args: &[&str], ldif: &str) -> Result<()> {
    let out = Command::new(SLAPADD)
        .arg("-F")
        .arg(dir.join("slapd.d"))
        .args(args)
        .arg(dir.join(ldif))
        .stdin(Stdio::null())
        .output()
        .context("running slapadd")?;
    if !out.status.success() {
        bail!(
            "slapadd {ldif} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// The last word of a name, for the required `sn`.
fn surname(name: &str) -> &str {
    name.split_whitespace().last().unwrap_or(name)
}

/// A value the LDIF written here can hold as it is: not empty, one line, no leading space,
/// colon or `<`.
fn check_value(v: &str) -> Result<()> {
    if v.is_empty() || v.contains(['\n', '\r', '\0']) || v.starts_with([' ', ':', '<']) {
        bail!("{v:?} cannot be written into the test directory's LDIF");
    }
    Ok(())
}

fn write(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}
