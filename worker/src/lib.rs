//! Background work. Today: voiding holds whose timeout passed (a crashed proxy's holds end
//! here, returning the money to the voucher). The scheduled programme jobs join it.

use std::time::Duration;
use voucherd_store::Store;

/// Voids expired holds every `interval_ms`, at most `batch` per transaction so one sweep
/// never holds a long write lock. Runs until the task is dropped.
pub async fn sweep_expired_holds(store: Store, interval_ms: u64, batch: i64) {
    let mut tick = tokio::time::interval(Duration::from_millis(interval_ms.max(100)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        loop {
            match store.void_expired_holds(batch).await {
                Ok(0) => break,
                Ok(n) => {
                    tracing::info!(voided = n, "voided expired holds");
                    if (n as i64) < batch {
                        break;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "hold sweep failed; retrying next tick");
                    break;
                }
            }
        }
    }
}
