//! The pharmacy switch path: NCPDP D.0 transactions (E1 eligibility, B1
//! billing, B2 reversal, B3 rebill) answered in real time.
//!
//! 1. The transmission is read and checked against the standard; what is
//!    wrong is answered at once with status `R` and the M/I reject codes
//!    (the transmission as a whole when its header is wrong).
//! 2. Its BIN / PCN / group pick the PBM (`[pharmacy] routes`); no route is
//!    reject `1`, `4` or `6`.
//! 3. Each transaction is looked up in the claim index (service provider,
//!    prescription number, fill number, date of service): a B1 for a claim
//!    already paid or captured is answered with the stored answer as a
//!    duplicate (`D`, `Q`) without asking the PBM again; a B2 or B3 for a
//!    claim that is not there (or already reversed) is rejected `87`, and a
//!    second B2 of one claim is answered `S`.
//! 4. The rest go to the PBM's connector: `http` forwards the D.0 bytes
//!    (only the transactions still to answer) through the payer's gate —
//!    rate limit, concurrency, breaker, timeout — and a PBM that fails or
//!    is late is answered `92` (host unavailable) in time; `local` answers
//!    E1 from the coverage 834s loaded and B1/B3 `captured` or rejected by
//!    the pharmacy claim edits, B2 `approved`.
//! 5. The request, its response and the claim index change are written in
//!    one state write (sealed, like every record), with an
//!    acknowledgement in the partner's feed (webhooks follow it), before
//!    the response is returned. When that write fails the answer is `R`
//!    with `99` (host processing error), never a response that was not
//!    recorded.
//!
//! No PHI reaches logs or metrics: transaction ids, codes and payer ids.

use crate::{FastPath, UpstreamError};
use clearway_core::config::{Connector, PayerConfig};
use clearway_core::feed;
use clearway_core::ports::{Condition, Key, Table, WriteOp};
use clearway_core::records::{AckRecord, decode_json, encode_json};
use clearway_core::{ErrorKind, PartnerId, PortResult, TransactionId};
use clearway_formats::ncpdp::answer::{self, Outcome, duplicate_of, status};
use clearway_formats::ncpdp::validate::{self, Reject};
use clearway_formats::ncpdp::{self, Limits, Transmission};
use serde::{Deserialize, Serialize};
use std::time::Instant;
use time::OffsetDateTime;

/// Largest D.0 request read (a transmission of four transactions is a few
/// kilobytes).
pub const MAX_PHARMACY_BYTES: usize = 64 * 1024;
/// The media type of D.0 bytes on HTTP (there is no registered one).
pub const MEDIA_TYPE: &str = "application/vnd.ncpdp.d0";

/// What a pharmacy request is answered with.
#[derive(Debug, Clone)]
pub struct PharmacyReply {
    /// The D.0 response.
    pub response: Vec<u8>,
    /// The recorded transaction's id.
    pub transaction: TransactionId,
    /// Transaction response status of each transaction (`P`, `R`, …).
    pub statuses: Vec<String>,
}

/// One switch-path transaction as recorded (Table::Pharmacy, pk =
/// `tx/<partner>`, sk = id). Sealed like every state value.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PharmacyRecord {
    pub id: TransactionId,
    pub partner: PartnerId,
    pub received_at: String,
    pub transaction_code: String,
    pub bin: String,
    pub pcn: String,
    /// The PBM it was routed to.
    pub payer: Option<String>,
    pub connector: Option<String>,
    pub header_status: String,
    pub outcomes: Vec<Outcome>,
    /// Whether each transaction was answered from the claim index.
    pub duplicate: Vec<bool>,
    /// The request and response as sent (D.0 is printable ASCII plus its
    /// separators).
    pub request: String,
    pub response: String,
    pub took_us: u64,
}

impl PharmacyRecord {
    pub fn key(partner: &PartnerId, id: &TransactionId) -> Key {
        Key::new(Table::Pharmacy, format!("tx/{partner}"), id.as_str())
    }
}

/// One pharmacy claim in the claim index (pk = `claim/<index token of its
/// identity>`, sk = `current`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ClaimEntry {
    /// The transaction that answered it, and its group there: a duplicate
    /// is answered with that group of its recorded response (pricing, DUR
    /// and messages included).
    transaction: TransactionId,
    partner: PartnerId,
    group: usize,
    outcome: Outcome,
    reversed: bool,
}

fn claim_key(token: &str) -> Key {
    Key::new(Table::Pharmacy, format!("claim/{token}"), "current")
}

/// What one transaction group needs.
enum Plan {
    /// Answered without the PBM (`true`: a duplicate, answered with the
    /// stored group of the original response).
    Answered(Outcome, bool),
    /// To be sent to the PBM (or answered by the local connector).
    Forward,
}

/// The claim index entry of a group as read: its key and version.
struct Seen {
    key: Key,
    entry: Option<(ClaimEntry, u64)>,
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Header-level reject codes: the whole transmission is rejected.
const TRANSMISSION_CODES: [&str; 6] = ["2", "3", "5", "15", "PB", "R8"];

impl FastPath {
    /// Answers one D.0 transmission (see the module documentation). When
    /// the answer cannot be recorded, the answer is a rejection with `99`.
    pub async fn pharmacy(&self, partner: &PartnerId, body: &[u8], now: OffsetDateTime) -> PharmacyReply {
        let started = Instant::now();
        let id = TransactionId::new();
        // A line end after the transmission (a file saved by an editor, a
        // shell pipe) is not part of it.
        let body = body.strip_suffix(b"\n").unwrap_or(body);
        let body = body.strip_suffix(b"\r").unwrap_or(body);
        for attempt in 0..2 {
            match self.pharmacy_once(partner, &id, body, now, started).await {
                Ok(reply) => return reply,
                // A concurrent transaction changed one of the claims: decide again.
                Err(e) if e.kind() == ErrorKind::PreconditionFailed && attempt == 0 => continue,
                Err(e) => {
                    tracing::warn!(transaction = %id, error = %clearway_core::error::chain(&e), "pharmacy transaction not recorded");
                    metrics::counter!("clearway_pharmacy_unrecorded_total").increment(1);
                    break;
                }
            }
        }
        let t = ncpdp::read(body, &Limits::default()).ok();
        let response = answer::reject_transmission(t.as_ref(), body, &["99"]).to_bytes();
        PharmacyReply { response, transaction: id, statuses: vec![status::REJECTED.into()] }
    }

    /// [`Self::pharmacy`] under a given id, for the transactions of a
    /// batch file: when that id is already recorded, its recorded
    /// response is the answer (a redelivered batch decides nothing again).
    /// `Err` when the state store cannot be read or written (the batch is
    /// retried).
    pub async fn pharmacy_recorded(
        &self,
        partner: &PartnerId,
        id: &TransactionId,
        body: &[u8],
        now: OffsetDateTime,
    ) -> PortResult<PharmacyReply> {
        let started = Instant::now();
        let existing = self.state.get(&PharmacyRecord::key(partner, id)).await?;
        if let Some(item) = existing {
            let rec: PharmacyRecord = decode_json(&item.value)?;
            let statuses = rec.outcomes.iter().map(|o| o.status.clone()).collect();
            return Ok(PharmacyReply { response: rec.response.into_bytes(), transaction: rec.id, statuses });
        }
        match self.pharmacy_once(partner, id, body, now, started).await {
            Err(e) if e.kind() == ErrorKind::PreconditionFailed => {
                // A concurrent transaction changed a claim, or another
                // delivery recorded this one: decide again from the records.
                Box::pin(self.pharmacy_recorded(partner, id, body, now)).await
            }
            other => other,
        }
    }

    async fn pharmacy_once(
        &self,
        partner: &PartnerId,
        id: &TransactionId,
        body: &[u8],
        now: OffsetDateTime,
        started: Instant,
    ) -> PortResult<PharmacyReply> {
        let mut rec = PharmacyRecord {
            id: id.clone(),
            partner: partner.clone(),
            received_at: now.format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
            transaction_code: String::new(),
            bin: String::new(),
            pcn: String::new(),
            payer: None,
            connector: None,
            header_status: "R".into(),
            outcomes: Vec::new(),
            duplicate: Vec::new(),
            request: text(body),
            response: String::new(),
            took_us: 0,
        };
        let limits = Limits { max_bytes: MAX_PHARMACY_BYTES, ..Limits::default() };
        let t = match ncpdp::read(body, &limits) {
            Ok(t) => t,
            Err(e) => {
                let codes = validate::read_rejects(&e);
                let response = answer::reject_transmission(None, body, &codes);
                return self.record(rec, &response, Vec::new(), started).await;
            }
        };
        let Some(h) = validate::request_header(&t).cloned() else {
            let response = answer::reject_transmission(None, body, &["R8"]);
            return self.record(rec, &response, Vec::new(), started).await;
        };
        rec.transaction_code = h.transaction_code.clone();
        rec.bin = h.bin.clone();
        rec.pcn = h.pcn.clone();
        let rejects = validate::validate(&t);
        let header_rejects: Vec<&str> =
            rejects.iter().filter(|r| r.group == 0 && TRANSMISSION_CODES.contains(&r.code)).map(|r| r.code).collect();
        if !header_rejects.is_empty() {
            let response = answer::reject_transmission(Some(&t), body, &header_rejects);
            return self.record(rec, &response, Vec::new(), started).await;
        }
        let groups = t.groups().min(4);
        let group_id = validate::field(&t, 1, "04", "C1");
        let payer = match self.config.pharmacy.route(&h.bin, &h.pcn, group_id) {
            Ok(p) => self.config.canonical_payer(p).to_string(),
            Err(code) => {
                // Not routable; its other problems are named too.
                let outcomes: Vec<Outcome> = (1..=groups)
                    .map(|g| {
                        let mut codes = vec![code];
                        codes.extend(own_rejects(&rejects, g).into_iter().filter(|c| *c != code));
                        Outcome::rejected(codes)
                    })
                    .collect();
                let response = answer::respond(&t, &outcomes);
                rec.outcomes = outcomes;
                return self.record(rec, &response, Vec::new(), started).await;
            }
        };
        let settings = self.config.payer(&payer);
        rec.payer = Some(payer.clone());
        rec.connector = Some(match settings.connector {
            Connector::Local => "local".into(),
            Connector::Http(_) => "http".into(),
        });

        // Each group: its own problems, then the claim index.
        let claims = h.transaction_code != "E1";
        let mut plans = Vec::with_capacity(groups);
        let mut seen: Vec<Option<Seen>> = Vec::with_capacity(groups);
        for g in 1..=groups {
            let codes = own_rejects(&rejects, g);
            if !codes.is_empty() {
                plans.push(Plan::Answered(Outcome::rejected(codes), false));
                seen.push(None);
                continue;
            }
            if !claims {
                plans.push(Plan::Forward);
                seen.push(None);
                continue;
            }
            let identity = validate::claim_identity(&t, g).unwrap_or_default();
            let key = claim_key(&self.partners.index_token(&identity));
            let entry = match self.state.get(&key).await? {
                Some(item) => Some((decode_json::<ClaimEntry>(&item.value)?, item.version)),
                None => None,
            };
            plans.push(plan_for(&h.transaction_code, entry.as_ref().map(|(e, _)| e)));
            seen.push(Some(Seen { key, entry }));
        }

        // The PBM (or the local connector) answers the rest.
        let forward: Vec<usize> =
            plans.iter().enumerate().filter(|(_, p)| matches!(p, Plan::Forward)).map(|(i, _)| i + 1).collect();
        let mut answered: Vec<Option<Outcome>> = vec![None; groups];
        let mut upstream: Option<Transmission> = None;
        if !forward.is_empty() {
            let outs = match &settings.connector {
                Connector::Local => self.pharmacy_local(&t, &forward, &payer, now).await?,
                Connector::Http(url) => {
                    let (outs, resp) = self.pharmacy_http(&t, &forward, &settings, url).await;
                    upstream = resp;
                    outs
                }
            };
            for (g, o) in forward.iter().zip(outs) {
                answered[g - 1] = Some(o);
            }
        }
        let mut outcomes = Vec::with_capacity(groups);
        let mut duplicate = Vec::with_capacity(groups);
        for (i, p) in plans.into_iter().enumerate() {
            match p {
                Plan::Answered(o, dup) => {
                    outcomes.push(o);
                    duplicate.push(dup);
                }
                Plan::Forward => {
                    outcomes.push(answered[i].take().unwrap_or_else(|| Outcome::rejected(["99"])));
                    duplicate.push(false);
                }
            }
        }
        // The response: ours, with the PBM's own groups (pricing, DUR,
        // messages) where it answered, and the original groups where a
        // duplicate is answered.
        let mut response = answer::respond(&t, &outcomes);
        if let Some(up) = &upstream {
            for (j, g) in forward.iter().enumerate() {
                replace_group(&mut response, *g, up, j + 1, None);
            }
        }
        for (i, s) in seen.iter().enumerate() {
            if let (true, Some(Seen { entry: Some((e, _)), .. })) = (duplicate[i], s)
                && h.transaction_code == "B1"
                && let Some(item) = self.state.get(&PharmacyRecord::key(&e.partner, &e.transaction)).await?
                && let Ok(original) = decode_json::<PharmacyRecord>(&item.value)
                && let Ok(original) = ncpdp::read(original.response.as_bytes(), &Limits::default())
            {
                replace_group(&mut response, i + 1, &original, e.group, Some(&outcomes[i].status));
            }
        }
        // The claim index changes.
        let mut writes = Vec::new();
        for (i, s) in seen.iter().enumerate() {
            let (Some(s), false) = (s, duplicate[i]) else { continue };
            let o = &outcomes[i];
            let condition = match &s.entry {
                Some((_, v)) => Condition::Version(*v),
                None => Condition::NotExists,
            };
            let entry = match h.transaction_code.as_str() {
                "B1" | "B3" if matches!(o.status.as_str(), "P" | "C") => ClaimEntry {
                    transaction: id.clone(),
                    partner: partner.clone(),
                    group: i + 1,
                    outcome: o.clone(),
                    reversed: false,
                },
                "B2" if o.status == status::APPROVED => match &s.entry {
                    Some((e, _)) => ClaimEntry { reversed: true, ..e.clone() },
                    None => continue,
                },
                _ => continue,
            };
            writes.push(WriteOp::Put {
                key: s.key.clone(),
                value: encode_json(&entry)?,
                expires_at: None,
                condition,
                owner: Some(partner.clone()),
            });
        }
        rec.header_status = "A".into();
        rec.outcomes = outcomes.clone();
        rec.duplicate = duplicate;
        self.record(rec, &response, writes, started).await
    }

    /// Writes the record, the claim index changes and the partner's
    /// acknowledgement in one state write; returns the reply.
    async fn record(
        &self,
        mut rec: PharmacyRecord,
        response: &Transmission,
        mut writes: Vec<WriteOp>,
        started: Instant,
    ) -> PortResult<PharmacyReply> {
        let bytes = response.to_bytes();
        if rec.outcomes.is_empty() {
            let (header, outcomes) = answer::outcomes(response).unwrap_or_default();
            rec.header_status = header;
            rec.outcomes = outcomes;
        }
        rec.response = text(&bytes);
        rec.took_us = started.elapsed().as_micros() as u64;
        let mut ack = AckRecord {
            id: format!("{}-ncpdp-1", rec.id),
            transaction: rec.id.clone(),
            partner: rec.partner.clone(),
            kind: "ncpdp".into(),
            content_type: MEDIA_TYPE.into(),
            created_at: rec.received_at.clone(),
            body: rec.response.clone(),
            body_blob: None,
            body_chunks: None,
            body_sealed: None,
            feed_cursor: None,
        };
        // The feed cursor is minted now, not at receipt: the payer's answer
        // may take seconds, and a reader may have gone past the receipt's
        // time by then. The stamp lives until the write returns.
        let stamp = feed::clock().stamp();
        ack.feed_cursor = Some(stamp.cursor(&ack.id));
        // Responses are at most MAX_PHARMACY_BYTES, within an ack record.
        self.partners.seal_ack_inline(&mut ack).await?;
        writes.push(WriteOp::Put {
            key: PharmacyRecord::key(&rec.partner, &rec.id),
            value: encode_json(&rec)?,
            expires_at: None,
            condition: Condition::NotExists,
            owner: None,
        });
        writes.extend(ack.feed_ops()?);
        let write_started = Instant::now();
        feed::write_stamped(self.state.clone(), vec![writes], stamp).await?;
        let m = meters();
        m.record_seconds.record(write_started.elapsed().as_secs_f64());
        let statuses: Vec<String> = rec.outcomes.iter().map(|o| o.status.clone()).collect();
        let code = CODES
            .iter()
            .position(|c| *c == rec.transaction_code)
            .unwrap_or(if rec.transaction_code.is_empty() { CODES.len() - 1 } else { CODES.len() - 2 });
        for s in &statuses {
            let status = STATUSES.iter().position(|(c, _)| *c == s).unwrap_or(STATUSES.len() - 1);
            m.transactions[code * STATUSES.len() + status].increment(1);
        }
        m.request_seconds.record(started.elapsed().as_secs_f64());
        Ok(PharmacyReply { response: bytes, transaction: rec.id, statuses })
    }

    /// The `local` connector: E1 from coverage, B1/B3 through the pharmacy
    /// edits (captured or rejected), B2 approved.
    async fn pharmacy_local(
        &self,
        t: &Transmission,
        groups: &[usize],
        payer: &str,
        now: OffsetDateTime,
    ) -> PortResult<Vec<Outcome>> {
        let code = t.transaction_code().to_string();
        let mut out = Vec::with_capacity(groups.len());
        for &g in groups {
            let o = match code.as_str() {
                "E1" => self.pharmacy_eligibility(t, payer, now).await?,
                "B2" => Outcome::with_status(status::APPROVED),
                _ => {
                    let policy = self.config.edit_policy("", Some(payer));
                    let (rejects, warned) = answer::pharmacy_edits(t, g, now.date(), &policy);
                    if rejects.is_empty() {
                        let message = (!warned.is_empty()).then(|| format!("warnings: {}", warned.join(" ")));
                        Outcome { message, ..Outcome::with_status(status::CAPTURED) }
                    } else {
                        Outcome::rejected(rejects)
                    }
                }
            };
            out.push(o);
        }
        Ok(out)
    }

    async fn pharmacy_eligibility(&self, t: &Transmission, payer: &str, now: OffsetDateTime) -> PortResult<Outcome> {
        let card = validate::field(t, 1, "04", "C2").unwrap_or("").trim();
        let member = match crate::local::member(self.state.as_ref(), &self.partners, payer, card).await {
            Ok(m) => m,
            Err(_) => return Ok(Outcome::rejected(["99"])),
        };
        let Some(m) = member else { return Ok(Outcome::rejected(["N1"])) };
        if let (Some(asked), Some(known)) = (validate::field(t, 1, "01", "C4"), m.person.birth_date.expose())
            && validate::parse_date(asked).as_ref() != Some(known)
        {
            return Ok(Outcome::rejected(["N1"]));
        }
        let on =
            validate::request_header(t).and_then(|h| validate::parse_date(&h.date_of_service)).unwrap_or(now.date());
        Ok(match crate::local::active_on(&m, on) {
            Some(_) => Outcome::with_status(status::APPROVED),
            None => Outcome::rejected(["600"]),
        })
    }

    /// The `http` connector: the groups still to answer, forwarded as one
    /// transmission through the payer's gate.
    async fn pharmacy_http(
        &self,
        t: &Transmission,
        groups: &[usize],
        settings: &PayerConfig,
        url: &str,
    ) -> (Vec<Outcome>, Option<Transmission>) {
        let payer = settings.id.as_str();
        let all = groups.len() == t.groups().min(4);
        let body = if all { t.to_bytes() } else { subset(t, groups) };
        let gate = self.gate(payer);
        let timeout = settings.timeout.min(self.config.fastpath.timeout);
        let call = async {
            let bytes = crate::http::exchange_as(self.http.get(payer), url, MEDIA_TYPE, body).await?;
            let resp = ncpdp::read(&bytes, &Limits::default()).map_err(|_| UpstreamError::Unreadable("not D.0"))?;
            let (header, outcomes) = answer::outcomes(&resp).ok_or(UpstreamError::Unreadable("not a D.0 response"))?;
            if header == "R" && outcomes.iter().all(|o| o.status.is_empty()) {
                return Err(UpstreamError::Unavailable("transmission rejected without a status".into()));
            }
            Ok((outcomes, resp))
        };
        match gate.call(timeout, call).await {
            Ok((mut outcomes, resp)) => {
                outcomes.resize_with(groups.len(), || Outcome::rejected(["99"]));
                for o in &mut outcomes {
                    if o.status.is_empty() {
                        *o = Outcome::rejected(["99"]);
                    }
                }
                (outcomes, Some(resp))
            }
            Err(e) => {
                tracing::info!(payer = %payer, reason = %e, "PBM did not answer");
                // Host processing error for an answer that is none; host
                // unavailable for everything else (late, down, refused by
                // the payer's limits).
                let code = if matches!(e, UpstreamError::Unreadable(_)) { "99" } else { "92" };
                (vec![Outcome::rejected([code]); groups.len()], None)
            }
        }
    }
}

/// Transaction codes as counted (`other`, `unreadable` last).
const CODES: [&str; 6] = ["E1", "B1", "B2", "B3", "other", "unreadable"];
/// Transaction response statuses as counted (`other` last).
const STATUSES: [(&str, &str); 8] = [
    ("P", "paid"),
    ("C", "captured"),
    ("A", "approved"),
    ("D", "duplicate-of-paid"),
    ("Q", "duplicate-of-capture"),
    ("S", "duplicate-of-approved"),
    ("R", "rejected"),
    ("", "other"),
];

/// The switch path's metric handles, registered once (a lookup by name
/// and labels per transaction costs more than the count).
struct Meters {
    transactions: Vec<metrics::Counter>,
    request_seconds: metrics::Histogram,
    record_seconds: metrics::Histogram,
}

fn meters() -> &'static Meters {
    static METERS: std::sync::OnceLock<Meters> = std::sync::OnceLock::new();
    METERS.get_or_init(|| Meters {
        transactions: CODES
            .iter()
            .flat_map(|code| {
                STATUSES.iter().map(move |(_, status)| {
                    metrics::counter!("clearway_pharmacy_transactions_total", "code" => *code, "status" => *status)
                })
            })
            .collect(),
        request_seconds: metrics::histogram!("clearway_pharmacy_request_seconds"),
        record_seconds: metrics::histogram!("clearway_pharmacy_record_seconds"),
    })
}

/// The codes about group `g` (its own and the transmission-level ones).
fn own_rejects(rejects: &[Reject], g: usize) -> Vec<&'static str> {
    rejects.iter().filter(|r| r.group == 0 || r.group == g).map(|r| r.code).collect()
}

/// What to do with a group given its claim index entry.
fn plan_for(code: &str, entry: Option<&ClaimEntry>) -> Plan {
    match (code, entry) {
        ("B1", Some(e)) if !e.reversed => match duplicate_of(&e.outcome.status) {
            Some(dup) => Plan::Answered(Outcome { status: dup.into(), ..e.outcome.clone() }, true),
            None => Plan::Forward,
        },
        ("B2", Some(e)) if e.reversed => Plan::Answered(Outcome::with_status(status::DUPLICATE_OF_APPROVED), true),
        ("B2" | "B3", None) => Plan::Answered(Outcome::rejected(["87"]), false),
        ("B3", Some(e)) if e.reversed => Plan::Answered(Outcome::rejected(["87"]), false),
        _ => Plan::Forward,
    }
}

/// Puts group `fg` of `from` (a response) in place of group `g` of
/// `response`, in the standard framing; with `status`, its transaction
/// response status (112-AN) is set to it.
fn replace_group(response: &mut Transmission, g: usize, from: &Transmission, fg: usize, status: Option<&str>) {
    let flat = from.segments.iter().all(|s| s.group == 0);
    let mut segs: Vec<ncpdp::Segment> =
        from.segments.iter().filter(|s| s.group == fg || (flat && fg == 1)).cloned().collect();
    if !segs.iter().any(|s| s.id == "21") {
        return;
    }
    for (k, s) in segs.iter_mut().enumerate() {
        s.group = g;
        s.lead =
            if k == 0 { vec![ncpdp::GROUP, ncpdp::SEGMENT, ncpdp::FIELD] } else { vec![ncpdp::SEGMENT, ncpdp::FIELD] };
        for f in &mut s.fields {
            f.sep = Some(ncpdp::FIELD);
            if let (Some(st), "21", "AN") = (status, s.id.as_str(), f.id.as_str()) {
                f.value = st.to_string();
            }
        }
    }
    let Some(at) = response.segments.iter().position(|s| s.group == g) else { return };
    response.segments.retain(|s| s.group != g);
    let tail = response.segments.split_off(at.min(response.segments.len()));
    response.segments.extend(segs);
    response.segments.extend(tail);
}

/// The transmission with only `groups` (1-based) and its count set to
/// match.
fn subset(t: &Transmission, groups: &[usize]) -> Vec<u8> {
    let mut out = t.clone();
    let keep = |s: &ncpdp::Segment| s.group == 0 || groups.contains(&s.group);
    out.segments.retain(keep);
    let mut raw = out.header_raw.into_bytes();
    if raw.len() > 20 {
        raw[20] = b'0' + groups.len() as u8;
    }
    out.header_raw = String::from_utf8_lossy(&raw).into_owned();
    out.to_bytes()
}
