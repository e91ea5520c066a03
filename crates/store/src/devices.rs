//! Devices: one current device per user, found by PIN; their keys and sequence numbers.

use std::ops::Range;

use crate::model::{DeviceRow, try_collect};
use crate::{
    Device, NewDevice, Store, StoreError, begin_write, dialect, normalize_email, now_ms, on_pool,
    to_db_u64,
};

/// The columns of [`DeviceRow`], from `devices d` joined to `users u`.
macro_rules! device_select {
    () => {
        "SELECT u.email, d.pin, d.identity_key, d.master_key, d.key_generation, \
         d.tx_seq_reserved, d.rx_seq_highest, d.activated_at, d.last_seen \
         FROM devices d JOIN users u ON u.id = d.user_id "
    };
}

impl Store {
    /// Stores the device a user has just activated, replacing their previous device (a
    /// re-activation), in one transaction. The new device starts with no sequence numbers
    /// used and with a key generation one above the previous device's (1 for the first).
    ///
    /// Errors: [`StoreError::NoSuchUser`]; [`StoreError::PinInUse`] when another user's
    /// device holds the PIN.
    pub async fn put_device(&self, d: &NewDevice) -> Result<Device, StoreError> {
        self.store_device(d, false).await
    }

    /// Stores the device that has just proven the user's activation password, as
    /// [`Store::put_device`] does, and spends the one-time password in the same
    /// transaction: either both happen or neither.
    ///
    /// Errors: those of [`Store::put_device`]; [`StoreError::NoActivation`] (and nothing is
    /// stored) when the password was spent already, by another device that proved it first.
    pub async fn activate_device(&self, d: &NewDevice) -> Result<Device, StoreError> {
        self.store_device(d, true).await
    }

    async fn store_device(&self, d: &NewDevice, spend: bool) -> Result<Device, StoreError> {
        let email = normalize_email(&d.email);
        let now = now_ms();
        let pin = i64::from(d.pin);
        let outcome: Result<i64, sqlx::Error> = on_pool!(self, pool, kind => {
            let mut tx = pool.begin_with(begin_write(kind)).await?;
            // PostgreSQL: lock the user's row so two activations of one user queue up.
            // SQLite: BEGIN IMMEDIATE already serializes writers.
            let user_id: Option<i64> = sqlx::query_scalar(dialect(
                kind,
                "SELECT id FROM users WHERE email = $1",
                "SELECT id FROM users WHERE email = $1 FOR UPDATE",
            ))
            .bind(&email)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(user_id) = user_id else {
                return Err(StoreError::NoSuchUser { email });
            };
            if spend {
                let spent = sqlx::query("DELETE FROM activation WHERE user_id = $1")
                    .bind(user_id)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                if spent == 0 {
                    return Err(StoreError::NoActivation { email });
                }
            }
            let holder: Option<(i64, String)> = sqlx::query_as(
                "SELECT d.user_id, u.email FROM devices d JOIN users u ON u.id = d.user_id \
                 WHERE d.pin = $1",
            )
            .bind(pin)
            .fetch_optional(&mut *tx)
            .await?;
            if let Some((holder_id, holder_email)) = holder
                && holder_id != user_id
            {
                return Err(StoreError::PinInUse {
                    pin: d.pin,
                    email: holder_email,
                });
            }
            let previous: Option<i64> = sqlx::query_scalar(
                "DELETE FROM devices WHERE user_id = $1 RETURNING key_generation",
            )
            .bind(user_id)
            .fetch_optional(&mut *tx)
            .await?;
            let generation = previous.unwrap_or(0).saturating_add(1);
            let inserted = sqlx::query(
                "INSERT INTO devices (user_id, pin, identity_key, master_key, key_generation, \
                     tx_seq_reserved, rx_seq_highest, activated_at, last_seen) \
                 VALUES ($1, $2, $3, $4, $5, 0, 0, $6, NULL)",
            )
            .bind(user_id)
            .bind(pin)
            .bind(&d.identity_key)
            .bind(&d.master_key)
            .bind(generation)
            .bind(now)
            .execute(&mut *tx)
            .await;
            match inserted {
                Ok(_) => {
                    tx.commit().await?;
                    Ok(generation)
                }
                // Only on PostgreSQL, when another user's activation took the PIN between our
                // check and our insert: answered below, outside the failed transaction.
                Err(e) if e.as_database_error().is_some_and(|e| e.is_unique_violation()) => {
                    Err(e)
                }
                Err(e) => return Err(e.into()),
            }
        });
        let generation = match outcome {
            Ok(g) => g,
            Err(e) => {
                return Err(match self.device_by_pin(d.pin).await? {
                    Some(holder) if holder.email != email => StoreError::PinInUse {
                        pin: d.pin,
                        email: holder.email,
                    },
                    _ => StoreError::Database(e),
                });
            }
        };
        let key_generation = u32::try_from(generation).map_err(|_| StoreError::Corrupt {
            what: format!("devices.key_generation = {generation}"),
        })?;
        Ok(Device {
            email,
            pin: d.pin,
            identity_key: d.identity_key.clone(),
            master_key: d.master_key.clone(),
            key_generation,
            tx_seq_reserved: 0,
            rx_seq_highest: 0,
            activated_at_ms: now,
            last_seen_ms: None,
        })
    }

    /// The device with this PIN, if any.
    pub async fn device_by_pin(&self, pin: u32) -> Result<Option<Device>, StoreError> {
        let row: Option<DeviceRow> = on_pool!(self, pool => {
            sqlx::query_as(concat!(device_select!(), "WHERE d.pin = $1"))
                .bind(i64::from(pin))
                .fetch_optional(pool)
                .await?
        });
        row.map(Device::try_from).transpose()
    }

    /// A user's current device, if any.
    pub async fn device_for_user(&self, email: &str) -> Result<Option<Device>, StoreError> {
        let email = normalize_email(email);
        let row: Option<DeviceRow> = on_pool!(self, pool => {
            sqlx::query_as(concat!(device_select!(), "WHERE u.email = $1"))
                .bind(&email)
                .fetch_optional(pool)
                .await?
        });
        row.map(Device::try_from).transpose()
    }

    /// Every device, ordered by its user's address.
    pub async fn list_devices(&self) -> Result<Vec<Device>, StoreError> {
        let rows: Vec<DeviceRow> = on_pool!(self, pool, kind => {
            sqlx::query_as(dialect(
                kind,
                concat!(device_select!(), "ORDER BY u.email"),
                concat!(device_select!(), "ORDER BY u.email COLLATE \"C\""),
            ))
            .fetch_all(pool)
            .await?
        });
        try_collect(rows)
    }

    /// Removes the device with this PIN (its user stays). `false` if there was none.
    pub async fn delete_device(&self, pin: u32) -> Result<bool, StoreError> {
        let deleted = on_pool!(self, pool => {
            sqlx::query("DELETE FROM devices WHERE pin = $1")
                .bind(i64::from(pin))
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(deleted > 0)
    }

    /// Replaces a device's master key (the "regenerate key" command) and returns the new key
    /// generation. Sequence numbers carry on.
    ///
    /// Errors: [`StoreError::NoSuchDevice`].
    pub async fn rotate_master_key(&self, pin: u32, master_key: &[u8]) -> Result<u32, StoreError> {
        let generation: Option<i64> = on_pool!(self, pool => {
            sqlx::query_scalar(
                "UPDATE devices SET master_key = $2, key_generation = key_generation + 1 \
                 WHERE pin = $1 RETURNING key_generation",
            )
            .bind(i64::from(pin))
            .bind(master_key)
            .fetch_optional(pool)
            .await?
        });
        let generation = generation.ok_or(StoreError::NoSuchDevice { pin })?;
        u32::try_from(generation).map_err(|_| StoreError::Corrupt {
            what: format!("devices.key_generation = {generation}"),
        })
    }

    /// Reserves `count` transmit sequence numbers for a device, atomically: concurrent
    /// callers get disjoint ranges, each above every range handed out before. The first
    /// reservation of a device gives `1..count + 1`.
    ///
    /// Errors: [`StoreError::NoSuchDevice`]; [`StoreError::SequenceExhausted`] when the
    /// numbers would pass `i64::MAX`; [`StoreError::OutOfRange`] for a `count` above it.
    pub async fn reserve_tx_seq(&self, pin: u32, count: u64) -> Result<Range<u64>, StoreError> {
        let by = to_db_u64("sequence count", count)?;
        let new: Option<i64> = on_pool!(self, pool => {
            sqlx::query_scalar(
                "UPDATE devices SET tx_seq_reserved = tx_seq_reserved + $2 \
                 WHERE pin = $1 AND tx_seq_reserved <= $3 RETURNING tx_seq_reserved",
            )
            .bind(i64::from(pin))
            .bind(by)
            .bind(i64::MAX - by)
            .fetch_optional(pool)
            .await?
        });
        let Some(new) = new else {
            return Err(if self.device_exists(pin).await? {
                StoreError::SequenceExhausted { pin }
            } else {
                StoreError::NoSuchDevice { pin }
            });
        };
        let new = u64::try_from(new).map_err(|_| StoreError::Corrupt {
            what: format!("devices.tx_seq_reserved = {new}"),
        })?;
        // new ≤ i64::MAX, so neither the subtraction nor the additions can wrap.
        let old = new.saturating_sub(count);
        Ok(old.saturating_add(1)..new.saturating_add(1))
    }

    /// Records that sequence number `seq` was received from a device: the highest received
    /// becomes `max(highest, seq)`, never lower.
    ///
    /// Errors: [`StoreError::NoSuchDevice`], [`StoreError::OutOfRange`].
    pub async fn raise_rx_seq(&self, pin: u32, seq: u64) -> Result<(), StoreError> {
        let seq = to_db_u64("sequence number", seq)?;
        let updated = on_pool!(self, pool => {
            sqlx::query(
                "UPDATE devices SET rx_seq_highest = \
                     CASE WHEN rx_seq_highest < $2 THEN $2 ELSE rx_seq_highest END \
                 WHERE pin = $1",
            )
            .bind(i64::from(pin))
            .bind(seq)
            .execute(pool)
            .await?
            .rows_affected()
        });
        if updated == 0 {
            return Err(StoreError::NoSuchDevice { pin });
        }
        Ok(())
    }

    /// Records a frame received from a device in one commit: the highest sequence number
    /// received rises to `seq` (never lower), the device was heard from at `at_ms` (never
    /// backwards), and each of `counters` (scope, name, amount) is added to as
    /// [`Store::bump_stat`] does. One commit instead of one each: the dispatcher does this for
    /// every frame a device sends.
    ///
    /// Errors: [`StoreError::NoSuchDevice`] (and nothing is recorded),
    /// [`StoreError::OutOfRange`].
    pub async fn record_frame_received(
        &self,
        pin: u32,
        seq: u64,
        at_ms: i64,
        counters: &[(&str, &str, i64)],
    ) -> Result<(), StoreError> {
        let seq = to_db_u64("sequence number", seq)?;
        let updated = on_pool!(self, pool, k => {
            let mut tx = pool.begin_with(begin_write(k)).await?;
            let updated = sqlx::query(
                "UPDATE devices SET rx_seq_highest = \
                     CASE WHEN rx_seq_highest < $2 THEN $2 ELSE rx_seq_highest END, \
                     last_seen = \
                     CASE WHEN last_seen IS NULL OR last_seen < $3 THEN $3 ELSE last_seen END \
                 WHERE pin = $1",
            )
            .bind(i64::from(pin))
            .bind(seq)
            .bind(at_ms)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if updated > 0 {
                for group in &crate::server::stat_groups(counters) {
                    crate::server::bump_group!(&mut *tx, group);
                }
                tx.commit().await?;
            }
            updated
        });
        if updated == 0 {
            return Err(StoreError::NoSuchDevice { pin });
        }
        Ok(())
    }

    /// Accepts sequence number `seq` from a device only if it is above every number accepted
    /// before, and records it, atomically: the replay check. `false` means a replay (or a
    /// frame overtaken by a later one).
    ///
    /// Errors: [`StoreError::NoSuchDevice`], [`StoreError::OutOfRange`].
    pub async fn accept_rx_seq(&self, pin: u32, seq: u64) -> Result<bool, StoreError> {
        let seq = to_db_u64("sequence number", seq)?;
        let updated = on_pool!(self, pool => {
            sqlx::query(
                "UPDATE devices SET rx_seq_highest = $2 WHERE pin = $1 AND rx_seq_highest < $2",
            )
            .bind(i64::from(pin))
            .bind(seq)
            .execute(pool)
            .await?
            .rows_affected()
        });
        if updated == 0 && !self.device_exists(pin).await? {
            return Err(StoreError::NoSuchDevice { pin });
        }
        Ok(updated > 0)
    }

    /// Records that a device was heard from at `at_ms`. The time never moves backwards.
    ///
    /// Errors: [`StoreError::NoSuchDevice`].
    pub async fn touch_device(&self, pin: u32, at_ms: i64) -> Result<(), StoreError> {
        let updated = on_pool!(self, pool => {
            sqlx::query(
                "UPDATE devices SET last_seen = \
                     CASE WHEN last_seen IS NULL OR last_seen < $2 THEN $2 ELSE last_seen END \
                 WHERE pin = $1",
            )
            .bind(i64::from(pin))
            .bind(at_ms)
            .execute(pool)
            .await?
            .rows_affected()
        });
        if updated == 0 {
            return Err(StoreError::NoSuchDevice { pin });
        }
        Ok(())
    }

    async fn device_exists(&self, pin: u32) -> Result<bool, StoreError> {
        let found: Option<i64> = on_pool!(self, pool => {
            sqlx::query_scalar("SELECT pin FROM devices WHERE pin = $1")
                .bind(i64::from(pin))
                .fetch_optional(pool)
                .await?
        });
        Ok(found.is_some())
    }
}
