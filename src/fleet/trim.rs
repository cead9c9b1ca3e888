//! Keeps `REDEEMD_CHAIN` from growing by every status beat. Events must stay (a rebuild
//! reads them all), but of a till's beats only the latest means anything: the read model
//! keeps the latest, and so does a rebuild. So, at start, on a reload and every
//! `TRIM_EVERY`, each till's status subject is purged down to its last message. The
//! stream's own per-subject limit cannot do this: it would hold each till's events too.

use super::FleetMetrics;
use super::streams::CHAIN_STREAM;
use crate::model::event::STATUS_PREFIX;
use crate::store::nats::request;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

pub const TRIM_EVERY: Duration = Duration::from_secs(600);
/// Beats a till's subject keeps.
const KEEP: u64 = 1;

/// The status subjects holding more than `KEEP` beats, from the stream's per-subject
/// counts.
pub fn to_trim(counts: &serde_json::Map<String, serde_json::Value>) -> Vec<&str> {
    counts
        .iter()
        .filter(|(_, n)| n.as_u64().is_some_and(|n| n > KEEP))
        .map(|(s, _)| s.as_str())
        .collect()
}

/// Each till's beats purged to the latest: how many messages went.
pub async fn trim_once(client: &async_nats::Client) -> Result<u64, String> {
    let info = request(
        client,
        format!("$JS.API.STREAM.INFO.{CHAIN_STREAM}"),
        &serde_json::json!({ "subjects_filter": format!("{STATUS_PREFIX}.>") }),
    )
    .await;
    let info = match info {
        Ok(info) => info,
        // 10059: no stream yet (the consumer makes it): nothing to trim.
        Err((Some(10059), _)) => return Ok(0),
        Err((_, e)) => return Err(format!("cannot read {CHAIN_STREAM}'s subjects: {e}")),
    };
    let empty = serde_json::Map::new();
    let counts = info
        .pointer("/state/subjects")
        .and_then(serde_json::Value::as_object)
        .unwrap_or(&empty);
    let mut purged = 0;
    for subject in to_trim(counts) {
        let answer = request(
            client,
            format!("$JS.API.STREAM.PURGE.{CHAIN_STREAM}"),
            &serde_json::json!({ "filter": subject, "keep": KEEP }),
        )
        .await
        .map_err(|(_, e)| format!("cannot purge the old beats of {subject}: {e}"))?;
        purged += answer
            .get("purged")
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0);
    }
    Ok(purged)
}

/// Trims until `stop`: at start, when the stores change and every `TRIM_EVERY`.
pub async fn keep_trimmed(
    client: async_nats::Client,
    mut stores: watch::Receiver<Vec<String>>,
    metrics: Arc<FleetMetrics>,
    mut stop: watch::Receiver<bool>,
) {
    let mut failing = false;
    loop {
        match trim_once(&client).await {
            Ok(purged) => {
                metrics.count_beats_trimmed(purged);
                if purged > 0 {
                    tracing::info!(
                        event = "fleet_beats_trimmed",
                        purged,
                        "old status beats purged from the chain's stream (each till's latest kept)"
                    );
                }
                failing = false;
            }
            // No chain stream yet (the consumer makes it), or the hub away: next time.
            Err(e) => {
                if !failing {
                    tracing::warn!(event = "fleet_trim_failed", error = %e, "old status beats not purged; trying again later");
                }
                failing = true;
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(TRIM_EVERY) => {}
            _ = stores.changed() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_subjects_with_more_than_the_latest_beat_are_purged() {
        let counts = serde_json::json!({
            "redeemd.status.s1.t1": 1,
            "redeemd.status.s1.t2": 2,
            "redeemd.status.s2.t1": 2880,
            "redeemd.status.s2.t2": 0,
            "redeemd.status.s2.t3": "junk",
        });
        let mut got = to_trim(counts.as_object().unwrap());
        got.sort();
        assert_eq!(got, vec!["redeemd.status.s1.t2", "redeemd.status.s2.t1"]);
    }
}
