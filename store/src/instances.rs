//! Proxy instances and the holds they open. Each instance writes a heartbeat every few
//! seconds; every hold it opens (a lease or a request's own hold) is registered under its id in
//! the transaction that opens it. When an instance's heartbeat lapses, the hold-timeouts job
//! settles its holds at once — posting the usage recorded under each and releasing the rest —
//! instead of leaving part of a voucher held until the hold's timeout (docs/ARCHITECTURE.md,
//! "A dead instance's holds"). Instance ids are new with every process, so a restarted
//! process never adopts another's lease.

use crate::db::{now, DbConn, Store};
use crate::error::StoreResult;
use crate::schema::{instance_holds, proxy_instances, transfers};
use chrono::NaiveDateTime;
use diesel::prelude::*;
use voucherd_domain::InstanceId;

/// Registers `hold_id` as opened by `instance_id`, inside the transaction that opens it.
pub(crate) fn register_hold(
    c: &mut DbConn,
    hold_id: &str,
    instance_id: &InstanceId,
) -> StoreResult<()> {
    diesel::insert_into(instance_holds::table)
        .values((
            instance_holds::hold_id.eq(hold_id),
            instance_holds::instance_id.eq(instance_id),
        ))
        .execute(c)?;
    Ok(())
}

/// Moves a live lease's timeout on to `to`; false when the hold is no longer registered (it
/// was resolved). Transfers are immutable, so the extension is kept with the registration.
pub(crate) fn extend_hold(c: &mut DbConn, hold_id: &str, to: NaiveDateTime) -> StoreResult<bool> {
    let updated = diesel::update(instance_holds::table.find(hold_id))
        .set(instance_holds::extended_to.eq(Some(to)))
        .execute(c)?;
    Ok(updated == 1)
}

/// Whether a hold's instance extended it past `at` (the hold-timeouts job then leaves it).
pub(crate) fn extended_past(c: &mut DbConn, hold_id: &str, at: NaiveDateTime) -> StoreResult<bool> {
    Ok(instance_holds::table
        .find(hold_id)
        .filter(instance_holds::extended_to.gt(at))
        .count()
        .get_result::<i64>(c)?
        > 0)
}

/// Forgets a resolved hold's instance, inside the transaction that resolves it.
pub(crate) fn forget_hold(c: &mut DbConn, hold_id: &str) -> StoreResult<()> {
    diesel::delete(instance_holds::table.find(hold_id)).execute(c)?;
    Ok(())
}

impl Store {
    /// Records that `instance_id` is alive at `at` (registering it on its first beat).
    pub async fn heartbeat(&self, instance_id: InstanceId, at: NaiveDateTime) -> StoreResult<()> {
        self.write(move |c| {
            let updated = diesel::update(proxy_instances::table.find(&instance_id))
                .set(proxy_instances::heartbeat_at.eq(at))
                .execute(c)?;
            if updated == 0 {
                diesel::insert_into(proxy_instances::table)
                    .values((
                        proxy_instances::id.eq(&instance_id),
                        proxy_instances::started_at.eq(at),
                        proxy_instances::heartbeat_at.eq(at),
                    ))
                    .execute(c)?;
            }
            Ok(())
        })
        .await
    }

    /// The last heartbeat of an instance, if it ever beat.
    pub async fn instance_heartbeat(
        &self,
        instance_id: InstanceId,
    ) -> StoreResult<Option<NaiveDateTime>> {
        self.read(move |c| {
            Ok(proxy_instances::table
                .find(instance_id)
                .select(proxy_instances::heartbeat_at)
                .first(c)
                .optional()?)
        })
        .await
    }

    /// Settles up to `limit` holds of instances whose last heartbeat is before
    /// `stale_before`: each posts the usage recorded under it and releases the rest, in its
    /// own transaction. Returns how many it settled (a caller loops while it gets `limit`).
    pub async fn settle_dead_instances(
        &self,
        stale_before: NaiveDateTime,
        limit: i64,
    ) -> StoreResult<usize> {
        let holds: Vec<String> = self
            .read(move |c| {
                Ok(instance_holds::table
                    .inner_join(
                        proxy_instances::table
                            .on(proxy_instances::id.eq(instance_holds::instance_id)),
                    )
                    .filter(proxy_instances::heartbeat_at.lt(stale_before))
                    .select(instance_holds::hold_id)
                    .order(instance_holds::hold_id)
                    .limit(limit)
                    .load(c)?)
            })
            .await?;
        let mut settled = 0;
        let at = now();
        for hold in holds {
            let id = hold.clone();
            let result = self
                .write(move |c| {
                    // A hold whose transfer is gone or already resolved needs only forgetting.
                    let open = transfers::table
                        .find(&id)
                        .select(transfers::id)
                        .first::<String>(c)
                        .optional()?
                        .is_some();
                    if open {
                        crate::usage::close_hold(c, &id, at)?;
                    }
                    forget_hold(c, &id)
                })
                .await;
            match result {
                Ok(()) => {
                    settled += 1;
                    tracing::info!(%hold, "settled a dead proxy instance's hold")
                }
                Err(e) => {
                    tracing::error!(error = %e, %hold, "a dead instance's hold could not be settled")
                }
            }
        }
        Ok(settled)
    }
}
