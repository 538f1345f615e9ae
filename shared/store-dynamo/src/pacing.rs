//! Pacing states (see [`PacingStore`]) in the calls table, under `pace#` keys. A state
//! is a head item and up to [`SHARDS`] items of its lines:
//!
//! - `pace#{key}`: `version`, which every save is conditional on; `queued`; `recent`,
//!   the booked dial times, packed (see [`pack_times`]); `shards`, a bit mask of the
//!   shards that hold lines; `lines`, the lines themselves while there are few;
//! - `pace#{key}#lines#{i}`: `lines`, a map of slot key to grant time (Unix seconds as a
//!   number, exact to the nanosecond), for the slots [`shard_of`] puts in shard `i`.
//!
//! One item per state grew with the lines it held (~70 bytes each as JSON) and was
//! rewritten whole by every admission and release: tens of WCU a write at a few hundred
//! calls in flight, and DynamoDB's 400 KB item limit within reach at 5,000. Split, a
//! save writes the head and only the shards whose lines changed: an admission or a
//! release is the head and one shard. Up to [`INLINE_LINES`] lines stay in the head
//! (under 4 KB, bookings and all): a state that small is read with one `GetItem` and
//! written with one conditional `PutItem`, where shards would take a transaction of
//! two items to write and one of up to 17 to read, several times the units.
//!
//! Only the shards the head lists count: one it does not list reads as empty whatever
//! its item holds. So a write need not clear a shard the head did not list, and a read
//! need not fetch one. A load reads a head and its shards in one `TransactGetItems`,
//! which is serializable: a `BatchGetItem` could pair a head with a shard from before
//! or after it, and a save conditional on that head's version would then write stale
//! lines back. Which shards to read with a head is guessed from what this process last
//! knew of it; when the head lists more, it is read again with those.
//!
//! The port hands a save the new state and the version it was read at, not the state
//! read, so the shards that changed are found against what this process last read or
//! wrote at that version ([`PacingMemo`]); at a version it does not know, every shard
//! that holds lines is written.
//!
//! None of these items has a `status`, `owner`, `active`, `queue` or `queue_at`, so no
//! call read and no index sees them. A head from before shards (the whole state as JSON
//! in `state`) reads as that state, and its next save writes it in shards.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::transact_get_items::TransactGetItemsError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{
    AttributeValue, CancellationReason, Delete, Get, Put, TransactGetItem, TransactWriteItem,
};
use chrono::{DateTime, Utc};

use dialer_core::domain::{Pacing, Slot};
use dialer_core::store::{PacingStore, StoreError, Versioned as Stored};

use crate::{DynamoStore, Item, n, number, s, text, unavailable};

/// The most lines a state keeps in its head; past them they go to shards.
pub const INLINE_LINES: usize = 64;

/// Lines spread over shards come back to the head at this many, not at
/// [`INLINE_LINES`], so that a state near the threshold does not move them at every
/// other save.
const INLINE_AGAIN: usize = 32;

/// How many shards a state's lines are spread over. At 5,000 lines (the most
/// `MAX_CONCURRENT_CALLS` allows) a shard holds ~310 of them, ~14 KB. More shards would
/// make each write smaller still, but a read of a state with fewer lines costlier: a
/// transactional read costs two units per item however small.
pub const SHARDS: usize = 16;

/// The calls-table key of the head of the state under `key`.
pub fn head_key(key: &str) -> String {
    format!("pace#{key}")
}

/// The calls-table key of shard `shard` of the state under `key`.
pub fn shard_key(key: &str, shard: usize) -> String {
    format!("pace#{key}#lines#{shard}")
}

/// The shard a line is kept in. A slot's by its call id's last byte: random in a v4
/// UUID, and fixed by the id, so every process and every version of this code agrees
/// (std's hasher is seeded per process). A key that is no slot's by a fixed hash of its
/// text.
pub fn shard_of(line: &str) -> usize {
    let hash = match Slot::parse(line) {
        Some(slot) => u64::from(slot.call.as_bytes()[15]),
        None => line.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
        }),
    };
    (hash % SHARDS as u64) as usize
}

#[async_trait]
impl PacingStore for DynamoStore {
    async fn load_pacing(&self, keys: &[String]) -> Result<Vec<Stored<Pacing>>, StoreError> {
        let mut states: Vec<Option<Stored<Pacing>>> = vec![None; keys.len()];
        let mut wanted: Vec<(usize, u32)> = keys
            .iter()
            .enumerate()
            .map(|(at, key)| (at, self.pacing_memo.listed(key)))
            .collect();
        for round in 1..=READ_ROUNDS {
            let reads = self.read_states(keys, &wanted).await?;
            let mut again = Vec::new();
            for (&(at, read_with), read) in wanted.iter().zip(reads) {
                match decode(&read, read_with)? {
                    Decoded::Whole(state, shards) => {
                        self.pacing_memo.remember(&keys[at], state.version, shards);
                        states[at] = Some(state);
                    }
                    Decoded::Lists(listed) if round + 1 < READ_ROUNDS => again.push((at, listed)),
                    Decoded::Lists(_) => again.push((at, ALL_SHARDS)),
                }
            }
            if again.is_empty() {
                break;
            }
            wanted = again;
        }
        states
            .into_iter()
            .map(|state| {
                state.ok_or_else(|| StoreError::unavailable("a pacing state kept changing as read"))
            })
            .collect()
    }

    async fn save_pacing(&self, writes: &[(String, Stored<Pacing>)]) -> Result<bool, StoreError> {
        let plans = writes
            .iter()
            .map(|(key, state)| self.plan(key, state))
            .collect::<Result<Vec<_>, _>>()?;
        let written = match plans.as_slice() {
            [] => return Ok(true),
            [plan] if plan.shards.is_empty() => self.put_head(plan).await?,
            _ => self.write_together(&plans).await?,
        };
        if written {
            for plan in plans {
                self.pacing_memo
                    .remember(&plan.key, plan.version + 1, plan.after);
            }
        }
        Ok(written)
    }
}

/// What this process last read or wrote of each state's shards, for the few latest
/// versions: a save at one of them writes only the shards that differ. A version is
/// one content for good (each save moves it on, and no head is ever removed),
/// so a match is exact. Several versions, since concurrent tasks read, and save at,
/// different ones.
#[derive(Clone, Default)]
pub(crate) struct PacingMemo(Arc<Mutex<HashMap<String, VecDeque<Remembered>>>>);

/// A state's lines, shard by shard, as stored: an empty shard is one the head does not
/// list.
type Shards = Vec<Arc<Lines>>;

type Lines = BTreeMap<String, DateTime<Utc>>;

struct Remembered {
    version: u64,
    shards: Shards,
}

/// Versions remembered per key.
const MEMO_VERSIONS: usize = 4;

/// Keys remembered: the trunk and two per limited user. Past this the memo starts over;
/// a save it cannot help writes every shard with lines, which is correct, only larger.
const MEMO_KEYS: usize = 4_096;

const ALL_SHARDS: u32 = (1 << SHARDS) - 1;

/// A `TransactGetItems` or `TransactWriteItems` holds at most this many items.
const TRANSACTION_ITEMS: usize = 100;

/// Reads of one state: with the shards guessed, then with those its head lists, then
/// (its head having moved on in between) with all, which no head can list more than.
const READ_ROUNDS: usize = 3;

/// How many times a pacing transaction that met another one in progress on its items
/// is tried again before it is reported as lost (the caller reads again).
const PACING_CONFLICT_ATTEMPTS: u32 = 3;

/// How many times a read that met a write in progress on its items (a transactional
/// read is canceled then, where a plain one is not) is tried again: a second or two of
/// backing off. It has no lost race to report, so past these it fails.
const READ_CONFLICT_ATTEMPTS: u32 = 10;

/// One state's part of a save.
struct Plan {
    key: String,
    /// The version the save is conditional on.
    version: u64,
    head: Item,
    /// The shards to write: each one's index and item (`None`: delete it).
    shards: Vec<(usize, Option<Item>)>,
    /// The shards as they are once written.
    after: Shards,
}

/// A head and the shards read along with it (`None` too for those not read).
struct Read {
    head: Option<Item>,
    shards: Vec<Option<Item>>,
}

enum Decoded {
    /// The state, and its shards as stored.
    Whole(Stored<Pacing>, Shards),
    /// The head lists shards that were not read with it: these.
    Lists(u32),
}

impl DynamoStore {
    /// The items of a save of `state` under `key`: the head always, and the shards
    /// that differ from what the memo has of the version read (every shard with lines
    /// when it has nothing of it).
    fn plan(&self, key: &str, state: &Stored<Pacing>) -> Result<Plan, StoreError> {
        let before = if state.version == 0 {
            Some(no_shards())
        } else {
            self.pacing_memo.at(key, state.version)
        };
        let lines = &state.value.lines;
        let was_inline = match &before {
            Some(before) => mask_of(before) == 0,
            None => lines.len() <= INLINE_AGAIN,
        };
        let most_inline = if was_inline {
            INLINE_LINES
        } else {
            INLINE_AGAIN
        };
        let inline = lines.len() <= most_inline;
        let mut split: Vec<Lines> = vec![Lines::new(); SHARDS];
        if !inline {
            for (line, granted) in lines {
                split[shard_of(line)].insert(line.clone(), *granted);
            }
        }
        let mut shards = Vec::new();
        let mut after = Vec::with_capacity(SHARDS);
        let mut listed = 0;
        for (index, lines) in split.into_iter().enumerate() {
            if !lines.is_empty() {
                listed |= 1 << index;
            }
            match before.as_ref().map(|b| &b[index]) {
                Some(old) if **old == lines => {
                    after.push(Arc::clone(old));
                    continue;
                }
                // Not known before, a shard left empty is left as it is: the new head
                // does not list it, so it reads as empty whatever its item holds.
                None if lines.is_empty() => {}
                Some(_) if lines.is_empty() => shards.push((index, None)),
                _ => shards.push((index, Some(shard_item(key, index, &lines)))),
            }
            after.push(Arc::new(lines));
        }
        Ok(Plan {
            key: key.to_owned(),
            version: state.version,
            head: head_item(key, state, listed, inline)?,
            shards,
            after,
        })
    }

    /// A save that changes one head alone: a conditional `PutItem`.
    async fn put_head(&self, plan: &Plan) -> Result<bool, StoreError> {
        let (condition, values) = condition(plan.version)?;
        for attempt in 0..PACING_CONFLICT_ATTEMPTS {
            let result = self
                .client
                .put_item()
                .table_name(&self.calls_table)
                .set_item(Some(plan.head.clone()))
                .condition_expression(condition)
                .set_expression_attribute_values(values.clone())
                .send()
                .await;
            match result {
                Ok(_) => return Ok(true),
                Err(SdkError::ServiceError(e)) => match e.err() {
                    PutItemError::ConditionalCheckFailedException(_) => return Ok(false),
                    // A transaction holds the head: it may or may not move its version.
                    PutItemError::TransactionConflictException(_) => {}
                    _ => return Err(unavailable(SdkError::ServiceError(e))),
                },
                Err(e) => return Err(unavailable(e)),
            }
            if attempt + 1 < PACING_CONFLICT_ATTEMPTS {
                self.back_off(attempt).await;
            }
        }
        Ok(false)
    }

    /// Every head, each conditional on its version, and the shards that change, in one
    /// `TransactWriteItems`: all or none.
    async fn write_together(&self, plans: &[Plan]) -> Result<bool, StoreError> {
        let mut items = Vec::new();
        for plan in plans {
            let (condition, values) = condition(plan.version)?;
            let put = Put::builder()
                .table_name(&self.calls_table)
                .set_item(Some(plan.head.clone()))
                .condition_expression(condition)
                .set_expression_attribute_values(values)
                .build()
                .map_err(unavailable)?;
            items.push(TransactWriteItem::builder().put(put).build());
            for (index, item) in &plan.shards {
                items.push(match item {
                    Some(item) => TransactWriteItem::builder()
                        .put(
                            Put::builder()
                                .table_name(&self.calls_table)
                                .set_item(Some(item.clone()))
                                .build()
                                .map_err(unavailable)?,
                        )
                        .build(),
                    None => TransactWriteItem::builder()
                        .delete(
                            Delete::builder()
                                .table_name(&self.calls_table)
                                .key("call_id", s(shard_key(&plan.key, *index)))
                                .build()
                                .map_err(unavailable)?,
                        )
                        .build(),
                });
            }
        }
        if items.len() > TRANSACTION_ITEMS {
            return Err(StoreError::unavailable(format!(
                "a save of {} pacing states takes {} items, more than one transaction holds",
                plans.len(),
                items.len()
            )));
        }
        for attempt in 0..PACING_CONFLICT_ATTEMPTS {
            let result = self
                .client
                .transact_write_items()
                .set_transact_items(Some(items.clone()))
                .send()
                .await;
            match result {
                Ok(_) => return Ok(true),
                Err(SdkError::ServiceError(e)) => match e.err() {
                    TransactWriteItemsError::TransactionCanceledException(cancel) => {
                        let codes = codes(cancel.cancellation_reasons());
                        if codes.contains(&"ConditionalCheckFailed") {
                            return Ok(false);
                        }
                        if !codes.contains(&"TransactionConflict") {
                            return Err(StoreError::unavailable(format!(
                                "a pacing write was canceled: {codes:?}"
                            )));
                        }
                    }
                    _ => return Err(unavailable(SdkError::ServiceError(e))),
                },
                Err(e) => return Err(unavailable(e)),
            }
            // Another transaction held an item: it may or may not have changed its
            // version. Once more finds out (a lost race fails its condition then).
            if attempt + 1 < PACING_CONFLICT_ATTEMPTS {
                self.back_off(attempt).await;
            }
        }
        // Still contended: report the race as lost; the caller reads again.
        Ok(false)
    }

    /// The heads of the `wanted` states (by their index in `keys`), each with the
    /// shards of its mask: whole states in chunks, each chunk one serializable read.
    async fn read_states(
        &self,
        keys: &[String],
        wanted: &[(usize, u32)],
    ) -> Result<Vec<Read>, StoreError> {
        let mut reads = Vec::with_capacity(wanted.len());
        let mut chunk: Vec<(usize, u32)> = Vec::new();
        let mut items = 0;
        for &(at, mask) in wanted {
            let size = 1 + mask.count_ones() as usize;
            if items + size > TRANSACTION_ITEMS {
                reads.extend(self.read_chunk(keys, &chunk).await?);
                chunk.clear();
                items = 0;
            }
            chunk.push((at, mask));
            items += size;
        }
        if !chunk.is_empty() {
            reads.extend(self.read_chunk(keys, &chunk).await?);
        }
        Ok(reads)
    }

    async fn read_chunk(
        &self,
        keys: &[String],
        chunk: &[(usize, u32)],
    ) -> Result<Vec<Read>, StoreError> {
        let mut names = Vec::new();
        for &(at, mask) in chunk {
            names.push(head_key(&keys[at]));
            names.extend(shards_in(mask).map(|shard| shard_key(&keys[at], shard)));
        }
        // A lone item needs no transaction, and a consistent read of it costs half.
        let items = match names.as_slice() {
            [name] => vec![self.read_slot(name).await?],
            _ => self.read_together(&names).await?,
        };
        let mut items = items.into_iter();
        let mut reads = Vec::with_capacity(chunk.len());
        for &(_, mask) in chunk {
            let head = items.next().flatten();
            let mut shards = vec![None; SHARDS];
            for shard in shards_in(mask) {
                shards[shard] = items.next().flatten();
            }
            reads.push(Read { head, shards });
        }
        Ok(reads)
    }

    /// The items under `names`, in that order, as of one moment.
    async fn read_together(&self, names: &[String]) -> Result<Vec<Option<Item>>, StoreError> {
        let gets = names
            .iter()
            .map(|name| {
                Get::builder()
                    .table_name(&self.calls_table)
                    .key("call_id", s(name.clone()))
                    .build()
                    .map(|get| TransactGetItem::builder().get(get).build())
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(unavailable)?;
        for attempt in 0..READ_CONFLICT_ATTEMPTS {
            let result = self
                .client
                .transact_get_items()
                .set_transact_items(Some(gets.clone()))
                .send()
                .await;
            match result {
                Ok(output) => {
                    let responses = output.responses.unwrap_or_default();
                    if responses.len() != names.len() {
                        return Err(StoreError::unavailable(format!(
                            "a read of {} pacing items answered {}",
                            names.len(),
                            responses.len()
                        )));
                    }
                    return Ok(responses.into_iter().map(|r| r.item).collect());
                }
                Err(SdkError::ServiceError(e)) => match e.err() {
                    TransactGetItemsError::TransactionCanceledException(cancel)
                        if codes(cancel.cancellation_reasons())
                            .contains(&"TransactionConflict") => {}
                    _ => return Err(unavailable(SdkError::ServiceError(e))),
                },
                Err(e) => return Err(unavailable(e)),
            }
            if attempt + 1 < READ_CONFLICT_ATTEMPTS {
                self.back_off(attempt).await;
            }
        }
        Err(StoreError::unavailable(
            "pacing states stayed held by writes in progress",
        ))
    }
}

impl PacingMemo {
    fn at(&self, key: &str, version: u64) -> Option<Shards> {
        let memo = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        memo.get(key)?
            .iter()
            .find(|r| r.version == version)
            .map(|r| r.shards.clone())
    }

    /// The shards the latest version known of `key` lists: what to read with its head.
    fn listed(&self, key: &str) -> u32 {
        let memo = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        memo.get(key)
            .and_then(VecDeque::back)
            .map_or(0, |r| mask_of(&r.shards))
    }

    fn remember(&self, key: &str, version: u64, shards: Shards) {
        let mut memo = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if memo.len() >= MEMO_KEYS && !memo.contains_key(key) {
            memo.clear();
        }
        let versions = memo.entry(key.to_owned()).or_default();
        versions.retain(|r| r.version != version);
        versions.push_back(Remembered { version, shards });
        while versions.len() > MEMO_VERSIONS {
            versions.pop_front();
        }
    }
}

fn decode(read: &Read, read_with: u32) -> Result<Decoded, StoreError> {
    let Some(head) = &read.head else {
        return Ok(Decoded::Whole(Stored::default(), no_shards()));
    };
    let version = number(head, "version")
        .and_then(|v| u64::try_from(v).ok())
        .ok_or_else(bad)?;
    if let Some(state) = text(head, "state") {
        let value = serde_json::from_str(&state).map_err(|_| bad())?;
        return Ok(Decoded::Whole(Stored { value, version }, no_shards()));
    }
    let listed = match head.get("shards") {
        None => 0,
        Some(_) => number(head, "shards")
            .and_then(|mask| u32::try_from(mask).ok())
            .filter(|mask| mask & !ALL_SHARDS == 0)
            .ok_or_else(bad)?,
    };
    if listed & !read_with != 0 {
        return Ok(Decoded::Lists(listed));
    }
    let mut shards = no_shards();
    let mut lines = match head.get("lines") {
        None => Lines::new(),
        Some(_) => lines_of(head)?,
    };
    for shard in shards_in(listed) {
        let held = read.shards[shard]
            .as_ref()
            .map(lines_of)
            .transpose()?
            .unwrap_or_default();
        lines.extend(held.iter().map(|(line, granted)| (line.clone(), *granted)));
        shards[shard] = Arc::new(held);
    }
    let recent = match head.get("recent") {
        None => VecDeque::new(),
        Some(packed) => packed
            .as_b()
            .ok()
            .and_then(|packed| unpack_times(packed.as_ref()))
            .ok_or_else(bad)?,
    };
    let queued = match head.get("queued") {
        None => 0,
        Some(_) => number(head, "queued")
            .and_then(|q| u32::try_from(q).ok())
            .ok_or_else(bad)?,
    };
    let value = Pacing {
        lines,
        recent,
        queued,
    };
    Ok(Decoded::Whole(Stored { value, version }, shards))
}

fn head_item(
    key: &str,
    state: &Stored<Pacing>,
    listed: u32,
    inline: bool,
) -> Result<Item, StoreError> {
    let next = i64::try_from(state.version.saturating_add(1)).map_err(unavailable)?;
    let mut item = HashMap::from([
        ("call_id".to_owned(), s(head_key(key))),
        ("version".to_owned(), n(next)),
    ]);
    if state.value.queued != 0 {
        item.insert("queued".to_owned(), n(i64::from(state.value.queued)));
    }
    if !state.value.recent.is_empty() {
        item.insert(
            "recent".to_owned(),
            AttributeValue::B(Blob::new(pack_times(&state.value.recent))),
        );
    }
    if listed != 0 {
        item.insert("shards".to_owned(), n(i64::from(listed)));
    }
    if inline && !state.value.lines.is_empty() {
        item.insert("lines".to_owned(), lines_value(&state.value.lines));
    }
    Ok(item)
}

/// The condition of a head's write at `version`, and its values.
fn condition(version: u64) -> Result<(&'static str, Option<Item>), StoreError> {
    Ok(if version == 0 {
        ("attribute_not_exists(call_id)", None)
    } else {
        let version = i64::try_from(version).map_err(unavailable)?;
        (
            "version = :version",
            Some(HashMap::from([(":version".to_owned(), n(version))])),
        )
    })
}

fn shard_item(key: &str, shard: usize, lines: &Lines) -> Item {
    HashMap::from([
        ("call_id".to_owned(), s(shard_key(key, shard))),
        ("lines".to_owned(), lines_value(lines)),
    ])
}

fn lines_value(lines: &Lines) -> AttributeValue {
    AttributeValue::M(
        lines
            .iter()
            .map(|(line, granted)| (line.clone(), AttributeValue::N(seconds(*granted))))
            .collect(),
    )
}

fn lines_of(item: &Item) -> Result<Lines, StoreError> {
    let Some(AttributeValue::M(lines)) = item.get("lines") else {
        return Err(bad());
    };
    lines
        .iter()
        .map(|(line, granted)| Some((line.clone(), from_seconds(granted.as_n().ok()?)?)))
        .collect::<Option<Lines>>()
        .ok_or_else(bad)
}

fn no_shards() -> Shards {
    // One empty map serves every shard: none is ever changed in place.
    let empty = Arc::new(Lines::new());
    vec![empty; SHARDS]
}

fn mask_of(shards: &Shards) -> u32 {
    shards
        .iter()
        .enumerate()
        .filter(|(_, lines)| !lines.is_empty())
        .fold(0, |mask, (shard, _)| mask | 1 << shard)
}

fn shards_in(mask: u32) -> impl Iterator<Item = usize> {
    (0..SHARDS).filter(move |shard| mask & (1 << shard) != 0)
}

fn codes(reasons: &[CancellationReason]) -> Vec<&str> {
    reasons.iter().filter_map(|r| r.code()).collect()
}

const NANOS: i128 = 1_000_000_000;

fn nanos(at: DateTime<Utc>) -> i128 {
    i128::from(at.timestamp()) * NANOS + i128::from(at.timestamp_subsec_nanos())
}

fn from_nanos(total: i128) -> Option<DateTime<Utc>> {
    let seconds = i64::try_from(total.div_euclid(NANOS)).ok()?;
    let nanos = u32::try_from(total.rem_euclid(NANOS)).ok()?;
    DateTime::from_timestamp(seconds, nanos)
}

/// A time as Unix seconds in decimal, to the nanosecond and no further than it needs:
/// the pacer's times are whole milliseconds (13 digits: 8 bytes as a DynamoDB number),
/// and any other reads back exactly too.
fn seconds(at: DateTime<Utc>) -> String {
    let total = nanos(at);
    let sign = if total < 0 { "-" } else { "" };
    let (whole, fraction) = (total.abs() / NANOS, total.abs() % NANOS);
    if fraction == 0 {
        format!("{sign}{whole}")
    } else {
        let fraction = format!("{fraction:09}");
        format!("{sign}{whole}.{}", fraction.trim_end_matches('0'))
    }
}

fn from_seconds(number: &str) -> Option<DateTime<Utc>> {
    let (negative, digits) = match number.strip_prefix('-') {
        Some(digits) => (true, digits),
        None => (false, number),
    };
    let decimal = |text: &str| !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
    let (whole, fraction) = match digits.split_once('.') {
        Some((whole, fraction)) if decimal(fraction) && fraction.len() <= 9 => (whole, fraction),
        Some(_) => return None,
        None => (digits, ""),
    };
    if !decimal(whole) {
        return None;
    }
    let whole: i128 = whole.parse().ok()?;
    let fraction: i128 = format!("{fraction:0<9}").parse().ok()?;
    let total = whole.checked_mul(NANOS)?.checked_add(fraction)?;
    from_nanos(if negative { -total } else { total })
}

/// Booked dial times, packed: a byte for the unit (10^u nanoseconds, the coarsest that
/// holds every time exactly: 6, milliseconds, for the pacer's), then each time's
/// difference from the one before (the first's from the epoch) in that unit, zigzag
/// LEB128. Dials booked a millisecond apart take a byte each, where a list of numbers
/// would take nine.
fn pack_times(times: &VecDeque<DateTime<Utc>>) -> Vec<u8> {
    let totals: Vec<i128> = times.iter().map(|t| nanos(*t)).collect();
    let unit = (0..=9_u8)
        .rev()
        .find(|u| totals.iter().all(|t| t % 10_i128.pow(u32::from(*u)) == 0))
        .unwrap_or(0);
    let scale = 10_i128.pow(u32::from(unit));
    let mut packed = vec![unit];
    let mut last = 0;
    for total in totals {
        let step = total / scale - last;
        last = total / scale;
        let mut zigzag = ((step << 1) ^ (step >> 127)) as u128;
        loop {
            let low = (zigzag & 0x7f) as u8;
            zigzag >>= 7;
            if zigzag == 0 {
                packed.push(low);
                break;
            }
            packed.push(low | 0x80);
        }
    }
    packed
}

fn unpack_times(packed: &[u8]) -> Option<VecDeque<DateTime<Utc>>> {
    let (&unit, mut rest) = packed.split_first()?;
    if unit > 9 {
        return None;
    }
    let scale = 10_i128.pow(u32::from(unit));
    let mut times = VecDeque::new();
    let mut last: i128 = 0;
    while !rest.is_empty() {
        let mut zigzag: u128 = 0;
        let mut shift = 0;
        loop {
            let (&byte, tail) = rest.split_first()?;
            rest = tail;
            if shift > 126 {
                return None;
            }
            zigzag |= u128::from(byte & 0x7f) << shift;
            shift += 7;
            if byte & 0x80 == 0 {
                break;
            }
        }
        let step = (zigzag >> 1) as i128 ^ -((zigzag & 1) as i128);
        last = last.checked_add(step)?;
        times.push_back(from_nanos(last.checked_mul(scale)?)?);
    }
    Some(times)
}

fn bad() -> StoreError {
    StoreError::unavailable("stored pacing state is bad or incomplete")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64, nanos: u32) -> DateTime<Utc> {
        DateTime::from_timestamp(seconds, nanos).expect("a valid time")
    }

    #[test]
    fn a_time_as_seconds_reads_back_exactly_and_takes_no_more_digits_than_it_needs() {
        for (time, text) in [
            (at(1_800_000_000, 0), "1800000000"),
            (at(1_800_000_000, 123_000_000), "1800000000.123"),
            (at(1_800_000_000, 123_456_789), "1800000000.123456789"),
            (at(1_800_000_000, 1), "1800000000.000000001"),
            (at(0, 0), "0"),
            (at(-1, 500_000_000), "-0.5"),
            (at(-2, 999_999_999), "-1.000000001"),
        ] {
            assert_eq!(seconds(time), text);
            assert_eq!(from_seconds(text), Some(time), "{text}");
        }
        // DynamoDB hands numbers back in its own form: trailing zeros dropped or kept.
        assert_eq!(
            from_seconds("1800000000.1230"),
            Some(at(1_800_000_000, 123_000_000))
        );
        for bad in ["", "-", ".5", "1.", "1e3", "1.0000000001", "+1", "1.-2"] {
            assert_eq!(from_seconds(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn packed_times_read_back_exactly_in_their_order() {
        let millis = |ms: i64| DateTime::from_timestamp_millis(ms).expect("a valid time");
        let cases: Vec<VecDeque<DateTime<Utc>>> = vec![
            VecDeque::new(),
            (0..1_100).map(|i| millis(1_800_000_000_000 + i)).collect(),
            [
                millis(1_800_000_000_500),
                millis(1_800_000_000_000),
                millis(1_800_000_000_000),
                at(1_800_000_000, 7),
                at(-5, 1),
                DateTime::<Utc>::MAX_UTC,
                DateTime::<Utc>::MIN_UTC,
            ]
            .into(),
        ];
        for times in cases {
            assert_eq!(unpack_times(&pack_times(&times)), Some(times));
        }
        let booked: VecDeque<_> = (0..1_100).map(|i| millis(1_800_000_000_000 + i)).collect();
        assert!(
            pack_times(&booked).len() < 1_110,
            "a millisecond apart, a byte each"
        );
        assert_eq!(unpack_times(&[10]), None);
        assert_eq!(unpack_times(&[6, 0x80]), None);
    }

    #[test]
    fn a_slot_goes_to_the_shard_of_its_call_ids_last_byte() {
        let slot = |id: u128, attempt: u32| {
            Slot {
                call: uuid::Uuid::from_u128(id),
                attempt,
            }
            .key()
        };
        assert_eq!(
            shard_of(&slot(0x1234_5678_9abc_def0_1234_5678_9abc_de35, 1)),
            5
        );
        assert_eq!(shard_of(&slot(0x35, 2)), shard_of(&slot(0x35, 1)));
        let spread: std::collections::BTreeSet<usize> =
            (0..64).map(|i| shard_of(&slot(i, 1))).collect();
        assert_eq!(spread.len(), SHARDS);
        assert!(shard_of("not a slot") < SHARDS);
        assert_eq!(shard_of("not a slot"), shard_of("not a slot"));
    }
}
