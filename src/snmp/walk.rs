//! SNMP walks that survive real agents.
//!
//! [`walk`] reads a whole subtree; [`walk_table`] reads several columns of one
//! table together and joins them into rows by index. Both are one engine
//! that keeps a cursor per root and copes with what agents get wrong:
//!
//! - **Liveness first.** The first request of a walk is a GETNEXT, and
//!   GETBULK takes over from its answer. A GETBULK that times out is then
//!   known to be a GETBULK problem (some agents silently drop it), not a
//!   dead device, so the walk can fall back to GETNEXT; and a device that
//!   never answers costs one request's `timeout × (retries + 1)`, not two.
//!   The price is one extra round trip per walk.
//! - **GETBULK fallback.** A GETBULK that times out, gets an error-status
//!   (genErr, noSuchName, ...), an empty varbind list or an unusable reply
//!   switches the rest of the walk to GETNEXT; once a GETNEXT works,
//!   [`Walk::bulk_failed`] is set, which the caller should remember for the
//!   device (and pass `use_bulk: false` next time). (If GETNEXT fails too,
//!   the device went away, and GETBULK is not blamed.) `tooBig` first halves
//!   max-repetitions (down to 1) before giving up on GETBULK; the value that
//!   worked is in [`Walk::max_repetitions`].
//! - **Stopping.** A walk stops at the first OID outside the subtree, at
//!   endOfMibView (the padding some agents add after it is ignored, as is
//!   anything after a stop in the same reply), on an OID that is not greater
//!   than the previous one (a loop guard: [`StopReason::NonIncreasing`]), at
//!   SNMPv1's noSuchName (error-status 2, how v1 says "end of MIB"), and at
//!   [`WalkOptions::max_oids`] ([`Walk::truncated`]; max-repetitions is
//!   lowered near the cap, so the walk reads at most one OID past it).
//! - **Exceptions.** noSuchObject / noSuchInstance inside a walk (which a
//!   correct agent never returns to GETNEXT/GETBULK) are stepped over and
//!   counted in [`Walk::skipped`].
//! - **Errors.** A failure before anything was read is returned as `Err`
//!   (so a silent device gives `Err(Timeout)`); a failure after the walk has
//!   read something keeps what was read and says so in
//!   [`StopReason::Failed`]: see [`Walk::is_complete`].
//!
//! Every request either ends a cursor or moves it strictly forward, and the
//! values read and exceptions skipped are both capped, so a walk always ends.
//!
//! Timeouts and retries are the [`Client`]'s: one request here is one client
//! call, which may be several datagrams.

use std::collections::BTreeMap;

use crate::config::SnmpVersion;
use crate::snmp::{Client, Oid, SnmpError, Value};

/// error-status tooBig.
const TOO_BIG: u32 = 1;
/// error-status noSuchName: SNMPv1's "nothing after this OID".
const NO_SUCH_NAME: u32 = 2;

/// How to walk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalkOptions {
    /// GETBULK max-repetitions (clamped to at least 1). Default 25, as
    /// net-snmp's `snmpbulkwalk -Cr25`.
    pub max_repetitions: u32,
    /// Stop after this many values (`truncated` is then set). Default 10 000.
    pub max_oids: usize,
    /// Use GETBULK. False for SNMPv1 (which has no GETBULK) and for a device
    /// a previous walk reported `bulk_failed` for.
    pub use_bulk: bool,
}

impl Default for WalkOptions {
    fn default() -> WalkOptions {
        WalkOptions {
            max_repetitions: 25,
            max_oids: 10_000,
            use_bulk: true,
        }
    }
}

impl WalkOptions {
    /// The defaults for a credential's SNMP version: GETNEXT only for v1.
    pub fn for_version(version: SnmpVersion) -> WalkOptions {
        WalkOptions {
            use_bulk: version != SnmpVersion::V1,
            ..WalkOptions::default()
        }
    }
}

/// Why a walk (or one column of a table walk) ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopReason {
    /// The agent returned an OID outside the subtree: the normal end.
    EndOfSubtree,
    /// The agent has nothing after the last OID (endOfMibView, or SNMPv1
    /// noSuchName): also a normal end.
    EndOfMibView,
    /// The agent returned an OID not greater than the previous one; the
    /// walk stopped rather than loop. What was read before is kept.
    NonIncreasing,
    /// [`WalkOptions::max_oids`] values were read and there was more.
    Cap,
    /// A request failed after the walk had read something; what was read
    /// before is kept.
    Failed(SnmpError),
}

impl StopReason {
    /// True for the two normal ends of a walk.
    pub fn is_complete(&self) -> bool {
        matches!(self, StopReason::EndOfSubtree | StopReason::EndOfMibView)
    }
}

/// The result of [`walk`].
#[derive(Debug, Clone, PartialEq)]
pub struct Walk {
    /// The values read, in increasing OID order, without exceptions.
    pub varbinds: Vec<(Oid, Value)>,
    /// The walk stopped at [`WalkOptions::max_oids`] and there was more.
    pub truncated: bool,
    /// GETBULK misbehaved and the walk went on with GETNEXT: remember it for
    /// this device and walk it with `use_bulk: false` next time.
    pub bulk_failed: bool,
    /// Requests sent (client calls; the client's own retries are not counted).
    pub requests: u32,
    /// Why the walk ended.
    pub stopped: StopReason,
    /// The max-repetitions the walk ended with: smaller than asked when the
    /// agent answered tooBig (worth remembering per device).
    pub max_repetitions: u32,
    /// noSuchObject / noSuchInstance varbinds stepped over.
    pub skipped: usize,
}

impl Walk {
    /// True when the walk reached the end of the subtree (or of the MIB):
    /// nothing was cut off by the cap, a loop or an error.
    pub fn is_complete(&self) -> bool {
        self.stopped.is_complete()
    }
}

/// The result of [`walk_table`]: rows keyed by index, one cell per column.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    /// The column roots, as given.
    pub columns: Vec<Oid>,
    /// Index suffix (the arcs after the column root) → one cell per column,
    /// `None` where the device has no value for that column in that row.
    pub rows: BTreeMap<Vec<u64>, Vec<Option<Value>>>,
    /// Why each column's walk ended.
    pub stopped: Vec<StopReason>,
    /// The walk stopped at [`WalkOptions::max_oids`] cells.
    pub truncated: bool,
    /// As [`Walk::bulk_failed`].
    pub bulk_failed: bool,
    /// As [`Walk::requests`].
    pub requests: u32,
    /// As [`Walk::max_repetitions`].
    pub max_repetitions: u32,
    /// As [`Walk::skipped`].
    pub skipped: usize,
}

impl Table {
    /// The cell of `column` (its position in [`Table::columns`]) in row `index`.
    pub fn cell(&self, index: &[u64], column: usize) -> Option<&Value> {
        self.rows.get(index)?.get(column)?.as_ref()
    }

    /// How many rows have a value in `column` (0 for a column the device lacks).
    pub fn column_len(&self, column: usize) -> usize {
        self.rows
            .values()
            .filter(|cells| cells.get(column).is_some_and(Option::is_some))
            .count()
    }

    /// True when every column's walk reached its normal end.
    pub fn is_complete(&self) -> bool {
        self.stopped.iter().all(StopReason::is_complete)
    }
}

/// Walks the subtree under `root` (not including `root` itself).
///
/// `Err` only when the walk read nothing before failing: a silent device
/// gives `Err(Timeout)` after one request's `timeout × (retries + 1)`. A
/// subtree the device does not have gives an empty, complete walk.
pub async fn walk(
    client: &mut Client,
    root: &Oid,
    options: &WalkOptions,
) -> Result<Walk, SnmpError> {
    walk_with(&mut ClientAgent::new(client), root, options).await
}

/// Walks several columns of one table together and joins them into rows by
/// index suffix, like net-snmp's `snmptable`: each request carries one
/// varbind per column that has not ended yet, so a column the device lacks
/// ends after its first answer instead of costing a walk of its own, and
/// rows missing some columns simply have `None` cells (ifTable with ifXTable
/// columns, for instance).
///
/// [`WalkOptions::max_oids`] caps the cells of all columns together, and
/// max-repetitions applies per column.
///
/// With the current [`Client`] (one varbind per request, as `snmp2`'s
/// GETNEXT only carries one) a "request" for N columns is sent as N
/// requests, so the cost is that of N walks; the engine is ready for a
/// multi-varbind client call, which would make it one request.
pub async fn walk_table(
    client: &mut Client,
    columns: &[Oid],
    options: &WalkOptions,
) -> Result<Table, SnmpError> {
    walk_table_with(&mut ClientAgent::new(client), columns, options).await
}

/// What the engine needs from an SNMP client. [`Client`] provides it through
/// [`ClientAgent`]; the unit tests use a scripted agent.
pub(crate) trait Agent {
    /// One GETNEXT with one varbind per OID; a correct reply has one varbind
    /// per OID, in order. An error-status index is 1-based, as on the wire.
    async fn get_next(&mut self, oids: &[Oid]) -> Result<Vec<(Oid, Value)>, SnmpError>;

    /// One GETBULK (non-repeaters 0) with one varbind per OID; the reply
    /// de-interleaved: for each OID, its repetitions in order (lists may be
    /// short when the agent cut the reply).
    async fn get_bulk(
        &mut self,
        oids: &[Oid],
        max_repetitions: u32,
    ) -> Result<Vec<Vec<(Oid, Value)>>, SnmpError>;

    /// Requests sent so far.
    fn requests(&self) -> u32;
}

/// [`Agent`] over a [`Client`]: one client call per OID.
struct ClientAgent<'c> {
    client: &'c mut Client,
    requests: u32,
}

impl<'c> ClientAgent<'c> {
    fn new(client: &'c mut Client) -> ClientAgent<'c> {
        ClientAgent {
            client,
            requests: 0,
        }
    }
}

impl Agent for ClientAgent<'_> {
    async fn get_next(&mut self, oids: &[Oid]) -> Result<Vec<(Oid, Value)>, SnmpError> {
        let mut reply = Vec::with_capacity(oids.len());
        for (position, oid) in (1u32..).zip(oids) {
            self.requests += 1;
            match self.client.get_next(oid).await {
                // Only the first varbind answers a one-varbind request.
                Ok(varbinds) => match varbinds.into_iter().next() {
                    Some(varbind) => reply.push(varbind),
                    None => return Err(bad_reply("a GETNEXT reply without varbinds")),
                },
                // Re-index as if all OIDs had been in one request.
                Err(SnmpError::ErrorStatus { status, .. }) => {
                    return Err(SnmpError::ErrorStatus {
                        status,
                        index: position,
                    })
                }
                Err(e) => return Err(e),
            }
        }
        Ok(reply)
    }

    async fn get_bulk(
        &mut self,
        oids: &[Oid],
        max_repetitions: u32,
    ) -> Result<Vec<Vec<(Oid, Value)>>, SnmpError> {
        let mut reply = Vec::with_capacity(oids.len());
        for oid in oids {
            self.requests += 1;
            reply.push(self.client.get_bulk(oid, max_repetitions).await?);
        }
        Ok(reply)
    }

    fn requests(&self) -> u32 {
        self.requests
    }
}

/// The OID to ask for to read what follows `oid`. BER (and `snmp2`) cannot
/// encode an OID of fewer than two arcs, so the root `1` is asked for as
/// `1.0`, as net-snmp does: the next OID after `1.0` is the first under `1`.
fn request_oid(oid: &Oid) -> Oid {
    match oid.arcs().len() {
        0 => Oid::from_arcs(&[0, 0]),
        1 => oid.child(&[0]),
        _ => oid.clone(),
    }
}

/// A reply the engine cannot use: counted with the client's bad replies.
fn bad_reply(what: &str) -> SnmpError {
    crate::metrics::bump(&crate::metrics::BAD_REPLIES);
    SnmpError::BadReply(what.to_owned())
}

pub(crate) async fn walk_with<A: Agent>(
    agent: &mut A,
    root: &Oid,
    options: &WalkOptions,
) -> Result<Walk, SnmpError> {
    let engine = Engine::run(agent, std::slice::from_ref(root), options).await?;
    // One root, one cursor.
    let (varbinds, stopped) = engine
        .cursors
        .into_iter()
        .next()
        .map(|cursor| (cursor.found, cursor.stop))
        .unwrap_or_default();
    Ok(Walk {
        varbinds,
        truncated: engine.truncated,
        bulk_failed: engine.bulk_failed,
        requests: agent.requests(),
        stopped: stopped.unwrap_or(StopReason::EndOfSubtree),
        max_repetitions: engine.repetitions,
        skipped: engine.skipped,
    })
}

pub(crate) async fn walk_table_with<A: Agent>(
    agent: &mut A,
    columns: &[Oid],
    options: &WalkOptions,
) -> Result<Table, SnmpError> {
    let engine = Engine::run(agent, columns, options).await?;
    let width = columns.len();
    let mut rows: BTreeMap<Vec<u64>, Vec<Option<Value>>> = BTreeMap::new();
    let mut stopped = Vec::with_capacity(width);
    for (column, cursor) in engine.cursors.into_iter().enumerate() {
        stopped.push(cursor.stop.unwrap_or(StopReason::EndOfSubtree));
        for (oid, value) in cursor.found {
            // Accepted OIDs lie strictly inside the column's subtree.
            let index = oid.suffix_after(&cursor.root).unwrap_or_default().to_vec();
            rows.entry(index).or_insert_with(|| vec![None; width])[column] = Some(value);
        }
    }
    Ok(Table {
        columns: columns.to_vec(),
        rows,
        stopped,
        truncated: engine.truncated,
        bulk_failed: engine.bulk_failed,
        requests: agent.requests(),
        max_repetitions: engine.repetitions,
        skipped: engine.skipped,
    })
}

/// One root being walked.
struct Cursor {
    root: Oid,
    /// The last OID read (value or exception); the next request starts here.
    last: Oid,
    stop: Option<StopReason>,
    found: Vec<(Oid, Value)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// The first GETNEXT, to learn that the agent answers at all.
    Probe,
    Bulk,
    GetNext,
}

struct Engine<'o> {
    options: &'o WalkOptions,
    cursors: Vec<Cursor>,
    mode: Mode,
    repetitions: u32,
    /// GETBULK failed and the walk switched to GETNEXT ...
    fell_back: bool,
    /// ... and GETNEXT then worked: GETBULK is to blame, not the device.
    bulk_failed: bool,
    truncated: bool,
    accepted: usize,
    skipped: usize,
}

impl<'o> Engine<'o> {
    async fn run<A: Agent>(
        agent: &mut A,
        roots: &[Oid],
        options: &'o WalkOptions,
    ) -> Result<Engine<'o>, SnmpError> {
        let mut engine = Engine {
            options,
            cursors: roots
                .iter()
                .map(|root| Cursor {
                    root: root.clone(),
                    last: root.clone(),
                    stop: None,
                    found: Vec::new(),
                })
                .collect(),
            mode: if options.use_bulk {
                Mode::Probe
            } else {
                Mode::GetNext
            },
            repetitions: options.max_repetitions.max(1),
            fell_back: false,
            bulk_failed: false,
            truncated: false,
            accepted: 0,
            skipped: 0,
        };
        loop {
            let active: Vec<usize> = (0..engine.cursors.len())
                .filter(|&c| engine.cursors[c].stop.is_none())
                .collect();
            if active.is_empty() {
                return Ok(engine);
            }
            let oids: Vec<Oid> = active
                .iter()
                .map(|&c| request_oid(&engine.cursors[c].last))
                .collect();
            match engine.mode {
                Mode::Probe | Mode::GetNext => {
                    let reply = agent.get_next(&oids).await;
                    engine.on_get_next(&active, reply)?;
                }
                Mode::Bulk => {
                    let repetitions = engine.bulk_repetitions(active.len());
                    let reply = agent.get_bulk(&oids, repetitions).await;
                    engine.on_get_bulk(&active, repetitions, reply)?;
                }
            }
        }
    }

    fn on_get_next(
        &mut self,
        active: &[usize],
        reply: Result<Vec<(Oid, Value)>, SnmpError>,
    ) -> Result<(), SnmpError> {
        match reply {
            Ok(varbinds) if varbinds.len() < active.len() => {
                return self.fail(active, bad_reply("a GETNEXT reply with varbinds missing"));
            }
            Ok(varbinds) => {
                for (&c, (oid, value)) in active.iter().zip(varbinds) {
                    self.take(c, oid, value);
                }
            }
            Err(SnmpError::ErrorStatus {
                status: NO_SUCH_NAME,
                index,
            }) => {
                // v1 "end of MIB" for the varbind at `index`; for all of
                // them when the index names none.
                let hit = usize::try_from(index)
                    .ok()
                    .and_then(|i| i.checked_sub(1))
                    .and_then(|i| active.get(i));
                let ended = hit.map_or(active, std::slice::from_ref);
                for &c in ended {
                    self.cursors[c].stop = Some(StopReason::EndOfMibView);
                }
            }
            Err(e) => return self.fail(active, e),
        }
        // The agent answered GETNEXT.
        if self.mode == Mode::Probe {
            self.mode = Mode::Bulk;
        }
        self.bulk_failed |= self.fell_back;
        Ok(())
    }

    fn on_get_bulk(
        &mut self,
        active: &[usize],
        sent_repetitions: u32,
        reply: Result<Vec<Vec<(Oid, Value)>>, SnmpError>,
    ) -> Result<(), SnmpError> {
        match reply {
            Ok(lists) if lists.iter().all(Vec::is_empty) => self.give_up_bulk(),
            Ok(lists) => {
                for (&c, list) in active.iter().zip(lists) {
                    for (oid, value) in list {
                        if self.cursors[c].stop.is_some() {
                            break; // endOfMibView padding, or past the end
                        }
                        self.take(c, oid, value);
                    }
                }
            }
            // GETBULK should never say tooBig (the agent is meant to send
            // fewer repetitions), but some do: ask for fewer.
            Err(SnmpError::ErrorStatus {
                status: TOO_BIG, ..
            }) if sent_repetitions > 1 => {
                self.repetitions = sent_repetitions / 2;
            }
            // The agent answered GETNEXT, so these are GETBULK problems.
            Err(SnmpError::Timeout(_) | SnmpError::ErrorStatus { .. } | SnmpError::BadReply(_)) => {
                self.give_up_bulk();
            }
            Err(e) => return self.fail(active, e),
        }
        Ok(())
    }

    /// Goes on with GETNEXT; [`Walk::bulk_failed`] is set once a GETNEXT
    /// works, so a device that dies in mid-walk is not blamed on GETBULK.
    fn give_up_bulk(&mut self) {
        self.fell_back = true;
        self.mode = Mode::GetNext;
    }

    /// Max-repetitions for the next GETBULK: lowered near the cap so the
    /// walk reads at most one value per column past it.
    fn bulk_repetitions(&self, active: usize) -> u32 {
        let left = self.options.max_oids.saturating_sub(self.accepted);
        let per_column = left / active.max(1) + 1;
        let per_column = u32::try_from(per_column).unwrap_or(u32::MAX);
        self.repetitions.min(per_column).max(1)
    }

    /// A request failed: `Err` if nothing was read yet, else the active
    /// cursors stop with the error and the walk returns what it has.
    fn fail(&mut self, active: &[usize], error: SnmpError) -> Result<(), SnmpError> {
        if self.accepted == 0 {
            return Err(error);
        }
        for &c in active {
            self.cursors[c].stop = Some(StopReason::Failed(error.clone()));
        }
        Ok(())
    }

    /// Stops every cursor that is still going with [`StopReason::Cap`].
    fn cap(&mut self) {
        self.truncated = true;
        for cursor in &mut self.cursors {
            if cursor.stop.is_none() {
                cursor.stop = Some(StopReason::Cap);
            }
        }
    }

    /// One varbind answering cursor `c`: end it, step over it, or keep it.
    fn take(&mut self, c: usize, oid: Oid, value: Value) {
        let cursor = &mut self.cursors[c];
        if cursor.stop.is_some() {
            return;
        }
        // Before the other checks: its OID is usually the one asked for.
        if value == Value::EndOfMibView {
            cursor.stop = Some(StopReason::EndOfMibView);
            return;
        }
        if !oid.starts_with(&cursor.root) {
            cursor.stop = Some(StopReason::EndOfSubtree);
            return;
        }
        if oid <= cursor.last {
            cursor.stop = Some(StopReason::NonIncreasing);
            return;
        }
        if value.is_exception() {
            cursor.last = oid;
            self.skipped += 1;
            if self.skipped > self.options.max_oids {
                self.cap();
            }
            return;
        }
        if self.accepted >= self.options.max_oids {
            self.cap();
            return;
        }
        cursor.last = oid.clone();
        cursor.found.push((oid, value));
        self.accepted += 1;
    }
}

/// Rows of a table keyed by index, then column number.
pub type Rows = BTreeMap<Vec<u64>, BTreeMap<u64, Value>>;

/// Walks a table entry and groups its cells into rows; a device that lacks
/// the table, or fails part-way, gives what was read. A GETBULK failure
/// turns `options.use_bulk` off, for this device's walks that follow.
pub async fn rows(client: &mut Client, entry: &Oid, options: &mut WalkOptions) -> Rows {
    match walk(client, entry, options).await {
        Ok(walk) => {
            if walk.bulk_failed {
                options.use_bulk = false;
            }
            rows_from(entry, walk.varbinds)
        }
        Err(e) => {
            tracing::debug!(addr = %client.addr(), table = %entry, error = %e, "table not read");
            Rows::new()
        }
    }
}

/// Groups `entry.column.index...` cells into rows (inferred from any column).
pub fn rows_from(entry: &Oid, varbinds: Vec<(Oid, Value)>) -> Rows {
    let mut rows = Rows::new();
    for (oid, value) in varbinds {
        if value.is_exception() {
            continue;
        }
        let Some([column, index @ ..]) = oid.suffix_after(entry) else {
            continue;
        };
        if index.is_empty() {
            continue;
        }
        rows.entry(index.to_vec())
            .or_default()
            .insert(*column, value);
    }
    rows
}

#[cfg(test)]
mod tests {
    //! The engine against a scripted in-process agent: no sockets.

    use super::*;
    use crate::oid;
    use std::time::Duration;

    /// What the scripted agent gets wrong.
    #[derive(Debug, Clone, Copy, Default)]
    struct Faults {
        bulk: Option<BulkFault>,
        /// GETNEXT/GETBULK after the OID at this position goes back to the first.
        loop_after: Option<usize>,
        /// endOfMibView varbinds appended after the end (0 = one, as net-snmp).
        pad: usize,
        /// Answer the end of the MIB with noSuchName (v1).
        v1: bool,
        /// Cut multi-column bulk replies to this many varbinds in total.
        reply_limit: Option<usize>,
        /// Everything times out.
        silent: bool,
    }

    #[derive(Debug, Clone, Copy)]
    enum BulkFault {
        Timeout,
        GenErr,
        Empty,
        Garbage,
        /// tooBig when asked for more repetitions than this.
        TooBig(u32),
    }

    struct Scripted {
        table: Vec<(Oid, Value)>,
        faults: Faults,
        get_next: u32,
        get_bulk: u32,
    }

    impl Scripted {
        fn new(table: Vec<(Oid, Value)>, faults: Faults) -> Scripted {
            Scripted {
                table,
                faults,
                get_next: 0,
                get_bulk: 0,
            }
        }

        fn next_after(&self, oid: &Oid) -> Option<(Oid, Value)> {
            if let Some(at) = self.faults.loop_after {
                if *oid == self.table[at].0 {
                    return self.table.first().cloned();
                }
            }
            let position = self.table.partition_point(|(o, _)| o <= oid);
            self.table.get(position).cloned()
        }

        fn timeout() -> SnmpError {
            SnmpError::Timeout(Duration::from_millis(10))
        }
    }

    impl Agent for Scripted {
        async fn get_next(&mut self, oids: &[Oid]) -> Result<Vec<(Oid, Value)>, SnmpError> {
            self.get_next += 1;
            if self.faults.silent {
                return Err(Scripted::timeout());
            }
            let mut reply = Vec::new();
            for (index, oid) in (1u32..).zip(oids) {
                match self.next_after(oid) {
                    Some(varbind) => reply.push(varbind),
                    None if self.faults.v1 => {
                        return Err(SnmpError::ErrorStatus {
                            status: NO_SUCH_NAME,
                            index,
                        })
                    }
                    None => reply.push((oid.clone(), Value::EndOfMibView)),
                }
            }
            Ok(reply)
        }

        async fn get_bulk(
            &mut self,
            oids: &[Oid],
            max_repetitions: u32,
        ) -> Result<Vec<Vec<(Oid, Value)>>, SnmpError> {
            self.get_bulk += 1;
            match self.faults.bulk {
                Some(BulkFault::Timeout) => return Err(Scripted::timeout()),
                Some(BulkFault::GenErr) => {
                    return Err(SnmpError::ErrorStatus {
                        status: 5,
                        index: 1,
                    })
                }
                Some(BulkFault::Empty) => return Ok(vec![Vec::new(); oids.len()]),
                Some(BulkFault::Garbage) => return Err(SnmpError::BadReply("garbage".into())),
                Some(BulkFault::TooBig(limit)) if max_repetitions > limit => {
                    return Err(SnmpError::ErrorStatus {
                        status: TOO_BIG,
                        index: 0,
                    })
                }
                _ => {}
            }
            let mut lists: Vec<Vec<(Oid, Value)>> = vec![Vec::new(); oids.len()];
            let mut cursors: Vec<Oid> = oids.to_vec();
            let mut budget = self.faults.reply_limit.unwrap_or(usize::MAX);
            let mut padding = 0;
            'rows: for _ in 0..max_repetitions {
                let mut all_ended = true;
                for (list, cursor) in lists.iter_mut().zip(cursors.iter_mut()) {
                    if budget == 0 {
                        break 'rows;
                    }
                    budget -= 1;
                    match self.next_after(cursor) {
                        Some((oid, value)) => {
                            all_ended = false;
                            *cursor = oid.clone();
                            list.push((oid, value));
                        }
                        None => list.push((cursor.clone(), Value::EndOfMibView)),
                    }
                }
                if all_ended {
                    if padding >= self.faults.pad {
                        break;
                    }
                    padding += 1;
                }
            }
            Ok(lists)
        }

        fn requests(&self) -> u32 {
            self.get_next + self.get_bulk
        }
    }

    const IF_TABLE: [u64; 8] = [1, 3, 6, 1, 2, 1, 2, 2];

    /// sysDescr, an ifTable of `rows` rows with ifIndex/ifDescr/ifType and
    /// ifSpeed only for odd rows, then one OID in a later subtree.
    fn table(rows: u64) -> Vec<(Oid, Value)> {
        let entry = Oid::from_arcs(&IF_TABLE).child(&[1]);
        let mut table = vec![(oid!(1, 3, 6, 1, 2, 1, 1, 1, 0), text("router"))];
        for row in 1..=rows {
            table.push((entry.child(&[1, row]), Value::Integer(row as i64)));
        }
        for row in 1..=rows {
            table.push((entry.child(&[2, row]), text(&format!("eth{row}"))));
        }
        for row in 1..=rows {
            table.push((entry.child(&[3, row]), Value::Integer(6)));
        }
        for row in (1..=rows).step_by(2) {
            table.push((entry.child(&[5, row]), Value::Gauge32(1_000_000_000)));
        }
        table.push((oid!(1, 3, 6, 1, 4, 1, 9, 1, 0), Value::Integer(1)));
        table
    }

    fn text(s: &str) -> Value {
        Value::OctetString(s.as_bytes().to_vec())
    }

    fn under(table: &[(Oid, Value)], root: &Oid) -> Vec<(Oid, Value)> {
        table
            .iter()
            .filter(|(oid, _)| oid.starts_with(root) && oid != root)
            .cloned()
            .collect()
    }

    fn one() -> Oid {
        Oid::from_arcs(&[1])
    }

    async fn walk_scripted(
        faults: Faults,
        root: &Oid,
        options: &WalkOptions,
    ) -> (Result<Walk, SnmpError>, Scripted) {
        let mut agent = Scripted::new(table(10), faults);
        let result = walk_with(&mut agent, root, options).await;
        (result, agent)
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_bulk_walk_reads_everything_once() {
        let (walk, agent) = walk_scripted(Faults::default(), &one(), &WalkOptions::default()).await;
        let walk = walk.expect("walk");
        assert_eq!(walk.varbinds, table(10));
        assert_eq!(walk.stopped, StopReason::EndOfMibView);
        assert!(walk.is_complete() && !walk.bulk_failed && !walk.truncated);
        // 37 OIDs: the probe reads 1, then two bulks of 25 (the second ends).
        assert_eq!((agent.get_next, agent.get_bulk), (1, 2));
        assert_eq!(walk.requests, 3);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_subtree_walk_stops_at_its_end_and_an_absent_one_is_empty() {
        let root = Oid::from_arcs(&IF_TABLE);
        let (walk, _) = walk_scripted(Faults::default(), &root, &WalkOptions::default()).await;
        let walk = walk.expect("walk");
        assert_eq!(walk.varbinds, under(&table(10), &root));
        assert_eq!(walk.stopped, StopReason::EndOfSubtree);

        let absent = oid!(1, 3, 6, 1, 2, 1, 99);
        let (walk, agent) =
            walk_scripted(Faults::default(), &absent, &WalkOptions::default()).await;
        let walk = walk.expect("walk");
        assert!(walk.varbinds.is_empty());
        assert_eq!(walk.stopped, StopReason::EndOfSubtree);
        assert_eq!(agent.requests(), 1, "the probe alone settles it");

        let past_the_end = oid!(1, 3, 6, 1, 6);
        let (walk, _) =
            walk_scripted(Faults::default(), &past_the_end, &WalkOptions::default()).await;
        let walk = walk.expect("walk");
        assert!(walk.varbinds.is_empty());
        assert_eq!(walk.stopped, StopReason::EndOfMibView);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn each_bulk_failure_falls_back_to_getnext() {
        for fault in [
            BulkFault::Timeout,
            BulkFault::GenErr,
            BulkFault::Empty,
            BulkFault::Garbage,
        ] {
            let faults = Faults {
                bulk: Some(fault),
                ..Faults::default()
            };
            let (walk, agent) = walk_scripted(faults, &one(), &WalkOptions::default()).await;
            let walk = walk.expect("walk");
            assert_eq!(walk.varbinds, table(10), "{fault:?}");
            assert!(walk.bulk_failed && walk.is_complete(), "{fault:?}");
            assert_eq!(agent.get_bulk, 1, "{fault:?}: one GETBULK, then GETNEXT");
            assert_eq!(agent.get_next, 38, "{fault:?}: 37 OIDs + the end");
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn too_big_halves_max_repetitions_before_giving_up_bulk() {
        let faults = Faults {
            bulk: Some(BulkFault::TooBig(7)),
            ..Faults::default()
        };
        let (walk, _) = walk_scripted(faults, &one(), &WalkOptions::default()).await;
        let walk = walk.expect("walk");
        assert_eq!(walk.varbinds, table(10));
        assert!(!walk.bulk_failed);
        assert_eq!(walk.max_repetitions, 6, "25 -> 12 -> 6");

        let faults = Faults {
            bulk: Some(BulkFault::TooBig(0)),
            ..Faults::default()
        };
        let (walk, agent) = walk_scripted(faults, &one(), &WalkOptions::default()).await;
        let walk = walk.expect("walk");
        assert_eq!(walk.varbinds, table(10));
        assert!(walk.bulk_failed);
        assert_eq!(agent.get_bulk, 5, "25, 12, 6, 3, 1");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn end_of_mib_view_padding_adds_nothing() {
        let faults = Faults {
            pad: 20,
            ..Faults::default()
        };
        let (walk, _) = walk_scripted(faults, &one(), &WalkOptions::default()).await;
        let walk = walk.expect("walk");
        assert_eq!(walk.varbinds, table(10));
        assert_eq!(walk.stopped, StopReason::EndOfMibView);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_looping_agent_is_stopped() {
        for use_bulk in [true, false] {
            let faults = Faults {
                loop_after: Some(20),
                ..Faults::default()
            };
            let options = WalkOptions {
                use_bulk,
                ..WalkOptions::default()
            };
            let (walk, agent) = walk_scripted(faults, &one(), &options).await;
            let walk = walk.expect("walk");
            assert_eq!(walk.stopped, StopReason::NonIncreasing);
            assert_eq!(walk.varbinds, table(10)[..=20].to_vec());
            assert!(agent.requests() <= 22, "{} requests", agent.requests());
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn the_cap_is_exact_and_costs_at_most_one_extra_read() {
        for (use_bulk, max_oids) in [(true, 10), (false, 10), (true, 0), (true, 37)] {
            let options = WalkOptions {
                max_oids,
                use_bulk,
                ..WalkOptions::default()
            };
            let (walk, _) = walk_scripted(Faults::default(), &one(), &options).await;
            let walk = walk.expect("walk");
            assert_eq!(walk.varbinds, table(10)[..max_oids].to_vec());
            if max_oids < 37 {
                assert!(walk.truncated);
                assert_eq!(walk.stopped, StopReason::Cap);
            } else {
                assert!(!walk.truncated, "exactly max_oids values is not truncated");
                assert_eq!(walk.stopped, StopReason::EndOfMibView);
            }
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn v1_no_such_name_ends_the_walk() {
        let faults = Faults {
            v1: true,
            ..Faults::default()
        };
        let options = WalkOptions::for_version(SnmpVersion::V1);
        let (walk, agent) = walk_scripted(faults, &one(), &options).await;
        let walk = walk.expect("walk");
        assert_eq!(walk.varbinds, table(10));
        assert_eq!(walk.stopped, StopReason::EndOfMibView);
        assert_eq!(agent.get_bulk, 0);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn exceptions_inside_a_walk_are_stepped_over() {
        let mut rows = table(3);
        rows[2].1 = Value::NoSuchObject;
        rows[5].1 = Value::NoSuchInstance;
        for use_bulk in [true, false] {
            let mut agent = Scripted::new(rows.clone(), Faults::default());
            let options = WalkOptions {
                use_bulk,
                ..WalkOptions::default()
            };
            let walk = walk_with(&mut agent, &one(), &options).await.expect("walk");
            let expected: Vec<_> = rows
                .iter()
                .filter(|(_, v)| !v.is_exception())
                .cloned()
                .collect();
            assert_eq!(walk.varbinds, expected);
            assert_eq!(walk.skipped, 2);
            assert!(walk.is_complete());
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_silent_agent_is_an_error_after_one_request() {
        let faults = Faults {
            silent: true,
            ..Faults::default()
        };
        let (walk, agent) = walk_scripted(faults, &one(), &WalkOptions::default()).await;
        assert!(matches!(walk, Err(SnmpError::Timeout(_))));
        assert_eq!(agent.requests(), 1);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_failure_after_progress_keeps_what_was_read() {
        struct DiesAfter(Scripted, u32);
        impl Agent for DiesAfter {
            async fn get_next(&mut self, oids: &[Oid]) -> Result<Vec<(Oid, Value)>, SnmpError> {
                if self.0.requests() >= self.1 {
                    return Err(Scripted::timeout());
                }
                self.0.get_next(oids).await
            }
            async fn get_bulk(
                &mut self,
                oids: &[Oid],
                max_repetitions: u32,
            ) -> Result<Vec<Vec<(Oid, Value)>>, SnmpError> {
                self.0.get_bulk(oids, max_repetitions).await
            }
            fn requests(&self) -> u32 {
                self.0.requests()
            }
        }
        let mut agent = DiesAfter(Scripted::new(table(10), Faults::default()), 5);
        let options = WalkOptions::for_version(SnmpVersion::V1);
        let walk = walk_with(&mut agent, &one(), &options).await.expect("walk");
        assert_eq!(walk.varbinds, table(10)[..5].to_vec());
        assert_eq!(walk.stopped, StopReason::Failed(Scripted::timeout()));
        assert!(!walk.is_complete());
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_device_dying_in_mid_walk_is_not_blamed_on_bulk() {
        struct GoesSilent(Scripted);
        impl Agent for GoesSilent {
            async fn get_next(&mut self, oids: &[Oid]) -> Result<Vec<(Oid, Value)>, SnmpError> {
                if self.0.get_bulk > 0 {
                    self.0.get_next += 1;
                    return Err(Scripted::timeout());
                }
                self.0.get_next(oids).await
            }
            async fn get_bulk(
                &mut self,
                _: &[Oid],
                _: u32,
            ) -> Result<Vec<Vec<(Oid, Value)>>, SnmpError> {
                self.0.get_bulk += 1;
                Err(Scripted::timeout())
            }
            fn requests(&self) -> u32 {
                self.0.requests()
            }
        }
        let mut agent = GoesSilent(Scripted::new(table(10), Faults::default()));
        let walk = walk_with(&mut agent, &one(), &WalkOptions::default())
            .await
            .expect("walk");
        assert_eq!(
            walk.varbinds,
            table(10)[..1].to_vec(),
            "what the probe read"
        );
        assert_eq!(walk.stopped, StopReason::Failed(Scripted::timeout()));
        assert!(
            !walk.bulk_failed,
            "GETNEXT failed too: the device, not GETBULK"
        );
        assert_eq!((agent.0.get_next, agent.0.get_bulk), (2, 1));
    }

    fn if_columns() -> Vec<Oid> {
        let entry = Oid::from_arcs(&IF_TABLE).child(&[1]);
        // ifDescr, ifType, ifSpeed (odd rows only), ifPhysAddress (absent)
        [2, 3, 5, 6].iter().map(|&c| entry.child(&[c])).collect()
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_table_walk_joins_columns_into_rows() {
        for (faults, use_bulk) in [
            (Faults::default(), true),
            (Faults::default(), false),
            (
                Faults {
                    reply_limit: Some(7),
                    ..Faults::default()
                },
                true,
            ),
            (
                Faults {
                    bulk: Some(BulkFault::Timeout),
                    ..Faults::default()
                },
                true,
            ),
        ] {
            let mut agent = Scripted::new(table(10), faults);
            let options = WalkOptions {
                max_repetitions: 4,
                use_bulk,
                ..WalkOptions::default()
            };
            let table = walk_table_with(&mut agent, &if_columns(), &options)
                .await
                .expect("table");
            assert_eq!(table.rows.len(), 10, "{faults:?}");
            assert!(table.is_complete(), "{faults:?}: {:?}", table.stopped);
            assert_eq!(table.cell(&[3], 0), Some(&text("eth3")));
            assert_eq!(table.cell(&[3], 1), Some(&Value::Integer(6)));
            assert_eq!(table.cell(&[3], 2), Some(&Value::Gauge32(1_000_000_000)));
            assert_eq!(table.cell(&[4], 2), None, "even rows have no ifSpeed");
            assert_eq!(
                [0, 1, 2, 3].map(|c| table.column_len(c)),
                [10, 10, 5, 0],
                "{faults:?}"
            );
            assert_eq!(table.bulk_failed, faults.bulk.is_some());
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_table_walk_caps_cells_across_columns() {
        let mut agent = Scripted::new(table(10), Faults::default());
        let options = WalkOptions {
            max_oids: 12,
            ..WalkOptions::default()
        };
        let table = walk_table_with(&mut agent, &if_columns(), &options)
            .await
            .expect("table");
        assert!(table.truncated);
        let cells: usize = (0..4).map(|c| table.column_len(c)).sum();
        assert_eq!(cells, 12);
    }
}
