//! IT policies: named, versioned rule sets (the rules are the policy service's JSON text),
//! assigned to users and groups, and what each device was sent and answered.
//!
//! Must not touch: what the rules mean and which assignment wins (the policy service's).

use crate::groups::{as_u32, check_name, key};
use crate::{Store, StoreError, begin_write, normalize_email, now_ms, on_pool};

/// A policy's name and current version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicySummary {
    /// Its name, as typed.
    pub name: String,
    /// What it is for.
    pub description: Option<String>,
    /// The newest version.
    pub current_version: u32,
    /// When it was made (unix ms).
    pub created_at_ms: i64,
    /// When its newest version was made (unix ms).
    pub updated_at_ms: i64,
}

/// One version of a policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyVersion {
    /// The policy's name.
    pub name: String,
    /// 1, 2, …
    pub version: u32,
    /// The rules, as the policy service wrote them.
    pub rules_json: String,
    /// When (unix ms).
    pub created_at_ms: i64,
    /// Who made it.
    pub created_by: Option<String>,
    /// Why.
    pub note: Option<String>,
}

/// Which policies could apply to a user: their own assignment and their groups', by group
/// name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyCandidates {
    /// Assigned to the user directly.
    pub user: Option<String>,
    /// (group, policy) for each of the user's groups that has one, by group name.
    pub groups: Vec<(String, String)>,
}

/// What a device was last sent and what it answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevicePolicyState {
    /// The device.
    pub pin: u32,
    /// Its user.
    pub email: String,
    /// The policy sent.
    pub policy_name: String,
    /// Its version.
    pub version: u32,
    /// The hash the device answers with.
    pub hash: Vec<u8>,
    /// When it was last sent (unix ms).
    pub sent_at_ms: i64,
    /// How many times this policy was sent.
    pub send_count: u32,
    /// Whether the device applied it.
    pub applied: bool,
    /// When (unix ms).
    pub applied_at_ms: Option<i64>,
    /// What the device said it does not comply with.
    pub problems: Vec<String>,
    /// When the device last answered (unix ms).
    pub reported_at_ms: Option<i64>,
}

type StateRow = (
    i64,
    String,
    String,
    i64,
    Vec<u8>,
    i64,
    i64,
    i64,
    Option<i64>,
    String,
    Option<i64>,
);

macro_rules! state_select {
    () => {
        "SELECT p.pin, u.email, p.policy_name, p.version, p.hash, p.sent_at, \
     p.send_count, p.applied, p.applied_at, p.problems, p.reported_at \
     FROM device_policy p JOIN devices d ON d.pin = p.pin JOIN users u ON u.id = d.user_id "
    };
}

fn state(r: StateRow) -> Result<DevicePolicyState, StoreError> {
    let problems: Vec<String> = serde_json::from_str(&r.9).map_err(|e| StoreError::Corrupt {
        what: format!("device_policy.problems: {e}"),
    })?;
    Ok(DevicePolicyState {
        pin: as_u32("device_policy.pin", r.0)?,
        email: r.1,
        policy_name: r.2,
        version: as_u32("device_policy.version", r.3)?,
        hash: r.4,
        sent_at_ms: r.5,
        send_count: as_u32("device_policy.send_count", r.6)?,
        applied: r.7 != 0,
        applied_at_ms: r.8,
        problems,
        reported_at_ms: r.10,
    })
}

type SummaryRow = (String, Option<String>, i64, i64, i64);

fn summary(r: SummaryRow) -> Result<PolicySummary, StoreError> {
    Ok(PolicySummary {
        name: r.0,
        description: r.1,
        current_version: as_u32("it_policies.current_version", r.2)?,
        created_at_ms: r.3,
        updated_at_ms: r.4,
    })
}

type VersionRow = (String, i64, String, i64, Option<String>, Option<String>);

fn version(r: VersionRow) -> Result<PolicyVersion, StoreError> {
    Ok(PolicyVersion {
        name: r.0,
        version: as_u32("it_policy_versions.version", r.1)?,
        rules_json: r.2,
        created_at_ms: r.3,
        created_by: r.4,
        note: r.5,
    })
}

impl Store {
    /// Makes a policy at version 1.
    ///
    /// Errors: [`StoreError::PolicyExists`], [`StoreError::InvalidName`].
    pub async fn create_policy(
        &self,
        name: &str,
        description: Option<&str>,
        rules_json: &str,
        created_by: Option<&str>,
    ) -> Result<PolicySummary, StoreError> {
        let (name, key) = check_name("an IT policy", name)?;
        let now = now_ms();
        on_pool!(self, pool, kind => {
            let mut tx = pool.begin_with(begin_write(kind)).await?;
            let id: Option<i64> = sqlx::query_scalar(
                "INSERT INTO it_policies (name, name_key, description, current_version, \
                     created_at, updated_at) VALUES ($1, $2, $3, 1, $4, $4) \
                 ON CONFLICT (name_key) DO NOTHING RETURNING id",
            )
            .bind(&name)
            .bind(&key)
            .bind(description)
            .bind(now)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(id) = id else {
                return Err(StoreError::PolicyExists { name });
            };
            sqlx::query(
                "INSERT INTO it_policy_versions (policy_id, version, rules, created_at, \
                     created_by, note) VALUES ($1, 1, $2, $3, $4, NULL)",
            )
            .bind(id)
            .bind(rules_json)
            .bind(now)
            .bind(created_by)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
        });
        Ok(PolicySummary {
            name,
            description: description.map(str::to_owned),
            current_version: 1,
            created_at_ms: now,
            updated_at_ms: now,
        })
    }

    /// Makes the next version of a policy, atomically (two updates at once get two
    /// versions).
    ///
    /// Errors: [`StoreError::NoSuchPolicy`].
    pub async fn update_policy(
        &self,
        name: &str,
        rules_json: &str,
        created_by: Option<&str>,
        note: Option<&str>,
    ) -> Result<PolicyVersion, StoreError> {
        let k = key(name);
        let now = now_ms();
        let (id, real, v): (i64, String, i64) = on_pool!(self, pool, kind => {
            let mut tx = pool.begin_with(begin_write(kind)).await?;
            let row: Option<(i64, String, i64)> = sqlx::query_as(
                "UPDATE it_policies SET current_version = current_version + 1, updated_at = $2 \
                 WHERE name_key = $1 RETURNING id, name, current_version",
            )
            .bind(&k)
            .bind(now)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(row) = row else {
                return Err(StoreError::NoSuchPolicy {
                    name: name.trim().to_owned(),
                });
            };
            sqlx::query(
                "INSERT INTO it_policy_versions (policy_id, version, rules, created_at, \
                     created_by, note) VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(row.0)
            .bind(row.2)
            .bind(rules_json)
            .bind(now)
            .bind(created_by)
            .bind(note)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            row
        });
        let _ = id;
        Ok(PolicyVersion {
            name: real,
            version: as_u32("it_policies.current_version", v)?,
            rules_json: rules_json.to_owned(),
            created_at_ms: now,
            created_by: created_by.map(str::to_owned),
            note: note.map(str::to_owned),
        })
    }

    /// Sets or clears a policy's description (no new version).
    ///
    /// Errors: [`StoreError::NoSuchPolicy`].
    pub async fn set_policy_description(
        &self,
        name: &str,
        description: Option<&str>,
    ) -> Result<(), StoreError> {
        let k = key(name);
        let n = on_pool!(self, pool => {
            sqlx::query("UPDATE it_policies SET description = $2 WHERE name_key = $1")
                .bind(&k)
                .bind(description)
                .execute(pool)
                .await?
                .rows_affected()
        });
        if n == 0 {
            return Err(StoreError::NoSuchPolicy {
                name: name.trim().to_owned(),
            });
        }
        Ok(())
    }

    /// Every policy, by name.
    pub async fn policies(&self) -> Result<Vec<PolicySummary>, StoreError> {
        let rows: Vec<SummaryRow> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT name, description, current_version, created_at, updated_at \
                 FROM it_policies ORDER BY name_key",
            )
            .fetch_all(pool)
            .await?
        });
        rows.into_iter().map(summary).collect()
    }

    /// The policy with this name (any case).
    pub async fn policy(&self, name: &str) -> Result<Option<PolicySummary>, StoreError> {
        let k = key(name);
        let row: Option<SummaryRow> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT name, description, current_version, created_at, updated_at \
                 FROM it_policies WHERE name_key = $1",
            )
            .bind(&k)
            .fetch_optional(pool)
            .await?
        });
        row.map(summary).transpose()
    }

    /// One version of a policy (`None`: the current one).
    pub async fn policy_version(
        &self,
        name: &str,
        v: Option<u32>,
    ) -> Result<Option<PolicyVersion>, StoreError> {
        let k = key(name);
        let row: Option<VersionRow> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT p.name, v.version, v.rules, v.created_at, v.created_by, v.note \
                 FROM it_policy_versions v JOIN it_policies p ON p.id = v.policy_id \
                 WHERE p.name_key = $1 AND v.version = COALESCE($2, p.current_version)",
            )
            .bind(&k)
            .bind(v.map(i64::from))
            .fetch_optional(pool)
            .await?
        });
        row.map(version).transpose()
    }

    /// Every version of a policy, oldest first.
    pub async fn policy_versions(&self, name: &str) -> Result<Vec<PolicyVersion>, StoreError> {
        let k = key(name);
        let rows: Vec<VersionRow> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT p.name, v.version, v.rules, v.created_at, v.created_by, v.note \
                 FROM it_policy_versions v JOIN it_policies p ON p.id = v.policy_id \
                 WHERE p.name_key = $1 ORDER BY v.version",
            )
            .bind(&k)
            .fetch_all(pool)
            .await?
        });
        rows.into_iter().map(version).collect()
    }

    /// Deletes a policy, its versions and its assignments.
    pub async fn delete_policy(&self, name: &str) -> Result<bool, StoreError> {
        let k = key(name);
        let n = on_pool!(self, pool => {
            sqlx::query("DELETE FROM it_policies WHERE name_key = $1")
                .bind(&k)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(n > 0)
    }

    async fn policy_id(&self, name: &str) -> Result<i64, StoreError> {
        let k = key(name);
        let id: Option<i64> = on_pool!(self, pool => {
            sqlx::query_scalar("SELECT id FROM it_policies WHERE name_key = $1")
                .bind(&k)
                .fetch_optional(pool)
                .await?
        });
        id.ok_or_else(|| StoreError::NoSuchPolicy {
            name: name.trim().to_owned(),
        })
    }

    /// Assigns a policy to a user (`None` removes the assignment).
    ///
    /// Errors: [`StoreError::NoSuchUser`], [`StoreError::NoSuchPolicy`].
    pub async fn assign_policy_to_user(
        &self,
        email: &str,
        policy: Option<&str>,
    ) -> Result<(), StoreError> {
        let uid = self.user_id(email).await?;
        self.assign("user_policy", "user_id", uid, policy).await
    }

    /// Assigns a policy to a group (`None` removes the assignment).
    ///
    /// Errors: [`StoreError::NoSuchGroup`], [`StoreError::NoSuchPolicy`].
    pub async fn assign_policy_to_group(
        &self,
        group: &str,
        policy: Option<&str>,
    ) -> Result<(), StoreError> {
        let gid = self.group_id(group).await?;
        self.assign("group_policy", "group_id", gid, policy).await
    }

    async fn assign(
        &self,
        table: &'static str,
        column: &'static str,
        id: i64,
        policy: Option<&str>,
    ) -> Result<(), StoreError> {
        let user = (table, column) == ("user_policy", "user_id");
        match policy {
            None => {
                let sql = if user {
                    "DELETE FROM user_policy WHERE user_id = $1"
                } else {
                    "DELETE FROM group_policy WHERE group_id = $1"
                };
                on_pool!(self, pool => {
                    sqlx::query(sql).bind(id).execute(pool).await?;
                });
            }
            Some(p) => {
                let pid = self.policy_id(p).await?;
                let sql = if user {
                    "INSERT INTO user_policy (user_id, policy_id) VALUES ($1, $2) \
                     ON CONFLICT (user_id) DO UPDATE SET policy_id = excluded.policy_id"
                } else {
                    "INSERT INTO group_policy (group_id, policy_id) VALUES ($1, $2) \
                     ON CONFLICT (group_id) DO UPDATE SET policy_id = excluded.policy_id"
                };
                on_pool!(self, pool => {
                    sqlx::query(sql).bind(id).bind(pid).execute(pool).await?;
                });
            }
        }
        Ok(())
    }

    /// The user's own policy and their groups' (by group name).
    pub async fn policy_candidates(&self, email: &str) -> Result<PolicyCandidates, StoreError> {
        let email = normalize_email(email);
        let user: Option<(String,)> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT p.name FROM user_policy a JOIN it_policies p ON p.id = a.policy_id \
                 JOIN users u ON u.id = a.user_id WHERE u.email = $1",
            )
            .bind(&email)
            .fetch_optional(pool)
            .await?
        });
        let groups: Vec<(String, String)> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT g.name, p.name FROM group_members m \
                 JOIN users u ON u.id = m.user_id \
                 JOIN user_groups g ON g.id = m.group_id \
                 JOIN group_policy a ON a.group_id = g.id \
                 JOIN it_policies p ON p.id = a.policy_id \
                 WHERE u.email = $1 ORDER BY g.name_key",
            )
            .bind(&email)
            .fetch_all(pool)
            .await?
        });
        Ok(PolicyCandidates {
            user: user.map(|(p,)| p),
            groups,
        })
    }

    /// The users (by address) and groups (by name) a policy is assigned to.
    pub async fn policy_assignees(
        &self,
        policy: &str,
    ) -> Result<(Vec<String>, Vec<String>), StoreError> {
        let k = key(policy);
        let users: Vec<(String,)> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT u.email FROM user_policy a JOIN users u ON u.id = a.user_id \
                 JOIN it_policies p ON p.id = a.policy_id WHERE p.name_key = $1 ORDER BY u.email",
            )
            .bind(&k)
            .fetch_all(pool)
            .await?
        });
        let groups: Vec<(String,)> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT g.name FROM group_policy a JOIN user_groups g ON g.id = a.group_id \
                 JOIN it_policies p ON p.id = a.policy_id WHERE p.name_key = $1 \
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

    /// Records the policy sent to a device. Another hash than the one recorded starts afresh
    /// (not applied, no problems, sent once); the same hash counts one more send.
    ///
    /// Errors: [`StoreError::NoSuchDevice`].
    pub async fn record_policy_sent(
        &self,
        pin: u32,
        name: &str,
        version: u32,
        hash: &[u8],
    ) -> Result<(), StoreError> {
        let now = now_ms();
        let result = on_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO device_policy (pin, policy_name, version, hash, sent_at, send_count, \
                     applied, applied_at, problems, reported_at) \
                 VALUES ($1, $2, $3, $4, $5, 1, 0, NULL, '[]', NULL) \
                 ON CONFLICT (pin) DO UPDATE SET \
                     send_count = CASE WHEN device_policy.hash = excluded.hash \
                         THEN device_policy.send_count + 1 ELSE 1 END, \
                     applied = CASE WHEN device_policy.hash = excluded.hash \
                         THEN device_policy.applied ELSE 0 END, \
                     applied_at = CASE WHEN device_policy.hash = excluded.hash \
                         THEN device_policy.applied_at ELSE NULL END, \
                     problems = CASE WHEN device_policy.hash = excluded.hash \
                         THEN device_policy.problems ELSE '[]' END, \
                     reported_at = CASE WHEN device_policy.hash = excluded.hash \
                         THEN device_policy.reported_at ELSE NULL END, \
                     policy_name = excluded.policy_name, version = excluded.version, \
                     hash = excluded.hash, sent_at = excluded.sent_at",
            )
            .bind(i64::from(pin))
            .bind(name)
            .bind(i64::from(version))
            .bind(hash)
            .bind(now)
            .execute(pool)
            .await
            .map(|_| ())
        });
        match result {
            Ok(()) => Ok(()),
            Err(e)
                if e.as_database_error()
                    .is_some_and(|d| d.is_foreign_key_violation()) =>
            {
                Err(StoreError::NoSuchDevice { pin })
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Records a device's answer to the policy it was last sent; false (nothing recorded)
    /// when `hash` is not that policy's.
    pub async fn record_policy_applied(
        &self,
        pin: u32,
        hash: &[u8],
        applied: bool,
        problems: &[String],
    ) -> Result<bool, StoreError> {
        let now = now_ms();
        let problems = serde_json::to_string(problems).unwrap_or_else(|_| "[]".into());
        let n = on_pool!(self, pool => {
            sqlx::query(
                "UPDATE device_policy SET applied = $3, \
                     applied_at = CASE WHEN $3 = 1 THEN COALESCE(applied_at, $4) ELSE NULL END, \
                     problems = $5, reported_at = $4 WHERE pin = $1 AND hash = $2",
            )
            .bind(i64::from(pin))
            .bind(hash)
            .bind(i64::from(applied))
            .bind(now)
            .bind(&problems)
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(n > 0)
    }

    /// What a device was sent and answered.
    pub async fn device_policy(&self, pin: u32) -> Result<Option<DevicePolicyState>, StoreError> {
        let sql = concat!(state_select!(), " WHERE p.pin = $1");
        let row: Option<StateRow> = on_pool!(self, pool => {
            sqlx::query_as(sql).bind(i64::from(pin)).fetch_optional(pool).await?
        });
        row.map(state).transpose()
    }

    /// Every device's policy state, by PIN.
    pub async fn device_policies(&self) -> Result<Vec<DevicePolicyState>, StoreError> {
        let sql = concat!(state_select!(), " ORDER BY p.pin");
        let rows: Vec<StateRow> = on_pool!(self, pool => {
            sqlx::query_as(sql).fetch_all(pool).await?
        });
        rows.into_iter().map(state).collect()
    }

    /// Devices whose policy was last sent before `before_ms`, oldest first, at most `limit`.
    pub async fn device_policies_sent_before(
        &self,
        before_ms: i64,
        limit: u32,
    ) -> Result<Vec<DevicePolicyState>, StoreError> {
        let sql = concat!(
            state_select!(),
            " WHERE p.sent_at < $1 ORDER BY p.sent_at LIMIT $2"
        );
        let rows: Vec<StateRow> = on_pool!(self, pool => {
            sqlx::query_as(sql)
                .bind(before_ms)
                .bind(i64::from(limit))
                .fetch_all(pool)
                .await?
        });
        rows.into_iter().map(state).collect()
    }
}
