//! Small data types shared by reading and building, and the element reader
//! that validates while it extracts.
//!
//! Input is walked as a `serde_json::Value` rather than deserialized into
//! derived structs: serde's type errors quote the offending value (PHI) and
//! stop at the first problem, while we want every problem, each located by a
//! FHIRPath expression and described without values.

use super::json::{field, index, is_element_name};
use super::outcome::{IssueType, Issues};
use super::primitives::{
    DecimalProblem, FhirDate, is_code, is_currency, is_fhir_string, is_uri, number_to_decimal, parse_date,
    parse_date_time, positive_int,
};
use rust_decimal::Decimal;
use serde::Serialize;
use serde_json::{Map, Value};

pub(crate) type Obj = Map<String, Value>;

/// An R4 `Identifier` (the parts Clearway uses).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Identifier {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    pub value: String,
}

/// An R4 `Reference`: a literal `reference` (`Patient/1`, `urn:uuid:..`,
/// `#contained`), a logical `identifier`, or both.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize)]
pub struct Reference {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identifier: Option<Identifier>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display: Option<String>,
}

impl Reference {
    /// A literal reference such as `Claim/123`.
    pub fn literal(reference: impl Into<String>) -> Self {
        Reference { reference: Some(reference.into()), ..Reference::default() }
    }

    /// A logical reference by business identifier.
    pub fn logical(type_: Option<&str>, identifier: Identifier) -> Self {
        Reference { type_: type_.map(str::to_owned), identifier: Some(identifier), ..Reference::default() }
    }
}

/// An R4 `Coding` (system, code, display).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Coding {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    pub code: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display: Option<String>,
}

impl Coding {
    pub fn new(system: impl Into<String>, code: impl Into<String>) -> Self {
        Coding { system: Some(system.into()), code: code.into(), display: None }
    }

    pub fn with_display(mut self, display: impl Into<String>) -> Self {
        self.display = Some(display.into());
        self
    }
}

/// A coding as read: any part may be missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct InCoding<'v> {
    pub system: Option<&'v str>,
    pub code: Option<&'v str>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct InConcept<'v> {
    pub coding: Vec<InCoding<'v>>,
}

impl<'v> InConcept<'v> {
    /// The first code whose system satisfies `pred` (`None` system passed as "").
    pub(crate) fn code_where(&self, pred: impl Fn(&str) -> bool) -> Option<&'v str> {
        self.coding.iter().find(|c| c.code.is_some() && pred(c.system.unwrap_or(""))).and_then(|c| c.code)
    }

    pub(crate) fn first(&self) -> Option<InCoding<'v>> {
        self.coding.iter().find(|c| c.code.is_some()).copied()
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct InMoney {
    pub value: Option<Decimal>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct InQuantity<'v> {
    pub value: Option<Decimal>,
    pub code: Option<&'v str>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct InPeriod {
    pub start: Option<FhirDate>,
    pub end: Option<FhirDate>,
}

/// Reads elements of an object at a path, recording every problem.
pub(crate) struct Reader<'i> {
    pub issues: &'i mut Issues,
}

const MSG_REQUIRED: &str = "required element is missing";
const MSG_NOT_ARRAY: &str = "repeating element must be a JSON array";
const MSG_ARRAY: &str = "element repeats at most once: must not be a JSON array";
const MSG_STRING: &str = "must be a JSON string";
const MSG_OBJECT: &str = "must be a JSON object";

impl Reader<'_> {
    fn missing(&mut self, path: &str, required: bool) {
        if required {
            self.issues.error(IssueType::Required, path, MSG_REQUIRED);
        }
    }

    /// A single (0..1 / 1..1) JSON value of any type.
    fn single<'v>(&mut self, o: &'v Obj, name: &str, path: &str, required: bool) -> Option<&'v Value> {
        match o.get(name) {
            None | Some(Value::Null) => {
                self.missing(path, required);
                None
            }
            Some(Value::Array(_)) => {
                self.issues.error(IssueType::Structure, path, MSG_ARRAY);
                None
            }
            Some(v) => Some(v),
        }
    }

    /// A repeating (0..* / 1..*) element; an empty slice when absent or invalid.
    pub(crate) fn array<'v>(&mut self, o: &'v Obj, name: &str, path: &str, required: bool) -> &'v [Value] {
        match o.get(name) {
            None | Some(Value::Null) => {
                self.missing(path, required);
                &[]
            }
            Some(Value::Array(a)) => {
                if a.is_empty() {
                    self.missing(path, required);
                }
                a
            }
            Some(_) => {
                self.issues.error(IssueType::Structure, path, MSG_NOT_ARRAY);
                &[]
            }
        }
    }

    /// An object (complex type or backbone element).
    pub(crate) fn object<'v>(&mut self, o: &'v Obj, name: &str, path: &str, required: bool) -> Option<&'v Obj> {
        match self.single(o, name, path, required)? {
            Value::Object(m) => Some(m),
            _ => {
                self.issues.error(IssueType::Structure, path, MSG_OBJECT);
                None
            }
        }
    }

    /// An array item that must be an object.
    pub(crate) fn item_object<'v>(&mut self, v: &'v Value, path: &str) -> Option<&'v Obj> {
        match v {
            Value::Object(m) => Some(m),
            _ => {
                self.issues.error(IssueType::Structure, path, MSG_OBJECT);
                None
            }
        }
    }

    fn str_value<'v>(&mut self, v: &'v Value, path: &str) -> Option<&'v str> {
        match v {
            Value::String(s) => Some(s),
            _ => {
                self.issues.error(IssueType::Structure, path, MSG_STRING);
                None
            }
        }
    }

    /// A `string`.
    pub(crate) fn string<'v>(&mut self, o: &'v Obj, name: &str, path: &str, required: bool) -> Option<&'v str> {
        let v = self.single(o, name, path, required)?;
        self.checked_string(v, path)
    }

    pub(crate) fn checked_string<'v>(&mut self, v: &'v Value, path: &str) -> Option<&'v str> {
        let s = self.str_value(v, path)?;
        if is_fhir_string(s) {
            Some(s)
        } else {
            self.issues.error(
                IssueType::Value,
                path,
                "string must contain a non-whitespace character and no control characters",
            );
            None
        }
    }

    /// A `uri`.
    pub(crate) fn uri<'v>(&mut self, o: &'v Obj, name: &str, path: &str, required: bool) -> Option<&'v str> {
        let v = self.single(o, name, path, required)?;
        let s = self.str_value(v, path)?;
        if is_uri(s) {
            Some(s)
        } else {
            self.issues.error(IssueType::Value, path, "uri must be non-empty without whitespace");
            None
        }
    }

    /// A `code`, optionally restricted to a required value set. The code is
    /// only echoed in diagnostics by callers after it has been found in the
    /// value set.
    pub(crate) fn code<'v>(
        &mut self,
        o: &'v Obj,
        name: &str,
        path: &str,
        required: bool,
        allowed: Option<&[&str]>,
    ) -> Option<&'v str> {
        let v = self.single(o, name, path, required)?;
        self.checked_code(v, path, allowed)
    }

    pub(crate) fn checked_code<'v>(&mut self, v: &'v Value, path: &str, allowed: Option<&[&str]>) -> Option<&'v str> {
        let s = self.str_value(v, path)?;
        if !is_code(s) {
            self.issues.error(
                IssueType::Value,
                path,
                "code must be non-empty without leading, trailing or repeated whitespace",
            );
            return None;
        }
        match allowed {
            Some(set) if !set.contains(&s) => {
                self.issues.error(IssueType::CodeInvalid, path, "code is not in the required value set");
                None
            }
            _ => Some(s),
        }
    }

    /// A `boolean`.
    pub(crate) fn boolean(&mut self, o: &Obj, name: &str, path: &str, required: bool) -> Option<bool> {
        match self.single(o, name, path, required)? {
            Value::Bool(b) => Some(*b),
            _ => {
                self.issues.error(IssueType::Structure, path, "must be a JSON boolean");
                None
            }
        }
    }

    /// A `positiveInt`.
    pub(crate) fn positive_int(&mut self, o: &Obj, name: &str, path: &str, required: bool) -> Option<u32> {
        let v = self.single(o, name, path, required)?;
        self.checked_positive_int(v, path)
    }

    pub(crate) fn checked_positive_int(&mut self, v: &Value, path: &str) -> Option<u32> {
        match v {
            Value::Number(n) => {
                let p = positive_int(n);
                if p.is_none() {
                    self.issues.error(
                        IssueType::Value,
                        path,
                        "positiveInt must be a whole number from 1 to 2147483647",
                    );
                }
                p
            }
            _ => {
                self.issues.error(IssueType::Structure, path, "must be a JSON number");
                None
            }
        }
    }

    /// A `decimal`.
    pub(crate) fn decimal(&mut self, o: &Obj, name: &str, path: &str, required: bool) -> Option<Decimal> {
        match self.single(o, name, path, required)? {
            Value::Number(n) => match number_to_decimal(n) {
                Ok((d, imprecise)) => {
                    if imprecise {
                        self.issues.warning(
                            IssueType::Value,
                            path,
                            "decimal has more than 15 significant digits; it is read as the nearest double-precision value",
                        );
                    }
                    Some(d)
                }
                Err(DecimalProblem::OutOfRange) => {
                    self.issues.error(IssueType::Value, path, "decimal is out of the supported range");
                    None
                }
            },
            _ => {
                self.issues.error(IssueType::Structure, path, "decimal must be a JSON number, not a string");
                None
            }
        }
    }

    /// A `date`.
    pub(crate) fn date(&mut self, o: &Obj, name: &str, path: &str, required: bool) -> Option<FhirDate> {
        let v = self.single(o, name, path, required)?;
        let s = self.str_value(v, path)?;
        let d = parse_date(s);
        if d.is_none() {
            self.issues.error(IssueType::Value, path, "not a valid FHIR date (YYYY, YYYY-MM or YYYY-MM-DD)");
        }
        d
    }

    /// A `dateTime`.
    pub(crate) fn date_time(&mut self, o: &Obj, name: &str, path: &str, required: bool) -> Option<FhirDate> {
        let v = self.single(o, name, path, required)?;
        let s = self.str_value(v, path)?;
        let d = parse_date_time(s);
        if d.is_none() {
            self.issues.error(
                IssueType::Value,
                path,
                "not a valid FHIR dateTime (a date, or date and time with a time zone)",
            );
        }
        d
    }

    /// A `Period`.
    pub(crate) fn period(&mut self, o: &Obj, name: &str, path: &str, required: bool) -> Option<InPeriod> {
        let p = self.object(o, name, path, required)?;
        let start = self.date_time(p, "start", &field(path, "start"), false);
        let end = self.date_time(p, "end", &field(path, "end"), false);
        if let (Some(FhirDate::Day(s) | FhirDate::DateTime(s)), Some(FhirDate::Day(e) | FhirDate::DateTime(e))) =
            (start, end)
            && e < s
        {
            // per-1: start SHALL be before or equal to end.
            self.issues.error(IssueType::Invariant, path, "period end is before its start (per-1)");
        }
        Some(InPeriod { start, end })
    }

    /// A `Coding` inside an array at `path`.
    fn coding<'v>(&mut self, v: &'v Value, path: &str) -> Option<InCoding<'v>> {
        let c = self.item_object(v, path)?;
        let system = self.uri(c, "system", &field(path, "system"), false);
        let code = self.code(c, "code", &field(path, "code"), false, None);
        self.string(c, "display", &field(path, "display"), false);
        Some(InCoding { system, code })
    }

    /// A `CodeableConcept`.
    pub(crate) fn concept<'v>(&mut self, o: &'v Obj, name: &str, path: &str, required: bool) -> Option<InConcept<'v>> {
        let c = self.object(o, name, path, required)?;
        Some(self.concept_body(c, path))
    }

    /// A `CodeableConcept` that is an array item.
    pub(crate) fn concept_item<'v>(&mut self, v: &'v Value, path: &str) -> Option<InConcept<'v>> {
        let c = self.item_object(v, path)?;
        Some(self.concept_body(c, path))
    }

    fn concept_body<'v>(&mut self, c: &'v Obj, path: &str) -> InConcept<'v> {
        let cpath = field(path, "coding");
        let coding = self
            .array(c, "coding", &cpath, false)
            .iter()
            .enumerate()
            .filter_map(|(i, v)| self.coding(v, &index(&cpath, i)))
            .collect();
        self.string(c, "text", &field(path, "text"), false);
        InConcept { coding }
    }

    /// An `Identifier`; `None` when it has no usable value.
    pub(crate) fn identifier_body(&mut self, i: &Obj, path: &str) -> Option<Identifier> {
        let system = self.uri(i, "system", &field(path, "system"), false);
        let value = self.string(i, "value", &field(path, "value"), false);
        if i.contains_key("type") {
            self.concept(i, "type", &field(path, "type"), false);
        }
        value.map(|v| Identifier { system: system.map(str::to_owned), value: v.to_owned() })
    }

    pub(crate) fn identifier(&mut self, o: &Obj, name: &str, path: &str, required: bool) -> Option<Identifier> {
        let i = self.object(o, name, path, required)?;
        self.identifier_body(i, path)
    }

    /// A `Reference`.
    pub(crate) fn reference(&mut self, o: &Obj, name: &str, path: &str, required: bool) -> Option<Reference> {
        let r = self.object(o, name, path, required)?;
        Some(self.reference_body(r, path))
    }

    pub(crate) fn reference_item(&mut self, v: &Value, path: &str) -> Option<Reference> {
        let r = self.item_object(v, path)?;
        Some(self.reference_body(r, path))
    }

    fn reference_body(&mut self, r: &Obj, path: &str) -> Reference {
        let reference = self.string(r, "reference", &field(path, "reference"), false);
        let type_ = self.uri(r, "type", &field(path, "type"), false);
        let identifier = self.identifier(r, "identifier", &field(path, "identifier"), false);
        let display = self.string(r, "display", &field(path, "display"), false);
        if reference.is_none() && identifier.is_none() && display.is_none() {
            self.issues.error(
                IssueType::Required,
                path,
                "reference has no reference, identifier or display that Clearway can use",
            );
        }
        Reference {
            reference: reference.map(str::to_owned),
            type_: type_.map(str::to_owned),
            identifier,
            display: display.map(str::to_owned),
        }
    }

    /// A `Money`: value decimal, currency a 3-letter code.
    pub(crate) fn money(&mut self, o: &Obj, name: &str, path: &str) -> Option<InMoney> {
        let m = self.object(o, name, path, false)?;
        let value = self.decimal(m, "value", &field(path, "value"), false);
        let cpath = field(path, "currency");
        if let Some(c) = self.code(m, "currency", &cpath, false, None)
            && !is_currency(c)
        {
            self.issues.error(
                IssueType::CodeInvalid,
                cpath,
                "currency must be an ISO 4217 code of three upper-case letters",
            );
        }
        Some(InMoney { value })
    }

    /// A `SimpleQuantity`.
    pub(crate) fn quantity<'v>(&mut self, o: &'v Obj, name: &str, path: &str) -> Option<InQuantity<'v>> {
        let q = self.object(o, name, path, false)?;
        let value = self.decimal(q, "value", &field(path, "value"), false);
        if q.contains_key("comparator") {
            // SimpleQuantity: qty-3 forbids a comparator.
            self.issues.error(IssueType::Invariant, field(path, "comparator"), "a SimpleQuantity has no comparator");
        }
        self.string(q, "unit", &field(path, "unit"), false);
        self.uri(q, "system", &field(path, "system"), false);
        let code = self.code(q, "code", &field(path, "code"), false, None);
        Some(InQuantity { value, code })
    }
}

/// Checks the `ele-1` family of JSON rules over a whole resource: no empty
/// objects, arrays or strings, no `null` outside arrays, and element names
/// that are names. Contained and nested resources are walked too.
pub(crate) fn check_json_structure(v: &Value, path: &str, issues: &mut Issues) {
    match v {
        Value::Object(m) => check_object_structure(m, path, issues),
        Value::Array(a) => {
            if a.is_empty() {
                issues.error(IssueType::Structure, path, "empty array is not allowed");
            } else if a.iter().all(Value::is_null) {
                issues.error(IssueType::Structure, path, "array holds only nulls");
            }
            for (i, child) in a.iter().enumerate() {
                if !child.is_null() {
                    check_json_structure(child, &index(path, i), issues);
                }
            }
        }
        Value::String(s) => {
            if s.is_empty() {
                issues.error(IssueType::Value, path, "empty string is not allowed");
            }
        }
        Value::Bool(_) | Value::Number(_) | Value::Null => {}
    }
}

/// [`check_json_structure`] for an object (a resource or element).
pub(crate) fn check_object_structure(m: &Obj, path: &str, issues: &mut Issues) {
    if m.is_empty() {
        issues.error(IssueType::Structure, path, "empty object: elements must have a value or children (ele-1)");
    }
    let mut bad_name = false;
    for (k, child) in m {
        if !is_element_name(k) && k != "resourceType" {
            bad_name = true;
            continue;
        }
        // Narrative XHTML is opaque here.
        if k == "div" {
            continue;
        }
        let p = field(path, k);
        if child.is_null() {
            issues.error(IssueType::Structure, &p, "null is not allowed as a property value");
            continue;
        }
        check_json_structure(child, &p, issues);
    }
    if bad_name {
        issues.error(IssueType::Structure, path, "object has a property whose name is not a FHIR element name");
    }
}

/// Reports properties of a resource object not in `known` as `structure`
/// warnings (R4 forbids unknown elements; Clearway reads on without them).
/// `_name` is accepted for each primitive `name` in `primitives`.
pub(crate) fn check_unknown_elements(o: &Obj, root: &str, known: &[&str], primitives: &[&str], issues: &mut Issues) {
    for k in o.keys() {
        if known.contains(&k.as_str()) {
            continue;
        }
        if let Some(p) = k.strip_prefix('_')
            && primitives.contains(&p)
        {
            continue;
        }
        if is_element_name(k) {
            issues.warning(
                IssueType::Structure,
                field(root, k),
                "unknown element: not defined for this resource in R4; ignored",
            );
        }
        // Non-name keys were reported by `check_json_structure`.
    }
}

/// Elements common to every DomainResource.
pub(crate) const DOMAIN_RESOURCE_ELEMENTS: &[&str] =
    &["resourceType", "id", "meta", "implicitRules", "language", "text", "contained", "extension", "modifierExtension"];

/// Primitive elements of every DomainResource (for `_name` extensions).
pub(crate) const DOMAIN_RESOURCE_PRIMITIVES: &[&str] = &["id", "implicitRules", "language"];

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Obj {
        match v {
            Value::Object(m) => m,
            _ => Obj::new(),
        }
    }

    fn run<T>(f: impl FnOnce(&mut Reader<'_>) -> T) -> (T, Vec<super::super::OutcomeIssue>) {
        let mut issues = Issues::new(100);
        let out = f(&mut Reader { issues: &mut issues });
        (out, issues.into_vec())
    }

    #[test]
    fn required_missing_is_reported_at_path() {
        let o = obj(json!({}));
        let (v, issues) = run(|r| r.string(&o, "x", "Claim.x", true));
        assert_eq!(v, None);
        assert_eq!(issues.len(), 1);
        assert_eq!(issues[0].code, IssueType::Required);
        assert_eq!(issues[0].expression, "Claim.x");
    }

    #[test]
    fn cardinality_shape_is_checked() {
        let o = obj(json!({"one": ["a"], "many": "a"}));
        let (_, issues) = run(|r| {
            r.string(&o, "one", "R.one", false);
            r.array(&o, "many", "R.many", false);
        });
        assert_eq!(issues.len(), 2);
        assert!(issues.iter().all(|i| i.code == IssueType::Structure));
    }

    #[test]
    fn code_outside_value_set_is_code_invalid_without_echo() {
        let o = obj(json!({"status": "SECRET-VALUE"}));
        let (v, issues) = run(|r| r.code(&o, "status", "Claim.status", true, Some(&["active"])));
        assert_eq!(v, None);
        assert_eq!(issues[0].code, IssueType::CodeInvalid);
        assert!(!format!("{issues:?}").contains("SECRET"));
    }

    #[test]
    fn money_checks_value_and_currency() {
        let o = obj(json!({"net": {"value": "10.00", "currency": "usd"}}));
        let (m, issues) = run(|r| r.money(&o, "net", "Claim.item[0].net"));
        assert_eq!(m, Some(InMoney { value: None }));
        let exprs: Vec<_> = issues.iter().map(|i| i.expression.as_str()).collect();
        assert_eq!(exprs, ["Claim.item[0].net.value", "Claim.item[0].net.currency"]);
    }

    #[test]
    fn period_end_before_start() {
        let o = obj(json!({"p": {"start": "2020-02-02", "end": "2020-02-01"}}));
        let (_, issues) = run(|r| r.period(&o, "p", "X.p", false));
        assert_eq!(issues.len(), 1);
        assert_eq!(issues[0].code, IssueType::Invariant);
    }

    #[test]
    fn structure_walk_finds_empties_and_nulls() {
        let v = json!({"a": {}, "b": [], "c": "", "d": null, "e": [null, "x"], "not a name": 1});
        let mut issues = Issues::new(100);
        check_json_structure(&v, "Claim", &mut issues);
        let issues = issues.into_vec();
        let exprs: Vec<_> = issues.iter().map(|i| i.expression.as_str()).collect();
        assert!(exprs.contains(&"Claim.a"));
        assert!(exprs.contains(&"Claim.b"));
        assert!(exprs.contains(&"Claim.c"));
        assert!(exprs.contains(&"Claim.d"));
        assert!(!exprs.iter().any(|e| e.contains("not a name")));
        assert_eq!(issues.len(), 5, "{issues:?}");
    }

    #[test]
    fn reference_needs_some_content() {
        let o = obj(json!({"r": {"extension": [{"url": "x"}]}}));
        let (_, issues) = run(|r| r.reference(&o, "r", "Claim.r", true));
        assert_eq!(issues.len(), 1);
        assert_eq!(issues[0].code, IssueType::Required);
    }
}
