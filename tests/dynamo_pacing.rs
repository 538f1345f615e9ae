//! How the DynamoDB store lays out pacing states (a head and line shards), checked on
//! moto through the items themselves and the writes the store sends: their sizes, which
//! items a change writes, states from before shards, and two processes sharing states.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use aws_config::SdkConfig;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::interceptors::BeforeSerializationInterceptorContextRef;
use aws_sdk_dynamodb::config::{ConfigBag, Intercept};
use aws_sdk_dynamodb::error::BoxError;
use aws_sdk_dynamodb::operation::put_item::PutItemInput;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsInput;
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{Duration, Utc};
use dialer_core::domain::pacing::TrunkLimits;
use dialer_core::domain::{Admission, Pacing, Slot, UserLimits, now};
use dialer_core::service::Pacer;
use dialer_core::store::{PACING_TRUNK, PacingStore, Versioned};
use dialer_store_dynamo::DynamoStore;
use dialer_store_dynamo::pacing::{INLINE_LINES, SHARDS, head_key, shard_key, shard_of};
use integration::aws::{Tables, dynamo_store, endpoint, sdk_config};
use uuid::Uuid;

type Item = HashMap<String, AttributeValue>;

/// No item of a state is to come near DynamoDB's 400 KB limit, nor cost more than a
/// few dozen units a write.
const ITEM_BOUND: usize = 20 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_item_of_a_state_of_5000_lines_is_larger_than_20_kb_on_dynamodb() {
    let (store, tables, aws) = dynamo_store().await;
    let raw = Client::new(&aws);
    // The pacer's whole milliseconds, and times to the nanosecond (the most a time
    // can take).
    for (key, fine) in [("millis", false), ("nanos", true)] {
        let state = busy_state(5_000, 1_100, fine);
        assert!(
            store
                .save_pacing(&[(
                    key.to_owned(),
                    Versioned {
                        value: state,
                        version: 0
                    }
                )])
                .await
                .expect("save")
        );
    }
    let items = scan(&raw, &tables.calls).await;
    assert_eq!(items.len(), 2 * (1 + SHARDS), "a head and every shard each");
    for item in &items {
        let name = text(item, "call_id");
        let size = item_size(item);
        assert!(size <= ITEM_BOUND, "{name}: {size} bytes");
        for hidden in ["status", "owner", "active", "queue", "queue_at"] {
            assert!(!item.contains_key(hidden), "{name} has {hidden}");
        }
    }
    let total: usize = items.iter().map(item_size).sum();
    eprintln!(
        "two states of 5,000 lines: {} items, largest {} bytes, {total} bytes in all",
        items.len(),
        items.iter().map(item_size).max().unwrap_or(0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admission_at_500_lines_writes_only_the_head_and_one_shard_on_dynamodb() {
    let (store, writes, _) = recorded_store().await;
    let store = Arc::new(store);
    let trunk = busy_state(500, 0, false);
    assert!(
        store
            .save_pacing(&[(
                PACING_TRUNK.to_owned(),
                Versioned {
                    value: trunk,
                    version: 0
                }
            )])
            .await
            .expect("save")
    );
    let limits = TrunkLimits {
        calls_per_second: Some(1_000),
        concurrent_calls: Some(5_000),
    };
    let pacer = Pacer::new(store.clone(), limits);
    let slot = Slot {
        call: Uuid::new_v4(),
        attempt: 1,
    };
    let owner = "alice";
    let shard = shard_key(PACING_TRUNK, shard_of(&slot.key()));

    writes.clear();
    let (admission, _) = pacer
        .admit(owner, UserLimits::default(), slot)
        .await
        .expect("admit");
    assert_eq!(admission, Admission::Granted);
    assert_eq!(
        writes.names(),
        [vec![head_key(PACING_TRUNK), shard.clone()]],
        "one transaction of the head and the slot's shard"
    );

    writes.clear();
    pacer.release(owner, slot).await.expect("release");
    assert_eq!(
        writes.names(),
        [vec![head_key(PACING_TRUNK), shard]],
        "a release: the same"
    );

    // The queue count is the head's alone: one conditional put.
    writes.clear();
    let queue = UserLimits {
        max_concurrent_calls: None,
        max_queued_calls: Some(10),
    };
    assert_eq!(pacer.enqueue(owner, queue).await.expect("enqueue"), Ok(()));
    assert_eq!(writes.names(), [vec![head_key(&format!("queue#{owner}"))]]);
    let loaded = store
        .load_pacing(&[PACING_TRUNK.to_owned()])
        .await
        .expect("load");
    assert_eq!((loaded[0].value.lines.len(), loaded[0].version), (500, 3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_keeps_few_lines_in_its_head_and_spreads_many_over_shards_on_dynamodb() {
    let (store, tables, aws) = dynamo_store().await;
    let raw = Client::new(&aws);
    let key = PACING_TRUNK.to_owned();
    let mut state = Versioned {
        value: busy_state(INLINE_LINES, 1_100, false),
        version: 0,
    };
    let save_and_read = async |state: &mut Versioned<Pacing>| {
        assert!(
            store
                .save_pacing(&[(key.clone(), state.clone())])
                .await
                .expect("save")
        );
        state.version += 1;
        let loaded = store
            .load_pacing(std::slice::from_ref(&key))
            .await
            .expect("load");
        assert!(loaded[0] == *state, "read back as written");
        scan(&raw, &tables.calls).await
    };

    let items = save_and_read(&mut state).await;
    assert_eq!(items.len(), 1, "{INLINE_LINES} lines: the head alone");
    assert!(items[0].contains_key("lines"));

    state.value.lines.insert(slot_in(9).key(), now());
    let items = save_and_read(&mut state).await;
    assert!(items.len() > 1, "one more: the lines go to shards");
    let head = items
        .iter()
        .find(|item| text(item, "call_id") == head_key(&key))
        .expect("the head");
    assert!(!head.contains_key("lines") && head.contains_key("shards"));

    // Down to 40 they stay in shards; at 32 they come back to the head, the shards gone.
    let keep: Vec<String> = state.value.lines.keys().take(40).cloned().collect();
    state.value.lines.retain(|line, _| keep.contains(line));
    assert!(save_and_read(&mut state).await.len() > 1);
    let keep: Vec<String> = keep.into_iter().take(32).collect();
    state.value.lines.retain(|line, _| keep.contains(line));
    let items = save_and_read(&mut state).await;
    assert_eq!(items.len(), 1, "back in the head, no shard left");
    assert!(items[0].contains_key("lines") && !items[0].contains_key("shards"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_state_item_from_before_shards_reads_back_and_is_saved_in_shards_on_dynamodb() {
    let (store, tables, aws) = dynamo_store().await;
    let raw = Client::new(&aws);
    let key = "user#old";
    let old = busy_state(100, 3, true);
    raw.put_item()
        .table_name(&tables.calls)
        .item("call_id", AttributeValue::S(head_key(key)))
        .item(
            "state",
            AttributeValue::S(serde_json::to_string(&old).expect("json")),
        )
        .item("version", AttributeValue::N("4".into()))
        .send()
        .await
        .expect("an item as the store used to write it");
    let loaded = store.load_pacing(&[key.to_owned()]).await.expect("load");
    assert_eq!(
        loaded,
        [Versioned {
            value: old.clone(),
            version: 4
        }]
    );

    let mut next = old;
    next.queued += 1;
    assert!(
        store
            .save_pacing(&[(
                key.to_owned(),
                Versioned {
                    value: next.clone(),
                    version: 4
                }
            )])
            .await
            .expect("save")
    );
    let items = scan(&raw, &tables.calls).await;
    let head = items
        .iter()
        .find(|item| text(item, "call_id") == head_key(key))
        .expect("the head");
    assert!(!head.contains_key("state"), "the whole state is gone");
    assert!(items.len() > 1, "the lines are in shards");
    assert_eq!(
        store.load_pacing(&[key.to_owned()]).await.expect("load"),
        [Versioned {
            value: next,
            version: 5
        }]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_read_and_write_each_others_shards_on_dynamodb() {
    let (one, tables, aws) = dynamo_store().await;
    let other = DynamoStore::new(
        Client::new(&aws),
        tables.calls.clone(),
        tables.users.clone(),
        30,
    );
    let key = vec![PACING_TRUNK.to_owned()];
    let read = async |store: &DynamoStore| store.load_pacing(&key).await.expect("load").remove(0);
    let write = async |store: &DynamoStore, state: &Versioned<Pacing>| {
        assert!(
            store
                .save_pacing(&[(key[0].clone(), state.clone())])
                .await
                .expect("save")
        );
    };

    // Lines enough to leave the head, all in one shard.
    let mut state = Versioned {
        value: Pacing::default(),
        version: 0,
    };
    for _ in 0..INLINE_LINES + 6 {
        state.value.lines.insert(slot_in(3).key(), now());
    }
    write(&one, &state).await;
    state.version = 1;
    // The other has never read it: its guess of the shards is none, then the head's.
    assert_eq!(read(&other).await, state);

    // Lines in shards the other's last read did not list.
    let mut moved = read(&one).await;
    for shard in [0, 7, 15] {
        moved.value.lines.insert(slot_in(shard).key(), now());
    }
    write(&one, &moved).await;
    moved.version += 1;
    assert_eq!(read(&other).await, moved);

    // The other frees two lines; the first, which wrote last, reads what it left.
    let mut freed = read(&other).await;
    let first = freed.value.lines.keys().next().cloned().expect("a line");
    freed.value.lines.remove(&first);
    freed.value.lines.retain(|line, _| shard_of(line) != 7);
    write(&other, &freed).await;
    freed.version += 1;
    assert_eq!(read(&one).await, freed);
    let mut again = read(&one).await;
    again.value.lines.insert(slot_in(7).key(), now());
    write(&one, &again).await;
    again.version += 1;
    assert_eq!(read(&other).await, again);

    // A shard the head does not list is nothing, whatever its item holds: here one the
    // first process last saw listed, put back behind the store's back once emptied.
    let mut emptied = read(&other).await;
    emptied.value.lines.retain(|line, _| shard_of(line) != 7);
    write(&other, &emptied).await;
    emptied.version += 1;
    Client::new(&aws)
        .put_item()
        .table_name(&tables.calls)
        .item("call_id", AttributeValue::S(shard_key(&key[0], 7)))
        .item(
            "lines",
            AttributeValue::M(HashMap::from([(
                slot_in(7).key(),
                AttributeValue::N("1800000000".into()),
            )])),
        )
        .send()
        .await
        .expect("a stray shard");
    assert_eq!(read(&one).await, emptied, "read with the head, not listed");
    let fresh = DynamoStore::new(
        Client::new(&aws),
        tables.calls.clone(),
        tables.users.clone(),
        30,
    );
    assert_eq!(read(&fresh).await, emptied, "not read at all");

    // A save at a version this process never read writes every shard, and is exact.
    let mut told = emptied.clone();
    told.value.lines.retain(|line, _| shard_of(line) != 0);
    let unread = DynamoStore::new(Client::new(&aws), tables.calls, tables.users, 30);
    write(&unread, &told).await;
    told.version += 1;
    assert_eq!(read(&one).await, told);
}

/// The bytes one admission writes (the sum of the sizes of the items in its write) into
/// a trunk state of 0, 500 and 5,000 lines, as one JSON item (before) and as a head and
/// shards (now), with the write and read units each costs. `cargo nextest run -p
/// integration pacing_write_sizes --no-capture` prints the table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pacing_write_sizes_before_and_after_shards_on_dynamodb() {
    eprintln!(
        "{:>6} {:>9} | {:>12} {:>6} {:>6} | {:>12} {:>6} {:>6}",
        "lines", "bookings", "before bytes", "WCU", "RCU", "after bytes", "WCU", "RCU"
    );
    for bookings in [0, 1_100] {
        for lines in [0, 500, 5_000] {
            let (store, writes, raw) = recorded_store().await;
            let mut state = busy_state(lines, bookings, false);
            let key = PACING_TRUNK.to_owned();
            let first = Versioned {
                value: state.clone(),
                version: 0,
            };
            assert!(
                store
                    .save_pacing(&[(key.clone(), first)])
                    .await
                    .expect("save")
            );
            let read = store
                .load_pacing(std::slice::from_ref(&key))
                .await
                .expect("load");
            // An admission: a line more and a booking more (the oldest drops out).
            let granted = now() + Duration::seconds(1);
            state.lines.insert(slot_in(5).key(), granted);
            if bookings > 0 {
                state.recent.pop_front();
                state.recent.push_back(granted);
            }
            writes.clear();
            let admitted = Versioned {
                value: state.clone(),
                version: read[0].version,
            };
            assert!(
                store
                    .save_pacing(&[(key.clone(), admitted)])
                    .await
                    .expect("save")
            );
            let sent = writes.items();
            assert_eq!(sent.len(), 1, "one write");
            let after: usize = sent[0].iter().map(item_size).sum();
            let transaction = sent[0].len() > 1;
            let after_wcu: usize = sent[0]
                .iter()
                .map(|item| {
                    item_size(item).div_ceil(1_024).max(1) * if transaction { 2 } else { 1 }
                })
                .sum();
            let stored = scan(&raw.0, &raw.1).await;
            let after_rcu: usize = if stored.len() > 1 {
                stored
                    .iter()
                    .map(|i| 2 * item_size(i).div_ceil(4_096).max(1))
                    .sum()
            } else {
                item_size(&stored[0]).div_ceil(4_096).max(1)
            };

            let old = HashMap::from([
                ("call_id".to_owned(), AttributeValue::S(head_key(&key))),
                (
                    "state".to_owned(),
                    AttributeValue::S(serde_json::to_string(&state).expect("json")),
                ),
                ("version".to_owned(), AttributeValue::N("2".into())),
            ]);
            let before = item_size(&old);
            eprintln!(
                "{lines:>6} {bookings:>9} | {before:>12} {:>6} {:>6} | {after:>12} {after_wcu:>6} {after_rcu:>6}",
                before.div_ceil(1_024),
                before.div_ceil(4_096),
            );
            if lines >= 500 {
                assert!(
                    after * 4 < before,
                    "{lines} lines: {after} bytes, {before} before"
                );
            }
            assert!(after <= 2 * ITEM_BOUND);
        }
    }
}

/// A trunk-like state: `lines` held, granted over the past minutes, and `bookings` dial
/// times a millisecond apart (1,000 calls a second). `fine`: times to the nanosecond.
fn busy_state(lines: usize, bookings: usize, fine: bool) -> Pacing {
    let start = if fine { Utc::now() } else { now() };
    let mut state = Pacing {
        queued: 3,
        ..Pacing::default()
    };
    for n in 0..lines as i64 {
        let slot = Slot {
            call: Uuid::new_v4(),
            attempt: 1,
        };
        state
            .lines
            .insert(slot.key(), start - Duration::milliseconds(n * 61));
    }
    state.recent = (0..bookings as i64)
        .rev()
        .map(|n| start - Duration::milliseconds(n))
        .collect();
    state
}

/// A slot whose line goes to `shard`.
fn slot_in(shard: usize) -> Slot {
    loop {
        let slot = Slot {
            call: Uuid::new_v4(),
            attempt: 1,
        };
        if shard_of(&slot.key()) == shard {
            return slot;
        }
    }
}

/// A store on moto whose client records every write it sends, and a plain client with
/// the calls table's name.
async fn recorded_store() -> (DynamoStore, Writes, (Client, String)) {
    let aws: SdkConfig = sdk_config(&endpoint()).await;
    let writes = Writes::default();
    let config = aws_sdk_dynamodb::config::Builder::from(&aws)
        .interceptor(writes.clone())
        .build();
    let tables = Tables::unique();
    let store = DynamoStore::new(
        Client::from_conf(config),
        tables.calls.clone(),
        tables.users,
        30,
    );
    store.create_tables().await.expect("tables created on moto");
    (store, writes, (Client::new(&aws), tables.calls))
}

/// The items of each write request sent: a put's item, a delete's key.
#[derive(Clone, Debug, Default)]
struct Writes(Arc<Mutex<Vec<Vec<Item>>>>);

impl Writes {
    fn clear(&self) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    fn items(&self) -> Vec<Vec<Item>> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn names(&self) -> Vec<Vec<String>> {
        self.items()
            .iter()
            .map(|write| write.iter().map(|item| text(item, "call_id")).collect())
            .collect()
    }
}

impl Intercept for Writes {
    fn name(&self) -> &'static str {
        "Writes"
    }

    fn read_before_execution(
        &self,
        context: &BeforeSerializationInterceptorContextRef<'_>,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let input = context.input();
        let items = if let Some(put) = input.downcast_ref::<PutItemInput>() {
            vec![put.item.clone().unwrap_or_default()]
        } else if let Some(transaction) = input.downcast_ref::<TransactWriteItemsInput>() {
            transaction
                .transact_items()
                .iter()
                .filter_map(|write| match (write.put(), write.delete()) {
                    (Some(put), _) => Some(put.item().clone()),
                    (None, Some(delete)) => Some(delete.key().clone()),
                    (None, None) => None,
                })
                .collect()
        } else {
            return Ok(());
        };
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(items);
        Ok(())
    }
}

async fn scan(client: &Client, table: &str) -> Vec<Item> {
    let mut items = Vec::new();
    let mut start = None;
    loop {
        let page = client
            .scan()
            .table_name(table)
            .set_exclusive_start_key(start)
            .send()
            .await
            .expect("scan");
        items.extend(page.items.unwrap_or_default());
        match page.last_evaluated_key {
            Some(key) => start = Some(key),
            None => return items,
        }
    }
}

fn text(item: &Item, name: &str) -> String {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .cloned()
        .unwrap_or_default()
}

/// An item's size as DynamoDB counts it: the lengths of the attribute names and their
/// values (a number: a byte per two significant digits and one; a list or map: three,
/// and one per element).
fn item_size(item: &Item) -> usize {
    item.iter()
        .map(|(name, value)| name.len() + value_size(value))
        .sum()
}

fn value_size(value: &AttributeValue) -> usize {
    match value {
        AttributeValue::S(text) => text.len(),
        AttributeValue::N(number) => number_size(number),
        AttributeValue::B(bytes) => bytes.as_ref().len(),
        AttributeValue::Bool(_) | AttributeValue::Null(_) => 1,
        AttributeValue::L(values) => 3 + values.iter().map(|v| 1 + value_size(v)).sum::<usize>(),
        AttributeValue::M(map) => {
            3 + map
                .iter()
                .map(|(name, v)| 1 + name.len() + value_size(v))
                .sum::<usize>()
        }
        AttributeValue::Ss(texts) => texts.iter().map(String::len).sum(),
        AttributeValue::Ns(numbers) => numbers.iter().map(|n| number_size(n)).sum(),
        AttributeValue::Bs(blobs) => blobs.iter().map(|b| b.as_ref().len()).sum(),
        _ => 0,
    }
}

fn number_size(number: &str) -> usize {
    let digits: String = number.chars().filter(char::is_ascii_digit).collect();
    let significant = digits.trim_start_matches('0').trim_end_matches('0').len();
    significant.max(1).div_ceil(2) + 1
}
