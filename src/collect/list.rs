//! List mode (`collect --redis-mode list`): the sensors `RPUSH` each line to a list, as
//! Logstash's redis input and Security Onion read it; the collector reads it reliably.
//!
//! Each line is moved (`LMOVE`) from the list to this consumer's processing list,
//! `KEY:processing:CONSUMER`, and removed from there only once it is on disk: the
//! writing side trims as many lines as it wrote off the processing list's head, and only
//! if that head is still the batch's first line (trimmed already, by an answer that was
//! lost, it is not trimmed again). On start, and after a lost connection once what was
//! handed over is written, the processing list is read first: what a collector killed
//! before it trimmed had moved there.

use std::sync::atomic::{AtomicU64, Ordering};

use crossbeam_channel::Sender;

use super::reader::{hand_over, reconnect, Batch};
use super::{Control, Error, Settings, BLOCK};

/// The batches handed over and those the writing side has written and trimmed.
#[derive(Default)]
pub struct Progress {
    pub handed: AtomicU64,
    pub trimmed: AtomicU64,
}

/// This consumer's processing list.
pub fn processing(settings: &Settings) -> String {
    format!("{}:processing:{}", settings.key, settings.consumer)
}

/// Reads until `control.stop` is set or the writing side has gone.
pub fn run(
    mut conn: redis::Connection,
    settings: &Settings,
    control: &Control,
    tx: &Sender<Batch>,
    progress: &Progress,
) -> Result<(), Error> {
    let target = &settings.target;
    let mine = processing(settings);
    let mut reread = true;
    while !control.stop.load(Ordering::Relaxed) {
        let read =
            if reread { read_processing(&mut conn, &mine) } else { read_new(&mut conn, settings, &mine) };
        let mut batch = match read {
            Ok(batch) => batch,
            Err(e) if super::lost(&e) => {
                reconnect(target, &mut conn);
                // What the lost answers moved is in the processing list, after what was
                // handed over: read it once the writing side has trimmed all that.
                while progress.trimmed.load(Ordering::Relaxed) < progress.handed.load(Ordering::Relaxed)
                    && !control.stop.load(Ordering::Relaxed)
                {
                    std::thread::sleep(BLOCK);
                }
                reread = true;
                continue;
            }
            Err(e) => return Err(target.error(&e).into()),
        };
        batch.reread = reread;
        reread = false;
        if batch.spans.is_empty() {
            continue;
        }
        progress.handed.fetch_add(1, Ordering::Relaxed);
        if !hand_over(batch, control, tx) {
            return Ok(());
        }
    }
    Ok(())
}

/// Everything in the processing list.
fn read_processing(conn: &mut redis::Connection, mine: &str) -> redis::RedisResult<Batch> {
    let lines: Vec<Vec<u8>> = redis::cmd("LRANGE").arg(mine).arg(0).arg(-1).query(conn)?;
    Ok(batch(lines.into_iter().map(Some)))
}

/// Up to a batch of new lines, moved to the processing list; when there are none, one
/// is waited for (`BLMOVE`), up to [`BLOCK`].
fn read_new(conn: &mut redis::Connection, settings: &Settings, mine: &str) -> redis::RedisResult<Batch> {
    let mut pipe = redis::pipe();
    for _ in 0..settings.batch {
        pipe.cmd("LMOVE").arg(&settings.key).arg(mine).arg("LEFT").arg("RIGHT");
    }
    let moved: Vec<Option<Vec<u8>>> = pipe.query(conn)?;
    if moved.iter().any(Option::is_some) {
        return Ok(batch(moved.into_iter()));
    }
    let one: Option<Vec<u8>> = redis::cmd("BLMOVE")
        .arg(&settings.key)
        .arg(mine)
        .arg("LEFT")
        .arg("RIGHT")
        .arg(BLOCK.as_secs_f64())
        .query(conn)?;
    Ok(batch(std::iter::once(one)))
}

fn batch(lines: impl Iterator<Item = Option<Vec<u8>>>) -> Batch {
    let mut out = Batch::default();
    for line in lines.flatten() {
        let start = out.lines.len();
        out.lines.extend_from_slice(&line);
        out.ids.push((0, out.ids.len() as u64));
        out.spans.push(Some(start..out.lines.len()));
    }
    out
}

/// Removes a batch written to disk from the head of the processing list, unless its
/// first line is no longer there (trimmed already).
pub fn trim(conn: &mut redis::Connection, settings: &Settings, batch: &Batch) -> redis::RedisResult<()> {
    let Some(first) = batch.lines().flatten().next() else { return Ok(()) };
    redis::cmd("EVAL")
        .arg("if redis.call('LINDEX', KEYS[1], 0) == ARGV[1] then redis.call('LTRIM', KEYS[1], ARGV[2], -1) end return 0")
        .arg(1)
        .arg(processing(settings))
        .arg(first)
        .arg(batch.spans.len())
        .query::<()>(conn)
}
