//! FHIR R4 `Bundle`: the envelope of a batch or transaction submission.
//!
//! Every Bundle is read (type, entries, their resource types), but only
//! `transaction`, `batch` and `collection` Bundles are intake: their Claim and
//! CoverageEligibilityRequest entries are validated and mapped, with
//! references resolved among the entries. Other types (`searchset`,
//! `message`, responses, ...) are flagged as not processable.
//!
//! In a `transaction` every entry stands or falls together (R4 http.html
//! #transaction): callers must reject the whole Bundle if any entry has an
//! error. In a `batch` entries are independent.

use super::claim::{ClaimDoc, read_claim};
use super::codes::{BundleType, HttpVerb};
use super::eligibility::{EligibilityDoc, read_eligibility};
use super::json::{field, index, is_resource_type_name};
use super::model::{Obj, Reader, check_json_structure, check_unknown_elements};
use super::outcome::{IssueType, Issues, OutcomeIssue};
use super::primitives::is_id;
use super::resolve::BundleIndex;
use super::{DocCtx, Limits};
use clearway_core::Sensitive;
use serde_json::Value;
use std::collections::HashSet;

/// `Bundle.entry.request`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryRequest {
    pub method: Option<HttpVerb>,
    /// `request.url`; sensitive because conditional URLs carry search
    /// parameters (`Patient?identifier=...`).
    pub url: Sensitive<Option<String>>,
}

/// What Clearway made of an entry's resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryContent {
    Claim(Box<ClaimDoc>),
    CoverageEligibilityRequest(Box<EligibilityDoc>),
    /// Any other resource, no resource, or a Bundle that is not intake.
    NotProcessed,
}

/// One `Bundle.entry`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleEntry {
    /// Position in `Bundle.entry` (0-based, as in the FHIRPath expressions).
    pub index: usize,
    pub full_url: Option<String>,
    /// `resource.resourceType`, when it is a resource type name.
    pub resource_type: Option<String>,
    /// `resource.id`, when valid.
    pub resource_id: Option<String>,
    pub request: Option<EntryRequest>,
    pub content: EntryContent,
}

/// A Bundle read from FHIR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleDoc {
    pub id: Option<String>,
    pub bundle_type: Option<BundleType>,
    /// `Bundle.total` (searchset and history only): the number of matches,
    /// which may exceed the entries present.
    pub total: Option<u32>,
    /// Whether the Bundle is acceptable for intake as a whole: an intake type,
    /// within limits, and no bundle-level error. Entries carry their own
    /// findings (see [`BundleDoc::all_issues`]).
    pub processable: bool,
    pub entries: Vec<BundleEntry>,
    /// Findings about the Bundle itself (type, entries' envelopes); the
    /// findings about entries' Claims and requests are in those documents.
    pub issues: Vec<OutcomeIssue>,
}

impl BundleDoc {
    /// Bundle-level findings followed by every entry document's findings.
    pub fn all_issues(&self) -> impl Iterator<Item = &OutcomeIssue> {
        self.issues.iter().chain(self.entries.iter().flat_map(|e| match &e.content {
            EntryContent::Claim(c) => c.issues.as_slice(),
            EntryContent::CoverageEligibilityRequest(r) => r.issues.as_slice(),
            EntryContent::NotProcessed => &[],
        }))
    }

    /// The Claims read from intake entries, with their entry index.
    pub fn claims(&self) -> impl Iterator<Item = (usize, &ClaimDoc)> {
        self.entries.iter().filter_map(|e| match &e.content {
            EntryContent::Claim(c) => Some((e.index, c.as_ref())),
            _ => None,
        })
    }

    /// The CoverageEligibilityRequests read from intake entries.
    pub fn eligibility_requests(&self) -> impl Iterator<Item = (usize, &EligibilityDoc)> {
        self.entries.iter().filter_map(|e| match &e.content {
            EntryContent::CoverageEligibilityRequest(r) => Some((e.index, r.as_ref())),
            _ => None,
        })
    }
}

const BUNDLE_ELEMENTS: &[&str] = &[
    "resourceType",
    "id",
    "meta",
    "implicitRules",
    "language",
    "identifier",
    "type",
    "timestamp",
    "total",
    "link",
    "entry",
    "signature",
];
const BUNDLE_PRIMITIVES: &[&str] = &["id", "implicitRules", "language", "type", "timestamp", "total"];
const ENTRY_ELEMENTS: &[&str] =
    &["id", "extension", "modifierExtension", "link", "fullUrl", "resource", "search", "request", "response"];

pub(crate) fn read_bundle(o: &Obj, limits: &Limits) -> BundleDoc {
    let root = "Bundle";
    let mut issues = Issues::new(limits.max_issues);
    // The envelope's JSON rules; entries' resources are checked by their
    // readers (or not at all, for resources Clearway does not process).
    for (k, v) in o {
        if k != "entry" {
            check_json_structure(v, &field(root, k), &mut issues);
        }
    }
    check_unknown_elements(o, root, BUNDLE_ELEMENTS, BUNDLE_PRIMITIVES, &mut issues);
    let id = match o.get("id") {
        Some(Value::String(s)) if is_id(s) => Some(s.clone()),
        None => None,
        Some(_) => {
            issues.error(IssueType::Value, "Bundle.id", "id must be 1 to 64 letters, digits, '-' or '.'");
            None
        }
    };
    let mut r = Reader { issues: &mut issues };
    let bundle_type = r.code(o, "type", "Bundle.type", true, Some(BundleType::CODES)).and_then(BundleType::from_code);
    r.identifier(o, "identifier", "Bundle.identifier", false);
    r.date_time(o, "timestamp", "Bundle.timestamp", false);
    let total = match o.get("total") {
        None => None,
        Some(Value::Number(n)) => {
            let t = n.as_u64().and_then(|t| u32::try_from(t).ok()).filter(|t| *t <= i32::MAX as u32);
            if t.is_none() {
                r.issues.error(
                    IssueType::Value,
                    "Bundle.total",
                    "unsignedInt must be a whole number from 0 to 2147483647",
                );
            }
            t
        }
        Some(_) => {
            r.issues.error(IssueType::Structure, "Bundle.total", "must be a JSON number");
            None
        }
    };
    if o.contains_key("total") && !matches!(bundle_type, Some(BundleType::Searchset | BundleType::History)) {
        r.issues.error(IssueType::Invariant, "Bundle.total", "total is only for searchset and history Bundles (bdl-1)");
    }
    let mut processable = true;
    match bundle_type {
        Some(t) if t.is_intake() => {}
        Some(_) => {
            processable = false;
            r.issues.error(
                IssueType::NotSupported,
                "Bundle.type",
                "this Bundle type is not accepted for intake; send a transaction, batch or collection",
            );
        }
        None => processable = false,
    }

    let entries = r.array(o, "entry", "Bundle.entry", false);
    if entries.len() > limits.max_bundle_entries {
        r.issues.fatal(IssueType::TooLong, "Bundle.entry", "Bundle has more entries than Clearway accepts");
        return BundleDoc {
            id,
            bundle_type,
            total,
            processable: false,
            entries: Vec::new(),
            issues: issues.into_vec(),
        };
    }

    let mut out = Vec::with_capacity(entries.len());
    let mut seen_full_urls = HashSet::new();
    for (i, e) in entries.iter().enumerate() {
        let ep = index("Bundle.entry", i);
        let mut entry = BundleEntry {
            index: i,
            full_url: None,
            resource_type: None,
            resource_id: None,
            request: None,
            content: EntryContent::NotProcessed,
        };
        let Some(eo) = r.item_object(e, &ep) else {
            out.push(entry);
            continue;
        };
        for (k, v) in eo {
            if k != "resource" {
                check_json_structure(v, &field(&ep, k), r.issues);
            }
        }
        check_unknown_elements(eo, &ep, ENTRY_ELEMENTS, &["fullUrl"], r.issues);
        let fpath = field(&ep, "fullUrl");
        if let Some(url) = r.uri(eo, "fullUrl", &fpath, false) {
            if url.contains("/_history/") {
                r.issues.error(IssueType::Invariant, &fpath, "fullUrl cannot be a version-specific reference (bdl-8)");
            }
            if bundle_type != Some(BundleType::History) && !seen_full_urls.insert(url) {
                r.issues.error(IssueType::Duplicate, &fpath, "fullUrl is used by an earlier entry (bdl-7)");
            }
            entry.full_url = Some(url.to_owned());
        }
        let rpath = field(&ep, "resource");
        let resource = r.object(eo, "resource", &rpath, false);
        if let Some(res) = resource {
            match res.get("resourceType") {
                Some(Value::String(t)) if is_resource_type_name(t) => {
                    entry.resource_type = Some(t.clone());
                }
                _ => r.issues.error(
                    IssueType::Required,
                    field(&rpath, "resourceType"),
                    "entry resource has no valid resourceType",
                ),
            }
            entry.resource_id = res.get("id").and_then(Value::as_str).filter(|s| is_id(s)).map(str::to_owned);
        }
        let qpath = field(&ep, "request");
        if let Some(req) = r.object(eo, "request", &qpath, false) {
            let method = r
                .code(req, "method", &field(&qpath, "method"), true, Some(HttpVerb::CODES))
                .and_then(HttpVerb::from_code);
            let url = r.uri(req, "url", &field(&qpath, "url"), true);
            entry.request = Some(EntryRequest { method, url: Sensitive::new(url.map(str::to_owned)) });
        }
        if let Some(t) = bundle_type {
            if t.requires_request() && entry.request.is_none() {
                r.issues.error(
                    IssueType::Required,
                    &qpath,
                    "entries of a transaction, batch or history Bundle need a request (bdl-3)",
                );
            } else if !t.requires_request() && eo.contains_key("request") {
                r.issues.error(
                    IssueType::Invariant,
                    &qpath,
                    "request is only for transaction, batch and history Bundles (bdl-3)",
                );
            }
            if !t.requires_response() && eo.contains_key("response") {
                r.issues.error(
                    IssueType::Invariant,
                    field(&ep, "response"),
                    "response is only for response and history Bundles (bdl-4)",
                );
            }
            if t != BundleType::Searchset && eo.contains_key("search") {
                r.issues.error(
                    IssueType::Invariant,
                    field(&ep, "search"),
                    "search is only for searchset Bundles (bdl-2)",
                );
            }
        }
        if !eo.contains_key("resource") && !eo.contains_key("request") && !eo.contains_key("response") {
            r.issues.error(IssueType::Required, &ep, "entry has neither resource, request nor response (bdl-5)");
        }
        out.push(entry);
    }

    let bundle_level_ok = !r.issues.has_errors();
    processable &= bundle_level_ok;
    if processable {
        let index = BundleIndex::new(entries);
        let ctx_limits = limits;
        let mut any = false;
        for (entry, raw) in out.iter_mut().zip(entries) {
            let Some(res) = raw.get("resource").and_then(Value::as_object) else {
                continue;
            };
            let kind = entry.resource_type.as_deref();
            if !matches!(kind, Some("Claim" | "CoverageEligibilityRequest")) {
                continue;
            }
            any = true;
            if let Some(req) = &entry.request
                && !matches!(req.method, Some(HttpVerb::Post | HttpVerb::Put))
            {
                r.issues.error(
                    IssueType::NotSupported,
                    field(&index_path(entry.index), "request.method"),
                    "Claims and eligibility requests are accepted by POST or PUT only",
                );
            }
            let ctx = DocCtx {
                limits: ctx_limits,
                bundle: Some(&index),
                full_url: raw.get("fullUrl").and_then(Value::as_str),
            };
            let root = field(&index_path(entry.index), "resource");
            entry.content = if kind == Some("Claim") {
                EntryContent::Claim(Box::new(read_claim(res, &root, &ctx)))
            } else {
                EntryContent::CoverageEligibilityRequest(Box::new(read_eligibility(res, &root, &ctx)))
            };
        }
        if !any {
            r.issues.error(
                IssueType::NotSupported,
                "Bundle.entry",
                "the Bundle holds no Claim or CoverageEligibilityRequest; Clearway has nothing to process",
            );
        }
        processable = !r.issues.has_errors();
    }
    BundleDoc { id, bundle_type, total, processable, entries: out, issues: issues.into_vec() }
}

fn index_path(i: usize) -> String {
    index("Bundle.entry", i)
}
