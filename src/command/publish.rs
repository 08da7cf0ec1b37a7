//! `--redis` on `analyze` and `live`: the publisher started beside the pipeline, its
//! tee handed to the writer, and its end (the queue drained, what was not delivered said).

use std::sync::Arc;

use super::{Error, RunSettings};
use crate::output::redis::{self, Publisher};
use crate::telemetry::DeliveryCounts;

/// Starts publishing when --redis was given; the writer's tee goes into the pipeline's
/// settings. With `must_connect` (analyze), Redis out of reach is the error.
pub fn start(run: &mut RunSettings, must_connect: bool) -> Result<Option<Publisher>, Error> {
    let Some(settings) = run.redis.clone() else { return Ok(None) };
    let notify: redis::Notify = Arc::new(|message| eprintln!("exwatch: {message}"));
    let publisher = Publisher::start(settings, must_connect, notify).map_err(|e| format!("--redis {e}"))?;
    run.pipeline.publish = Some(publisher.tee());
    Ok(Some(publisher))
}

/// Waits for the queue to drain (up to --redis-timeout), and says what was not delivered.
pub fn finish(run: &RunSettings, publisher: Option<Publisher>) -> Option<DeliveryCounts> {
    let publisher = publisher?;
    let timeout = run.redis.as_ref().map_or(redis::DEFAULT_TIMEOUT, |s| s.timeout);
    let target = publisher.target().to_string();
    let counts = publisher.finish(timeout);
    if counts.dropped > 0 {
        eprintln!(
            "exwatch: {target}: {} event(s) not delivered to Redis ({} sent)",
            counts.dropped, counts.sent
        );
    }
    Some(counts)
}
