//! Software: the application repository (packages by name and version, their bytes kept in
//! the database), software configurations (applications required, optional or not
//! permitted; whether unlisted ones may stay), their assignments to users and groups, and
//! deployment jobs with each device's report.
//!
//! Must not touch: which configuration wins or what a job means (the policy service's).

use crate::groups::{as_u32, check_name, key};
use crate::{Store, StoreError, begin_write, dialect, normalize_email, now_ms, on_pool, to_db_u64};

/// A package's dispositions in a configuration.
pub const DISPOSITIONS: [&str; 3] = ["required", "optional", "not-permitted"];

/// A package in the repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Package {
    /// The application.
    pub name: String,
    /// Its version.
    pub version: String,
    /// Bytes.
    pub size: u64,
    /// SHA-256 of the content.
    pub sha256: Vec<u8>,
    /// When it was uploaded (unix ms).
    pub uploaded_at_ms: i64,
    /// Who uploaded it.
    pub uploaded_by: Option<String>,
}

/// One application line of a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigApp {
    /// The application.
    pub name: String,
    /// The version to deploy (none for not-permitted).
    pub version: Option<String>,
    /// One of [`DISPOSITIONS`].
    pub disposition: String,
}

/// A software configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SoftwareConfigRow {
    /// Its name.
    pub name: String,
    /// Whether applications it does not list may stay on a device.
    pub allow_unlisted: bool,
    /// Its applications, by name.
    pub apps: Vec<ConfigApp>,
    /// When it was made (unix ms).
    pub created_at_ms: i64,
    /// When it last changed (unix ms).
    pub updated_at_ms: i64,
}

/// Which configurations could apply to a user.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SoftwareCandidates {
    /// Assigned to the user directly.
    pub user: Option<String>,
    /// (group, configuration) for each of the user's groups that has one, by group name.
    pub groups: Vec<(String, String)>,
}

/// A deployment job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SoftwareJob {
    /// Its number.
    pub id: i64,
    /// The device.
    pub pin: u32,
    /// Its user.
    pub email: String,
    /// The configuration deployed.
    pub config_name: String,
    /// What was deployed, as the policy service wrote it.
    pub snapshot_json: String,
    /// queued, sent, done, failed, superseded.
    pub state: String,
    /// What was said last.
    pub detail: Option<String>,
    /// The device's report, as the policy service wrote it.
    pub results_json: Option<String>,
    /// When it was made (unix ms).
    pub created_at_ms: i64,
    /// When its state last changed (unix ms).
    pub updated_at_ms: i64,
    /// When it was last sent (unix ms).
    pub sent_at_ms: Option<i64>,
    /// How many times it was sent.
    pub attempts: u32,
}

type JobRow = (
    i64,
    i64,
    String,
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    i64,
    i64,
    Option<i64>,
    i64,
);

macro_rules! job_select {
    () => {
        "SELECT j.id, j.pin, u.email, j.config_name, j.snapshot, j.state, \
     j.detail, j.results, j.created_at, j.updated_at, j.sent_at, j.attempts \
     FROM software_jobs j JOIN users u ON u.id = j.user_id "
    };
}

fn job(r: JobRow) -> Result<SoftwareJob, StoreError> {
    Ok(SoftwareJob {
        id: r.0,
        pin: as_u32("software_jobs.pin", r.1)?,
        email: r.2,
        config_name: r.3,
        snapshot_json: r.4,
        state: r.5,
        detail: r.6,
        results_json: r.7,
        created_at_ms: r.8,
        updated_at_ms: r.9,
        sent_at_ms: r.10,
        attempts: as_u32("software_jobs.attempts", r.11)?,
    })
}

type PackageRow = (String, String, i64, Vec<u8>, i64, Option<String>);

fn package(r: PackageRow) -> Result<Package, StoreError> {
    Ok(Package {
        name: r.0,
        version: r.1,
        size: u64::try_from(r.2).map_err(|_| StoreError::Corrupt {
            what: format!("software_packages.size = {}", r.2),
        })?,
        sha256: r.3,
        uploaded_at_ms: r.4,
        uploaded_by: r.5,
    })
}

fn check_version(version: &str) -> Result<String, StoreError> {
    check_name("a version", version).map(|(v, _)| v)
}

impl Store {
    /// Adds a package to the repository.
    ///
    /// Errors: [`StoreError::PackageExists`], [`StoreError::InvalidName`].
    pub async fn add_package(
        &self,
        name: &str,
        version: &str,
        content: &[u8],
        sha256: &[u8],
        uploaded_by: Option<&str>,
    ) -> Result<Package, StoreError> {
        let (name, key) = check_name("an application", name)?;
        let version = check_version(version)?;
        let now = now_ms();
        let size = to_db_u64("package size", content.len() as u64)?;
        let id: Option<i64> = on_pool!(self, pool => {
            sqlx::query_scalar(
                "INSERT INTO software_packages (name, name_key, version, content, sha256, size, \
                     uploaded_at, uploaded_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
                 ON CONFLICT (name_key, version) DO NOTHING RETURNING id",
            )
            .bind(&name)
            .bind(&key)
            .bind(&version)
            .bind(content)
            .bind(sha256)
            .bind(size)
            .bind(now)
            .bind(uploaded_by)
            .fetch_optional(pool)
            .await?
        });
        if id.is_none() {
            return Err(StoreError::PackageExists { name, version });
        }
        Ok(Package {
            name,
            version,
            size: content.len() as u64,
            sha256: sha256.to_vec(),
            uploaded_at_ms: now,
            uploaded_by: uploaded_by.map(str::to_owned),
        })
    }

    /// Every package, by name and version.
    pub async fn packages(&self) -> Result<Vec<Package>, StoreError> {
        let rows: Vec<PackageRow> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT name, version, size, sha256, uploaded_at, uploaded_by \
                 FROM software_packages ORDER BY name_key, version",
            )
            .fetch_all(pool)
            .await?
        });
        rows.into_iter().map(package).collect()
    }

    /// The package `name` (any case) at `version`.
    pub async fn package(&self, name: &str, version: &str) -> Result<Option<Package>, StoreError> {
        let k = key(name);
        let row: Option<PackageRow> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT name, version, size, sha256, uploaded_at, uploaded_by \
                 FROM software_packages WHERE name_key = $1 AND version = $2",
            )
            .bind(&k)
            .bind(version.trim())
            .fetch_optional(pool)
            .await?
        });
        row.map(package).transpose()
    }

    /// Up to `len` bytes of a package from `offset` (empty past the end), read from the
    /// database without loading the rest; none when there is no such package.
    pub async fn package_content(
        &self,
        name: &str,
        version: &str,
        offset: u64,
        len: u32,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let k = key(name);
        // both dialects count from 1
        let start = to_db_u64("package offset", offset)?.saturating_add(1);
        let row: Option<(Vec<u8>,)> = on_pool!(self, pool, kind => {
            sqlx::query_as(dialect(
                kind,
                "SELECT substr(content, $3, $4) FROM software_packages \
                 WHERE name_key = $1 AND version = $2",
                "SELECT substring(content FROM $3::int FOR $4::int) FROM software_packages \
                 WHERE name_key = $1 AND version = $2",
            ))
            .bind(&k)
            .bind(version.trim())
            .bind(start)
            .bind(i64::from(len))
            .fetch_optional(pool)
            .await?
        });
        Ok(row.map(|(b,)| b))
    }

    /// Deletes a package.
    pub async fn delete_package(&self, name: &str, version: &str) -> Result<bool, StoreError> {
        let k = key(name);
        let n = on_pool!(self, pool => {
            sqlx::query("DELETE FROM software_packages WHERE name_key = $1 AND version = $2")
                .bind(&k)
                .bind(version.trim())
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(n > 0)
    }

    /// Makes a software configuration with no applications.
    ///
    /// Errors: [`StoreError::SoftwareConfigExists`], [`StoreError::InvalidName`].
    pub async fn create_software_config(
        &self,
        name: &str,
        allow_unlisted: bool,
    ) -> Result<SoftwareConfigRow, StoreError> {
        let (name, key) = check_name("a software configuration", name)?;
        let now = now_ms();
        let id: Option<i64> = on_pool!(self, pool => {
            sqlx::query_scalar(
                "INSERT INTO software_configs (name, name_key, allow_unlisted, created_at, \
                     updated_at) VALUES ($1, $2, $3, $4, $4) \
                 ON CONFLICT (name_key) DO NOTHING RETURNING id",
            )
            .bind(&name)
            .bind(&key)
            .bind(i64::from(allow_unlisted))
            .bind(now)
            .fetch_optional(pool)
            .await?
        });
        if id.is_none() {
            return Err(StoreError::SoftwareConfigExists { name });
        }
        Ok(SoftwareConfigRow {
            name,
            allow_unlisted,
            apps: Vec::new(),
            created_at_ms: now,
            updated_at_ms: now,
        })
    }

    async fn config_id(&self, name: &str) -> Result<i64, StoreError> {
        let k = key(name);
        let id: Option<i64> = on_pool!(self, pool => {
            sqlx::query_scalar("SELECT id FROM software_configs WHERE name_key = $1")
                .bind(&k)
                .fetch_optional(pool)
                .await?
        });
        id.ok_or_else(|| StoreError::NoSuchSoftwareConfig {
            name: name.trim().to_owned(),
        })
    }

    async fn touch_config(&self, id: i64) -> Result<(), StoreError> {
        on_pool!(self, pool => {
            sqlx::query("UPDATE software_configs SET updated_at = $2 WHERE id = $1")
                .bind(id)
                .bind(now_ms())
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// Whether applications a configuration does not list may stay.
    ///
    /// Errors: [`StoreError::NoSuchSoftwareConfig`].
    pub async fn set_software_allow_unlisted(
        &self,
        name: &str,
        allow: bool,
    ) -> Result<(), StoreError> {
        let id = self.config_id(name).await?;
        on_pool!(self, pool => {
            sqlx::query("UPDATE software_configs SET allow_unlisted = $2, updated_at = $3 WHERE id = $1")
                .bind(id)
                .bind(i64::from(allow))
                .bind(now_ms())
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// Sets one application's line of a configuration. A required or optional application
    /// needs its package (`app`, `version`) in the repository.
    ///
    /// Errors: [`StoreError::NoSuchSoftwareConfig`], [`StoreError::NoSuchPackage`],
    /// [`StoreError::InvalidValue`], [`StoreError::InvalidName`].
    pub async fn set_software_config_app(
        &self,
        config: &str,
        app: &str,
        version: Option<&str>,
        disposition: &str,
    ) -> Result<(), StoreError> {
        if !DISPOSITIONS.contains(&disposition) {
            return Err(StoreError::InvalidValue {
                what: "disposition",
                value: disposition.to_owned(),
                allowed: DISPOSITIONS.join(", "),
            });
        }
        let (app, app_key) = check_name("an application", app)?;
        let version = version.map(check_version).transpose()?;
        let id = self.config_id(config).await?;
        // a package named in another case is the same application: keep the repository's name
        let mut shown = app.clone();
        if disposition != "not-permitted" {
            let v = version.clone().unwrap_or_default();
            match self.package(&app, &v).await? {
                Some(p) => shown = p.name,
                None => {
                    return Err(StoreError::NoSuchPackage {
                        name: app,
                        version: v,
                    });
                }
            }
        }
        on_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO software_config_apps (config_id, app_name, app_key, version, \
                     disposition) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (config_id, app_key) DO UPDATE SET app_name = excluded.app_name, \
                     version = excluded.version, disposition = excluded.disposition",
            )
            .bind(id)
            .bind(&shown)
            .bind(&app_key)
            .bind(version.as_deref())
            .bind(disposition)
            .execute(pool)
            .await?;
        });
        self.touch_config(id).await
    }

    /// Removes one application's line; true when it was there.
    ///
    /// Errors: [`StoreError::NoSuchSoftwareConfig`].
    pub async fn remove_software_config_app(
        &self,
        config: &str,
        app: &str,
    ) -> Result<bool, StoreError> {
        let id = self.config_id(config).await?;
        let k = key(app);
        let n = on_pool!(self, pool => {
            sqlx::query("DELETE FROM software_config_apps WHERE config_id = $1 AND app_key = $2")
                .bind(id)
                .bind(&k)
                .execute(pool)
                .await?
                .rows_affected()
        });
        self.touch_config(id).await?;
        Ok(n > 0)
    }

    /// Every configuration, by name.
    pub async fn software_configs(&self) -> Result<Vec<SoftwareConfigRow>, StoreError> {
        let names: Vec<(String,)> = on_pool!(self, pool => {
            sqlx::query_as("SELECT name_key FROM software_configs ORDER BY name_key")
                .fetch_all(pool)
                .await?
        });
        let mut out = Vec::with_capacity(names.len());
        for (n,) in names {
            if let Some(c) = self.software_config(&n).await? {
                out.push(c);
            }
        }
        Ok(out)
    }

    /// The configuration with this name (any case).
    pub async fn software_config(
        &self,
        name: &str,
    ) -> Result<Option<SoftwareConfigRow>, StoreError> {
        let k = key(name);
        let row: Option<(i64, String, i64, i64, i64)> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT id, name, allow_unlisted, created_at, updated_at FROM software_configs \
                 WHERE name_key = $1",
            )
            .bind(&k)
            .fetch_optional(pool)
            .await?
        });
        let Some((id, name, allow, created_at_ms, updated_at_ms)) = row else {
            return Ok(None);
        };
        let apps: Vec<(String, Option<String>, String)> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT app_name, version, disposition FROM software_config_apps \
                 WHERE config_id = $1 ORDER BY app_key",
            )
            .bind(id)
            .fetch_all(pool)
            .await?
        });
        Ok(Some(SoftwareConfigRow {
            name,
            allow_unlisted: allow != 0,
            apps: apps
                .into_iter()
                .map(|(name, version, disposition)| ConfigApp {
                    name,
                    version,
                    disposition,
                })
                .collect(),
            created_at_ms,
            updated_at_ms,
        }))
    }

    /// Deletes a configuration and its assignments.
    pub async fn delete_software_config(&self, name: &str) -> Result<bool, StoreError> {
        let k = key(name);
        let n = on_pool!(self, pool => {
            sqlx::query("DELETE FROM software_configs WHERE name_key = $1")
                .bind(&k)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(n > 0)
    }

    async fn assign_software(
        &self,
        table: &'static str,
        column: &'static str,
        id: i64,
        config: Option<&str>,
    ) -> Result<(), StoreError> {
        let user = (table, column) == ("user_software", "user_id");
        match config {
            None => {
                let sql = if user {
                    "DELETE FROM user_software WHERE user_id = $1"
                } else {
                    "DELETE FROM group_software WHERE group_id = $1"
                };
                on_pool!(self, pool => {
                    sqlx::query(sql).bind(id).execute(pool).await?;
                });
            }
            Some(c) => {
                let cid = self.config_id(c).await?;
                let sql = if user {
                    "INSERT INTO user_software (user_id, config_id) VALUES ($1, $2) \
                     ON CONFLICT (user_id) DO UPDATE SET config_id = excluded.config_id"
                } else {
                    "INSERT INTO group_software (group_id, config_id) VALUES ($1, $2) \
                     ON CONFLICT (group_id) DO UPDATE SET config_id = excluded.config_id"
                };
                on_pool!(self, pool => {
                    sqlx::query(sql).bind(id).bind(cid).execute(pool).await?;
                });
            }
        }
        Ok(())
    }

    /// Assigns a configuration to a user (`None` removes it).
    ///
    /// Errors: [`StoreError::NoSuchUser`], [`StoreError::NoSuchSoftwareConfig`].
    pub async fn assign_software_to_user(
        &self,
        email: &str,
        config: Option<&str>,
    ) -> Result<(), StoreError> {
        let uid = self.user_id(email).await?;
        self.assign_software("user_software", "user_id", uid, config)
            .await
    }

    /// Assigns a configuration to a group (`None` removes it).
    ///
    /// Errors: [`StoreError::NoSuchGroup`], [`StoreError::NoSuchSoftwareConfig`].
    pub async fn assign_software_to_group(
        &self,
        group: &str,
        config: Option<&str>,
    ) -> Result<(), StoreError> {
        let gid = self.group_id(group).await?;
        self.assign_software("group_software", "group_id", gid, config)
            .await
    }

    /// The user's own configuration and their groups' (by group name).
    pub async fn software_candidates(&self, email: &str) -> Result<SoftwareCandidates, StoreError> {
        let email = normalize_email(email);
        let user: Option<(String,)> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT c.name FROM user_software a JOIN software_configs c ON c.id = a.config_id \
                 JOIN users u ON u.id = a.user_id WHERE u.email = $1",
            )
            .bind(&email)
            .fetch_optional(pool)
            .await?
        });
        let groups: Vec<(String, String)> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT g.name, c.name FROM group_members m \
                 JOIN users u ON u.id = m.user_id \
                 JOIN user_groups g ON g.id = m.group_id \
                 JOIN group_software a ON a.group_id = g.id \
                 JOIN software_configs c ON c.id = a.config_id \
                 WHERE u.email = $1 ORDER BY g.name_key",
            )
            .bind(&email)
            .fetch_all(pool)
            .await?
        });
        Ok(SoftwareCandidates {
            user: user.map(|(c,)| c),
            groups,
        })
    }

    /// The users and groups a configuration is assigned to.
    pub async fn software_assignees(
        &self,
        config: &str,
    ) -> Result<(Vec<String>, Vec<String>), StoreError> {
        let k = key(config);
        let users: Vec<(String,)> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT u.email FROM user_software a JOIN users u ON u.id = a.user_id \
                 JOIN software_configs c ON c.id = a.config_id WHERE c.name_key = $1 \
                 ORDER BY u.email",
            )
            .bind(&k)
            .fetch_all(pool)
            .await?
        });
        let groups: Vec<(String,)> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT g.name FROM group_software a JOIN user_groups g ON g.id = a.group_id \
                 JOIN software_configs c ON c.id = a.config_id WHERE c.name_key = $1 \
                 ORDER BY g.name_key",
            )
            .bind(&k)
            .fetch_all(pool)
            .await?
        });
        Ok((
            users.into_iter().map(|(e,)| e).collect(),
            groups.into_iter().map(|(g,)| g).collect(),
        ))
    }

    /// A new deployment job for a device; the device's open jobs become superseded in the
    /// same transaction.
    ///
    /// Errors: [`StoreError::NoSuchUser`], [`StoreError::NoSuchDevice`].
    pub async fn add_software_job(
        &self,
        pin: u32,
        email: &str,
        config_name: &str,
        snapshot_json: &str,
    ) -> Result<SoftwareJob, StoreError> {
        let uid = self.user_id(email).await?;
        if self.device_by_pin(pin).await?.is_none() {
            return Err(StoreError::NoSuchDevice { pin });
        }
        let now = now_ms();
        let id: i64 = on_pool!(self, pool, k => {
            let mut tx = pool.begin_with(begin_write(k)).await?;
            sqlx::query(
                "UPDATE software_jobs SET state = 'superseded', updated_at = $2, \
                 detail = 'a newer job replaced it' WHERE pin = $1 AND state IN ('queued', 'sent')",
            )
            .bind(i64::from(pin))
            .bind(now)
            .execute(&mut *tx)
            .await?;
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO software_jobs (pin, user_id, config_name, snapshot, state, detail, \
                     results, created_at, updated_at, sent_at, attempts) \
                 VALUES ($1, $2, $3, $4, 'queued', NULL, NULL, $5, $5, NULL, 0) RETURNING id",
            )
            .bind(i64::from(pin))
            .bind(uid)
            .bind(config_name)
            .bind(snapshot_json)
            .bind(now)
            .fetch_one(&mut *tx)
            .await?;
            tx.commit().await?;
            id
        });
        self.software_job(id)
            .await?
            .ok_or_else(|| StoreError::Corrupt {
                what: format!("software job {id} vanished"),
            })
    }

    /// The job with this number.
    pub async fn software_job(&self, id: i64) -> Result<Option<SoftwareJob>, StoreError> {
        let sql = concat!(job_select!(), " WHERE j.id = $1");
        let row: Option<JobRow> = on_pool!(self, pool => {
            sqlx::query_as(sql).bind(id).fetch_optional(pool).await?
        });
        row.map(job).transpose()
    }

    /// Jobs, newest first (only `email`'s when given).
    pub async fn software_jobs(
        &self,
        email: Option<&str>,
        limit: u32,
    ) -> Result<Vec<SoftwareJob>, StoreError> {
        Ok(self.software_jobs_page(email, 0, limit).await?.0)
    }

    /// One page of [`Store::software_jobs`], and how many there are in all.
    pub async fn software_jobs_page(
        &self,
        email: Option<&str>,
        offset: u64,
        limit: u32,
    ) -> Result<(Vec<SoftwareJob>, u64), StoreError> {
        let sql = concat!(
            job_select!(),
            " WHERE ($1 IS NULL OR u.email = $1) ORDER BY j.id DESC LIMIT $2 OFFSET $3"
        );
        let count = "SELECT COUNT(*) FROM software_jobs j JOIN users u ON u.id = j.user_id \
                     WHERE ($1 IS NULL OR u.email = $1)";
        let email = email.map(normalize_email);
        let offset = i64::try_from(offset).unwrap_or(i64::MAX);
        let (rows, total): (Vec<JobRow>, i64) = on_pool!(self, pool => {
            let rows = sqlx::query_as(sql)
                .bind(email.as_deref())
                .bind(i64::from(limit))
                .bind(offset)
                .fetch_all(pool)
                .await?;
            let total = sqlx::query_scalar(count)
                .bind(email.as_deref())
                .fetch_one(pool)
                .await?;
            (rows, total)
        });
        let jobs = rows.into_iter().map(job).collect::<Result<Vec<_>, _>>()?;
        Ok((jobs, u64::try_from(total).unwrap_or(0)))
    }

    /// Records a send (only of a queued or sent job).
    pub async fn mark_software_job_sent(&self, id: i64) -> Result<bool, StoreError> {
        let now = now_ms();
        let n = on_pool!(self, pool => {
            sqlx::query(
                "UPDATE software_jobs SET state = 'sent', sent_at = $2, updated_at = $2, \
                 attempts = attempts + 1 WHERE id = $1 AND state IN ('queued', 'sent')",
            )
            .bind(id)
            .bind(now)
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(n > 0)
    }

    /// Closes a job (done or failed) with the device's results; false when it was closed or
    /// superseded already.
    pub async fn finish_software_job(
        &self,
        id: i64,
        state: &str,
        detail: Option<&str>,
        results_json: Option<&str>,
    ) -> Result<bool, StoreError> {
        if !matches!(state, "done" | "failed") {
            return Err(StoreError::InvalidValue {
                what: "final job state",
                value: state.to_owned(),
                allowed: "done, failed".into(),
            });
        }
        let now = now_ms();
        let n = on_pool!(self, pool => {
            sqlx::query(
                "UPDATE software_jobs SET state = $2, detail = $3, results = $4, updated_at = $5 \
                 WHERE id = $1 AND state IN ('queued', 'sent')",
            )
            .bind(id)
            .bind(state)
            .bind(detail)
            .bind(results_json)
            .bind(now)
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(n > 0)
    }

    /// Jobs to send: queued ones, and sent ones last sent before `sent_before_ms`.
    pub async fn software_jobs_to_send(
        &self,
        sent_before_ms: i64,
        limit: u32,
    ) -> Result<Vec<SoftwareJob>, StoreError> {
        let sql = concat!(
            job_select!(),
            " WHERE j.state = 'queued' OR (j.state = 'sent' AND j.sent_at < $1) \
             ORDER BY j.id LIMIT $2"
        );
        let rows: Vec<JobRow> = on_pool!(self, pool => {
            sqlx::query_as(sql)
                .bind(sent_before_ms)
                .bind(i64::from(limit))
                .fetch_all(pool)
                .await?
        });
        rows.into_iter().map(job).collect()
    }

    /// A device's newest job.
    pub async fn latest_software_job(&self, pin: u32) -> Result<Option<SoftwareJob>, StoreError> {
        let sql = concat!(
            job_select!(),
            " WHERE j.pin = $1 ORDER BY j.id DESC LIMIT 1"
        );
        let row: Option<JobRow> = on_pool!(self, pool => {
            sqlx::query_as(sql).bind(i64::from(pin)).fetch_optional(pool).await?
        });
        row.map(job).transpose()
    }
}
