//! A FHIR R4 resource (or each resource of a Bundle) described for a
//! person (the console's viewer): a line per top-level property with its
//! values labelled by their path (`item[0].productOrService.coding[0].code`),
//! PHI masked unless revealed. Shown in clear: structure and codes
//! (`resourceType`, `id`, `status`, `use`, `system`, `code`, references
//! between resources, sequence numbers, …); every other value (names, dates,
//! identifiers' values, amounts, text, addresses) is masked, its length
//! kept. Pure: no I/O; bounded like the X12 viewer.

use crate::x12::viewer::{Shown, ViewElement, ViewOptions, ViewSegment, Viewed};
use serde_json::Value;

/// Leaf keys whose values are structure or codes, never a patient's data.
const CLEAR_KEYS: &[&str] = &[
    "resourceType",
    "id",
    "status",
    "use",
    "system",
    "code",
    "intent",
    "priority",
    "sequence",
    "reference",
    "fullUrl",
    "method",
    "outcome",
    "currency",
    "version",
    "profile",
    "purpose",
];

/// Most values listed under one property.
const MAX_LEAVES: usize = 200;

/// Describes `payload`, a FHIR resource in JSON.
pub fn view(payload: &[u8], options: ViewOptions) -> Viewed {
    let mut out = Viewed::default();
    let root: Value = match serde_json::from_slice(payload) {
        Ok(v) => v,
        Err(e) => {
            out.unreadable = Some(format!("not JSON (line {}, column {})", e.line(), e.column()));
            return out;
        }
    };
    let mut resources = vec![(String::new(), &root)];
    if root["resourceType"] == "Bundle"
        && let Some(entries) = root["entry"].as_array()
    {
        resources.extend(
            entries.iter().enumerate().filter_map(|(i, e)| e.get("resource").map(|r| (format!("entry[{i}]"), r))),
        );
    }
    for (at, resource) in resources {
        let Some(fields) = resource.as_object() else { continue };
        let kind = resource["resourceType"].as_str().unwrap_or("?").to_string();
        push(
            &mut out,
            &options,
            ViewSegment {
                index: 0,
                id: kind.clone(),
                position: None,
                loop_id: None,
                loop_name: None,
                name: Some(if at.is_empty() { format!("{kind} resource") } else { format!("{kind} resource in {at}") }),
                depth: 0,
                elements: vec![],
                errors: vec![],
                claim: None,
            },
        );
        for (key, value) in fields {
            // A Bundle's entries are described as resources of their own.
            if key == "resourceType" || (kind == "Bundle" && key == "entry") {
                continue;
            }
            let mut elements = Vec::new();
            leaves(value, key, key, options.reveal, &mut elements);
            push(
                &mut out,
                &options,
                ViewSegment {
                    index: 0,
                    id: key.clone(),
                    position: None,
                    loop_id: None,
                    loop_name: None,
                    name: None,
                    depth: 1,
                    elements,
                    errors: vec![],
                    claim: None,
                },
            );
        }
    }
    out
}

fn push(out: &mut Viewed, options: &ViewOptions, mut seg: ViewSegment) {
    out.total_segments += 1;
    if out.segments.len() >= options.max_segments {
        out.truncated = true;
        return;
    }
    seg.index = out.total_segments;
    out.segments.push(seg);
}

/// The leaf values under `value` (at `path`, its own key `key`).
fn leaves(value: &Value, key: &str, path: &str, reveal: bool, out: &mut Vec<ViewElement>) {
    if out.len() >= MAX_LEAVES {
        return;
    }
    match value {
        Value::Object(m) => {
            for (k, v) in m {
                leaves(v, k, &format!("{path}.{k}"), reveal, out);
            }
        }
        Value::Array(a) => {
            for (i, v) in a.iter().enumerate() {
                leaves(v, key, &format!("{path}[{i}]"), reveal, out);
            }
        }
        leaf => {
            let text = match leaf {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let clear = reveal || CLEAR_KEYS.contains(&key);
            out.push(ViewElement {
                label: path.to_string(),
                name: None,
                value: if clear { Shown::Clear(text) } else { Shown::Masked(text.chars().count()) },
                error: None,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PATIENT_BUNDLE: &str = r#"{"resourceType":"Bundle","type":"batch","entry":[
        {"fullUrl":"urn:uuid:1","resource":{"resourceType":"Patient","id":"p1",
          "identifier":[{"system":"http://hospital.example/mrn","value":"MRN12345"}],
          "name":[{"family":"Doe","given":["Jane"]}],"birthDate":"1980-01-01","gender":"female"}},
        {"resource":{"resourceType":"Coverage","id":"c1","status":"active","beneficiary":{"reference":"Patient/p1"}}}]}"#;

    fn all(v: &Viewed) -> Vec<(String, Shown)> {
        v.segments.iter().flat_map(|s| s.elements.iter().map(|e| (e.label.clone(), e.value.clone()))).collect()
    }

    #[test]
    fn codes_and_references_are_shown_and_the_rest_masked() {
        let v = view(PATIENT_BUNDLE.as_bytes(), ViewOptions::default());
        let kinds: Vec<&str> = v.segments.iter().filter(|s| s.depth == 0).map(|s| s.id.as_str()).collect();
        assert_eq!(kinds, ["Bundle", "Patient", "Coverage"]);
        let leaves = all(&v);
        let get =
            |l: &str| leaves.iter().find(|(x, _)| x == l).map(|(_, s)| s.clone()).unwrap_or_else(|| panic!("{l}"));
        assert_eq!(get("identifier[0].system"), Shown::Clear("http://hospital.example/mrn".into()));
        assert_eq!(get("identifier[0].value"), Shown::Masked(8));
        assert_eq!(get("name[0].family"), Shown::Masked(3));
        assert_eq!(get("name[0].given[0]"), Shown::Masked(4));
        assert_eq!(get("birthDate"), Shown::Masked(10));
        assert_eq!(get("beneficiary.reference"), Shown::Clear("Patient/p1".into()));
        assert_eq!(get("status"), Shown::Clear("active".into()));
        let text = format!("{:?}", v.segments);
        assert!(!text.contains("MRN12345") && !text.contains("Doe") && !text.contains("1980"));
        let r = view(PATIENT_BUNDLE.as_bytes(), ViewOptions { reveal: true, ..ViewOptions::default() });
        assert!(all(&r).contains(&("name[0].family".into(), Shown::Clear("Doe".into()))));
    }

    #[test]
    fn bounded_and_never_a_panic() {
        let v = view(PATIENT_BUNDLE.as_bytes(), ViewOptions { max_segments: 3, ..ViewOptions::default() });
        assert!(v.truncated && v.segments.len() == 3 && v.total_segments > 3);
        assert!(view(b"{not json", ViewOptions::default()).unreadable.is_some());
        assert!(view(b"[1,2]", ViewOptions::default()).segments.is_empty());
    }
}
