//! The collector's reading side: a thread of its own that reads the stream with the
//! consumer group (`XREADGROUP`) on a connection of its own and hands each batch to the
//! writing side through a channel of one batch, so the next batch is on its way from
//! Redis while the last one is written, synced and acknowledged.
//!
//! It reads this consumer's pending entries first (those a collector killed before it
//! acknowledged them left), then new ones. After a lost connection it reads the pending
//! list again, leaving out what it already handed over (the writing side acknowledges
//! those). It never writes a file and never acknowledges.

use std::sync::atomic::Ordering;

use crossbeam_channel::{SendTimeoutError, Sender};

use super::{Control, Error, Settings, BLOCK};
use crate::output::redis::{Target, FIELD};

/// A stream entry id: (milliseconds, sequence), in the stream's order.
pub type Id = (u64, u64);

/// Entries read at once, and whether they came from the pending list. Their lines are
/// copied into one buffer on this thread: the writing side then frees one allocation a
/// batch, not one an entry made by another thread (glibc's arenas would make the two
/// threads take turns on a lock for each).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Batch {
    pub ids: Vec<Id>,
    /// Each entry's line in `lines` (`None`: it had no `eve` field).
    pub spans: Vec<Option<std::ops::Range<usize>>>,
    pub lines: Vec<u8>,
    pub reread: bool,
}

impl Batch {
    /// Each entry's line.
    pub fn lines(&self) -> impl Iterator<Item = Option<&[u8]>> {
        self.spans.iter().map(|span| span.clone().map(|r| &self.lines[r]))
    }

    fn retain_after(&mut self, newest: Id) {
        let keep = self.ids.iter().position(|id| *id > newest).unwrap_or(self.ids.len());
        self.ids.drain(..keep);
        self.spans.drain(..keep);
    }
}

/// A stream entry id as Redis orders them.
fn order(id: &str) -> Id {
    let (ms, seq) = id.split_once('-').unwrap_or((id, "0"));
    (ms.parse().unwrap_or(0), seq.parse().unwrap_or(0))
}

/// Reads until `control.stop` is set or the writing side has gone; Redis refusing a
/// read (not a lost connection) is the error.
pub fn run(
    mut conn: redis::Connection,
    settings: &Settings,
    control: &Control,
    tx: &Sender<Batch>,
) -> Result<(), Error> {
    let target = &settings.target;
    // Pending entries first: from the start of this consumer's list until it is empty.
    let mut pending = Some("0-0".to_string());
    // The newest entry handed over: read again from the pending list, it is left out.
    let mut handed: Option<(u64, u64)> = None;
    while !control.stop.load(Ordering::Relaxed) {
        let mut batch = match read(&mut conn, settings, pending.as_deref()) {
            Ok(batch) => batch,
            Err(e) if super::lost(&e) => {
                // Redis went away, or a signal cut the read short: what it had handed
                // out is pending; connect again and read the pending entries first.
                reconnect(target, &mut conn);
                pending = Some("0-0".to_string());
                continue;
            }
            Err(e) => return Err(target.error(&e).into()),
        };
        if let Some(cursor) = &mut pending {
            match batch.ids.last() {
                Some((ms, seq)) => *cursor = format!("{ms}-{seq}"),
                None => pending = None,
            }
        }
        if let Some(newest) = handed.filter(|_| pending.is_some()) {
            batch.retain_after(newest);
        }
        let Some(&last) = batch.ids.last() else { continue };
        handed = Some(last);
        batch.reread = pending.is_some();
        if !hand_over(batch, control, tx) {
            return Ok(());
        }
    }
    Ok(())
}

/// Hands a batch to the writing side, waiting while it writes the one before; false
/// when told to stop or the writing side has gone.
pub fn hand_over(mut batch: Batch, control: &Control, tx: &Sender<Batch>) -> bool {
    loop {
        match tx.send_timeout(batch, BLOCK) {
            Ok(()) => return true,
            Err(SendTimeoutError::Timeout(b)) if !control.stop.load(Ordering::Relaxed) => batch = b,
            Err(_) => return false,
        }
    }
}

/// Connects again, after a pause; on failure the old connection stays, to fail again
/// and come back here.
pub fn reconnect(target: &Target, conn: &mut redis::Connection) {
    std::thread::sleep(BLOCK);
    if let Ok(c) = target.connect() {
        *conn = c;
    }
}

/// The next entries: this consumer's pending ones after `pending`, or new ones.
fn read(
    conn: &mut redis::Connection,
    settings: &Settings,
    pending: Option<&str>,
) -> redis::RedisResult<Batch> {
    let mut cmd = redis::cmd("XREADGROUP");
    cmd.arg("GROUP").arg(&settings.group).arg(&settings.consumer).arg("COUNT").arg(settings.batch);
    if pending.is_none() {
        cmd.arg("BLOCK").arg(BLOCK.as_millis() as u64);
    }
    cmd.arg("STREAMS").arg(&settings.key).arg(pending.unwrap_or(">"));
    let reply: redis::Value = cmd.query(conn)?;
    Ok(batch(reply))
}

/// The entries of an `XREADGROUP` reply (one stream).
fn batch(reply: redis::Value) -> Batch {
    use redis::Value;
    let streams = match reply {
        Value::Array(streams) => streams,
        Value::Map(pairs) => pairs.into_iter().map(|(k, v)| Value::Array(vec![k, v])).collect(),
        _ => return Batch::default(),
    };
    let mut out = Batch::default();
    for stream in streams {
        let Value::Array(mut parts) = stream else { continue };
        let Some(Value::Array(items)) = parts.pop() else { continue };
        out.ids.reserve(items.len());
        out.spans.reserve(items.len());
        for item in items {
            let Value::Array(mut pair) = item else { continue };
            let fields = pair.pop();
            let Some(Value::BulkString(id)) = pair.pop() else { continue };
            out.ids.push(order(&String::from_utf8_lossy(&id)));
            let mut span = None;
            if let Some(Value::Array(fields)) = fields {
                let mut it = fields.into_iter();
                while let (Some(name), Some(value)) = (it.next(), it.next()) {
                    if matches!(&name, Value::BulkString(n) if n == FIELD.as_bytes()) {
                        if let Value::BulkString(bytes) = value {
                            let start = out.lines.len();
                            out.lines.extend_from_slice(&bytes);
                            span = Some(start..out.lines.len());
                        }
                        break;
                    }
                }
            }
            // A pending entry deleted from the stream (MAXLEN) comes back with no fields.
            out.spans.push(span);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An entry of an `XREADGROUP` reply as Redis sends it (RESP2): its id and its
    /// `eve` field; an entry trimmed from the stream comes back with no fields.
    #[test]
    fn entries_of_a_reply() {
        use redis::Value::{Array, BulkString, Nil};
        let bulk = |s: &str| BulkString(s.as_bytes().to_vec());
        let reply = Array(vec![Array(vec![
            bulk("exwatch:eve"),
            Array(vec![
                Array(vec![bulk("1-0"), Array(vec![bulk("eve"), bulk("{\"a\":1}")])]),
                Array(vec![bulk("2-0"), Nil]),
            ]),
        ])]);
        let mut read = batch(reply);
        assert_eq!(read.ids, [(1, 0), (2, 0)]);
        assert_eq!(read.lines().collect::<Vec<_>>(), [Some(&b"{\"a\":1}"[..]), None]);
        read.retain_after((1, 0));
        assert_eq!(read.ids, [(2, 0)]);
        assert_eq!(read.lines().collect::<Vec<_>>(), [None]);
        assert_eq!(batch(Nil), Batch::default());
    }

    #[test]
    fn entry_ids_in_the_stream_s_order() {
        assert!(order("1700000000000-10") > order("1700000000000-9"));
        assert!(order("1700000000001-0") > order("1700000000000-99"));
    }
}
