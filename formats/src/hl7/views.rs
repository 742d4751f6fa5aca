//! Small typed read views of the message types Clearway routes.
//!
//! Routing, status tracking and deduplication need a handful of facts from
//! each message (which event, which patient, which order, how many results),
//! not a full object model of HL7 v2. Each view reads those facts from a
//! parsed [`Message`] in one go, decodes escape sequences, and wraps
//! identifiers that point at a person (patient ids, visit, order and
//! appointment numbers) in [`Sensitive`], so that logging a view with `{:?}`
//! cannot leak them.
//!
//! A view returns `None` only when the message is of another type; missing
//! fields become `None` or empty lists (validation, not the view, decides
//! whether that is acceptable).

use crate::hl7::parse::{Message, MessageKind, Segment, Value};
use clearway_core::Sensitive;
use rust_decimal::Decimal;
use serde::Serialize;
use std::str::FromStr;

/// A decoded, non-empty leaf value.
fn text<'a>(v: Option<impl Into<Value<'a>>>) -> Option<String> {
    let v = v?.into();
    v.is_valued().then(|| v.decode().into_owned())
}

/// Component `c` of the first repetition of field `f` of `seg`, decoded.
fn component(seg: Option<Segment<'_>>, f: usize, c: usize) -> Option<String> {
    text(seg?.field(f)?.component(c))
}

/// One patient identifier (a CX repetition of PID-3). `Debug` omits the
/// identifier itself.
#[derive(Clone, PartialEq, Eq, Serialize)]
pub struct PatientId {
    /// CX.1, the identifier.
    pub id: String,
    /// CX.4.1, the assigning authority's namespace id.
    pub assigning_authority: Option<String>,
    /// CX.5, the identifier type code (`MR`, `SS`, ...).
    pub id_type: Option<String>,
}

impl std::fmt::Debug for PatientId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PatientId")
            .field("id", &"<redacted>")
            .field("assigning_authority", &self.assigning_authority)
            .field("id_type", &self.id_type)
            .finish()
    }
}

/// The identifiers of PID-3, one per repetition with a non-empty CX.1.
pub fn patient_ids(msg: &Message<'_>) -> Sensitive<Vec<PatientId>> {
    let Some(field) = msg.segment("PID").and_then(|s| s.field(3)) else {
        return Sensitive::new(Vec::new());
    };
    let ids = field
        .repetitions()
        .filter_map(|rep| {
            let id = text(rep.component(1).and_then(|c| c.subcomponent(1)))?;
            Some(PatientId {
                id,
                assigning_authority: text(rep.component(4).and_then(|c| c.subcomponent(1))),
                id_type: text(rep.component(5)),
            })
        })
        .collect();
    Sensitive::new(ids)
}

/// The trigger event: MSH-9.2, else EVN-1 (v2.1 style).
fn event(msg: &Message<'_>) -> String {
    let t = msg.message_type().trigger;
    if !t.is_empty() {
        return t.into_owned();
    }
    component(msg.segment("EVN"), 1, 1).unwrap_or_default()
}

/// Admit/discharge/transfer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AdtView {
    /// Trigger event (`A01`, `A08`, ...).
    pub event: String,
    /// PID-3.
    pub patient_ids: Sensitive<Vec<PatientId>>,
    /// PV1-2 (`I`, `O`, `E`, ...).
    pub patient_class: Option<String>,
    /// PV1-19.1.
    pub visit_number: Sensitive<Option<String>>,
}

impl AdtView {
    /// Reads an ADT message; `None` for other types.
    pub fn read(msg: &Message<'_>) -> Option<AdtView> {
        if msg.kind() != MessageKind::Adt {
            return None;
        }
        let pv1 = msg.segment("PV1");
        Some(AdtView {
            event: event(msg),
            patient_ids: patient_ids(msg),
            patient_class: component(pv1, 2, 1),
            visit_number: Sensitive::new(component(pv1, 19, 1)),
        })
    }
}

/// Observation result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OruView {
    /// Number of OBR segments (orders / panels).
    pub obr_count: usize,
    /// Number of OBX segments (results).
    pub obx_count: usize,
    /// OBR-2.1 of each OBR that has one.
    pub placer_order_numbers: Sensitive<Vec<String>>,
    /// OBR-3.1 of each OBR that has one.
    pub filler_order_numbers: Sensitive<Vec<String>>,
}

impl OruView {
    /// Reads an ORU message; `None` for other types.
    pub fn read(msg: &Message<'_>) -> Option<OruView> {
        if msg.kind() != MessageKind::Oru {
            return None;
        }
        let numbers = |f| msg.segments_with_id("OBR").filter_map(|s| component(Some(s), f, 1)).collect::<Vec<_>>();
        Some(OruView {
            obr_count: msg.count("OBR"),
            obx_count: msg.count("OBX"),
            placer_order_numbers: Sensitive::new(numbers(2)),
            filler_order_numbers: Sensitive::new(numbers(3)),
        })
    }
}

/// One ORC of an order message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OrderControl {
    /// ORC-1 (`NW`, `CA`, `XO`, ...).
    pub control: Option<String>,
    /// ORC-2.1.
    pub placer_order_number: Sensitive<Option<String>>,
    /// ORC-3.1.
    pub filler_order_number: Sensitive<Option<String>>,
}

/// General order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OrmView {
    /// One entry per ORC, in order.
    pub orders: Vec<OrderControl>,
}

impl OrmView {
    /// Reads an ORM message; `None` for other types.
    pub fn read(msg: &Message<'_>) -> Option<OrmView> {
        if msg.kind() != MessageKind::Orm {
            return None;
        }
        let orders = msg
            .segments_with_id("ORC")
            .map(|s| OrderControl {
                control: component(Some(s), 1, 1),
                placer_order_number: Sensitive::new(component(Some(s), 2, 1)),
                filler_order_number: Sensitive::new(component(Some(s), 3, 1)),
            })
            .collect();
        Some(OrmView { orders })
    }

    /// ORC-1 of the first order.
    pub fn order_control(&self) -> Option<&str> {
        self.orders.first()?.control.as_deref()
    }
}

/// Scheduling information unsolicited.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SiuView {
    /// Trigger event (`S12` new booking, `S15` cancellation, ...).
    pub event: String,
    /// SCH-1.1.
    pub placer_appointment_id: Sensitive<Option<String>>,
    /// SCH-2.1.
    pub filler_appointment_id: Sensitive<Option<String>>,
    /// SCH-25.1 (`Booked`, `Cancelled`, ...).
    pub filler_status: Option<String>,
}

impl SiuView {
    /// Reads an SIU message; `None` for other types.
    pub fn read(msg: &Message<'_>) -> Option<SiuView> {
        if msg.kind() != MessageKind::Siu {
            return None;
        }
        let sch = msg.segment("SCH");
        Some(SiuView {
            event: event(msg),
            placer_appointment_id: Sensitive::new(component(sch, 1, 1)),
            filler_appointment_id: Sensitive::new(component(sch, 2, 1)),
            filler_status: component(sch, 25, 1),
        })
    }
}

/// Detailed financial transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DftView {
    /// Trigger event (`P03`).
    pub event: String,
    /// Number of FT1 segments (charges).
    pub ft1_count: usize,
    /// FT1-11.1.1 (transaction amount - extended, the CP's quantity) of each
    /// FT1 in order; `None` when absent or not a decimal number.
    pub amounts: Vec<Option<Decimal>>,
}

impl DftView {
    /// Reads a DFT message; `None` for other types.
    pub fn read(msg: &Message<'_>) -> Option<DftView> {
        if msg.kind() != MessageKind::Dft {
            return None;
        }
        let amounts: Vec<Option<Decimal>> = msg
            .segments_with_id("FT1")
            .map(|s| {
                let v = text(s.field(11)?.component(1)?.subcomponent(1))?;
                let v = v.trim();
                // Bound the work on hostile input; real amounts are short.
                if v.len() > 40 {
                    return None;
                }
                Decimal::from_str(v).ok()
            })
            .collect();
        Some(DftView { event: event(msg), ft1_count: amounts.len(), amounts })
    }

    /// The sum of the amounts that are present.
    pub fn total(&self) -> Decimal {
        self.amounts.iter().flatten().fold(Decimal::ZERO, |acc, a| acc.saturating_add(*a))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(s: &str) -> Message<'_> {
        match Message::parse(s.as_bytes()) {
            Ok(m) => m,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn adt_view() {
        let m = msg(
            "MSH|^~\\&|A|B|C|D|1||ADT^A01|1|P|2.5\rEVN|A01|1\rPID|1||X\\T\\1^^^AUTH&1.2&ISO^MR~^^^SSA^SS~Y2^^^^SS||DOE\rPV1|1|I|||||||||||||||||V9^^^H^VN\r",
        );
        let v = AdtView::read(&m).unwrap_or_else(|| panic!("not ADT"));
        assert_eq!(v.event, "A01");
        assert_eq!(
            v.patient_ids.expose(),
            &[
                PatientId { id: "X&1".into(), assigning_authority: Some("AUTH".into()), id_type: Some("MR".into()) },
                PatientId { id: "Y2".into(), assigning_authority: None, id_type: Some("SS".into()) }
            ]
        );
        assert_eq!(v.patient_class.as_deref(), Some("I"));
        assert_eq!(v.visit_number.expose().as_deref(), Some("V9"));
        let shown = format!("{v:?} {:?}", v.patient_ids.expose());
        assert!(!shown.contains("X&1") && !shown.contains("V9"), "{shown}");
        assert!(OruView::read(&m).is_none());
    }

    #[test]
    fn adt_event_falls_back_to_evn() {
        let m = msg("MSH|^~\\&|A|B|C|D|1||ADT|1|P|2.1\rEVN|A08|1\r");
        assert_eq!(AdtView::read(&m).map(|v| v.event).as_deref(), Some("A08"));
    }

    #[test]
    fn oru_view() {
        let m =
            msg("MSH|^~\\&|A|B|C|D|1||ORU^R01|1|P|2.5\rPID|1||X\rOBR|1|P1^E|F1|a\rOBX|1\rOBX|2\rOBR|2||F2\rOBX|1\r");
        let v = OruView::read(&m).unwrap_or_else(|| panic!("not ORU"));
        assert_eq!((v.obr_count, v.obx_count), (2, 3));
        assert_eq!(v.placer_order_numbers.expose(), &["P1"]);
        assert_eq!(v.filler_order_numbers.expose(), &["F1", "F2"]);
    }

    #[test]
    fn orm_view() {
        let m = msg("MSH|^~\\&|A|B|C|D|1||ORM^O01|1|P|2.5\rORC|NW|P1^X|F1\rORC|CA\r");
        let v = OrmView::read(&m).unwrap_or_else(|| panic!("not ORM"));
        assert_eq!(v.order_control(), Some("NW"));
        assert_eq!(v.orders.len(), 2);
        assert_eq!(v.orders[0].placer_order_number.expose().as_deref(), Some("P1"));
        assert_eq!(v.orders[0].filler_order_number.expose().as_deref(), Some("F1"));
        assert_eq!(v.orders[1].control.as_deref(), Some("CA"));
        assert_eq!(v.orders[1].placer_order_number.expose(), &None);
    }

    #[test]
    fn siu_view() {
        let m = msg("MSH|^~\\&|A|B|C|D|1||SIU^S15|1|P|2.5\rSCH|P9|F9\r");
        let v = SiuView::read(&m).unwrap_or_else(|| panic!("not SIU"));
        assert_eq!(v.event, "S15");
        assert_eq!(v.placer_appointment_id.expose().as_deref(), Some("P9"));
        assert_eq!(v.filler_appointment_id.expose().as_deref(), Some("F9"));
        assert_eq!(v.filler_status, None);
    }

    #[test]
    fn dft_view() {
        let m = msg(
            "MSH|^~\\&|A|B|C|D|1||DFT^P03|1|P|2.5\rFT1|1||||||||||100.50&USD\rFT1|2||||||||||abc\rFT1|3||||||||||-20\r",
        );
        let v = DftView::read(&m).unwrap_or_else(|| panic!("not DFT"));
        assert_eq!(v.ft1_count, 3);
        assert_eq!(v.amounts, [Some(Decimal::new(10050, 2)), None, Some(Decimal::new(-20, 0))]);
        assert_eq!(v.total(), Decimal::new(8050, 2));
    }
}
