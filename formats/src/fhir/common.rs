//! Mapping helpers shared by Claim and CoverageEligibilityRequest: people,
//! providers, payers and coverages found through references, and the checks
//! every DomainResource gets.

use super::json::{field, index};
use super::model::{Obj, Reader, Reference};
use super::outcome::{IssueType, Issues};
use super::primitives::{is_id, is_valid_npi, parse_date};
use super::resolve::{Resolution, Resolver};
use clearway_core::{Person, Sensitive};
use serde_json::Value;
use std::collections::HashSet;

/// The US NPI identifier system.
pub const NPI_SYSTEM: &str = "http://hl7.org/fhir/sid/us-npi";

/// Checks shared by the resources Clearway processes: `id` syntax, modifier
/// extensions, `implicitRules`, and the contained-resource rules dom-2..dom-5.
pub(crate) fn check_domain_resource(o: &Obj, root: &str, issues: &mut Issues) {
    match o.get("id") {
        Some(Value::String(id)) if !is_id(id) => {
            issues.error(IssueType::Value, field(root, "id"), "id must be 1 to 64 letters, digits, '-' or '.'")
        }
        Some(Value::String(_)) | None => {}
        Some(_) => issues.error(IssueType::Structure, field(root, "id"), "must be a JSON string"),
    }
    if o.contains_key("modifierExtension") {
        // A modifier extension changes the meaning of the resource; a
        // receiver that does not understand it must not process it.
        issues.error(
            IssueType::NotSupported,
            field(root, "modifierExtension"),
            "modifier extensions are not understood by Clearway; the resource cannot be processed safely",
        );
    }
    if o.contains_key("implicitRules") {
        issues.warning(
            IssueType::NotSupported,
            field(root, "implicitRules"),
            "implicit rules are not understood by Clearway and were ignored",
        );
    }
    let Some(contained) = o.get("contained") else {
        return;
    };
    let Some(contained) = contained.as_array() else {
        issues.error(IssueType::Structure, field(root, "contained"), "repeating element must be a JSON array");
        return;
    };
    let cpath = field(root, "contained");
    let references = collect_local_references(o);
    for (i, c) in contained.iter().enumerate() {
        let p = index(&cpath, i);
        let Some(c) = c.as_object() else {
            issues.error(IssueType::Structure, &p, "contained resource must be a JSON object");
            continue;
        };
        if !c.get("resourceType").is_some_and(Value::is_string) {
            issues.error(IssueType::Required, field(&p, "resourceType"), "contained resource has no resourceType");
        }
        if c.contains_key("contained") {
            issues.error(
                IssueType::Invariant,
                field(&p, "contained"),
                "a contained resource must not contain resources (dom-2)",
            );
        }
        if let Some(meta) = c.get("meta").and_then(Value::as_object)
            && (meta.contains_key("versionId") || meta.contains_key("lastUpdated"))
        {
            issues.error(
                IssueType::Invariant,
                field(&p, "meta"),
                "a contained resource must not have meta.versionId or meta.lastUpdated (dom-4)",
            );
        }
        if c.contains_key("text") {
            issues.warning(
                IssueType::Invariant,
                field(&p, "text"),
                "a contained resource should not have a narrative (dom-5)",
            );
        }
        match c.get("id").and_then(Value::as_str) {
            None => {
                issues.error(IssueType::Required, field(&p, "id"), "a contained resource needs an id to be referenced")
            }
            Some(id) if !references.contains(id) => issues.warning(
                IssueType::Invariant,
                &p,
                "contained resource is not referenced from the resource (dom-3)",
            ),
            Some(_) => {}
        }
    }
}

/// Every `#id` local reference anywhere in the resource.
fn collect_local_references(o: &Obj) -> HashSet<&str> {
    fn walk<'v>(v: &'v Value, out: &mut HashSet<&'v str>) {
        match v {
            Value::Object(m) => {
                for (k, c) in m {
                    if k == "reference"
                        && let Some(s) = c.as_str()
                        && let Some(id) = s.strip_prefix('#')
                    {
                        out.insert(id);
                    } else {
                        walk(c, out);
                    }
                }
            }
            Value::Array(a) => a.iter().for_each(|c| walk(c, out)),
            _ => {}
        }
    }
    let mut out = HashSet::new();
    for v in o.values() {
        walk(v, &mut out);
    }
    out
}

/// Reports a reference that should resolve in the submission but does not.
/// Returns the resolved target when it is of one of `types`.
pub(crate) fn resolve_checked<'v>(
    resolver: &Resolver<'v>,
    r: &Reference,
    path: &str,
    types: &[&str],
    issues: &mut Issues,
) -> Option<(&'v Obj, String)> {
    match resolver.resolve(r) {
        Resolution::Found { resource, path: rpath } => {
            let t = resource.get("resourceType").and_then(Value::as_str);
            if t.is_some_and(|t| types.contains(&t)) {
                Some((resource, rpath))
            } else {
                issues.error(
                    IssueType::Invalid,
                    field(path, "reference"),
                    "reference points to a resource of a type not allowed here",
                );
                None
            }
        }
        Resolution::NotFound => {
            issues.error(
                IssueType::NotFound,
                field(path, "reference"),
                "reference does not resolve to a resource in the submission",
            );
            None
        }
        Resolution::Ambiguous => {
            issues.error(
                IssueType::MultipleMatches,
                field(path, "reference"),
                "reference matches more than one resource in the Bundle",
            );
            None
        }
        Resolution::External | Resolution::NoLiteral => None,
    }
}

/// A Patient or RelatedPerson as a [`Person`]. Light checks only: the
/// referenced resource is not validated as a whole.
pub(crate) fn person_from(res: &Obj, path: &str, issues: &mut Issues) -> Person {
    let names = res.get("name").and_then(Value::as_array);
    let pick = |use_: &str| names.and_then(|n| n.iter().find(|h| h.get("use").and_then(Value::as_str) == Some(use_)));
    let name = pick("official").or_else(|| pick("usual")).or_else(|| names.and_then(|n| n.first()));
    let family = name.and_then(|n| n.get("family")).and_then(Value::as_str).map(str::to_owned);
    let text = name.and_then(|n| n.get("text")).and_then(Value::as_str).map(str::to_owned);
    let given: Vec<&str> = name
        .and_then(|n| n.get("given"))
        .and_then(Value::as_array)
        .map(|g| g.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let birth_date = match res.get("birthDate") {
        None => None,
        Some(v) => match v.as_str().and_then(parse_date) {
            Some(d) => d.day(),
            None => {
                issues.warning(
                    IssueType::Value,
                    field(path, "birthDate"),
                    "birthDate is not a valid FHIR date; not mapped",
                );
                None
            }
        },
    };
    let gender = match res.get("gender").and_then(Value::as_str) {
        None => None,
        Some("male") => Some("M"),
        Some("female") => Some("F"),
        Some("other" | "unknown") => Some("U"),
        Some(_) => {
            issues.warning(
                IssueType::CodeInvalid,
                field(path, "gender"),
                "gender is not in the R4 administrative-gender value set; not mapped",
            );
            None
        }
    };
    Person {
        last_name: Sensitive::new(family.or(text).unwrap_or_default()),
        first_name: Sensitive::new(given.first().map(|s| (*s).to_owned())),
        middle_name: Sensitive::new(given.get(1).map(|s| (*s).to_owned())),
        birth_date: Sensitive::new(birth_date),
        gender: gender.map(str::to_owned),
    }
}

/// The NPI among an `identifier` array, with its position.
fn npi_in(identifiers: Option<&Value>) -> Option<(&str, usize)> {
    identifiers?.as_array()?.iter().enumerate().find_map(|(i, id)| {
        (id.get("system").and_then(Value::as_str) == Some(NPI_SYSTEM))
            .then(|| id.get("value").and_then(Value::as_str).map(|v| (v, i)))
            .flatten()
    })
}

fn checked_npi(value: &str, path: &str, issues: &mut Issues) -> Option<String> {
    if !is_valid_npi(value) {
        issues.warning(IssueType::Value, path, "NPI is not ten digits with a valid check digit");
    }
    Some(value.to_owned())
}

/// A provider's NPI and name: from the Reference's own identifier, else from
/// the referenced Practitioner, Organization or PractitionerRole (and, for a
/// role, its practitioner then organization).
pub(crate) fn provider_npi_and_name(
    r: &Reference,
    path: &str,
    resolver: &Resolver<'_>,
    issues: &mut Issues,
) -> (Option<String>, Option<String>) {
    let mut name = r.display.clone();
    if let Some(id) = &r.identifier
        && id.system.as_deref() == Some(NPI_SYSTEM)
    {
        let npi = checked_npi(&id.value, &field(&field(path, "identifier"), "value"), issues);
        return (npi, name);
    }
    const TYPES: &[&str] = &["Practitioner", "Organization", "PractitionerRole"];
    let Some((res, rpath)) = resolve_checked(resolver, r, path, TYPES, issues) else {
        return (None, name);
    };
    if name.is_none() {
        name = resource_name(res);
    }
    if let Some((v, i)) = npi_in(res.get("identifier")) {
        let p = field(&index(&field(&rpath, "identifier"), i), "value");
        return (checked_npi(v, &p, issues), name);
    }
    if res.get("resourceType").and_then(Value::as_str) == Some("PractitionerRole") {
        for target in ["practitioner", "organization"] {
            let Some(rr) = res.get(target).and_then(reference_of) else {
                continue;
            };
            if let Some((sub, spath)) = resolver.resolve_typed(&rr, &["Practitioner", "Organization"]) {
                if name.is_none() {
                    name = resource_name(sub);
                }
                if let Some((v, i)) = npi_in(sub.get("identifier")) {
                    let p = field(&index(&field(&spath, "identifier"), i), "value");
                    return (checked_npi(v, &p, issues), name);
                }
            }
        }
    }
    (None, name)
}

/// An Organization's `name`, or a Practitioner's name text / family.
fn resource_name(res: &Obj) -> Option<String> {
    if let Some(n) = res.get("name").and_then(Value::as_str) {
        return Some(n.to_owned());
    }
    let first = res.get("name")?.as_array()?.first()?;
    first.get("text").or_else(|| first.get("family")).and_then(Value::as_str).map(str::to_owned)
}

/// A Reference read leniently from a resolved (not validated) resource.
pub(crate) fn reference_of(v: &Value) -> Option<Reference> {
    let o = v.as_object()?;
    Some(Reference {
        reference: o.get("reference").and_then(Value::as_str).map(str::to_owned),
        type_: None,
        identifier: None,
        display: None,
    })
}

/// Payer id and name from an `insurer` Reference: the identifier value, else
/// the id of the referenced resource; the display, else the resolved
/// Organization's name.
pub(crate) fn payer_of(
    r: &Reference,
    path: &str,
    resolver: &Resolver<'_>,
    issues: &mut Issues,
) -> (Option<String>, Option<String>) {
    let resolved = resolve_checked(resolver, r, path, &["Organization"], issues);
    let id = r
        .identifier
        .as_ref()
        .map(|i| i.value.clone())
        .or_else(|| resolved.as_ref().and_then(|(res, _)| res.get("id").and_then(Value::as_str)).map(str::to_owned))
        .or_else(|| {
            r.reference
                .as_deref()
                .filter(|s| !s.starts_with('#') && !s.starts_with("urn:"))
                .and_then(|s| s.split("/_history/").next())
                .and_then(|s| s.rsplit_once('/'))
                .map(|(_, id)| id)
                .filter(|id| is_id(id))
                .map(str::to_owned)
        });
    let name = r
        .display
        .clone()
        .or_else(|| resolved.as_ref().and_then(|(res, _)| res.get("name").and_then(Value::as_str)).map(str::to_owned));
    (id, name)
}

/// Who the subscriber of a Coverage is, as far as the submission tells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Subscriber {
    /// The Coverage's relationship is `self`, or its subscriber is the patient.
    Patient,
    /// Someone else, resolvable in the submission.
    Other(Person),
    /// Not stated or not resolvable.
    Unknown,
}

/// What a resolved Coverage tells about membership.
#[derive(Debug)]
pub(crate) struct CoverageFacts {
    pub member_id: Option<String>,
    /// `Coverage.relationship` is given: whether it is `self`.
    pub relationship_is_self: Option<bool>,
    pub subscriber: Subscriber,
}

/// Reads a Coverage reached from `coverage` (a Claim's or CER's insurance).
/// `patient_path` is where the patient resolved to, to recognise a
/// subscriber reference naming the same resource.
pub(crate) fn coverage_facts(
    coverage: &Reference,
    path: &str,
    patient_path: Option<&str>,
    resolver: &Resolver<'_>,
    issues: &mut Issues,
) -> Option<CoverageFacts> {
    let (cov, _) = resolve_checked(resolver, coverage, path, &["Coverage"], issues)?;
    let member_id = cov.get("subscriberId").and_then(Value::as_str).map(str::to_owned).or_else(|| {
        let ids = cov.get("identifier")?.as_array()?;
        let is_mb = |id: &&Value| {
            id.pointer("/type/coding")
                .and_then(Value::as_array)
                .is_some_and(|c| c.iter().any(|c| c.get("code").and_then(Value::as_str) == Some("MB")))
        };
        ids.iter()
            .find(is_mb)
            .or_else(|| ids.first())
            .and_then(|id| id.get("value"))
            .and_then(Value::as_str)
            .map(str::to_owned)
    });
    let relationship_is_self = cov
        .get("relationship")
        .and_then(|r| r.get("coding"))
        .and_then(Value::as_array)
        .filter(|c| !c.is_empty())
        .map(|c| c.iter().any(|c| c.get("code").and_then(Value::as_str) == Some("self")));
    let mut subscriber = Subscriber::Unknown;
    if relationship_is_self == Some(true) {
        subscriber = Subscriber::Patient;
    } else if let Some(sub) = cov.get("subscriber").and_then(reference_of)
        && let Some((res, spath)) = resolver.resolve_typed(&sub, &["Patient", "RelatedPerson"])
    {
        subscriber = if Some(spath.as_str()) == patient_path {
            Subscriber::Patient
        } else {
            Subscriber::Other(person_from(res, &spath, issues))
        };
    }
    Some(CoverageFacts { member_id, relationship_is_self, subscriber })
}

/// The subscriber, and the patient as a dependent when the subscriber is
/// someone else. Without a Coverage saying otherwise, the patient is taken to
/// be the subscriber; when the Coverage says the patient is not the
/// subscriber but the subscriber cannot be resolved, the subscriber is left
/// empty.
pub(crate) fn subscriber_and_dependent(patient: &Person, facts: Option<CoverageFacts>) -> (Person, Option<Person>) {
    let Some(f) = facts else {
        return (patient.clone(), None);
    };
    match f.subscriber {
        Subscriber::Patient => (patient.clone(), None),
        Subscriber::Other(p) => (p, Some(patient.clone())),
        Subscriber::Unknown if f.relationship_is_self == Some(false) => (Person::default(), Some(patient.clone())),
        Subscriber::Unknown => (patient.clone(), None),
    }
}

/// `meta.profile[0]`, the implementation a resource claims to follow.
pub(crate) fn first_profile(o: &Obj) -> Option<String> {
    o.get("meta")?.get("profile")?.as_array()?.first()?.as_str().map(str::to_owned)
}

/// Reads the patient Reference and the Patient it leads to.
pub(crate) fn patient_of(
    r: &mut Reader<'_>,
    resolver: &Resolver<'_>,
    patient: Option<&Reference>,
    path: &str,
) -> (Person, Option<String>) {
    let Some(p) = patient else {
        return (Person::default(), None);
    };
    match resolve_checked(resolver, p, path, &["Patient"], r.issues) {
        Some((res, rpath)) => (person_from(res, &rpath, r.issues), Some(rpath)),
        None => {
            r.issues.info(
                IssueType::Informational,
                path,
                "the referenced Patient is not in the submission; patient demographics are not mapped",
            );
            (Person::default(), None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Obj {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn person_prefers_official_name_and_maps_gender() {
        let p = obj(json!({
            "resourceType": "Patient",
            "name": [{"use": "nickname", "family": "Nick"},
                     {"use": "official", "family": "Doe", "given": ["Jane", "Q"]}],
            "gender": "female",
            "birthDate": "1970-01-02"
        }));
        let mut issues = Issues::new(10);
        let person = person_from(&p, "Claim.contained[0]", &mut issues);
        assert_eq!(person.last_name.expose(), "Doe");
        assert_eq!(person.first_name.expose().as_deref(), Some("Jane"));
        assert_eq!(person.middle_name.expose().as_deref(), Some("Q"));
        assert_eq!(person.gender.as_deref(), Some("F"));
        assert!(person.birth_date.expose().is_some());
        assert_eq!(issues.len(), 0);
    }

    #[test]
    fn person_flags_bad_birth_date_and_gender_without_values() {
        let p = obj(json!({"birthDate": "1970-02-31", "gender": "SECRETX"}));
        let mut issues = Issues::new(10);
        let person = person_from(&p, "X", &mut issues);
        assert_eq!(*person.birth_date.expose(), None);
        assert_eq!(person.gender, None);
        let v = issues.into_vec();
        assert_eq!(v.len(), 2);
        assert!(!format!("{v:?}").contains("SECRETX"));
    }

    #[test]
    fn contained_rules() {
        let o = obj(json!({
            "resourceType": "Claim",
            "contained": [
                {"resourceType": "Patient", "id": "a", "contained": [{"resourceType": "Patient", "id": "z"}]},
                {"resourceType": "Patient"},
                {"resourceType": "Patient", "id": "unused", "meta": {"versionId": "1"}}
            ],
            "patient": {"reference": "#a"}
        }));
        let mut issues = Issues::new(20);
        check_domain_resource(&o, "Claim", &mut issues);
        let v = issues.into_vec();
        let exprs: Vec<_> = v.iter().map(|i| i.expression.as_str()).collect();
        assert!(exprs.contains(&"Claim.contained[0].contained"), "{exprs:?}");
        assert!(exprs.contains(&"Claim.contained[1].id"), "{exprs:?}");
        assert!(exprs.contains(&"Claim.contained[2].meta"), "{exprs:?}");
        assert!(exprs.contains(&"Claim.contained[2]"), "{exprs:?}");
    }

    #[test]
    fn modifier_extension_blocks() {
        let o = obj(json!({"modifierExtension": [{"url": "x"}]}));
        let mut issues = Issues::new(20);
        check_domain_resource(&o, "Claim", &mut issues);
        assert!(issues.has_errors());
    }
}
