//! One Redis connection per handle, consumer names, and the stream replies parsed out of
//! `redis::Value`.

use redis::Value;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The stream field every entry's payload is stored under (see the crate docs).
pub const PAYLOAD_FIELD: &str = "cbor";

/// A connection failure or an error answer from the server.
#[derive(Debug, thiserror::Error)]
#[error("redis: {0}")]
pub struct RedisError(#[from] pub redis::RedisError);

/// How long a connection waits for any answer; every blocking command we send blocks
/// for at most [`MAX_BLOCK`], so this only fires when the server is gone.
const READ_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest `BLOCK` we ask of the server in one command.
pub(crate) const MAX_BLOCK: Duration = Duration::from_secs(1);

pub(crate) fn connect(url: &str) -> Result<redis::Connection, RedisError> {
    let client = redis::Client::open(url)?;
    let con = client.get_connection_with_timeout(Duration::from_secs(5))?;
    con.set_read_timeout(Some(READ_TIMEOUT))?;
    con.set_write_timeout(Some(READ_TIMEOUT))?;
    Ok(con)
}

static NEXT_CONSUMER: AtomicU64 = AtomicU64::new(0);

/// `host-pid-n`: unique per handle across hosts, processes and threads.
pub(crate) fn consumer_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "host".into());
    let n = NEXT_CONSUMER.fetch_add(1, Ordering::Relaxed);
    format!("{host}-{}-{n}", std::process::id())
}

/// `XGROUP CREATE key group 0 MKSTREAM`, an existing group being fine. From `0`: entries
/// put before the first consumer connected are delivered too.
pub(crate) fn ensure_group(
    con: &mut redis::Connection,
    key: &str,
    group: &str,
) -> Result<(), RedisError> {
    let r: redis::RedisResult<Value> = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(key)
        .arg(group)
        .arg("0")
        .arg("MKSTREAM")
        .query(con);
    match r {
        Ok(_) => Ok(()),
        Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// One stream entry: its id and its payload (`None` when the entry has no `cbor` field,
/// or was deleted while pending).
#[derive(Debug)]
pub(crate) struct Entry {
    pub(crate) id: String,
    pub(crate) payload: Option<Vec<u8>>,
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

fn entry(v: &Value) -> Option<Entry> {
    let Value::Array(parts) = v else { return None };
    let id = text(parts.first()?)?;
    let mut payload = None;
    if let Some(Value::Array(fields)) = parts.get(1) {
        for kv in fields.chunks(2) {
            if let [Value::BulkString(k), Value::BulkString(val)] = kv {
                if k == PAYLOAD_FIELD.as_bytes() {
                    payload = Some(val.clone());
                }
            }
        }
    }
    Some(Entry { id, payload })
}

fn entries(v: &Value) -> Vec<Entry> {
    match v {
        Value::Array(items) => items.iter().filter_map(entry).collect(),
        _ => Vec::new(),
    }
}

/// The entries of an `XREAD`/`XREADGROUP` reply for one stream (nil: none).
pub(crate) fn read_reply(v: &Value) -> Vec<Entry> {
    match v {
        Value::Array(streams) => streams
            .iter()
            .flat_map(|s| match s {
                Value::Array(kv) if kv.len() == 2 => entries(&kv[1]),
                _ => Vec::new(),
            })
            .collect(),
        Value::Map(streams) => streams.iter().flat_map(|(_, v)| entries(v)).collect(),
        _ => Vec::new(),
    }
}

/// The claimed entries of an `XAUTOCLAIM` reply, and the ids of pending entries that no
/// longer exist.
pub(crate) fn autoclaim_reply(v: &Value) -> (Vec<Entry>, Vec<String>) {
    let Value::Array(parts) = v else {
        return (Vec::new(), Vec::new());
    };
    let claimed = parts.get(1).map(entries).unwrap_or_default();
    let deleted = match parts.get(2) {
        Some(Value::Array(ids)) => ids.iter().filter_map(text).collect(),
        _ => Vec::new(),
    };
    (claimed, deleted)
}

/// The delivery count of the one entry an `XPENDING key group id id 1` reply describes.
pub(crate) fn pending_deliveries(v: &Value) -> Option<u64> {
    let Value::Array(rows) = v else { return None };
    let Value::Array(row) = rows.first()? else {
        return None;
    };
    match row.get(3)? {
        Value::Int(n) => u64::try_from(*n).ok(),
        other => text(other)?.parse().ok(),
    }
}

/// The count of an `XPENDING key group` summary reply.
pub(crate) fn pending_count(v: &Value) -> u64 {
    match v {
        Value::Array(parts) => match parts.first() {
            Some(Value::Int(n)) => u64::try_from(*n).unwrap_or(0),
            _ => 0,
        },
        _ => 0,
    }
}

pub(crate) fn int(v: &Value) -> u64 {
    match v {
        Value::Int(n) => u64::try_from(*n).unwrap_or(0),
        other => text(other).and_then(|t| t.parse().ok()).unwrap_or(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn parses_a_readgroup_reply() {
        let v = Value::Array(vec![Value::Array(vec![
            bulk("q"),
            Value::Array(vec![
                Value::Array(vec![
                    bulk("1-0"),
                    Value::Array(vec![bulk("cbor"), bulk("\x01")]),
                ]),
                Value::Array(vec![bulk("1-1"), Value::Nil]),
            ]),
        ])]);
        let e = read_reply(&v);
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].id, "1-0");
        assert_eq!(e[0].payload.as_deref(), Some(&[1u8][..]));
        assert_eq!(e[1].payload, None);
        assert!(read_reply(&Value::Nil).is_empty());
    }

    #[test]
    fn parses_autoclaim_and_xpending_replies() {
        let v = Value::Array(vec![
            bulk("0-0"),
            Value::Array(vec![Value::Array(vec![
                bulk("5-0"),
                Value::Array(vec![bulk("cbor"), bulk("x")]),
            ])]),
            Value::Array(vec![bulk("4-0")]),
        ]);
        let (c, d) = autoclaim_reply(&v);
        assert_eq!(c[0].id, "5-0");
        assert_eq!(d, ["4-0"]);
        let p = Value::Array(vec![Value::Array(vec![
            bulk("5-0"),
            bulk("c"),
            Value::Int(10),
            Value::Int(3),
        ])]);
        assert_eq!(pending_deliveries(&p), Some(3));
        assert_eq!(pending_count(&Value::Array(vec![Value::Int(7)])), 7);
    }

    #[test]
    fn consumer_names_differ() {
        assert_ne!(consumer_name(), consumer_name());
    }
}
