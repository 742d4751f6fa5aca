//! From change events to rows: each event's transaction is read back (its
//! stored payload and acknowledgements, which never change) and turned
//! into the rows of every table it touches.
//!
//! PHI stays out: no names, addresses, dates of birth or free text;
//! patient control numbers and member ids only as tokens under the
//! tenant's key; the bad values a 999 quotes (IK404) are dropped.

use crate::schema::{self, Rows};
use clearway_core::changes::{ChangeKind, Sequenced};
use clearway_core::partners::{Partners, Tokenizer};
use clearway_core::ports::{BlobStore, StateStore};
use clearway_core::records::{AckRecord, Format, TransactionRecord, decode_json};
use clearway_core::{Claim, ClaimKind, PartnerId, PortResult};
use clearway_formats::x12::views::{Ack999, AckSet, ClaimStatusResponse};
use clearway_formats::x12::{AnalyzeOptions, Document, analyze};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

/// Largest payload read back for export (the intake bound).
const MAX_PAYLOAD_BYTES: u64 = 1 << 30;

/// The builders of every table, filled event by event.
pub struct Tables {
    pub rows: Vec<Rows>,
}

impl std::fmt::Debug for Tables {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tables").field("rows", &self.rows.iter().map(Rows::len).collect::<Vec<_>>()).finish()
    }
}

impl std::fmt::Debug for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reader").finish_non_exhaustive()
    }
}

impl Default for Tables {
    fn default() -> Self {
        Tables { rows: schema::TABLES.iter().map(|t| Rows::new(t)).collect() }
    }
}

impl Tables {
    fn get(&mut self, def: &'static schema::TableDef) -> &mut Rows {
        let i = schema::TABLES.iter().position(|t| t.name == def.name).unwrap_or(0);
        &mut self.rows[i]
    }

    /// The most rows any table holds.
    pub fn max_len(&self) -> usize {
        self.rows.iter().map(Rows::len).max().unwrap_or(0)
    }
}

/// Why an event gave fewer rows than it should have.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// The transaction record is gone (expired or erased).
    pub missing_record: u64,
    /// The payload or an acknowledgement could not be read (a partner's
    /// keys shredded, a blob removed).
    pub unreadable: u64,
}

/// Reads what events name.
pub struct Reader {
    pub state: Arc<dyn StateStore>,
    pub blobs: Arc<dyn BlobStore>,
    pub partners: Arc<Partners>,
    tokenizers: HashMap<PartnerId, Tokenizer>,
}

fn ms_to_us(ms: i64) -> i64 {
    ms.saturating_mul(1000)
}

fn parse_us(rfc3339: &str) -> Option<i64> {
    time::OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(|t| (t.unix_timestamp_nanos() / 1_000) as i64)
}

fn claim_type(kind: ClaimKind) -> &'static str {
    match kind {
        ClaimKind::Professional => "professional",
        ClaimKind::Institutional => "institutional",
        ClaimKind::Dental => "dental",
        ClaimKind::Pharmacy => "pharmacy",
        ClaimKind::Vision => "vision",
    }
}

/// The acknowledgements of a transaction, read and parsed.
#[derive(Default)]
struct Acks {
    /// ISA13 → (TA104, TA105).
    ta1: HashMap<String, (String, String)>,
    /// (GS06, ST02) → the 999's AK2 loop.
    sets: HashMap<(String, String), AckSet>,
    /// CLM01 → the 277CA's claim statuses, in order, with the ack's time.
    claims: HashMap<String, VecDeque<(ClaimStatusResponse, Option<i64>)>>,
    /// The HL7 ACKs, one per message, in order.
    hl7: Vec<String>,
    /// The FHIR answer.
    fhir: Option<String>,
    kinds: Vec<String>,
}

impl Reader {
    pub fn new(state: Arc<dyn StateStore>, blobs: Arc<dyn BlobStore>, partners: Arc<Partners>) -> Self {
        Reader { state, blobs, partners, tokenizers: HashMap::new() }
    }

    fn tokenizer(&mut self, tenant: &PartnerId) -> Tokenizer {
        self.tokenizers.entry(tenant.clone()).or_insert_with(|| self.partners.analytics_tokenizer(tenant)).clone()
    }

    /// Adds the rows of one event.
    pub async fn add(&mut self, s: &Sequenced, out: &mut Tables, skipped: &mut Skipped) -> PortResult<()> {
        let e = &s.event;
        let seq = Some(s.seq as i64);
        if e.kind == ChangeKind::RealTime {
            if let Some(rt) = &e.realtime {
                let tokens = self.tokenizer(&e.partner);
                realtime_row(e, rt, seq, &tokens, out);
            }
            return Ok(());
        }
        if e.kind == ChangeKind::PayerBatch {
            if let Some(b) = &e.payer_batch {
                let r = out.get(&schema::PAYER_BATCH);
                r.s(Some(e.partner.as_str()))
                    .s(Some(&b.batch))
                    .s(Some(&b.payer))
                    .i(Some(i64::from(b.control)))
                    .s(Some(&b.step));
                r.i(Some(b.claims as i64)).i(Some(b.bytes as i64)).t(Some(ms_to_us(b.created_at_ms)));
                r.t(b.delivered_at_ms.map(ms_to_us)).s(b.delivery.as_deref()).i(Some(i64::from(b.attempts)));
                r.s(b.verdict.as_deref()).t(Some(ms_to_us(e.at_ms))).t(Some(ms_to_us(e.received_at_ms))).i(seq);
                r.end();
                if b.step == "delivered" {
                    self.route_rows(b, seq, out).await?;
                }
            }
            return Ok(());
        }
        if e.kind == ChangeKind::PayerAnswer {
            let Some(facts) = &e.payer_answer else { return Ok(()) };
            let tokens = self.tokenizer(&e.partner);
            for id in &e.ack_ids {
                let Some(item) = self.state.get(&AckRecord::key(&e.transaction, id)).await? else {
                    skipped.missing_record += 1;
                    continue;
                };
                let ack: AckRecord = decode_json(&item.value)?;
                let body = match self.partners.ack_body(self.blobs.as_ref(), &ack).await {
                    Ok(b) => b,
                    Err(_) => {
                        skipped.unreadable += 1;
                        continue;
                    }
                };
                payer_answer_rows(body.as_bytes(), id, facts, e, s.seq, &tokens, out);
            }
            return Ok(());
        }
        if e.kind == ChangeKind::Duplicate {
            if let Some(d) = &e.duplicate {
                let r = out.get(&schema::DUPLICATE);
                r.s(Some(e.partner.as_str())).s(Some(e.transaction.as_str())).s(Some(d.original.as_str()));
                r.s(Some(&d.layer)).s(Some(&d.format)).s(Some(&d.channel)).i(Some(d.size_bytes as i64));
                r.t(Some(ms_to_us(e.received_at_ms))).i(seq);
                r.end();
            }
            return Ok(());
        }
        let key = TransactionRecord::key(&e.partner, &e.transaction);
        let Some(item) = self.state.get(&key).await? else {
            skipped.missing_record += 1;
            return Ok(());
        };
        let record: TransactionRecord = decode_json(&item.value)?;
        let tenant = Some(e.partner.as_str());
        let txn = Some(e.transaction.as_str());
        let received = Some(ms_to_us(e.received_at_ms));
        let at = Some(ms_to_us(e.at_ms));
        if e.kind == ChangeKind::DeadLettered {
            let r = out.get(&schema::DEAD_LETTER);
            r.s(tenant).s(txn).s(Some(record.format.as_str())).s(Some(&record.channel));
            r.s(e.reason.as_deref()).i(Some(i64::from(e.attempts))).t(received).t(at).i(seq);
            r.end();
            return Ok(());
        }
        let mut acks = match self.acks(&record, &e.ack_ids).await {
            Ok(a) => a,
            Err(_) => {
                skipped.unreadable += 1;
                Acks::default()
            }
        };
        let mut claim_count = 0usize;
        let mut documents = 0usize;
        if record.format == Format::X12 {
            match self.payload(&record).await {
                Ok(payload) => {
                    let tokens = self.tokenizer(&e.partner);
                    let (c, d) = x12_rows(&payload, e, s.seq, &mut acks, &tokens, out);
                    claim_count = c;
                    documents = d;
                }
                Err(_) => skipped.unreadable += 1,
            }
        } else {
            claim_count = record.claim_count;
            documents = record.documents;
            let rows = match record.format {
                Format::Hl7 => Some(hl7_rows as RowsOf),
                Format::Fhir => Some(fhir_row as RowsOf),
                _ => None,
            };
            if let Some(rows) = rows {
                match self.payload(&record).await {
                    Ok(payload) => rows(&payload, &record, e, s.seq, &acks, out),
                    Err(_) => skipped.unreadable += 1,
                }
            }
        }
        let r = out.get(&schema::TRANSACTION);
        r.s(tenant).s(txn).s(Some(record.format.as_str())).s(Some(&record.channel)).s(Some(&e.status));
        r.i(Some(record.size_bytes as i64)).i(Some(documents as i64)).i(Some(claim_count as i64));
        r.s(Some(&acks.kinds.join(","))).i(Some(i64::from(e.attempts))).t(received).t(at);
        r.i(Some((e.at_ms - e.received_at_ms).max(0))).i(seq);
        r.end();
        Ok(())
    }

    /// `claim_route` rows of a delivered batch: its members (the claims
    /// it carried, kept by the round trip as `workers::payers::Pending`,
    /// camelCase JSON), each with its receipt.
    async fn route_rows(
        &self,
        b: &clearway_core::changes::PayerBatch,
        seq: Option<i64>,
        out: &mut Tables,
    ) -> PortResult<()> {
        let partition = format!("members/{}/{:09}", b.payer, b.control);
        let delivered = b.delivered_at_ms;
        let mut after: Option<String> = None;
        loop {
            let page = self
                .state
                .query(
                    clearway_core::ports::Table::Batches,
                    &partition,
                    after.as_deref(),
                    clearway_core::ports::MAX_QUERY_LIMIT,
                )
                .await?;
            let full = page.len() == clearway_core::ports::MAX_QUERY_LIMIT;
            after = page.last().map(|(k, _)| k.clone());
            for (_, item) in page {
                let Ok(m) = serde_json::from_slice::<serde_json::Value>(&item.value) else { continue };
                let field = |k: &str| m.get(k).and_then(|v| v.as_str());
                let received = field("receivedAt").and_then(parse_us);
                let r = out.get(&schema::CLAIM_ROUTE);
                r.s(field("partner")).s(field("transaction")).s(field("claimId")).s(Some(&b.payer)).s(Some(&b.batch));
                r.t(received).t(delivered.map(ms_to_us));
                r.i(received.zip(delivered).map(|(a, d)| (d - a / 1000).max(0))).i(seq);
                r.end();
            }
            if !full {
                return Ok(());
            }
        }
    }

    async fn payload(&self, record: &TransactionRecord) -> PortResult<Vec<u8>> {
        let sealed = self.blobs.get(&record.blob_key, MAX_PAYLOAD_BYTES).await?;
        let aad = clearway_core::keys::payload_aad(&record.id, &record.partner);
        self.partners.open(&record.partner, &sealed, aad.as_bytes()).await
    }

    async fn acks(&self, record: &TransactionRecord, ids: &[String]) -> PortResult<Acks> {
        let mut acks = Acks::default();
        for id in ids {
            let Some(item) = self.state.get(&AckRecord::key(&record.id, id)).await? else { continue };
            let ack: AckRecord = decode_json(&item.value)?;
            acks.kinds.push(ack.kind.clone());
            if !matches!(ack.kind.as_str(), "ta1" | "999" | "277ca" | "hl7" | "fhir") {
                continue;
            }
            let body = self.partners.ack_body(self.blobs.as_ref(), &ack).await?;
            match ack.kind.as_str() {
                "hl7" => {
                    acks.hl7.push(body);
                    continue;
                }
                "fhir" => {
                    acks.fhir = Some(body);
                    continue;
                }
                _ => {}
            }
            let at = parse_us(&ack.created_at);
            let analysis = analyze(body.as_bytes(), &AnalyzeOptions::default());
            for ic in &analysis.interchanges {
                for t in &ic.report.ta1s {
                    acks.ta1.insert(t.control_number.clone(), (t.ack_code.clone(), t.note_code.clone()));
                }
            }
            for doc in analysis.documents() {
                match doc {
                    Document::ImplementationAck(a) => {
                        let Ack999 { group_control_number, sets, .. } = a.as_ref();
                        for set in sets {
                            acks.sets.insert((group_control_number.clone(), set.control_number.clone()), set.clone());
                        }
                    }
                    Document::ClaimStatusResponse(r) if r.level == "PT" => {
                        let trace = r.trace.expose().clone().unwrap_or_default();
                        acks.claims.entry(trace).or_default().push_back((r.as_ref().clone(), at));
                    }
                    _ => {}
                }
            }
        }
        Ok(acks)
    }
}

/// The rows a non-X12 transaction's payload and answers give.
type RowsOf = fn(&[u8], &TransactionRecord, &clearway_core::changes::ChangeEvent, u64, &Acks, &mut Tables);

/// The common tail of a processed transaction's row: received, processed,
/// latency, sequence.
fn timing(r: &mut Rows, e: &clearway_core::changes::ChangeEvent, seq: u64) {
    r.t(Some(ms_to_us(e.received_at_ms))).t(Some(ms_to_us(e.at_ms)));
    r.i(Some((e.at_ms - e.received_at_ms).max(0))).i(Some(seq as i64));
}

/// `hl7_message` rows: one per message of the payload, with the ACK
/// answered to it (MSA-1 and the number of ERR segments).
fn hl7_rows(
    payload: &[u8],
    record: &TransactionRecord,
    e: &clearway_core::changes::ChangeEvent,
    seq: u64,
    acks: &Acks,
    out: &mut Tables,
) {
    use clearway_formats::hl7;
    let Ok(batch) = hl7::split(payload, &hl7::Limits::default()) else { return };
    for (n, m) in batch.messages().enumerate() {
        let ack = acks.hl7.get(n).and_then(|a| hl7::Message::parse(a.as_bytes()).ok());
        let msa1 = ack.as_ref().and_then(|a| a.get("MSA-1")).map(|v| v.as_str().into_owned());
        let errs = ack.as_ref().map(|a| a.count("ERR") as i64);
        let t = m.message_type();
        let some = |c: &std::borrow::Cow<'_, str>| (!c.is_empty()).then(|| c.to_string());
        let r = out.get(&schema::HL7_MESSAGE);
        r.s(Some(e.partner.as_str())).s(Some(e.transaction.as_str())).i(Some(n as i64 + 1));
        r.s(Some(&record.channel)).s(Some(&e.status));
        r.s(m.sending_application().as_deref()).s(m.sending_facility().as_deref());
        r.s(m.receiving_application().as_deref()).s(m.receiving_facility().as_deref());
        r.s(some(&t.code).as_deref()).s(some(&t.trigger).as_deref()).s(some(&t.structure).as_deref());
        r.s(m.control_id().as_deref()).s(m.processing_id().as_deref()).s(m.version().as_deref());
        r.s(msa1.as_deref()).i(errs);
        timing(r, e, seq);
        r.end();
    }
}

/// The top of a FHIR resource: its type, a Bundle's type and entries.
#[derive(serde::Deserialize)]
struct FhirTop {
    #[serde(rename = "resourceType")]
    resource_type: Option<String>,
    #[serde(rename = "type")]
    kind: Option<serde_json::Value>,
    #[serde(default)]
    entry: Vec<serde::de::IgnoredAny>,
}

/// The error and fatal issues of every OperationOutcome in a FHIR answer
/// (the answer itself, or a batch-response's entries), and the first one's
/// code.
fn fhir_errors(v: &serde_json::Value, count: &mut i64, first: &mut Option<String>) {
    if v.get("resourceType").and_then(|t| t.as_str()) == Some("OperationOutcome") {
        for issue in v.get("issue").and_then(|i| i.as_array()).into_iter().flatten() {
            if matches!(issue.get("severity").and_then(|s| s.as_str()), Some("error" | "fatal")) {
                *count += 1;
                if first.is_none() {
                    *first = issue.get("code").and_then(|c| c.as_str()).map(str::to_string);
                }
            }
        }
    }
    for entry in v.get("entry").and_then(|e| e.as_array()).into_iter().flatten() {
        if let Some(r) = entry.get("resource") {
            fhir_errors(r, count, first);
        }
    }
}

/// The `fhir_request` row of one FHIR submission.
fn fhir_row(
    payload: &[u8],
    record: &TransactionRecord,
    e: &clearway_core::changes::ChangeEvent,
    seq: u64,
    acks: &Acks,
    out: &mut Tables,
) {
    let top: Option<FhirTop> = serde_json::from_slice(payload).ok();
    let resource = top.as_ref().and_then(|t| t.resource_type.as_deref());
    let bundle = resource == Some("Bundle");
    let bundle_type = top.as_ref().filter(|_| bundle).and_then(|t| t.kind.as_ref()?.as_str().map(str::to_string));
    let answer: Option<serde_json::Value> = acks.fhir.as_deref().and_then(|a| serde_json::from_str(a).ok());
    let (mut errors, mut first) = (0i64, None);
    if let Some(a) = &answer {
        fhir_errors(a, &mut errors, &mut first);
    }
    let r = out.get(&schema::FHIR_REQUEST);
    r.s(Some(e.partner.as_str())).s(Some(e.transaction.as_str())).s(Some(&record.channel)).s(Some(&e.status));
    r.s(resource).s(bundle_type.as_deref()).i(top.as_ref().filter(|_| bundle).map(|t| t.entry.len() as i64));
    r.i(Some(record.claim_count as i64));
    r.s(answer.as_ref().and_then(|a| a.get("resourceType")?.as_str())).i(answer.as_ref().map(|_| errors));
    r.s(first.as_deref());
    timing(r, e, seq);
    r.end();
}

/// The X12 rows of one processed transaction; returns its claim and
/// document counts.
fn x12_rows(
    payload: &[u8],
    e: &clearway_core::changes::ChangeEvent,
    seq: u64,
    acks: &mut Acks,
    tokens: &Tokenizer,
    out: &mut Tables,
) -> (usize, usize) {
    let analysis = analyze(payload, &AnalyzeOptions::default());
    let tenant = Some(e.partner.as_str());
    let txn = Some(e.transaction.as_str());
    let received = Some(ms_to_us(e.received_at_ms));
    let processed = Some(ms_to_us(e.at_ms));
    let seq = Some(seq as i64);
    let mut n_claim = 0usize;
    let mut n_remit = 0usize;
    let mut documents = 0usize;
    for (i, ic) in analysis.interchanges.iter().enumerate() {
        let rep = &ic.report;
        let f = &rep.isa.fields;
        let ta1 = acks.ta1.get(&rep.control_number);
        let r = out.get(&schema::INTERCHANGE);
        r.s(tenant).s(txn).i(Some(i as i64));
        r.s(Some(f[4].trim())).s(Some(rep.sender_id.trim())).s(Some(f[6].trim())).s(Some(rep.receiver_id.trim()));
        r.s(Some(&rep.control_number)).s(Some(f[14].trim()));
        r.i(Some(ic.groups.len() as i64)).i(Some(ic.groups.iter().map(|g| g.sets.len() as i64).sum()));
        r.s(ta1.map(|t| t.0.as_str())).s(ta1.map(|t| t.1.as_str())).s(Some(&e.status));
        r.t(received).t(processed).i(seq);
        r.end();
        for group in &ic.groups {
            let gh = &group.report.header;
            for set in &group.sets {
                documents += set.documents.len();
                let sh = &set.report.header;
                let ack = acks.sets.get(&(gh.control_number.clone(), sh.control_number.clone()));
                let errors = ack.map(|a| a.segment_errors.len() as i64);
                let r = out.get(&schema::TRANSACTION_SET);
                r.s(tenant).s(txn).s(Some(&rep.control_number)).s(Some(&gh.functional_id));
                r.s(Some(&gh.sender)).s(Some(&gh.receiver)).s(Some(&gh.control_number)).s(Some(&gh.version));
                r.s(Some(&sh.id)).s(Some(&sh.control_number)).s(sh.implementation.as_deref());
                r.i(Some(i64::from(set.report.segment_count))).s(ack.map(|a| a.code.as_str())).i(errors);
                r.t(received).t(processed).i(seq);
                r.end();
                if let Some(a) = ack {
                    for se in &a.segment_errors {
                        let elements: Vec<Option<&(String, String, String)>> =
                            if se.elements.is_empty() { vec![None] } else { se.elements.iter().map(Some).collect() };
                        for el in elements {
                            let r = out.get(&schema::ACK_ERROR);
                            r.s(tenant).s(txn).s(Some(&gh.control_number)).s(Some(&sh.id)).s(Some(&sh.control_number));
                            r.s(Some(&a.code)).s(Some(&se.segment)).i(se.position.parse().ok());
                            r.s(se.loop_id.as_deref()).s(Some(&se.code));
                            r.s(el.map(|x| x.0.as_str())).s(el.map(|x| x.1.as_str())).s(el.map(|x| x.2.as_str()));
                            r.t(received).i(seq);
                            r.end();
                        }
                    }
                }
                // Claims exist only in sets that passed (as the worker
                // numbers them).
                if !(rep.accepted() && set.report.accepted()) {
                    continue;
                }
                for doc in &set.documents {
                    let Document::Claim(c) = doc else { continue };
                    n_claim += 1;
                    let key = format!("{}-{}", e.transaction, n_claim);
                    let pcn = c.patient_control_number.expose();
                    let status = acks.claims.get_mut(pcn.as_str()).and_then(VecDeque::pop_front);
                    claim_rows(c, &key, &sh.control_number, status.as_ref(), e, seq, tokens, out);
                    tuva_claim_rows(c, &key, e, tokens, out);
                }
                for doc in &set.documents {
                    match doc {
                        Document::Enrollment(en) => {
                            enrollment_rows(en, e, seq, tokens, out);
                            tuva_eligibility_rows(en, e, tokens, out);
                        }
                        Document::Remittance(rm) => {
                            remit_rows(rm, e, seq, e.transaction.as_str(), &mut n_remit, tokens, out)
                        }
                        _ => {}
                    }
                }
            }
        }
    }
    (n_claim, documents)
}

/// CAQH CORE's limit for a real-time answer (Phase I CORE 156 and 250).
const CORE_LIMIT_US: i64 = 20_000_000;

fn realtime_row(
    e: &clearway_core::changes::ChangeEvent,
    rt: &clearway_core::changes::RealTime,
    seq: Option<i64>,
    tokens: &Tokenizer,
    out: &mut Tables,
) {
    let ids = &rt.ids;
    let ms = |us: i64| us as f64 / 1000.0;
    let r = out.get(&schema::RT_EXCHANGE);
    r.s(Some(e.partner.as_str())).s(Some(e.transaction.as_str())).s(Some(&rt.txn)).s(Some(&e.status));
    r.s(Some(&rt.served)).t(Some(ms_to_us(e.received_at_ms))).t(Some(ms_to_us(e.at_ms)));
    r.v(schema::V::F(Some(ms(rt.latency_us)))).v(schema::V::B(Some(rt.latency_us <= CORE_LIMIT_US)));
    r.v(schema::V::F(rt.upstream_us.map(ms))).s(ids.payer_id.as_deref());
    r.s(ids.isa06.as_deref()).s(ids.isa08.as_deref()).s(ids.isa13.as_deref());
    r.s(ids.gs02.as_deref()).s(ids.gs03.as_deref()).s(ids.gs06.as_deref()).s(ids.st02.as_deref());
    r.s(ids.bht03.as_deref().map(|v| tokens.token(v)).as_deref());
    r.s(ids.trn02.as_deref().map(|v| tokens.token(v)).as_deref());
    let aaa = rt.aaa.join(",");
    r.s((!aaa.is_empty()).then_some(aaa.as_str())).i(Some(rt.aaa.len() as i64)).i(seq);
    r.end();
}

#[allow(clippy::too_many_arguments)]
fn claim_rows(
    c: &Claim,
    key: &str,
    st02: &str,
    status: Option<&(ClaimStatusResponse, Option<i64>)>,
    e: &clearway_core::changes::ChangeEvent,
    seq: Option<i64>,
    tokens: &Tokenizer,
    out: &mut Tables,
) {
    let tenant = Some(e.partner.as_str());
    let txn = Some(e.transaction.as_str());
    let received = Some(ms_to_us(e.received_at_ms));
    let kind = claim_type(c.kind);
    let dates = c.summary().service_dates.or(c.statement_dates);
    let first = status.and_then(|(s, _)| s.statuses.first());
    let verdict = first.map(|s| if matches!(s.category.as_str(), "A1" | "A2") { "accepted" } else { "rejected" });
    let stc = first.map(|s| match &s.entity {
        Some(ent) => format!("{}:{}:{}", s.category, s.code, ent),
        None => format!("{}:{}", s.category, s.code),
    });
    let pcn_token = tokens.token(c.patient_control_number.expose());
    let member_token = c.subscriber_member_id.expose().as_deref().map(|m| tokens.token(m));
    let principal = c.diagnoses.expose().first().map(|d| d.code.as_str());
    let r = out.get(&schema::CLAIM);
    r.s(tenant).s(txn).s(Some(key)).s(Some(kind)).s(c.implementation.as_deref()).s(Some(st02));
    r.s(c.billing_provider_npi.as_deref()).s(c.payer_id.as_deref()).s(Some(&pcn_token)).s(member_token.as_deref());
    r.s(c.facility_code.as_deref()).s(c.frequency_code.as_deref()).m(Some(c.total_charge));
    r.d(dates.map(|d| d.from)).d(dates.map(|d| d.to));
    r.i(Some(c.service_lines.len() as i64)).i(Some(c.diagnoses.expose().len() as i64)).s(principal);
    r.s(verdict).s(stc.as_deref()).t(received).i(seq);
    r.end();
    for l in &c.service_lines {
        let m = |i: usize| l.modifiers.get(i).map(String::as_str);
        let r = out.get(&schema::CLAIM_LINE);
        r.s(tenant).s(txn).s(Some(key)).i(Some(i64::from(l.line_number))).s(Some(kind));
        r.s(c.payer_id.as_deref()).s(c.billing_provider_npi.as_deref());
        r.s(l.procedure_qualifier.as_deref()).s((!l.procedure_code.is_empty()).then_some(l.procedure_code.as_str()));
        r.s(m(0)).s(m(1)).s(m(2)).s(m(3)).s(l.revenue_code.as_deref()).m(Some(l.charge));
        r.v(schema::V::F(l.units.and_then(schema::float))).s(l.unit_basis.as_deref());
        r.s(l.place_of_service.as_deref().or(if c.kind == ClaimKind::Institutional {
            None
        } else {
            c.facility_code.as_deref()
        }));
        r.d(l.service_date.map(|d| d.from)).d(l.service_date.map(|d| d.to)).t(received).i(seq);
        r.end();
    }
    if let Some((s, acked)) = status {
        let mut stc_row = |line: Option<i64>, st: &clearway_formats::x12::views::Status| {
            let r = out.get(&schema::CLAIM_ACK);
            r.s(tenant).s(txn).s(Some(key)).i(line).s(Some("clearinghouse"));
            r.s(Some(&st.category)).s(Some(&st.code)).s(st.entity.as_deref()).s(st.action.as_deref());
            r.t(received).t(*acked).i(seq);
            r.end();
        };
        for st in &s.statuses {
            stc_row(None, st);
        }
        // The 277CA names a line by its procedure (SVC01): each goes to the
        // first line of the claim with that procedure not yet named.
        let mut used = vec![false; c.service_lines.len()];
        for line in &s.lines {
            let found = c.service_lines.iter().enumerate().position(|(i, l)| {
                !used[i] && !l.procedure_code.is_empty() && line.procedure.ends_with(l.procedure_code.as_str())
            });
            if let Some(i) = found {
                used[i] = true;
            }
            let n = found.and_then(|i| c.service_lines.get(i)).map(|l| i64::from(l.line_number));
            for st in &line.statuses {
                stc_row(n, st);
            }
        }
    }
}

/// The rows of a payer's answer forwarded to a submitter (its
/// acknowledgement `ack_id`): an 835's remittance rows (keys
/// `<ack id>-<n>`), a 277CA's claim-level STCs as `claim_ack` rows of
/// source `payer` (its claims in the order the event lists them).
fn payer_answer_rows(
    body: &[u8],
    ack_id: &str,
    facts: &clearway_core::changes::PayerAnswer,
    e: &clearway_core::changes::ChangeEvent,
    seq: u64,
    tokens: &Tokenizer,
    out: &mut Tables,
) {
    let analysis = analyze(body, &AnalyzeOptions::default());
    let seq = Some(seq as i64);
    let mut n_remit = 0usize;
    let mut claims = facts.claims.iter();
    for doc in analysis.documents() {
        match doc {
            Document::Remittance(rm) if facts.answer == "835" => {
                remit_rows(rm, e, seq, ack_id, &mut n_remit, tokens, out);
            }
            Document::ClaimStatusResponse(r) if facts.answer == "277ca" && r.level == "PT" => {
                let Some(key) = claims.next() else { break };
                for st in &r.statuses {
                    let row = out.get(&schema::CLAIM_ACK);
                    row.s(Some(e.partner.as_str())).s(Some(e.transaction.as_str())).s(Some(key)).i(None);
                    row.s(Some("payer")).s(Some(&st.category)).s(Some(&st.code)).s(st.entity.as_deref());
                    row.s(st.action.as_deref()).t(Some(ms_to_us(e.received_at_ms))).t(Some(ms_to_us(e.at_ms))).i(seq);
                    row.end();
                }
            }
            _ => {}
        }
    }
}

/// `remit_claim`, `remit_line` and `remit_adjustment` rows of one 835's
/// transaction set; `n_remit` counts the file's claim payments so far
/// (their keys are `<prefix>-<n>`: the transaction for an 835 submitted,
/// as claims' are, the acknowledgement for a payer's 835 forwarded).
fn remit_rows(
    rm: &clearway_core::Remittance,
    e: &clearway_core::changes::ChangeEvent,
    seq: Option<i64>,
    prefix: &str,
    n_remit: &mut usize,
    tokens: &Tokenizer,
    out: &mut Tables,
) {
    let tenant = Some(e.partner.as_str());
    let txn = Some(e.transaction.as_str());
    let received = Some(ms_to_us(e.received_at_ms));
    let payer = rm.payer_id.as_deref();
    for c in &rm.claims {
        *n_remit += 1;
        let key = format!("{prefix}-{n_remit}");
        let key = Some(key.as_str());
        let status = Some(c.status_code.as_str());
        let pcn = tokens.token(c.patient_control_number.expose());
        let icn = c.payer_claim_control_number.as_deref().map(|v| tokens.token(v));
        let r = out.get(&schema::REMIT_CLAIM);
        r.s(tenant).s(txn).s(key).s(payer);
        r.s(rm.payee_npi.as_deref()).s(rm.trace_number.as_deref()).d(rm.payment_date);
        r.s(Some(&pcn)).s(status).m(Some(c.charge)).m(Some(c.paid)).m(c.patient_responsibility);
        r.s(icn.as_deref()).t(received).i(seq);
        r.end();
        let mut adjustment = |line: Option<i64>, a: &clearway_core::Adjustment| {
            let r = out.get(&schema::REMIT_ADJUSTMENT);
            r.s(tenant).s(txn).s(key).i(line).s(payer).s(status);
            r.s(Some(&a.group))
                .s(Some(&a.reason))
                .m(Some(a.amount))
                .v(schema::V::F(a.quantity.and_then(schema::float)));
            r.t(received).i(seq);
            r.end();
        };
        for a in &c.adjustments {
            adjustment(None, a);
        }
        for (i, l) in c.lines.iter().enumerate() {
            for a in &l.adjustments {
                adjustment(Some(i as i64 + 1), a);
            }
        }
        for (i, l) in c.lines.iter().enumerate() {
            let m = |i: usize| l.modifiers.get(i).map(String::as_str);
            let control = l.control_number.as_deref().map(|v| tokens.token(v));
            let r = out.get(&schema::REMIT_LINE);
            r.s(tenant).s(txn).s(key).i(Some(i as i64 + 1)).s(payer).s(status);
            r.s(l.procedure_qualifier.as_deref())
                .s((!l.procedure_code.is_empty()).then_some(l.procedure_code.as_str()));
            r.s(l.original_procedure_code.as_deref());
            r.s(m(0)).s(m(1)).s(m(2)).s(m(3)).s(l.revenue_code.as_deref());
            r.m(Some(l.charge)).m(Some(l.paid)).v(schema::V::F(l.units_paid.and_then(schema::float)));
            r.d(l.service_date.map(|d| d.from)).d(l.service_date.map(|d| d.to)).s(control.as_deref());
            r.t(received).i(seq);
            r.end();
        }
    }
}

/// `enrollment_span` rows of one 834.
fn enrollment_rows(
    en: &clearway_core::Enrollment,
    e: &clearway_core::changes::ChangeEvent,
    seq: Option<i64>,
    tokens: &Tokenizer,
    out: &mut Tables,
) {
    for m in &en.members {
        let member = m.member_id.expose().as_deref().map(|v| tokens.token(v));
        let subscriber = m.subscriber_id.expose().as_deref().map(|v| tokens.token(v));
        let maintenance = format!("{:?}", m.maintenance).to_ascii_lowercase();
        for cov in &m.coverages {
            let r = out.get(&schema::ENROLLMENT_SPAN);
            r.s(Some(e.partner.as_str())).s(Some(e.transaction.as_str())).s(en.payer_id.as_deref());
            r.s(en.sponsor_id.as_deref()).s(member.as_deref()).s(subscriber.as_deref());
            r.v(schema::V::B(Some(m.is_subscriber))).s(m.relationship.as_deref()).s(Some(&maintenance));
            r.s(cov.insurance_line.as_deref()).s(cov.plan.as_deref()).s(cov.coverage_level.as_deref());
            r.d(cov.begin).d(cov.end).t(Some(ms_to_us(e.received_at_ms))).i(seq);
            r.end();
        }
    }
}

/// Tuva's numbered columns: diagnosis codes, procedure codes and dates,
/// 1 to 25.
static TUVA_NUMBERED: std::sync::LazyLock<(Vec<String>, Vec<String>, Vec<String>)> = std::sync::LazyLock::new(|| {
    let names = |prefix: &str| (1..=25).map(|i| format!("{prefix}_{i}")).collect::<Vec<_>>();
    (names("diagnosis_code"), names("procedure_code"), names("procedure_date"))
});

/// Tuva's `medical_claim` rows of one claim (837P and 837I; an 837D has no
/// Tuva claim type and stays in layer A).
fn tuva_claim_rows(
    c: &Claim,
    key: &str,
    e: &clearway_core::changes::ChangeEvent,
    tokens: &Tokenizer,
    out: &mut Tables,
) {
    use schema::V;
    let claim_type = match c.kind {
        ClaimKind::Professional => "professional",
        ClaimKind::Institutional => "institutional",
        _ => return,
    };
    let member = c.subscriber_member_id.expose().as_deref().map(|m| tokens.token(m));
    // The patient: the subscriber, or a dependent known by the
    // subscriber's member id and their own name and birth date (a token of
    // all three; nothing of it in clear).
    let person = member.as_ref().map(|m| {
        if c.patient == c.subscriber {
            m.clone()
        } else {
            let birth = c.patient.birth_date.expose().map(|d| d.to_string()).unwrap_or_default();
            tokens.token(&format!("{m}|{}|{birth}", c.patient.last_name.expose()))
        }
    });
    let dates = c.summary().service_dates.or(c.statement_dates);
    let received = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(e.received_at_ms) * 1_000_000).ok();
    let file_date = received.map(|t| t.date());
    let ingest = Some(ms_to_us(e.received_at_ms));
    let npi = |role: clearway_core::ProviderRole, line: Option<u32>| {
        c.providers
            .iter()
            .find(|p| p.role == role && p.line == line)
            .or_else(|| c.providers.iter().find(|p| p.role == role && p.line.is_none()))
            .and_then(|p| p.npi.as_deref())
    };
    let diagnoses = c.diagnoses.expose();
    let procedures = c.procedures.expose();
    let bill_type = match (c.kind, &c.facility_code, &c.frequency_code) {
        (ClaimKind::Institutional, Some(f), Some(q)) => Some(format!("{f}{q}")),
        (ClaimKind::Institutional, Some(f), None) => Some(f.clone()),
        _ => None,
    };
    let (dx_names, px_names, pd_names) = &*TUVA_NUMBERED;
    for l in &c.service_lines {
        let pos = if c.kind == ClaimKind::Professional {
            l.place_of_service.as_deref().or(c.facility_code.as_deref())
        } else {
            None
        };
        let hcpcs = matches!(l.procedure_qualifier.as_deref(), None | Some("HC") | Some("HP"))
            .then_some(l.procedure_code.as_str())
            .filter(|p| !p.is_empty());
        let m = |i: usize| V::S(l.modifiers.get(i).map(String::as_str));
        let mut vals: Vec<(&str, V<'_>)> = vec![
            ("claim_id", V::S(Some(key))),
            ("claim_line_number", V::I(Some(i64::from(l.line_number)))),
            ("claim_type", V::S(Some(claim_type))),
            ("person_id", V::S(person.as_deref())),
            ("member_id", V::S(member.as_deref())),
            ("payer", V::S(c.payer_id.as_deref())),
            ("claim_start_date", V::D(dates.map(|d| d.from))),
            ("claim_end_date", V::D(dates.map(|d| d.to))),
            ("claim_line_start_date", V::D(l.service_date.map(|d| d.from))),
            ("claim_line_end_date", V::D(l.service_date.map(|d| d.to))),
            ("place_of_service_code", V::S(pos)),
            ("bill_type_code", V::S(bill_type.as_deref())),
            ("revenue_center_code", V::S(l.revenue_code.as_deref())),
            ("service_unit_quantity", V::F(l.units.and_then(schema::float))),
            ("hcpcs_code", V::S(hcpcs)),
            ("hcpcs_modifier_1", m(0)),
            ("hcpcs_modifier_2", m(1)),
            ("hcpcs_modifier_3", m(2)),
            ("hcpcs_modifier_4", m(3)),
            ("rendering_npi", V::S(npi(clearway_core::ProviderRole::Rendering, Some(l.line_number)))),
            ("billing_npi", V::S(c.billing_provider_npi.as_deref())),
            ("facility_npi", V::S(npi(clearway_core::ProviderRole::ServiceFacility, Some(l.line_number)))),
            ("charge_amount", V::F(schema::float(l.charge))),
            ("diagnosis_code_type", V::S((!diagnoses.is_empty()).then_some("icd-10-cm"))),
            ("procedure_code_type", V::S((!procedures.is_empty()).then_some("icd-10-pcs"))),
            ("data_source", V::S(Some(e.partner.as_str()))),
            ("file_name", V::S(Some(e.transaction.as_str()))),
            ("file_date", V::D(file_date)),
            ("ingest_datetime", V::T(ingest)),
        ];
        for (i, d) in diagnoses.iter().take(25).enumerate() {
            vals.push((dx_names[i].as_str(), V::S(Some(d.code.as_str()))));
        }
        for (i, p) in procedures.iter().take(25).enumerate() {
            vals.push((px_names[i].as_str(), V::S(Some(p.code.as_str()))));
            vals.push((pd_names[i].as_str(), V::D(p.date)));
        }
        out.get(&schema::TUVA_MEDICAL_CLAIM).named(&vals);
    }
}

/// Tuva's `eligibility` rows of one 834: one per member and coverage span
/// (the limited data set: birth date and gender, no names, SSN, address,
/// phone or e-mail).
fn tuva_eligibility_rows(
    en: &clearway_core::Enrollment,
    e: &clearway_core::changes::ChangeEvent,
    tokens: &Tokenizer,
    out: &mut Tables,
) {
    use schema::V;
    let received = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(e.received_at_ms) * 1_000_000).ok();
    let file_date = received.map(|t| t.date());
    let ingest = Some(ms_to_us(e.received_at_ms));
    for m in &en.members {
        let member = m.member_id.expose().as_deref().map(|v| tokens.token(v));
        let subscriber = m.subscriber_id.expose().as_deref().map(|v| tokens.token(v));
        let gender = m.person.gender.as_deref().map(|g| match g {
            "M" => "male",
            "F" => "female",
            _ => "unknown",
        });
        for cov in &m.coverages {
            let vals: Vec<(&str, V<'_>)> = vec![
                ("person_id", V::S(member.as_deref())),
                ("member_id", V::S(member.as_deref())),
                ("subscriber_id", V::S(subscriber.as_deref())),
                ("gender", V::S(gender)),
                ("birth_date", V::D(*m.person.birth_date.expose())),
                ("enrollment_start_date", V::D(cov.begin)),
                ("enrollment_end_date", V::D(cov.end)),
                ("payer", V::S(en.payer_id.as_deref())),
                ("plan", V::S(cov.plan.as_deref())),
                ("subscriber_relation", V::S(m.relationship.as_deref())),
                ("data_source", V::S(Some(e.partner.as_str()))),
                ("file_name", V::S(Some(e.transaction.as_str()))),
                ("file_date", V::D(file_date)),
                ("ingest_datetime", V::T(ingest)),
            ];
            out.get(&schema::TUVA_ELIGIBILITY).named(&vals);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: rows went to the builder whose table had the same
    /// address, and a table's address is not stable when it is a `const`
    /// (each use may be its own copy): interchange rows landed in the
    /// transaction table's builder in one build and not in another.
    #[test]
    fn each_table_gets_its_own_builder() {
        let mut t = Tables::default();
        for def in schema::TABLES {
            assert_eq!(t.get(def).def.name, def.name);
        }
    }
}
