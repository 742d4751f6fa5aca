//! The HTTP API's access policy: for every route, which roles may call it,
//! for which purposes of use (and the default when a request names none),
//! and which rate-limit class it counts against. Default deny: a route or a
//! role missing here is refused. `docs/specs/authorization.md` holds the
//! same table for people; a test walks the whole router against both.

use clearway_core::access::Role;
use clearway_core::config::{LimitsConfig, Rate};
use clearway_core::limits::TokenBucket;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// Which token bucket a route draws from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    Submit,
    RealTime,
    Read,
}

impl Class {
    pub fn as_str(self) -> &'static str {
        match self {
            Class::Submit => "submit",
            Class::RealTime => "realtime",
            Class::Read => "read",
        }
    }
}

/// How a route's caller proves who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    /// Nobody: health, readiness, metrics, the OpenAPI document.
    Public,
    /// `Authorization: Bearer <API key>`.
    Bearer,
    /// The CAQH CORE envelope's user name and password (the handler
    /// authenticates; submitters only).
    Envelope,
}

/// One role's right to a route.
#[derive(Debug, Clone, Copy)]
pub struct Grant {
    pub role: Role,
    /// The purpose recorded when the request names none.
    pub purpose: &'static str,
    /// The purposes a request may name.
    pub allowed: &'static [&'static str],
}

/// A route (method and axum path template) and who may call it.
#[derive(Debug, Clone, Copy)]
pub struct Rule {
    pub method: &'static str,
    pub route: &'static str,
    pub auth: Auth,
    pub class: Class,
    pub grants: &'static [Grant],
}

impl Rule {
    pub fn grant(&self, role: Role) -> Option<&Grant> {
        self.grants.iter().find(|g| g.role == role)
    }
}

const PAYMENT: &[&str] =
    &["HPAYMT", "CLMATTCH", "COVAUTH", "COVERAGE", "ELIGDTRM", "ELIGVER", "ENROLLM", "REMITADV", "TREAT", "HOPERAT"];
const REALTIME: &[&str] = &["ELIGVER", "ELIGDTRM", "COVERAGE", "HPAYMT", "TREAT", "ETREAT"];
const OPERATIONS: &[&str] = &["HOPERAT", "HSYSADMIN", "HQUALIMP"];
const COMPLIANCE: &[&str] = &["HCOMPL", "HOPERAT"];
const ADMIN: &[&str] = &["HSYSADMIN"];
const BREAK_GLASS: &[&str] = &["BTG", "ETREAT"];

const fn g(role: Role, purpose: &'static str, allowed: &'static [&'static str]) -> Grant {
    Grant { role, purpose, allowed }
}

const SUBMITTER: Grant = g(Role::Submitter, "HPAYMT", PAYMENT);
const SUBMITTER_RT: Grant = g(Role::Submitter, "ELIGVER", REALTIME);
const SUBMITTER_OPS: Grant = g(Role::Submitter, "HOPERAT", OPERATIONS);
const SUBMITTER_AUDIT: Grant = g(Role::Submitter, "HCOMPL", COMPLIANCE);
const OPERATOR: Grant = g(Role::Operator, "HOPERAT", OPERATIONS);
const OPERATOR_PHI: Grant = g(Role::Operator, "HOPERAT", &["HOPERAT", "BTG", "ETREAT"]);
const OPERATOR_BTG: Grant = g(Role::Operator, "BTG", BREAK_GLASS);
const OPERATOR_AUDIT: Grant = g(Role::Operator, "HCOMPL", COMPLIANCE);
const AUDITOR: Grant = g(Role::Auditor, "HCOMPL", COMPLIANCE);
const ADMINISTRATOR: Grant = g(Role::Admin, "HSYSADMIN", ADMIN);

const fn r(method: &'static str, route: &'static str, class: Class, grants: &'static [Grant]) -> Rule {
    Rule { method, route, auth: Auth::Bearer, class, grants }
}

const fn public(method: &'static str, route: &'static str) -> Rule {
    Rule { method, route, auth: Auth::Public, class: Class::Read, grants: &[] }
}

/// Every route of the API. Scope within a grant (a submitter's own
/// tenant, an operator's metadata-only view, a PHI read needing
/// `phi_view` or break-glass) is the handler's; `authorization.md` says
/// which.
pub const RULES: &[Rule] = &[
    r("POST", "/v1/transactions", Class::Submit, &[SUBMITTER]),
    r("GET", "/v1/transactions/{id}", Class::Read, &[SUBMITTER, OPERATOR_PHI]),
    r("GET", "/v1/transactions/{id}/payload", Class::Read, &[SUBMITTER, OPERATOR_PHI]),
    r("GET", "/v1/transactions/{id}/acks", Class::Read, &[SUBMITTER]),
    r("GET", "/v1/transactions/{id}/acks/{ack_id}", Class::Read, &[SUBMITTER]),
    r("GET", "/v1/acks", Class::Read, &[SUBMITTER]),
    Rule { method: "POST", route: "/core/soap", auth: Auth::Envelope, class: Class::RealTime, grants: &[SUBMITTER_RT] },
    Rule { method: "POST", route: "/core/mime", auth: Auth::Envelope, class: Class::RealTime, grants: &[SUBMITTER_RT] },
    r("POST", "/v1/eligibility", Class::RealTime, &[SUBMITTER_RT]),
    r("POST", "/v1/claim-status", Class::RealTime, &[g(Role::Submitter, "HPAYMT", REALTIME)]),
    r("POST", "/v1/pharmacy", Class::RealTime, &[g(Role::Submitter, "HPAYMT", REALTIME)]),
    r("GET", "/v1/webhook", Class::Read, &[SUBMITTER_OPS]),
    r("PUT", "/v1/webhook", Class::Read, &[SUBMITTER_OPS]),
    r("DELETE", "/v1/webhook", Class::Read, &[SUBMITTER_OPS]),
    r("GET", "/v1/dead-letters", Class::Read, &[OPERATOR]),
    r("POST", "/v1/dead-letters/{id}/replay", Class::Read, &[OPERATOR]),
    r("POST", "/v1/payer-files", Class::Submit, &[g(Role::Submitter, "REMITADV", PAYMENT)]),
    r("GET", "/v1/payer-files/attention", Class::Read, &[OPERATOR]),
    r("GET", "/v1/batches", Class::Read, &[OPERATOR]),
    r("GET", "/v1/reports/{name}", Class::Read, &[OPERATOR, AUDITOR]),
    r("GET", "/v1/destinations", Class::Read, &[OPERATOR]),
    r("GET", "/v1/destinations/{name}/dead-letters", Class::Read, &[OPERATOR]),
    r("POST", "/v1/destinations/{name}/replay", Class::Read, &[OPERATOR]),
    r("POST", "/v1/break-glass", Class::Read, &[OPERATOR_BTG]),
    r("DELETE", "/v1/break-glass", Class::Read, &[OPERATOR_BTG]),
    r("GET", "/v1/audit/checkpoint", Class::Read, &[SUBMITTER_AUDIT, OPERATOR_AUDIT, AUDITOR]),
    r("GET", "/v1/audit/consistency", Class::Read, &[SUBMITTER_AUDIT, AUDITOR]),
    r("GET", "/v1/audit/events", Class::Read, &[SUBMITTER_AUDIT, AUDITOR]),
    r("POST", "/v1/audit/disclosures", Class::Read, &[AUDITOR]),
    r("GET", "/v1/audit/break-glass", Class::Read, &[AUDITOR]),
    r("POST", "/v1/audit/break-glass/{id}/review", Class::Read, &[AUDITOR]),
    r("GET", "/v1/admin/keys", Class::Read, &[ADMINISTRATOR]),
    r("POST", "/v1/admin/keys", Class::Read, &[ADMINISTRATOR]),
    r("DELETE", "/v1/admin/keys/{id}", Class::Read, &[ADMINISTRATOR]),
    public("GET", "/healthz"),
    public("GET", "/readyz"),
    public("GET", "/metrics"),
    public("GET", "/openapi.json"),
];

/// The rule of a matched route (`HEAD` as `GET`).
pub fn rule(method: &str, route: &str) -> Option<&'static Rule> {
    let method = if method == "HEAD" { "GET" } else { method };
    RULES.iter().find(|r| r.method == method && r.route == route)
}

/// Why a request's purpose of use is refused.
#[derive(Debug, PartialEq, Eq)]
pub enum PurposeRefusal {
    /// Not an HL7 v3 PurposeOfUse code Clearway knows (`400`).
    Unknown,
    /// Known, but not one this role may name on this route (`403`).
    NotAllowed(&'static str),
}

/// The purpose a request acts under: the one it names, if the grant
/// allows it, or the grant's default.
pub fn purpose(grant: &Grant, header: Option<&str>) -> Result<&'static str, PurposeRefusal> {
    match header {
        None => Ok(grant.purpose),
        Some(v) => {
            let code = clearway_core::access::purpose(v).ok_or(PurposeRefusal::Unknown)?;
            if grant.allowed.contains(&code) { Ok(code) } else { Err(PurposeRefusal::NotAllowed(code)) }
        }
    }
}

/// One token bucket per caller and class ([`LimitsConfig`]). A caller over
/// its rate waits alone: the others' buckets are untouched.
#[derive(Debug)]
pub struct RateLimits {
    config: LimitsConfig,
    /// Per caller: its submit, real-time and read buckets.
    buckets: Mutex<HashMap<String, [TokenBucket; 3]>>,
    failed: Mutex<TokenBucket>,
}

/// Requests with a credential that does not authenticate, service-wide:
/// each is an audit event up to this rate; past it, `429` without one.
pub const FAILED_AUTH: Rate = Rate { per_sec: 50.0, burst: 100 };

/// Most callers tracked at once; past it the map starts afresh (every
/// bucket full again), which only ever errs towards letting through.
const MAX_BUCKETS: usize = 100_000;

impl RateLimits {
    pub fn new(config: LimitsConfig) -> Self {
        let f = FAILED_AUTH;
        RateLimits {
            config,
            buckets: Mutex::new(HashMap::new()),
            failed: Mutex::new(TokenBucket::new(f.per_sec, f.burst)),
        }
    }

    /// Takes a token for a request whose credential did not authenticate:
    /// one bucket for the whole service ([`FAILED_AUTH`]).
    pub fn take_failed_auth(&self) -> Result<(), Duration> {
        match self.failed.lock() {
            Ok(mut b) => b.take(),
            Err(_) => Ok(()),
        }
    }

    fn rate(&self, class: Class) -> Rate {
        match class {
            Class::Submit => self.config.submit,
            Class::RealTime => self.config.realtime,
            Class::Read => self.config.read,
        }
    }

    /// Takes a token from the caller's bucket of `class`, or says how long
    /// until one is there.
    pub fn take(&self, caller: &str, class: Class) -> Result<(), Duration> {
        let Ok(mut buckets) = self.buckets.lock() else { return Ok(()) };
        let slot = match class {
            Class::Submit => 0,
            Class::RealTime => 1,
            Class::Read => 2,
        };
        // Looked up by reference: a caller's first request allocates, not
        // every request.
        if let Some(mine) = buckets.get_mut(caller) {
            return mine[slot].take();
        }
        if buckets.len() >= MAX_BUCKETS {
            buckets.clear();
        }
        let bucket = |c: Class| {
            let r = self.rate(c);
            TokenBucket::new(r.per_sec, r.burst)
        };
        let mine = buckets
            .entry(caller.to_string())
            .or_insert_with(|| [bucket(Class::Submit), bucket(Class::RealTime), bucket(Class::Read)]);
        mine[slot].take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rule_is_unique_and_every_default_purpose_is_allowed_and_known() {
        for (i, a) in RULES.iter().enumerate() {
            assert!(RULES[i + 1..].iter().all(|b| (a.method, a.route) != (b.method, b.route)), "{}", a.route);
            for g in a.grants {
                assert!(g.allowed.contains(&g.purpose), "{} {}", a.route, g.role);
                for p in g.allowed {
                    assert!(clearway_core::access::purpose(p).is_some(), "{p}");
                }
            }
            assert_eq!(a.auth == Auth::Public, a.grants.is_empty(), "{}", a.route);
        }
        assert!(
            rule("GET", "/v1/audit/events").unwrap().grant(Role::Admin).is_none(),
            "admins do not read the audit log"
        );
        assert!(rule("POST", "/v1/break-glass").unwrap().grant(Role::Admin).is_none(), "admins do not break the glass");
    }

    #[test]
    fn purposes_default_refuse_unknown_codes_and_codes_outside_the_grant() {
        assert_eq!(purpose(&SUBMITTER, None), Ok("HPAYMT"));
        assert_eq!(purpose(&SUBMITTER, Some("ELIGVER")), Ok("ELIGVER"));
        assert_eq!(purpose(&SUBMITTER, Some("BOGUS")), Err(PurposeRefusal::Unknown));
        assert_eq!(purpose(&SUBMITTER, Some("HRESCH")), Err(PurposeRefusal::NotAllowed("HRESCH")));
        assert_eq!(purpose(&OPERATOR, Some("BTG")), Err(PurposeRefusal::NotAllowed("BTG")));
    }

    #[test]
    fn a_caller_over_its_rate_waits_and_others_do_not() {
        let one = Rate { per_sec: 1.0, burst: 2 };
        let limits = RateLimits::new(LimitsConfig { submit: one, realtime: one, read: one });
        assert!(limits.take("a", Class::Submit).is_ok());
        assert!(limits.take("a", Class::Submit).is_ok());
        let wait = limits.take("a", Class::Submit).unwrap_err();
        assert!(wait > Duration::from_millis(500) && wait <= Duration::from_secs(1), "{wait:?}");
        assert!(limits.take("a", Class::Read).is_ok(), "another class has its own bucket");
        assert!(limits.take("b", Class::Submit).is_ok(), "another caller has its own bucket");
    }
}
