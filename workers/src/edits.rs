//! Claim edits in the workers: the code sets in force (reloaded when a new
//! release is imported, without a restart) and the per-claim judgement
//! that adds what needs state or routing to the pure edits of
//! `clearway_formats::edits` (duplicates, unknown payers).

use crate::route::Router;
use bytes::Bytes;
use clearway_core::codesets::{CodeSetStore, ReleaseInfo};
use clearway_core::config::Config;
use clearway_core::edits::Policy;
use clearway_core::partners::Partners;
use clearway_core::ports::{Condition, Key, MAX_WRITE_OPS, StateStore, Table, WriteOp};
use clearway_core::records::{Status, TransactionRecord};
use clearway_core::{Claim, ErrorKind, PartnerId, PortError, PortResult, TransactionId};
use clearway_formats::edits::codesets::{CodeSets, Release};
use clearway_formats::edits::{self, Context, Finding, Severity};
use clearway_formats::x12::build::ClaimDecision;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

/// The code sets in force, shared by every worker; swapped whole when the
/// stored releases change.
#[derive(Clone)]
pub struct SharedCodeSets {
    inner: Arc<RwLock<Loaded>>,
}

struct Loaded {
    sets: Arc<CodeSets>,
    /// SHA-256 of each loaded release, in listing order.
    digests: Vec<String>,
}

impl Default for SharedCodeSets {
    fn default() -> Self {
        SharedCodeSets {
            inner: Arc::new(RwLock::new(Loaded { sets: Arc::new(CodeSets::new(&[])), digests: Vec::new() })),
        }
    }
}

impl std::fmt::Debug for SharedCodeSets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedCodeSets").finish_non_exhaustive()
    }
}

/// Reads every stored release and builds the lookup tables from them.
pub async fn load(store: &CodeSetStore, infos: &[ReleaseInfo]) -> PortResult<CodeSets> {
    let mut stored: Vec<Bytes> = Vec::with_capacity(infos.len());
    for info in infos {
        stored.push(store.read(info).await?);
    }
    tokio::task::spawn_blocking(move || {
        let releases: Result<Vec<Release>, _> = stored.iter().map(|b| Release::decode(b)).collect();
        releases
            .map(|r| CodeSets::new(&r))
            .map_err(|e| PortError::with_cause(ErrorKind::Internal, "decode code-set release", e))
    })
    .await
    .map_err(|e| PortError::with_cause(ErrorKind::Internal, "build code sets", e))?
}

impl SharedCodeSets {
    /// The code sets in force now.
    pub fn current(&self) -> Arc<CodeSets> {
        self.inner.read().map(|l| l.sets.clone()).unwrap_or_else(|e| e.into_inner().sets.clone())
    }

    /// Loads the stored releases when they differ from the loaded ones;
    /// returns whether anything changed.
    pub async fn refresh(&self, store: &CodeSetStore) -> PortResult<bool> {
        let infos = store.list().await?;
        let digests: Vec<String> = infos.iter().map(|i| i.sha256.clone()).collect();
        let same = self.inner.read().map(|l| l.digests == digests).unwrap_or(false);
        if same {
            return Ok(false);
        }
        let sets = load(store, &infos).await?;
        tracing::info!(
            releases = infos.len(),
            heap_bytes = sets.heap_bytes(),
            "code sets loaded: {}",
            infos.iter().map(|i| format!("{} {}", i.system, i.effective)).collect::<Vec<_>>().join(", ")
        );
        metrics::gauge!("clearway_codeset_releases").set(infos.len() as f64);
        if let Ok(mut l) = self.inner.write() {
            *l = Loaded { sets: Arc::new(sets), digests };
        }
        Ok(true)
    }

    /// Refreshes every `every` until `shutdown`; a failed refresh keeps the
    /// loaded code sets and is retried at the next tick.
    pub fn spawn_refresh(
        &self,
        store: CodeSetStore,
        every: Duration,
        shutdown: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                if let Err(e) = me.refresh(&store).await {
                    tracing::warn!(error = %clearway_core::error::chain(&e), "code-set refresh failed; keeping the loaded ones");
                }
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(every) => {}
                }
            }
        })
    }
}

/// One claim's edits and the 277CA decision they lead to.
#[derive(Debug, Clone)]
pub struct Judged {
    pub decision: ClaimDecision,
    pub findings: Vec<Finding>,
}

/// Runs the claim edits for the workers.
#[derive(Clone)]
pub struct Editor {
    pub config: Arc<Config>,
    pub codes: SharedCodeSets,
    pub partners: Arc<Partners>,
    pub state: Arc<dyn StateStore>,
    pub router: Arc<Router>,
}

impl std::fmt::Debug for Editor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Editor").finish_non_exhaustive()
    }
}

impl Editor {
    /// Judges the claims of one set (or one FHIR submission): each is
    /// `(claim id, claim)`, the id stable across redeliveries. Runs on a
    /// blocking thread; the duplicate check waits on the state store
    /// through `rt`, once for all the claims (reads concurrently, writes in
    /// batches), never once per claim in turn.
    pub fn judge_all(
        &self,
        rt: &tokio::runtime::Handle,
        partner: &PartnerId,
        claims: &[(String, &Claim)],
        received: OffsetDateTime,
    ) -> PortResult<Vec<Judged>> {
        let codes = self.codes.current();
        let mut out: Vec<(Policy, Vec<Finding>)> = Vec::with_capacity(claims.len());
        let mut candidates = Vec::new();
        for (i, (_, claim)) in claims.iter().enumerate() {
            let payer = claim.payer_id.as_deref().unwrap_or("UNKNOWN");
            let policy = self.config.edit_policy(partner.as_str(), Some(payer));
            let cx = Context { received: received.date(), codes: &codes, policy: &policy };
            let mut findings = edits::check(claim, &cx);
            if !self.router.knows(payer)
                && let Some(f) =
                    edits::finding(&policy, "payer.unknown", None, "the claim's payer is not one Clearway routes to")
            {
                findings.push(f);
            }
            let rejected = findings.iter().any(|f| f.severity == Severity::Reject);
            if !rejected && policy.severity_of("duplicate.claim") != Severity::Off {
                candidates.push(i);
            }
            out.push((policy, findings));
        }
        if !candidates.is_empty() {
            let keyed: Vec<(Key, &str)> =
                candidates.iter().map(|&i| (self.duplicate_key(partner, claims[i].1), claims[i].0.as_str())).collect();
            let duplicates = rt.block_on(self.register(partner, &keyed, received))?;
            for (&i, duplicate) in candidates.iter().zip(duplicates) {
                let (policy, findings) = &mut out[i];
                if duplicate
                    && let Some(f) = edits::finding(
                        policy,
                        "duplicate.claim",
                        None,
                        "the same claim was accepted from this submitter within the duplicate window",
                    )
                {
                    findings.push(f);
                }
            }
        }
        Ok(out
            .into_iter()
            .map(|(_, findings)| {
                for f in &findings {
                    metrics::counter!("clearway_claim_edit_findings_total", "edit" => f.edit, "severity" => f.severity.as_str())
                        .increment(1);
                }
                let decision = edits::decide(&findings);
                let outcome = if decision.is_accepted() { "accepted" } else { "rejected" };
                metrics::counter!("clearway_claims_judged_total", "outcome" => outcome).increment(1);
                Judged { decision, findings }
            })
            .collect())
    }

    /// Where a claim is recorded for `duplicate.claim`: a keyed hash of
    /// (patient control number, canonical payer, charge, dates of service,
    /// frequency, payer claim number) in the partner's partition.
    fn duplicate_key(&self, partner: &PartnerId, claim: &Claim) -> Key {
        let dates = claim.summary().service_dates.or(claim.statement_dates);
        // The frequency and the payer's claim number are part of the
        // claim: a replacement or void of an accepted claim is not its
        // duplicate.
        let identity = format!(
            "{}|{}|{}|{}|{}|{}",
            claim.patient_control_number.expose(),
            self.config.canonical_payer(claim.payer_id.as_deref().unwrap_or("UNKNOWN")),
            claim.total_charge.normalize(),
            dates.map(|d| format!("{}-{}", d.from, d.to)).unwrap_or_default(),
            claim.frequency_code.as_deref().unwrap_or(""),
            claim.payer_claim_control_number.as_deref().unwrap_or(""),
        );
        Key::new(Table::Dedupe, format!("claim:{partner}"), self.partners.index_token(&identity))
    }

    /// Records each `(key, claim id)` for the duplicate window unless its
    /// key holds another claim: `true` for a duplicate. A claim finding its
    /// own id (a redelivery) is not a duplicate; the second of two equal
    /// claims in one submission is. New claims, the usual case, cost one
    /// conditional batch write per 100; only a batch whose condition fails
    /// is looked at claim by claim.
    async fn register(
        &self,
        partner: &PartnerId,
        keyed: &[(Key, &str)],
        received: OffsetDateTime,
    ) -> PortResult<Vec<bool>> {
        let mut dup = vec![false; keyed.len()];
        let mut fresh: Vec<usize> = Vec::new();
        let mut first: std::collections::HashSet<&Key> = std::collections::HashSet::new();
        for (i, (key, _)) in keyed.iter().enumerate() {
            if first.insert(key) {
                fresh.push(i);
            } else {
                dup[i] = true;
            }
        }
        let expires = (received + self.config.edits.duplicate_window).unix_timestamp();
        let put = |i: usize| WriteOp::Put {
            key: keyed[i].0.clone(),
            value: Bytes::from(keyed[i].1.to_string()),
            expires_at: Some(expires),
            condition: Condition::NotExists,
            owner: None,
        };
        for chunk in fresh.chunks(MAX_WRITE_OPS) {
            match self.state.write(chunk.iter().map(|&i| put(i)).collect()).await {
                Ok(()) => {}
                // A key of the batch is taken (a duplicate, or this claim on
                // an earlier delivery): nothing was written; one by one.
                Err(e) if e.kind() == ErrorKind::PreconditionFailed => {
                    for &i in chunk {
                        match self.state.write(vec![put(i)]).await {
                            Ok(()) => {}
                            Err(e) if e.kind() == ErrorKind::PreconditionFailed => {
                                dup[i] = self.held_by_another(partner, &keyed[i], expires).await?;
                            }
                            Err(e) => return Err(e),
                        }
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Ok(dup)
    }

    /// Whether the key of `(key, claim id)`, found taken, holds another
    /// claim that counts: not this claim (a redelivery), and not a claim
    /// whose transaction was dead-lettered (it was never delivered, so its
    /// resubmission must go through; the key is taken over).
    async fn held_by_another(&self, partner: &PartnerId, (key, id): &(Key, &str), expires: i64) -> PortResult<bool> {
        let Some(item) = self.state.get(key).await? else { return Ok(false) };
        let other = String::from_utf8_lossy(&item.value).into_owned();
        if other == *id {
            return Ok(false);
        }
        let transaction = other.rsplit_once('-').and_then(|(t, _)| TransactionId::parse(t));
        let dead = match transaction {
            Some(t) => match self.state.get(&TransactionRecord::key(partner, &t)).await? {
                Some(r) => serde_json::from_slice::<TransactionRecord>(&r.value)
                    .is_ok_and(|r| r.status == Status::DeadLettered),
                None => false,
            },
            None => false,
        };
        if !dead {
            return Ok(true);
        }
        let take = WriteOp::Put {
            key: key.clone(),
            value: Bytes::from(id.to_string()),
            expires_at: Some(expires),
            condition: Condition::Version(item.version),
            owner: None,
        };
        match self.state.write(vec![take]).await {
            Ok(()) => Ok(false),
            // Taken over by another claim meanwhile: that one counts.
            Err(e) if e.kind() == ErrorKind::PreconditionFailed => Ok(true),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clearway_core::records::{TransactionRecord, timestamp};
    use clearway_formats::x12::{AnalyzeOptions, Document, analyze, synth};

    fn editor() -> (Editor, Arc<clearway_local::MemStateStore>) {
        let config = Arc::new(clearway_core::config::load(None, &Default::default()).unwrap());
        let state = Arc::new(clearway_local::MemStateStore::default());
        let partners = Arc::new(Partners::new(clearway_core::crypto::Key::generate().unwrap(), state.clone()));
        let router = Arc::new(Router::new(config.clone()));
        (Editor { config, codes: SharedCodeSets::default(), partners, state: state.clone(), router }, state)
    }

    fn claim() -> Claim {
        let mut out = vec![];
        synth::write(&mut out, synth::Kind::Professional837, 1, 3).unwrap();
        match analyze(&out, &AnalyzeOptions::default()).documents().next() {
            Some(Document::Claim(c)) => (**c).clone(),
            other => panic!("{other:?}"),
        }
    }

    fn duplicate(judged: &Judged) -> bool {
        judged.findings.iter().any(|f| f.edit == "duplicate.claim")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn duplicates_redeliveries_replacements_and_dead_letters() {
        let (ed, state) = editor();
        let acme = PartnerId::new("acme").unwrap();
        let now = OffsetDateTime::now_utc();
        let (t1, t2, t3) = (TransactionId::new(), TransactionId::new(), TransactionId::new());
        let c = claim();
        let mut replacement = c.clone();
        replacement.frequency_code = Some("7".into());
        replacement.payer_claim_control_number = Some("PAYER1".into());
        let judge = move |ed: Editor, claims: Vec<(String, Claim)>| {
            let rt = tokio::runtime::Handle::current();
            let acme = acme.clone();
            tokio::task::spawn_blocking(move || {
                let refs: Vec<(String, &Claim)> = claims.iter().map(|(id, c)| (id.clone(), c)).collect();
                ed.judge_all(&rt, &acme, &refs, now).unwrap()
            })
        };
        // The first is recorded; the same claim twice in one submission:
        // the second is a duplicate.
        let j = judge(ed.clone(), vec![(format!("{t1}-1"), c.clone()), (format!("{t1}-2"), c.clone())]).await.unwrap();
        assert_eq!((duplicate(&j[0]), duplicate(&j[1])), (false, true));
        // A redelivery of the first finds its own claim: not a duplicate.
        let j = judge(ed.clone(), vec![(format!("{t1}-1"), c.clone())]).await.unwrap();
        assert!(!duplicate(&j[0]) && j[0].decision.is_accepted());
        // Another submission of the same claim is; its replacement is not.
        let j =
            judge(ed.clone(), vec![(format!("{t2}-1"), c.clone()), (format!("{t2}-2"), replacement)]).await.unwrap();
        assert_eq!((duplicate(&j[0]), duplicate(&j[1])), (true, false));
        assert_eq!(j[0].decision.status().map(|s| s.to_string()).as_deref(), Some("A3:54"));
        // Once the first transaction is dead-lettered (never delivered), its
        // claim's resubmission goes through and takes the key over.
        let record = TransactionRecord {
            id: t1.clone(),
            partner: acme_id(),
            format: clearway_core::records::Format::X12,
            content_type: "application/edi-x12".into(),
            received_at: timestamp(now),
            received_at_ms: 0,
            status: Status::DeadLettered,
            blob_key: clearway_core::BlobKey::for_transaction(&acme_id(), now.date(), &t1),
            size_bytes: 0,
            channel: "http".into(),
            attempts: 5,
            claims: vec![],
            claim_count: 0,
            issues: vec![],
            ack_ids: vec![],
            documents: 0,
            failure: Some("routing failed".into()),
            updated_at: timestamp(now),
            destinations: vec![],
            traceparent: None,
        };
        state
            .write(vec![WriteOp::Put {
                key: TransactionRecord::key(&acme_id(), &t1),
                value: Bytes::from(serde_json::to_vec(&record).unwrap()),
                expires_at: None,
                condition: Condition::None,
                owner: None,
            }])
            .await
            .unwrap();
        let j = judge(ed.clone(), vec![(format!("{t3}-1"), c.clone())]).await.unwrap();
        assert!(!duplicate(&j[0]), "{:?}", j[0].findings);
        let j = judge(ed, vec![(format!("{t1}-1"), c)]).await.unwrap();
        assert!(duplicate(&j[0]), "the key now belongs to the resubmission");
    }

    fn acme_id() -> PartnerId {
        PartnerId::new("acme").unwrap()
    }
}
