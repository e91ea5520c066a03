//! Software configurations (seed 002: the application repository and software
//! configurations): which configuration a user's device gets (user over group, no default),
//! the snapshot of it a deployment job carries, the `SoftwareConfig` a device receives, and
//! the device's report as the API shows it.
//!
//! Owns: those shapes. Must not touch: sending (the service does), package bytes beyond
//! reading them in chunks.

use bramble_proto::schema::{self, AppDisposition, AppState};
use bramble_store::{SoftwareJob, Store, StoreError};
use serde::{Deserialize, Serialize};

use crate::admin::views::{JobAppView, JobView};

/// The largest package the repository takes (64 MiB).
pub const MAX_PACKAGE: usize = 64 * 1024 * 1024;
/// Bytes of a package per `AppPackageChunk`.
pub const CHUNK: u32 = 256 * 1024;

/// One application of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapApp {
    /// The application.
    pub name: String,
    /// Its version (none for not-permitted).
    pub version: Option<String>,
    /// required, optional, not-permitted.
    pub disposition: String,
    /// The package's size.
    pub size: u64,
    /// The package's SHA-256, hex.
    pub sha256: String,
}

/// A software configuration as deployed: what a job carries, compared with the last job to
/// decide whether the device needs a new one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The configuration's name.
    pub name: String,
    /// Whether unlisted applications may stay.
    pub allow_unlisted: bool,
    /// Its applications.
    pub apps: Vec<SnapApp>,
}

impl Snapshot {
    /// Whether the device may fetch this package (required or optional in this snapshot).
    pub fn offers(&self, name: &str, version: &str) -> bool {
        self.apps.iter().any(|a| {
            a.name.eq_ignore_ascii_case(name)
                && a.version.as_deref() == Some(version)
                && a.disposition != "not-permitted"
        })
    }

    /// The `SoftwareConfig` for job `job_id`.
    pub fn to_proto(&self, job_id: i64) -> schema::SoftwareConfig {
        schema::SoftwareConfig {
            job_id: u64::try_from(job_id).unwrap_or(0),
            name: self.name.clone(),
            allow_unlisted: self.allow_unlisted,
            apps: self
                .apps
                .iter()
                .map(|a| schema::AppRule {
                    name: a.name.clone(),
                    version: a.version.clone().unwrap_or_default(),
                    disposition: match a.disposition.as_str() {
                        "required" => AppDisposition::AppRequired,
                        "optional" => AppDisposition::AppOptional,
                        _ => AppDisposition::AppNotPermitted,
                    } as i32,
                    size: a.size,
                    sha256: hex::decode(&a.sha256).unwrap_or_default().into(),
                })
                .collect(),
        }
    }
}

/// The configuration in force for `email` and where it came from ("user", "group NAME").
///
/// # Errors
/// When the database fails.
pub async fn desired(store: &Store, email: &str) -> Result<Option<(String, String)>, StoreError> {
    let c = store.software_candidates(email).await?;
    Ok(match (c.user, c.groups.into_iter().next()) {
        (Some(cfg), _) => Some((cfg, "user".to_owned())),
        (None, Some((g, cfg))) => Some((cfg, format!("group {g}"))),
        (None, None) => None,
    })
}

/// The snapshot of configuration `name` with its packages' sizes and hashes; none when it is
/// gone.
///
/// # Errors
/// When the database fails.
pub async fn snapshot(store: &Store, name: &str) -> Result<Option<Snapshot>, StoreError> {
    let Some(cfg) = store.software_config(name).await? else {
        return Ok(None);
    };
    let mut apps = Vec::with_capacity(cfg.apps.len());
    for a in cfg.apps {
        let (size, sha256) = match (&a.version, a.disposition.as_str()) {
            (Some(v), "required" | "optional") => match store.package(&a.name, v).await? {
                Some(p) => (p.size, hex::encode(&p.sha256)),
                // the package was deleted after the line was written: offer nothing
                None => continue,
            },
            _ => (0, String::new()),
        };
        apps.push(SnapApp {
            name: a.name,
            version: a.version,
            disposition: a.disposition,
            size,
            sha256,
        });
    }
    Ok(Some(Snapshot {
        name: cfg.name,
        allow_unlisted: cfg.allow_unlisted,
        apps,
    }))
}

/// What the device reported, as kept with the job.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Results {
    /// Per application.
    pub apps: Vec<JobAppView>,
    /// Installed after the job.
    pub installed: Vec<String>,
}

/// The state name of a device's answer for one application.
pub fn app_state(state: i32) -> &'static str {
    match AppState::try_from(state) {
        Ok(AppState::AppInstalled) => "installed",
        Ok(AppState::AppPresent) => "present",
        Ok(AppState::AppRemoved) => "removed",
        Ok(AppState::AppAvailable) => "available",
        Ok(AppState::AppFailed) => "failed",
        _ => "unknown",
    }
}

/// The results of a report (bounded: at most 1,000 applications are kept), whether any
/// application failed, and a one-line summary.
pub fn results_of(report: &schema::SoftwareReport) -> (Results, bool, String) {
    let apps: Vec<JobAppView> = report
        .apps
        .iter()
        .take(1000)
        .map(|a| JobAppView {
            name: a.name.chars().take(200).collect(),
            version: a.version.chars().take(100).collect(),
            state: app_state(a.state).to_owned(),
            detail: (!a.detail.is_empty()).then(|| a.detail.chars().take(500).collect()),
        })
        .collect();
    let count = |s: &str| apps.iter().filter(|a| a.state == s).count();
    let failed = count("failed") + count("unknown");
    let summary = format!(
        "{} installed, {} already present, {} removed, {} offered, {} failed",
        count("installed"),
        count("present"),
        count("removed"),
        count("available"),
        failed
    );
    let installed = report
        .installed
        .iter()
        .take(1000)
        .map(|s| s.chars().take(300).collect())
        .collect();
    (Results { apps, installed }, failed > 0, summary)
}

fn time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

/// A job as the API shows it.
pub fn job_view(job: SoftwareJob) -> JobView {
    let results: Results = job
        .results_json
        .as_deref()
        .and_then(|t| serde_json::from_str(t).ok())
        .unwrap_or_default();
    JobView {
        id: job.id,
        user: job.email,
        pin: bramble_proto::Pin(job.pin).to_string(),
        config: job.config_name,
        state: job.state,
        detail: job.detail,
        created_at: time(job.created_at_ms),
        updated_at: time(job.updated_at_ms),
        apps: results.apps,
        installed: results.installed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_is_summarised_and_bounded() {
        let report = schema::SoftwareReport {
            job_id: 3,
            apps: vec![
                schema::AppResult {
                    name: "Notes".into(),
                    version: "1.0".into(),
                    state: AppState::AppInstalled as i32,
                    detail: String::new(),
                },
                schema::AppResult {
                    name: "Game".into(),
                    version: "2".into(),
                    state: AppState::AppRemoved as i32,
                    detail: String::new(),
                },
                schema::AppResult {
                    name: "x".repeat(10_000),
                    version: "9".into(),
                    state: 99,
                    detail: "?".into(),
                },
            ],
            installed: vec!["Notes 1.0".into()],
        };
        let (r, failed, summary) = results_of(&report);
        assert!(failed, "an unknown state counts as failed");
        assert_eq!(
            summary,
            "1 installed, 0 already present, 1 removed, 0 offered, 1 failed"
        );
        assert_eq!(r.apps[2].name.len(), 200);
        assert_eq!(r.installed, vec!["Notes 1.0".to_owned()]);
    }

    #[test]
    fn a_snapshot_offers_only_listed_permitted_packages() {
        let s = Snapshot {
            name: "Sales".into(),
            allow_unlisted: false,
            apps: vec![
                SnapApp {
                    name: "Notes".into(),
                    version: Some("1.0".into()),
                    disposition: "required".into(),
                    size: 3,
                    sha256: "00ff".into(),
                },
                SnapApp {
                    name: "Game".into(),
                    version: None,
                    disposition: "not-permitted".into(),
                    size: 0,
                    sha256: String::new(),
                },
            ],
        };
        assert!(s.offers("notes", "1.0"));
        assert!(!s.offers("Notes", "2.0"));
        assert!(!s.offers("Game", ""));
        let p = s.to_proto(7);
        assert_eq!(p.job_id, 7);
        assert_eq!(p.apps[0].sha256.as_ref(), &[0x00, 0xff]);
        assert_eq!(
            p.apps[1].disposition,
            AppDisposition::AppNotPermitted as i32
        );
    }
}
