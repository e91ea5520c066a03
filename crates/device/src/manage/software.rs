//! Software configurations: installed applications, packages fetched piece by piece and
//! checked, removals, and the report.
//!
//! ```text
//! HOME/apps/<id>.pkg    an installed application's package (id: SHA-256 of name and version)
//! HOME/apps/<id>.part   the package being fetched, so far
//! ```

use std::io::{Read, Write};
use std::path::PathBuf;

use bramble_proto::schema::{self, AppDisposition, AppState, envelope::Body};
use serde::Serialize;

use super::state::{AppSource, InstalledApp, ManageState, ResultRecord, RuleRecord, SoftwareJob};
use super::{ManageEvent, Outcome, envelope};
use crate::{Device, DeviceError};

/// The largest application package the device accepts, bytes.
pub const MAX_PACKAGE: u64 = 64 << 20;
/// The most applications one software configuration may list.
pub const MAX_APPS: usize = 500;
/// The longest application name or version, bytes.
pub const MAX_NAME: usize = 128;
/// The packages' folder in the home.
pub(crate) const APPS_DIR: &str = "apps";

/// An application the organization offers and the device does not have.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AvailableApp {
    /// Its name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// Bytes of its package.
    pub size: u64,
}

/// What to do with a piece of a package, given what is already here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Piece {
    /// Append the data from this byte of it on (more than 0 when it overlaps what is here).
    Append { skip: usize },
    /// All of it is here already (a piece sent again).
    Repeat,
    /// It does not fit: the package fails.
    Fail(String),
}

/// Whether a piece at `offset` of `len` bytes, of a package the piece says is `total` bytes,
/// fits a package of `expected` bytes of which `have` are here. Pure.
pub(crate) fn fit(have: u64, expected: u64, offset: u64, total: u64, len: usize) -> Piece {
    if total != expected {
        return Piece::Fail(format!(
            "the server's pieces say the package has {total} bytes, and the configuration said \
             {expected}"
        ));
    }
    let Some(end) = u64::try_from(len).ok().and_then(|l| offset.checked_add(l)) else {
        return Piece::Fail("a piece of the package goes past its end".into());
    };
    if end > total {
        return Piece::Fail("a piece of the package goes past its end".into());
    }
    if offset > have {
        return Piece::Fail(format!(
            "a piece of the package is missing (bytes {have} to {offset} never came)"
        ));
    }
    if offset == have {
        return Piece::Append { skip: 0 };
    }
    if end <= have {
        return Piece::Repeat;
    }
    // Overlaps the end of what is here: the new part of it. `have - offset < len`.
    Piece::Append {
        skip: usize::try_from(have - offset).unwrap_or(len),
    }
}

/// The file name of a package (and, with `.part`, of it being fetched).
pub(crate) fn package_id(name: &str, version: &str) -> String {
    let mut m = Vec::with_capacity(name.len() + version.len() + 1);
    m.extend_from_slice(name.as_bytes());
    m.push(0);
    m.extend_from_slice(version.as_bytes());
    hex::encode(&bramble_proto::activation::sha256(&m)[..16])
}

fn pkg(name: &str, version: &str) -> String {
    format!("{}.pkg", package_id(name, version))
}

fn part(name: &str, version: &str) -> String {
    format!("{}.part", package_id(name, version))
}

/// The package files that belong to the organization: its applications and the one being
/// fetched.
pub(crate) fn organization_files(m: &ManageState) -> Vec<String> {
    let mut files: Vec<String> = m
        .apps
        .iter()
        .filter(|a| a.source == AppSource::Organization)
        .map(|a| pkg(&a.name, &a.version))
        .collect();
    if let Some(job) = &m.software {
        files.extend(job.to_fetch.iter().map(|(n, v)| part(n, v)));
    }
    files
}

/// A name or version from the server or the user: not empty (names), at most [`MAX_NAME`]
/// bytes, no control characters.
fn check_name(what: &str, s: &str, may_be_empty: bool) -> Result<(), String> {
    if s.trim().is_empty() && !may_be_empty {
        return Err(format!("its {what} is empty"));
    }
    if s.len() > MAX_NAME {
        return Err(format!("its {what} is longer than {MAX_NAME} bytes"));
    }
    if s.chars().any(char::is_control) {
        return Err(format!("its {what} contains control characters"));
    }
    Ok(())
}

fn disposition_word(d: AppDisposition) -> &'static str {
    match d {
        AppDisposition::AppRequired => "required",
        AppDisposition::AppOptional => "optional",
        AppDisposition::AppNotPermitted => "not permitted",
        AppDisposition::AppUnspecified => "unspecified",
    }
}

fn app_state_word(s: AppState) -> &'static str {
    match s {
        AppState::AppInstalled => "installed",
        AppState::AppPresent => "present",
        AppState::AppRemoved => "removed",
        AppState::AppAvailable => "available",
        AppState::AppFailed => "failed",
        AppState::Unspecified => "unspecified",
    }
}

fn app_state_of(w: &str) -> AppState {
    match w {
        "installed" => AppState::AppInstalled,
        "present" => AppState::AppPresent,
        "removed" => AppState::AppRemoved,
        "available" => AppState::AppAvailable,
        "failed" => AppState::AppFailed,
        _ => AppState::Unspecified,
    }
}

fn result(name: &str, version: &str, state: AppState, detail: &str) -> ResultRecord {
    ResultRecord {
        name: crate::mail::cut_at(name, MAX_NAME).to_owned(),
        version: crate::mail::cut_at(version, MAX_NAME).to_owned(),
        state: app_state_word(state).to_owned(),
        detail: detail.to_owned(),
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(bramble_proto::activation::sha256(bytes))
}

impl Device {
    // ---- package files ------------------------------------------------------------------

    fn apps_dir(&self) -> Option<PathBuf> {
        self.home().map(|h| h.join(APPS_DIR))
    }

    fn ensure_apps_dir(&self) -> Result<Option<PathBuf>, DeviceError> {
        let Some(dir) = self.apps_dir() else {
            return Ok(None);
        };
        let mut b = std::fs::DirBuilder::new();
        b.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
        b.create(&dir).map_err(DeviceError::file("create", &dir))?;
        Ok(Some(dir))
    }

    fn file_len(&self, file: &str) -> u64 {
        match self.apps_dir() {
            Some(dir) => std::fs::metadata(dir.join(file)).map_or(0, |m| m.len()),
            None => self
                .runtime
                .memory_packages
                .get(file)
                .map_or(0, |b| b.len() as u64),
        }
    }

    fn append(&mut self, file: &str, data: &[u8]) -> Result<(), DeviceError> {
        match self.ensure_apps_dir()? {
            Some(dir) => {
                let path = dir.join(file);
                let mut opts = std::fs::OpenOptions::new();
                opts.append(true).create(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
                let mut f = opts
                    .open(&path)
                    .map_err(DeviceError::file("create", &path))?;
                f.write_all(data)
                    .map_err(DeviceError::file("write", &path))?;
                f.sync_data().map_err(DeviceError::file("write", &path))
            }
            None => {
                self.runtime
                    .memory_packages
                    .entry(file.to_owned())
                    .or_default()
                    .extend_from_slice(data);
                Ok(())
            }
        }
    }

    /// SHA-256 (hex) and length of a package file, read a piece at a time.
    fn digest(&self, file: &str) -> Result<(String, u64), DeviceError> {
        match self.apps_dir() {
            Some(dir) => {
                let path = dir.join(file);
                let mut f = std::fs::File::open(&path).map_err(DeviceError::file("read", &path))?;
                let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
                let mut buf = vec![0u8; 64 * 1024];
                let mut len = 0u64;
                loop {
                    let n = f.read(&mut buf).map_err(DeviceError::file("read", &path))?;
                    if n == 0 {
                        break;
                    }
                    ctx.update(&buf[..n]);
                    len += n as u64;
                }
                Ok((hex::encode(ctx.finish().as_ref()), len))
            }
            None => {
                let b = self
                    .runtime
                    .memory_packages
                    .get(file)
                    .map_or(&[][..], Vec::as_slice);
                Ok((sha256_hex(b), b.len() as u64))
            }
        }
    }

    fn rename(&mut self, from: &str, to: &str) -> Result<(), DeviceError> {
        match self.ensure_apps_dir()? {
            Some(dir) => {
                let target = dir.join(to);
                std::fs::rename(dir.join(from), &target)
                    .map_err(DeviceError::file("replace", &target))?;
                std::fs::File::open(&dir)
                    .and_then(|d| d.sync_all())
                    .map_err(DeviceError::file("write", &dir))
            }
            None => {
                let b = self
                    .runtime
                    .memory_packages
                    .remove(from)
                    .unwrap_or_default();
                self.runtime.memory_packages.insert(to.to_owned(), b);
                Ok(())
            }
        }
    }

    fn delete(&mut self, file: &str) -> Result<(), DeviceError> {
        match self.apps_dir() {
            Some(dir) => {
                let path = dir.join(file);
                match std::fs::remove_file(&path) {
                    Ok(()) => Ok(()),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                    Err(e) => Err(DeviceError::file("delete", &path)(e)),
                }
            }
            None => {
                self.runtime.memory_packages.remove(file);
                Ok(())
            }
        }
    }

    // ---- what the user sees -------------------------------------------------------------

    /// The applications installed on the device.
    pub fn apps(&self) -> &[InstalledApp] {
        &self.manage().apps
    }

    /// The applications the organization offers (optional in the software configuration)
    /// that the device does not have at that version.
    pub fn available_apps(&self) -> Vec<AvailableApp> {
        let Some(job) = &self.manage().software else {
            return Vec::new();
        };
        job.rules
            .iter()
            .filter(|r| r.disposition == disposition_word(AppDisposition::AppOptional))
            .filter(|r| {
                !self
                    .apps()
                    .iter()
                    .any(|a| a.name == r.name && a.version == r.version)
            })
            .map(|r| AvailableApp {
                name: r.name.clone(),
                version: r.version.clone(),
                size: r.size,
            })
            .collect()
    }

    /// Where an installed application's package is (`None` for a device without a home).
    pub fn app_package_path(&self, name: &str) -> Option<PathBuf> {
        let app = self.apps().iter().find(|a| a.name == name)?;
        self.apps_dir()
            .map(|d| d.join(pkg(&app.name, &app.version)))
    }

    /// The bytes of an installed application's package.
    ///
    /// # Errors
    /// [`DeviceError::NoSuchApp`], or when the file cannot be read.
    pub fn app_package(&self, name: &str) -> Result<Vec<u8>, DeviceError> {
        let app = self
            .apps()
            .iter()
            .find(|a| a.name == name)
            .ok_or_else(|| DeviceError::NoSuchApp(name.to_owned()))?;
        let file = pkg(&app.name, &app.version);
        match self.apps_dir() {
            Some(dir) => {
                let path = dir.join(file);
                std::fs::read(&path).map_err(DeviceError::file("read", &path))
            }
            None => Ok(self
                .runtime
                .memory_packages
                .get(&file)
                .cloned()
                .unwrap_or_default()),
        }
    }

    /// The software configuration's name, when one is in force.
    pub fn software_configuration(&self) -> Option<&str> {
        self.manage().software.as_ref().map(|j| j.name.as_str())
    }

    /// The phone user installs an application of their own (source "user") from its package
    /// bytes.
    ///
    /// # Errors
    /// [`DeviceError::Locked`]; [`DeviceError::AppRefused`] when the IT policy forbids
    /// third-party applications, the software configuration does not permit it or allows
    /// only what it lists, the organization installed it, or the name or package is not
    /// usable; or when the package or state cannot be written.
    pub fn install_local_app(
        &mut self,
        name: &str,
        version: &str,
        package: &[u8],
    ) -> Result<InstalledApp, DeviceError> {
        if self.is_locked() {
            return Err(DeviceError::Locked);
        }
        check_name("name", name, false).map_err(DeviceError::AppRefused)?;
        check_name("version", version, false).map_err(DeviceError::AppRefused)?;
        if !self.policy_settings().allow_third_party_apps {
            return Err(DeviceError::AppRefused(
                "your IT policy does not allow applications you install yourself".into(),
            ));
        }
        if let Some(job) = &self.manage().software {
            let rule = job.rules.iter().find(|r| r.name == name);
            match rule {
                Some(r) if r.disposition == disposition_word(AppDisposition::AppNotPermitted) => {
                    return Err(DeviceError::AppRefused(
                        "your organization does not permit it on this device".into(),
                    ));
                }
                None if !job.allow_unlisted => {
                    return Err(DeviceError::AppRefused(format!(
                        "your organization's software configuration ({}) allows only the \
                         applications it lists",
                        job.name
                    )));
                }
                _ => {}
            }
        }
        if self
            .apps()
            .iter()
            .any(|a| a.name == name && a.source == AppSource::Organization)
        {
            return Err(DeviceError::AppRefused(
                "your organization installed this application; it keeps it up to date".into(),
            ));
        }
        if package.len() as u64 > MAX_PACKAGE {
            return Err(DeviceError::AppRefused(format!(
                "its package is larger than the {} MiB this device accepts",
                MAX_PACKAGE >> 20
            )));
        }
        let file = pkg(name, version);
        let tmp = format!("{file}.new");
        self.delete(&tmp)?;
        self.append(&tmp, package)?;
        self.rename(&tmp, &file)?;
        let app = InstalledApp {
            name: name.to_owned(),
            version: version.to_owned(),
            sha256: sha256_hex(package),
            size: package.len() as u64,
            source: AppSource::User,
            installed_at_ms: super::now_ms(),
        };
        self.record_installed(app.clone())?;
        self.refresh_compliance()?;
        tracing::info!(name, version, "application installed by the user");
        Ok(app)
    }

    /// The phone user removes an application.
    ///
    /// # Errors
    /// [`DeviceError::Locked`], [`DeviceError::NoSuchApp`],
    /// [`DeviceError::AppRemoveRefused`] for one the software configuration requires, or when
    /// the state cannot be written.
    pub fn remove_app(&mut self, name: &str) -> Result<InstalledApp, DeviceError> {
        if self.is_locked() {
            return Err(DeviceError::Locked);
        }
        if !self.apps().iter().any(|a| a.name == name) {
            return Err(DeviceError::NoSuchApp(name.to_owned()));
        }
        let required = self.manage().software.as_ref().is_some_and(|j| {
            j.rules.iter().any(|r| {
                r.name == name && r.disposition == disposition_word(AppDisposition::AppRequired)
            })
        });
        if required {
            return Err(DeviceError::AppRemoveRefused(
                "your organization requires it on this device".into(),
            ));
        }
        let app = self.remove_app_unchecked(name)?;
        self.refresh_compliance()?;
        Ok(app)
    }

    /// Removes an application (the list first, then its package).
    pub(crate) fn remove_app_unchecked(&mut self, name: &str) -> Result<InstalledApp, DeviceError> {
        let app = self
            .apps()
            .iter()
            .find(|a| a.name == name)
            .cloned()
            .ok_or_else(|| DeviceError::NoSuchApp(name.to_owned()))?;
        self.update_manage(|m| m.apps.retain(|a| a.name != name))?;
        self.delete(&pkg(&app.name, &app.version))?;
        tracing::info!(name, version = %app.version, "application removed");
        Ok(app)
    }

    /// Records an installed application, replacing another version of it (whose package
    /// goes).
    fn record_installed(&mut self, app: InstalledApp) -> Result<(), DeviceError> {
        let old: Vec<InstalledApp> = self
            .apps()
            .iter()
            .filter(|a| a.name == app.name && a.version != app.version)
            .cloned()
            .collect();
        self.update_manage(|m| {
            m.apps.retain(|a| a.name != app.name);
            m.apps.push(app);
        })?;
        for o in old {
            self.delete(&pkg(&o.name, &o.version))?;
        }
        Ok(())
    }

    // ---- what the server sends ----------------------------------------------------------

    /// A software configuration (a deployment job).
    pub(crate) fn software_config(
        &mut self,
        cfg: &schema::SoftwareConfig,
        out: &mut Outcome,
    ) -> Result<(), DeviceError> {
        if let Some(job) = self.manage().software.clone()
            && job.job_id == cfg.job_id
        {
            match &job.report {
                Some(report) => {
                    let report = report.clone();
                    self.update_manage(|m| m.queue_encoded(report))?;
                    out.events.push(ManageEvent::SoftwareReported {
                        job_id: job.job_id,
                        name: job.name,
                    });
                }
                None => {
                    if let Some(req) = self.package_request() {
                        out.direct.push(req);
                    }
                }
            }
            return Ok(());
        }
        // A job that replaces one not finished: what was being fetched for it goes.
        if let Some(old) = self.manage().software.clone() {
            for (n, v) in &old.to_fetch {
                self.delete(&part(n, v))?;
            }
        }
        let name = crate::mail::cut_at(&cfg.name, 256).to_owned();
        let mut results = Vec::new();
        let mut rules: Vec<RuleRecord> = Vec::new();
        let mut to_fetch = Vec::new();
        let mut removals: Vec<(String, String)> = Vec::new();
        if cfg.apps.len() > MAX_APPS {
            let reason = format!(
                "a software configuration listing {} applications (this device takes at most \
                 {MAX_APPS})",
                cfg.apps.len()
            );
            out.events.push(ManageEvent::Refused {
                reason: reason.clone(),
            });
            results.push(result(
                &name,
                "",
                AppState::AppFailed,
                &format!("Refused: {reason}."),
            ));
        } else {
            for rule in &cfg.apps {
                if let Err(why) = check_name("name", &rule.name, false)
                    .and_then(|()| check_name("version", &rule.version, true))
                {
                    results.push(result(
                        &rule.name,
                        &rule.version,
                        AppState::AppFailed,
                        &format!("The application cannot be used: {why}."),
                    ));
                    continue;
                }
                if rules.iter().any(|r| r.name == rule.name) {
                    results.push(result(
                        &rule.name,
                        &rule.version,
                        AppState::AppFailed,
                        "The application is listed twice; the first entry counts.",
                    ));
                    continue;
                }
                let disposition = rule.disposition();
                rules.push(RuleRecord {
                    name: rule.name.clone(),
                    version: rule.version.clone(),
                    disposition: disposition_word(disposition).to_owned(),
                    size: rule.size,
                    sha256: hex::encode(&rule.sha256),
                });
                let installed = self.apps().iter().find(|a| a.name == rule.name).cloned();
                let same = installed
                    .as_ref()
                    .is_some_and(|a| a.version == rule.version);
                match disposition {
                    AppDisposition::AppRequired => {
                        if rule.size > MAX_PACKAGE {
                            results.push(result(
                                &rule.name,
                                &rule.version,
                                AppState::AppFailed,
                                &format!(
                                    "Its package ({} bytes) is larger than the {} MiB this \
                                     device accepts.",
                                    rule.size,
                                    MAX_PACKAGE >> 20
                                ),
                            ));
                        } else if rule.sha256.len() != 32 {
                            results.push(result(
                                &rule.name,
                                &rule.version,
                                AppState::AppFailed,
                                "The configuration gives no usable SHA-256 for its package.",
                            ));
                        } else if same
                            && installed
                                .as_ref()
                                .is_some_and(|a| a.sha256 == hex::encode(&rule.sha256))
                        {
                            results.push(result(
                                &rule.name,
                                &rule.version,
                                AppState::AppPresent,
                                "",
                            ));
                        } else {
                            to_fetch.push((rule.name.clone(), rule.version.clone()));
                        }
                    }
                    AppDisposition::AppOptional => {
                        let state = if same {
                            AppState::AppPresent
                        } else {
                            AppState::AppAvailable
                        };
                        results.push(result(&rule.name, &rule.version, state, ""));
                    }
                    AppDisposition::AppNotPermitted => {
                        if let Some(a) = installed
                            && (rule.version.is_empty() || a.version == rule.version)
                        {
                            removals.push((
                                a.name,
                                "your organization does not permit it on this device".into(),
                            ));
                        }
                    }
                    AppDisposition::AppUnspecified => results.push(result(
                        &rule.name,
                        &rule.version,
                        AppState::AppFailed,
                        "The configuration does not say whether it is required, optional or \
                         not permitted.",
                    )),
                }
            }
            if !cfg.allow_unlisted {
                for a in self.apps() {
                    if !rules.iter().any(|r| r.name == a.name)
                        && !removals.iter().any(|(n, _)| *n == a.name)
                    {
                        removals.push((
                            a.name.clone(),
                            "your organization's software configuration does not list it".into(),
                        ));
                    }
                }
            }
        }
        // Required applications the device has take the organization as their source.
        let present: Vec<String> = results
            .iter()
            .filter(|r| r.state == app_state_word(AppState::AppPresent))
            .filter(|r| {
                rules.iter().any(|x| {
                    x.name == r.name
                        && x.disposition == disposition_word(AppDisposition::AppRequired)
                })
            })
            .map(|r| r.name.clone())
            .collect();
        let job = SoftwareJob {
            job_id: cfg.job_id,
            name: name.clone(),
            allow_unlisted: cfg.allow_unlisted,
            rules,
            results,
            to_fetch,
            report: None,
        };
        self.update_manage(|m| {
            for a in &mut m.apps {
                if present.contains(&a.name) {
                    a.source = AppSource::Organization;
                }
            }
            m.software = Some(job);
        })?;
        tracing::info!(job_id = cfg.job_id, %name, "software configuration received");
        for (app_name, reason) in removals {
            let app = self.remove_app_unchecked(&app_name)?;
            let r = result(&app.name, &app.version, AppState::AppRemoved, &reason);
            self.update_manage(|m| {
                if let Some(j) = &mut m.software {
                    j.results.push(r);
                }
            })?;
            out.events.push(ManageEvent::AppRemoved {
                name: app.name,
                version: app.version,
                reason,
            });
        }
        self.next_package(out)
    }

    /// The request for the package being fetched (from what is here), noted as asked for on
    /// this connection.
    fn package_request(&mut self) -> Option<schema::Envelope> {
        let job = self.manage().software.as_ref()?;
        let (name, version) = job.to_fetch.first()?.clone();
        let job_id = job.job_id;
        let expected = job
            .rules
            .iter()
            .find(|r| r.name == name)
            .map_or(0, |r| r.size);
        let file = part(&name, &version);
        let mut offset = self.file_len(&file);
        if offset > expected {
            // Not what this package can be: start again.
            let _ = self.delete(&file);
            offset = 0;
        }
        self.runtime.requested_epoch = Some(self.runtime.epoch);
        Some(envelope(Body::AppPackageRequest(
            schema::AppPackageRequest {
                job_id,
                name,
                version,
                offset,
            },
        )))
    }

    /// The package request, when this connection has not asked for the package being
    /// fetched yet (after a reconnection).
    pub(crate) fn package_request_for_this_connection(&mut self) -> Option<schema::Envelope> {
        if self.runtime.requested_epoch == Some(self.runtime.epoch) {
            return None;
        }
        self.package_request()
    }

    /// Asks for the next package, or, when every application is settled, makes the report.
    fn next_package(&mut self, out: &mut Outcome) -> Result<(), DeviceError> {
        if let Some(req) = self.package_request() {
            out.direct.push(req);
            return Ok(());
        }
        let Some(job) = self.manage().software.clone() else {
            return Ok(());
        };
        if job.report.is_some() {
            return Ok(());
        }
        let mut installed: Vec<String> = self
            .apps()
            .iter()
            .map(|a| format!("{} {}", a.name, a.version))
            .collect();
        installed.sort();
        let report = envelope(Body::SoftwareReport(schema::SoftwareReport {
            job_id: job.job_id,
            apps: job
                .results
                .iter()
                .map(|r| schema::AppResult {
                    name: r.name.clone(),
                    version: r.version.clone(),
                    state: app_state_of(&r.state).into(),
                    detail: r.detail.clone(),
                })
                .collect(),
            installed,
        }));
        let encoded = hex::encode(prost::Message::encode_to_vec(&report));
        self.update_manage(|m| {
            if let Some(j) = &mut m.software {
                j.report = Some(encoded.clone());
            }
            m.queue_encoded(encoded);
        })?;
        tracing::info!(job_id = job.job_id, "software configuration settled");
        out.events.push(ManageEvent::SoftwareReported {
            job_id: job.job_id,
            name: job.name,
        });
        if let Some(e) = self.refresh_compliance()? {
            out.events.push(e);
        }
        Ok(())
    }

    /// Settles the application being fetched (the first to fetch) with `state`.
    fn settle(
        &mut self,
        state: AppState,
        detail: &str,
        out: &mut Outcome,
    ) -> Result<(), DeviceError> {
        let Some((name, version)) = self
            .manage()
            .software
            .as_ref()
            .and_then(|j| j.to_fetch.first().cloned())
        else {
            return Ok(());
        };
        if state != AppState::AppInstalled {
            self.delete(&part(&name, &version))?;
            out.events.push(ManageEvent::AppFailed {
                name: name.clone(),
                version: version.clone(),
                detail: detail.to_owned(),
            });
        }
        let r = result(&name, &version, state, detail);
        self.update_manage(|m| {
            if let Some(j) = &mut m.software {
                j.to_fetch.retain(|(n, _)| *n != name);
                j.results.push(r);
            }
        })?;
        self.next_package(out)
    }

    /// A piece of the package being fetched.
    pub(crate) fn package_chunk(
        &mut self,
        chunk: &schema::AppPackageChunk,
        out: &mut Outcome,
    ) -> Result<(), DeviceError> {
        let Some(job) = self.manage().software.clone() else {
            tracing::debug!("a package piece with no software configuration in force: ignored");
            return Ok(());
        };
        let Some((name, version)) = job.to_fetch.first().cloned() else {
            tracing::debug!("a package piece when nothing is being fetched: ignored");
            return Ok(());
        };
        if chunk.job_id != job.job_id || chunk.name != name || chunk.version != version {
            tracing::debug!(chunk.job_id, %chunk.name, "a piece of another package: ignored");
            return Ok(());
        }
        let Some(rule) = job.rules.iter().find(|r| r.name == name).cloned() else {
            return Ok(());
        };
        if !chunk.error.is_empty() {
            let why = format!(
                "The server could not give its package: {}",
                crate::mail::cut_at(&chunk.error, 512)
            );
            return self.settle(AppState::AppFailed, &why, out);
        }
        let file = part(&name, &version);
        let have = self.file_len(&file);
        match fit(have, rule.size, chunk.offset, chunk.total, chunk.data.len()) {
            Piece::Fail(why) => {
                let why = format!("The package could not be downloaded: {why}.");
                self.settle(AppState::AppFailed, &why, out)
            }
            Piece::Repeat => Ok(()),
            Piece::Append { skip } => {
                let data = chunk.data.get(skip..).unwrap_or_default();
                self.append(&file, data)?;
                let now = have + data.len() as u64;
                if now < rule.size {
                    out.events.push(ManageEvent::AppDownloading {
                        name,
                        version,
                        received: now,
                        total: rule.size,
                    });
                    return Ok(());
                }
                let (sha, len) = self.digest(&file)?;
                if len != rule.size || sha != rule.sha256 {
                    return self.settle(
                        AppState::AppFailed,
                        "Its package does not match the SHA-256 the configuration gives (it \
                         was damaged or altered); it was not installed.",
                        out,
                    );
                }
                self.rename(&file, &pkg(&name, &version))?;
                self.record_installed(InstalledApp {
                    name: name.clone(),
                    version: version.clone(),
                    sha256: sha,
                    size: len,
                    source: AppSource::Organization,
                    installed_at_ms: super::now_ms(),
                })?;
                tracing::info!(%name, %version, "application installed");
                out.events.push(ManageEvent::AppInstalled { name, version });
                self.settle(AppState::AppInstalled, "", out)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_in_order_are_appended_and_the_last_one_completes() {
        assert_eq!(fit(0, 10, 0, 10, 4), Piece::Append { skip: 0 });
        assert_eq!(fit(4, 10, 4, 10, 6), Piece::Append { skip: 0 });
        // An empty package: one empty piece.
        assert_eq!(fit(0, 0, 0, 0, 0), Piece::Append { skip: 0 });
    }

    #[test]
    fn pieces_sent_again_are_ignored_or_trimmed() {
        assert_eq!(fit(8, 10, 0, 10, 4), Piece::Repeat);
        assert_eq!(fit(8, 10, 4, 10, 4), Piece::Repeat);
        assert_eq!(fit(6, 10, 4, 10, 4), Piece::Append { skip: 2 });
    }

    #[test]
    fn pieces_that_do_not_fit_fail_the_package() {
        assert!(matches!(fit(0, 10, 4, 10, 4), Piece::Fail(w) if w.contains("missing")));
        assert!(matches!(fit(0, 10, 0, 11, 4), Piece::Fail(w) if w.contains("11 bytes")));
        assert!(matches!(fit(8, 10, 8, 10, 4), Piece::Fail(w) if w.contains("past its end")));
        assert!(matches!(
            fit(0, u64::MAX, u64::MAX, u64::MAX, 2),
            Piece::Fail(_)
        ));
    }

    #[test]
    fn package_ids_are_file_names_whatever_the_name() {
        let id = package_id("../../etc/passwd", "1.0/\u{0}");
        assert_eq!(id.len(), 32);
        assert!(id.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(package_id("a", "bc"), package_id("ab", "c"));
    }

    #[test]
    fn names_are_bounded_and_printable() {
        assert!(check_name("name", "Foo", false).is_ok());
        assert!(check_name("name", "", false).is_err());
        assert!(check_name("version", "", true).is_ok());
        assert!(check_name("name", &"x".repeat(MAX_NAME + 1), false).is_err());
        assert!(check_name("name", "a\nb", false).is_err());
    }
}
