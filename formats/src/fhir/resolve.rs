//! Resolving references inside one submission.
//!
//! Follows R4's "Resolving references in Bundles" (bundle.html#references):
//! a local reference `#id` names a contained resource of the containing
//! resource; an absolute URL or `urn:uuid:`/`urn:oid:` names the entry with
//! that `fullUrl`; a relative `Type/id` is resolved against the base of the
//! referring entry's RESTful `fullUrl` when it has one, and otherwise matched
//! against the `Type` and `id` of the entries' resources. A reference that
//! matches more than one entry is never guessed.
//!
//! References from a resolved resource (a Coverage's `subscriber`) are
//! resolved with the same resolver, i.e. against the referring Claim's
//! contained resources and base. That is what the spec means for contained
//! resources and a close approximation for entries from one server.

use super::json::{field, index, is_resource_type_name};
use super::model::{Obj, Reference};
use super::primitives::is_id;
use serde_json::Value;
use std::collections::HashMap;

/// One entry's resource, as indexed.
#[derive(Debug, Clone, Copy)]
struct IndexedEntry<'v> {
    resource: &'v Obj,
}

/// The resources of a Bundle, by `fullUrl` and by `Type/id`.
#[derive(Debug, Default)]
pub(crate) struct BundleIndex<'v> {
    entries: Vec<Option<IndexedEntry<'v>>>,
    by_full_url: HashMap<&'v str, Vec<usize>>,
    by_type_id: HashMap<(&'v str, &'v str), Vec<usize>>,
}

impl<'v> BundleIndex<'v> {
    /// Indexes `Bundle.entry` (already bounded by the caller).
    pub(crate) fn new(entries: &'v [Value]) -> Self {
        let mut idx = BundleIndex::default();
        for (i, e) in entries.iter().enumerate() {
            let Some(e) = e.as_object() else {
                idx.entries.push(None);
                continue;
            };
            let resource = e.get("resource").and_then(Value::as_object);
            idx.entries.push(resource.map(|resource| IndexedEntry { resource }));
            if let Some(url) = e.get("fullUrl").and_then(Value::as_str) {
                idx.by_full_url.entry(url).or_default().push(i);
            }
            if let Some(r) = resource
                && let (Some(t), Some(id)) =
                    (r.get("resourceType").and_then(Value::as_str), r.get("id").and_then(Value::as_str))
            {
                idx.by_type_id.entry((t, id)).or_default().push(i);
            }
        }
        idx
    }

    fn found(&self, i: usize) -> Resolution<'v> {
        match self.entries.get(i).copied().flatten() {
            Some(e) => Resolution::Found { resource: e.resource, path: field(&index("Bundle.entry", i), "resource") },
            None => Resolution::NotFound,
        }
    }

    fn one_of(&self, hits: Option<&Vec<usize>>) -> Option<Resolution<'v>> {
        match hits.map(Vec::as_slice) {
            Some([i]) => Some(self.found(*i)),
            Some([_, _, ..]) => Some(Resolution::Ambiguous),
            _ => None,
        }
    }
}

/// What a reference points at.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Resolution<'v> {
    /// The resource, and the FHIRPath of where it sits in the submission.
    Found { resource: &'v Obj, path: String },
    /// More than one entry matches.
    Ambiguous,
    /// A local (`#id`) or `urn:` reference with no target in the submission.
    NotFound,
    /// A reference to something outside the submission (a server resource).
    External,
    /// The Reference has no literal `reference` (identifier or display only).
    NoLiteral,
}

/// Resolves references made from one resource.
#[derive(Debug)]
pub(crate) struct Resolver<'v> {
    /// The referring resource's path (`Claim`, `Bundle.entry[2].resource`).
    root: String,
    /// Contained resources by id (a list: duplicates are ambiguous).
    contained: HashMap<&'v str, Vec<(&'v Obj, usize)>>,
    bundle: Option<&'v BundleIndex<'v>>,
    /// The referring entry's `fullUrl`, when in a Bundle.
    own_full_url: Option<&'v str>,
}

impl<'v> Resolver<'v> {
    pub(crate) fn new(
        resource: &'v Obj,
        root: &str,
        bundle: Option<&'v BundleIndex<'v>>,
        own_full_url: Option<&'v str>,
    ) -> Self {
        let mut contained: HashMap<&'v str, Vec<(&'v Obj, usize)>> = HashMap::new();
        if let Some(a) = resource.get("contained").and_then(Value::as_array) {
            for (i, c) in a.iter().enumerate() {
                if let Some(c) = c.as_object()
                    && let Some(id) = c.get("id").and_then(Value::as_str)
                {
                    contained.entry(id).or_default().push((c, i));
                }
            }
        }
        Resolver { root: root.to_owned(), contained, bundle, own_full_url }
    }

    /// Resolves a Reference's literal `reference`.
    pub(crate) fn resolve(&self, r: &Reference) -> Resolution<'v> {
        match r.reference.as_deref() {
            Some(s) => self.resolve_str(s),
            None => Resolution::NoLiteral,
        }
    }

    pub(crate) fn resolve_str(&self, s: &str) -> Resolution<'v> {
        if let Some(id) = s.strip_prefix('#') {
            return match self.contained.get(id).map(Vec::as_slice) {
                Some([(res, i)]) => {
                    Resolution::Found { resource: res, path: index(&field(&self.root, "contained"), *i) }
                }
                Some([_, _, ..]) => Resolution::Ambiguous,
                _ => Resolution::NotFound,
            };
        }
        let s = s.split("/_history/").next().unwrap_or(s);
        let is_urn = s.starts_with("urn:");
        let is_absolute = is_urn || s.contains("://");
        let Some(bundle) = self.bundle else {
            return if is_urn { Resolution::NotFound } else { Resolution::External };
        };
        if let Some(r) = bundle.one_of(bundle.by_full_url.get(s)) {
            return r;
        }
        if is_urn {
            return Resolution::NotFound;
        }
        if is_absolute {
            return Resolution::External;
        }
        let Some((rtype, rid)) = split_relative(s) else {
            // Conditional references (`Patient?identifier=..`) and the like
            // are for a server to resolve.
            return Resolution::External;
        };
        // Relative to the referring entry's RESTful base, when it has one.
        if let Some(base) = self.own_full_url.and_then(restful_base) {
            let url = format!("{base}/{rtype}/{rid}");
            if let Some(r) = bundle.one_of(bundle.by_full_url.get(url.as_str())) {
                return r;
            }
        }
        bundle.one_of(bundle.by_type_id.get(&(rtype, rid))).unwrap_or(Resolution::External)
    }

    /// Resolves and checks the target's resource type; `None` when the
    /// reference does not lead to a resource of one of `types` here.
    pub(crate) fn resolve_typed(&self, r: &Reference, types: &[&str]) -> Option<(&'v Obj, String)> {
        match self.resolve(r) {
            Resolution::Found { resource, path } => {
                let t = resource.get("resourceType").and_then(Value::as_str)?;
                types.contains(&t).then_some((resource, path))
            }
            _ => None,
        }
    }
}

/// `Type/id` → (`Type`, `id`).
fn split_relative(s: &str) -> Option<(&str, &str)> {
    let (t, id) = s.split_once('/')?;
    (is_resource_type_name(t) && is_id(id)).then_some((t, id))
}

/// The service base of a RESTful `fullUrl` (`http://x/fhir/Claim/1` →
/// `http://x/fhir`).
fn restful_base(full_url: &str) -> Option<&str> {
    if !(full_url.starts_with("http://") || full_url.starts_with("https://")) {
        return None;
    }
    let full_url = full_url.split("/_history/").next().unwrap_or(full_url);
    let (rest, id) = full_url.rsplit_once('/')?;
    let (base, t) = rest.rsplit_once('/')?;
    (is_resource_type_name(t) && is_id(id)).then_some(base)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entries() -> Value {
        json!([
            {"fullUrl": "urn:uuid:11111111-1111-1111-1111-111111111111",
             "resource": {"resourceType": "Patient", "id": "p1"}},
            {"fullUrl": "http://example.org/fhir/Coverage/c1",
             "resource": {"resourceType": "Coverage", "id": "c1"}},
            {"fullUrl": "http://other.org/fhir/Coverage/c1",
             "resource": {"resourceType": "Coverage", "id": "c1"}},
            {"fullUrl": "urn:uuid:22222222-2222-2222-2222-222222222222",
             "resource": {"resourceType": "Organization", "id": "o1"}},
            {"fullUrl": "http://example.org/fhir/Claim/x",
             "resource": {"resourceType": "Claim", "id": "x",
                          "contained": [{"resourceType": "Patient", "id": "cp"}]}}
        ])
    }

    fn path_of(r: Resolution<'_>) -> Option<String> {
        match r {
            Resolution::Found { path, .. } => Some(path),
            _ => None,
        }
    }

    #[test]
    fn resolves_by_full_url_type_id_base_and_contained() {
        let e = entries();
        let arr = e.as_array().map(Vec::as_slice).unwrap_or_default();
        let idx = BundleIndex::new(arr);
        let claim = arr[4]["resource"].as_object().cloned().unwrap_or_default();
        let r = Resolver::new(&claim, "Bundle.entry[4].resource", Some(&idx), Some("http://example.org/fhir/Claim/x"));
        assert_eq!(
            path_of(r.resolve_str("urn:uuid:11111111-1111-1111-1111-111111111111")),
            Some("Bundle.entry[0].resource".into())
        );
        // Relative to this entry's base: not ambiguous although two c1 exist.
        assert_eq!(path_of(r.resolve_str("Coverage/c1")), Some("Bundle.entry[1].resource".into()));
        assert_eq!(path_of(r.resolve_str("Organization/o1")), Some("Bundle.entry[3].resource".into()));
        assert_eq!(path_of(r.resolve_str("Patient/p1/_history/2")), Some("Bundle.entry[0].resource".into()));
        assert_eq!(path_of(r.resolve_str("#cp")), Some("Bundle.entry[4].resource.contained[0]".into()));
        assert_eq!(r.resolve_str("#nope"), Resolution::NotFound);
        assert_eq!(r.resolve_str("urn:uuid:nope"), Resolution::NotFound);
        assert_eq!(r.resolve_str("Patient/elsewhere"), Resolution::External);
        assert_eq!(r.resolve_str("Patient?identifier=x"), Resolution::External);
    }

    #[test]
    fn ambiguous_type_id_is_not_guessed() {
        let e = entries();
        let arr = e.as_array().map(Vec::as_slice).unwrap_or_default();
        let idx = BundleIndex::new(arr);
        let claim = Obj::new();
        let r = Resolver::new(&claim, "Bundle.entry[9].resource", Some(&idx), Some("urn:uuid:x"));
        assert_eq!(r.resolve_str("Coverage/c1"), Resolution::Ambiguous);
    }

    #[test]
    fn standalone_resource_resolves_only_contained() {
        let claim = json!({"contained": [{"resourceType": "Patient", "id": "a"}]});
        let claim = claim.as_object().cloned().unwrap_or_default();
        let r = Resolver::new(&claim, "Claim", None, None);
        assert_eq!(path_of(r.resolve_str("#a")), Some("Claim.contained[0]".into()));
        assert_eq!(r.resolve_str("Patient/a"), Resolution::External);
        let typed = r.resolve_typed(&Reference::literal("#a"), &["Organization"]);
        assert!(typed.is_none());
    }

    #[test]
    fn restful_bases() {
        assert_eq!(restful_base("http://x/fhir/Claim/1"), Some("http://x/fhir"));
        assert_eq!(restful_base("urn:uuid:1"), None);
        assert_eq!(restful_base("http://x/fhir/claim/1"), None);
    }
}
