//! IT admin commands and their receipts: each command's state and the timeline of every
//! state it went through.
//!
//! Must not touch: what a command does (the policy service sends it and reads the answers);
//! here only the rule that a final state is final.

use crate::groups::as_u32;
use crate::{Store, StoreError, begin_write, normalize_email, now_ms, on_pool};

/// Every state a command can be in; the last three are final.
pub const COMMAND_STATES: [&str; 6] = ["queued", "sent", "pending", "done", "failed", "cancelled"];

const FINAL: [&str; 3] = ["done", "failed", "cancelled"];

/// One state a command went through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandEvent {
    /// The state.
    pub state: String,
    /// When (unix ms).
    pub at_ms: i64,
    /// What was said.
    pub detail: Option<String>,
}

/// A command and its receipt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandRow {
    /// Its number.
    pub id: i64,
    /// The user.
    pub email: String,
    /// The device it was given to.
    pub pin: Option<u32>,
    /// What it is (the policy service's name).
    pub kind: String,
    /// Its parameters, as the policy service wrote them.
    pub params_json: String,
    /// One of [`COMMAND_STATES`].
    pub state: String,
    /// What was said last.
    pub detail: Option<String>,
    /// When it was given (unix ms).
    pub created_at_ms: i64,
    /// Who gave it.
    pub created_by: Option<String>,
    /// When its state last changed (unix ms).
    pub updated_at_ms: i64,
    /// When it was last sent (unix ms).
    pub sent_at_ms: Option<i64>,
    /// How many times it was sent.
    pub attempts: u32,
    /// Every state, oldest first.
    pub history: Vec<CommandEvent>,
}

type Row = (
    i64,
    String,
    Option<i64>,
    String,
    String,
    String,
    Option<String>,
    i64,
    Option<String>,
    i64,
    Option<i64>,
    i64,
);

macro_rules! command_select {
    () => {
        "SELECT c.id, u.email, c.pin, c.kind, c.params, c.state, c.detail, \
     c.created_at, c.created_by, c.updated_at, c.sent_at, c.attempts \
     FROM it_commands c JOIN users u ON u.id = c.user_id "
    };
}

fn check_state(state: &str) -> Result<(), StoreError> {
    if COMMAND_STATES.contains(&state) {
        Ok(())
    } else {
        Err(StoreError::InvalidValue {
            what: "command state",
            value: state.to_owned(),
            allowed: COMMAND_STATES.join(", "),
        })
    }
}

impl Store {
    async fn command_rows(&self, rows: Vec<Row>) -> Result<Vec<CommandRow>, StoreError> {
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let history: Vec<(String, i64, Option<String>)> = on_pool!(self, pool => {
                sqlx::query_as(
                    "SELECT state, at, detail FROM it_command_history WHERE command_id = $1 \
                     ORDER BY id",
                )
                .bind(r.0)
                .fetch_all(pool)
                .await?
            });
            out.push(CommandRow {
                id: r.0,
                email: r.1,
                pin: r.2.map(|p| as_u32("it_commands.pin", p)).transpose()?,
                kind: r.3,
                params_json: r.4,
                state: r.5,
                detail: r.6,
                created_at_ms: r.7,
                created_by: r.8,
                updated_at_ms: r.9,
                sent_at_ms: r.10,
                attempts: as_u32("it_commands.attempts", r.11)?,
                history: history
                    .into_iter()
                    .map(|(state, at_ms, detail)| CommandEvent {
                        state,
                        at_ms,
                        detail,
                    })
                    .collect(),
            });
        }
        Ok(out)
    }

    /// Records a command, queued.
    ///
    /// Errors: [`StoreError::NoSuchUser`].
    pub async fn add_command(
        &self,
        email: &str,
        pin: Option<u32>,
        kind: &str,
        params_json: &str,
        created_by: Option<&str>,
    ) -> Result<CommandRow, StoreError> {
        let uid = self.user_id(email).await?;
        let now = now_ms();
        let id: i64 = on_pool!(self, pool, k => {
            let mut tx = pool.begin_with(begin_write(k)).await?;
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO it_commands (user_id, pin, kind, params, state, detail, created_at, \
                     created_by, updated_at, sent_at, attempts) \
                 VALUES ($1, $2, $3, $4, 'queued', NULL, $5, $6, $5, NULL, 0) RETURNING id",
            )
            .bind(uid)
            .bind(pin.map(i64::from))
            .bind(kind)
            .bind(params_json)
            .bind(now)
            .bind(created_by)
            .fetch_one(&mut *tx)
            .await?;
            sqlx::query(
                "INSERT INTO it_command_history (command_id, state, at, detail) \
                 VALUES ($1, 'queued', $2, NULL)",
            )
            .bind(id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            id
        });
        self.command(id)
            .await?
            .ok_or(StoreError::NoSuchCommand { id })
    }

    /// The command with this number.
    pub async fn command(&self, id: i64) -> Result<Option<CommandRow>, StoreError> {
        let sql = concat!(command_select!(), " WHERE c.id = $1");
        let rows: Vec<Row> = on_pool!(self, pool => {
            sqlx::query_as(sql).bind(id).fetch_all(pool).await?
        });
        Ok(self.command_rows(rows).await?.into_iter().next())
    }

    /// Commands, newest first: only `email`'s when given, only those not final with
    /// `open_only`.
    pub async fn commands(
        &self,
        email: Option<&str>,
        open_only: bool,
        limit: u32,
    ) -> Result<Vec<CommandRow>, StoreError> {
        Ok(self.commands_page(email, open_only, 0, limit).await?.0)
    }

    /// One page of [`Store::commands`]: `limit` commands after the newest `offset`, and how
    /// many there are in all.
    pub async fn commands_page(
        &self,
        email: Option<&str>,
        open_only: bool,
        offset: u64,
        limit: u32,
    ) -> Result<(Vec<CommandRow>, u64), StoreError> {
        macro_rules! wanted {
            () => {
                " WHERE ($1 IS NULL OR u.email = $1) \
                 AND ($2 = 0 OR c.state NOT IN ('done', 'failed', 'cancelled')) "
            };
        }
        let sql = concat!(
            command_select!(),
            wanted!(),
            "ORDER BY c.id DESC LIMIT $3 OFFSET $4"
        );
        let count = concat!(
            "SELECT COUNT(*) FROM it_commands c JOIN users u ON u.id = c.user_id",
            wanted!()
        );
        let email = email.map(normalize_email);
        let offset = i64::try_from(offset).unwrap_or(i64::MAX);
        let (rows, total): (Vec<Row>, i64) = on_pool!(self, pool => {
            let rows = sqlx::query_as(sql)
                .bind(email.as_deref())
                .bind(i64::from(open_only))
                .bind(i64::from(limit))
                .bind(offset)
                .fetch_all(pool)
                .await?;
            let total = sqlx::query_scalar(count)
                .bind(email.as_deref())
                .bind(i64::from(open_only))
                .fetch_one(pool)
                .await?;
            (rows, total)
        });
        Ok((
            self.command_rows(rows).await?,
            u64::try_from(total).unwrap_or(0),
        ))
    }

    /// Moves a command to `state`, with a timeline entry. False, and nothing changed, when
    /// the command is in a final state already (a repeated answer is recognised).
    ///
    /// Errors: [`StoreError::NoSuchCommand`], [`StoreError::InvalidValue`].
    pub async fn set_command_state(
        &self,
        id: i64,
        state: &str,
        detail: Option<&str>,
    ) -> Result<bool, StoreError> {
        check_state(state)?;
        let now = now_ms();
        let changed: Option<bool> = on_pool!(self, pool, k => {
            let mut tx = pool.begin_with(begin_write(k)).await?;
            let current: Option<String> =
                sqlx::query_scalar("SELECT state FROM it_commands WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await?;
            match current {
                None => None,
                Some(c) if FINAL.contains(&c.as_str()) => Some(false),
                Some(_) => {
                    sqlx::query(
                        "UPDATE it_commands SET state = $2, detail = $3, updated_at = $4 \
                         WHERE id = $1",
                    )
                    .bind(id)
                    .bind(state)
                    .bind(detail)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                    sqlx::query(
                        "INSERT INTO it_command_history (command_id, state, at, detail) \
                         VALUES ($1, $2, $3, $4)",
                    )
                    .bind(id)
                    .bind(state)
                    .bind(now)
                    .bind(detail)
                    .execute(&mut *tx)
                    .await?;
                    tx.commit().await?;
                    Some(true)
                }
            }
        });
        changed.ok_or(StoreError::NoSuchCommand { id })
    }

    /// Records a send: `sent` (from queued or sent; a pending command stays pending), the
    /// time, one more attempt; a timeline entry on the first send only. False when the
    /// command is final.
    ///
    /// Errors: [`StoreError::NoSuchCommand`].
    pub async fn mark_command_sent(&self, id: i64) -> Result<bool, StoreError> {
        let now = now_ms();
        let changed: Option<bool> = on_pool!(self, pool, k => {
            let mut tx = pool.begin_with(begin_write(k)).await?;
            let current: Option<String> =
                sqlx::query_scalar("SELECT state FROM it_commands WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await?;
            match current.as_deref() {
                None => None,
                Some(c) if FINAL.contains(&c) => Some(false),
                Some(c) => {
                    let next = if c == "pending" { "pending" } else { "sent" };
                    sqlx::query(
                        "UPDATE it_commands SET state = $2, sent_at = $3, updated_at = $3, \
                         attempts = attempts + 1 WHERE id = $1",
                    )
                    .bind(id)
                    .bind(next)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                    if c == "queued" {
                        sqlx::query(
                            "INSERT INTO it_command_history (command_id, state, at, detail) \
                             VALUES ($1, 'sent', $2, NULL)",
                        )
                        .bind(id)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                    }
                    tx.commit().await?;
                    Some(true)
                }
            }
        });
        changed.ok_or(StoreError::NoSuchCommand { id })
    }

    /// Commands to send: queued ones, and sent ones last sent before `sent_before_ms`;
    /// oldest first, at most `limit`.
    pub async fn commands_to_send(
        &self,
        sent_before_ms: i64,
        limit: u32,
    ) -> Result<Vec<CommandRow>, StoreError> {
        let sql = concat!(
            command_select!(),
            " WHERE c.state = 'queued' OR (c.state = 'sent' AND c.sent_at < $1) \
             ORDER BY c.id LIMIT $2"
        );
        let rows: Vec<Row> = on_pool!(self, pool => {
            sqlx::query_as(sql)
                .bind(sent_before_ms)
                .bind(i64::from(limit))
                .fetch_all(pool)
                .await?
        });
        self.command_rows(rows).await
    }
}
