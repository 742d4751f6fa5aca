#![allow(clippy::unwrap_used)]
use super::*;

fn corpus(name: &str) -> Vec<u8> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus/ncpdp");
    std::fs::read(dir.join(name)).unwrap()
}

#[test]
fn the_public_b1_request_reads_and_writes_back_byte_for_byte() {
    let bytes = corpus("b1-request-cosyte-person-code.ncpdp");
    let t = read(&bytes, &Limits::default()).unwrap();
    assert_eq!(t.to_bytes(), bytes);
    let Header::Request(h) = &t.header else { panic!() };
    assert_eq!((h.bin.as_str(), h.version.as_str(), h.transaction_code.as_str()), ("999999", "D0", "B1"));
    assert_eq!(h.pcn, "PCN0000000");
    assert_eq!(h.transaction_count, 1);
    assert_eq!(h.date_of_service, "20260629");
    let ids: Vec<&str> = t.segments.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, ["01", "04", "07", "03"], "the manifest's segment ids");
    assert!(t.segments.iter().all(|s| s.group == 0), "no 0x1D in this sample");
    let r = views::request(&t).unwrap();
    assert_eq!(r.cardholder_id.as_deref(), Some("SYNTHCARD09"));
    assert_eq!(r.person_code.as_deref(), Some("03"));
    assert_eq!(r.product_id.as_deref(), Some("00093505601"));
    assert_eq!(r.product_id_qualifier.as_deref(), Some("03"));
    assert_eq!(r.date_of_birth.as_deref(), Some("19850722"));
    assert_eq!(r.prescriber_id.as_deref(), Some("1888888888"));
    assert!(views::response(&t).is_none());
}

#[test]
fn the_public_responses_read_with_their_statuses() {
    let paid = corpus("b1-response-cosyte-paid-dur.ncpdp");
    let t = read(&paid, &Limits::default()).unwrap();
    assert_eq!(t.to_bytes(), paid);
    let r = views::response(&t).unwrap();
    assert_eq!((r.header_status.as_str(), r.status.as_deref()), ("A", Some("P")));
    assert_eq!(r.dur_reasons, ["DD"]);
    assert_eq!(r.segments, ["21", "24"]);
    assert_eq!(t.segments[0].group, 1, "after the 0x1D");

    let reject = corpus("b1-response-cosyte-reject.ncpdp");
    let t = read(&reject, &Limits::default()).unwrap();
    assert_eq!(t.to_bytes(), reject);
    let r = views::response(&t).unwrap();
    assert_eq!((r.header_status.as_str(), r.status.as_deref()), ("R", Some("R")));
    assert_eq!(r.reject_codes, ["99"]);
}

#[test]
fn what_is_not_d0_is_an_error_that_names_no_value() {
    let limits = Limits::default();
    assert_eq!(read(b"", &limits), Err(ReadError::ShortHeader(0)));
    assert!(matches!(read(b"ISA*00*          *00*", &limits), Err(ReadError::ShortHeader(_) | ReadError::NotD0)));
    let mut bytes = corpus("b1-request-cosyte-person-code.ncpdp");
    bytes[0] = b'X';
    assert_eq!(read(&bytes, &limits), Err(ReadError::BadHeader("BIN (6 digits)")));
    let mut bytes = corpus("b1-request-cosyte-person-code.ncpdp");
    bytes[20] = b'9';
    assert_eq!(read(&bytes, &limits), Err(ReadError::BadHeader("transaction count (1-4)")));
    let bytes = corpus("b1-request-cosyte-person-code.ncpdp");
    let small = Limits { max_bytes: 100, ..limits };
    assert_eq!(read(&bytes, &small), Err(ReadError::TooLarge(100)));
    let small = Limits { max_field_bytes: 8, ..limits };
    let err = read(&bytes, &small).unwrap_err();
    assert!(matches!(&err, ReadError::FieldTooLong(id, 8) if id.len() == 2), "{err:?}");
    assert!(!err.to_string().contains("SYNTHCARD09"));
    let mut bytes = corpus("b1-request-cosyte-person-code.ncpdp");
    bytes.push(0xFF);
    assert!(matches!(read(&bytes, &limits), Err(ReadError::NotText(_))));
}

#[test]
fn fuzzing_the_corpus_and_its_cuts_never_panics() {
    for name in
        ["b1-request-cosyte-person-code.ncpdp", "b1-response-cosyte-paid-dur.ncpdp", "b1-response-cosyte-reject.ncpdp"]
    {
        let bytes = corpus(name);
        for end in 0..=bytes.len() {
            fuzz_ncpdp(&bytes[..end]);
        }
        for i in 0..bytes.len() {
            for b in [FIELD, SEGMENT, GROUP, b'A', b'M', 0] {
                let mut v = bytes.clone();
                v[i] = b;
                fuzz_ncpdp(&v);
            }
        }
    }
}

#[test]
fn regression_a_rejection_of_unreadable_bytes_reads_back() {
    // Found by the fuzz target: a response-like header with `D0` where a
    // request puts its version; the rejection echoed `D0` as the service
    // provider qualifier, and read back as a request with a bad BIN.
    fuzz_ncpdp(b"D0J31Aoooo3JDo<oo`J3JD011");
}

#[test]
fn a_response_we_build_is_standard_framing_and_reads_back() {
    let header = ResponseHeader {
        version: "D0".into(),
        transaction_code: "B1".into(),
        transaction_count: 1,
        status: "R".into(),
        provider_id_qualifier: "01".into(),
        provider_id: "1234567893".into(),
        date_of_service: Some("20261206".into()),
    };
    let t = Transmission::response(
        &header,
        &[("20", &[("F4", "PLEASE RESUBMIT\u{1c}")])],
        &[vec![("21", &[("AN", "R"), ("FA", "2"), ("FB", "07"), ("FB", "21")])]],
    );
    let bytes = t.to_bytes();
    assert_eq!(&bytes[..31], b"D0B11R011234567893     20261206");
    assert_eq!(&bytes[31..37], &[SEGMENT, FIELD, b'A', b'M', b'2', b'0']);
    assert!(bytes.windows(4).any(|w| w == [GROUP, SEGMENT, FIELD, b'A']), "the transaction group after 0x1D");
    let back = read(&bytes, &Limits::default()).unwrap();
    assert_eq!(back.to_bytes(), bytes);
    let r = views::response(&back).unwrap();
    assert_eq!(r.status.as_deref(), Some("R"));
    assert_eq!(r.reject_codes, ["07", "21"]);
    assert_eq!(r.message.as_deref(), Some("PLEASE RESUBMIT "), "a separator in a value becomes a space");
    assert_eq!(back.segments[1].group, 1);
}

mod standard {
    use super::super::answer::{self, Outcome, duplicate_of, outcomes, pharmacy_edits, respond};
    use super::super::synth::{Request, request};
    use super::super::validate::{Reject, claim_identity, overpunch, overpunch_cents, read_rejects, validate};
    use super::super::*;
    use super::corpus;
    use clearway_core::edits::{Policy, Severity};

    fn codes(r: &[Reject]) -> Vec<(&str, usize)> {
        r.iter().map(|r| (r.code, r.group)).collect()
    }

    fn today() -> time::Date {
        time::macros::date!(2026 - 12 - 06)
    }

    #[test]
    fn a_synthetic_b1_is_well_formed_and_passes_the_edits() {
        let bytes = request(&Request::b1("610020", "PCN1", "1000001"));
        let t = read(&bytes, &Limits::default()).unwrap();
        assert_eq!(t.to_bytes(), bytes);
        assert_eq!(codes(&validate(&t)), []);
        assert_eq!(pharmacy_edits(&t, 1, today(), &Policy::default()), (vec![], vec![]));
        assert_eq!(claim_identity(&t, 1).as_deref(), Some("01|1234567893|1000001||20261201"));
    }

    #[test]
    fn the_public_b1_is_rejected_for_what_the_standard_requires() {
        // The sample has no pricing segment (always sent on a B1) and an
        // alphanumeric prescription number (402-D2 is numeric).
        let t = read(&corpus("b1-request-cosyte-person-code.ncpdp"), &Limits::default()).unwrap();
        assert_eq!(codes(&validate(&t)), [("16", 0), ("PP", 1)]);
    }

    #[test]
    fn missing_and_invalid_fields_get_their_m_i_codes() {
        let mut r = Request::b1("610020", "PCN1", "1000001");
        r.claims[0].ndc = "0009350560".into(); // ten digits
        r.date_of_birth = Some("19801301".into());
        r.claims[0].days = 0;
        let t = read(&request(&r), &Limits::default()).unwrap();
        assert_eq!(codes(&validate(&t)), [("9", 0), ("19", 1), ("21", 1)]);

        let mut r = Request::b1("610020", "PCN1", "1000001");
        r.cardholder = "X".repeat(21);
        let t = read(&request(&r), &Limits::default()).unwrap();
        assert_eq!(codes(&validate(&t)), [("7", 0)], "an overlong cardholder id");

        // Wrong field separators: `*` instead of 0x1C inside the claim
        // segment leaves one field that is none of the required ones.
        let bytes = request(&Request::b1("610020", "PCN1", "1000001"));
        let text = String::from_utf8(bytes).unwrap();
        let at = text.find("AM07").unwrap();
        let end = text[at..].find('\u{1e}').unwrap() + at;
        let starred = format!("{}{}{}", &text[..at + 4], text[at + 4..end].replace('\u{1c}', "*"), &text[end..]);
        let e = read(starred.as_bytes(), &Limits::default()).unwrap_err();
        assert_eq!(read_rejects(&e), ["R8"], "no segment id where one belongs: a syntax error");
        let starred = format!("{}{}{}", &text[..at + 5], text[at + 5..end].replace('\u{1c}', "*"), &text[end..]);
        let t = read(starred.as_bytes(), &Limits::default()).unwrap();
        let rejects = validate(&t);
        let found = codes(&rejects);
        for c in ["16", "17", "21"] {
            assert!(found.contains(&(c, 1)), "{c} in {found:?}");
        }
    }

    #[test]
    fn header_problems_reject_the_transmission() {
        let mut b = request(&Request::b1("610020", "PCN1", "1000001"));
        b[8..10].copy_from_slice(b"Z9");
        let t = read(&b, &Limits::default()).unwrap();
        assert_eq!(codes(&validate(&t)), [("3", 0)]);
        let mut b = request(&Request::b1("610020", "PCN1", "1000001"));
        b[20] = b'2'; // says two transactions, carries one
        let t = read(&b, &Limits::default()).unwrap();
        assert_eq!(codes(&validate(&t)), [("PB", 0)]);
        let mut b = request(&Request::b1("610020", "PCN1", "1000001"));
        b[0] = b'X';
        let e = read(&b, &Limits::default()).unwrap_err();
        assert_eq!(read_rejects(&e), ["1"]);
        let resp = answer::reject_transmission(None, &b, &read_rejects(&e));
        let back = read(&resp.to_bytes(), &Limits::default()).unwrap();
        let (header, o) = outcomes(&back).unwrap();
        assert_eq!((header.as_str(), o[0].status.as_str(), o[0].rejects.clone()), ("R", "R", vec!["1".to_string()]));
        let Header::Response(h) = &back.header else { panic!() };
        assert_eq!((h.transaction_code.as_str(), h.provider_id.as_str()), ("B1", "1234567893"), "echoed");
    }

    #[test]
    fn responses_echo_the_request_and_read_back() {
        let mut r = Request::b1("610020", "PCN1", "1000001");
        r.claims.push(r.claims[0].clone());
        r.claims[1].rx = "1000002".into();
        let t = read(&request(&r), &Limits::default()).unwrap();
        assert_eq!(codes(&validate(&t)), []);
        let paid = Outcome { authorization: Some("AUTH1".into()), ..Outcome::with_status("P") };
        let rejected = Outcome { message: Some("see codes".into()), ..Outcome::rejected(["21", "19"]) };
        let resp = respond(&t, &[paid.clone(), rejected]);
        let bytes = resp.to_bytes();
        assert!(bytes.starts_with(b"D0B12A011234567893     20261201"), "{}", String::from_utf8_lossy(&bytes));
        let back = read(&bytes, &Limits::default()).unwrap();
        assert_eq!(back.to_bytes(), bytes);
        let (h, o) = outcomes(&back).unwrap();
        assert_eq!(h, "A");
        assert_eq!(o[0].status, "P");
        assert_eq!(o[0].authorization.as_deref(), Some("AUTH1"));
        assert_eq!((o[1].status.as_str(), o[1].rejects.clone()), ("R", vec!["21".to_string(), "19".to_string()]));
        let v = views::response(&back).unwrap();
        assert_eq!(v.status.as_deref(), Some("P"));
        assert_eq!(duplicate_of("P"), Some("D"));
        assert_eq!(duplicate_of("C"), Some("Q"));
        assert_eq!(duplicate_of("A"), Some("S"));
        assert_eq!(duplicate_of("R"), None);
    }

    #[test]
    fn overpunched_money_reads_and_writes() {
        for (text, cents) in [("125{", 1250), ("125E", 1255), ("125}", -1250), ("12N", -125), ("0{", 0), ("99", 99)] {
            assert_eq!(overpunch_cents(text), Some(cents), "{text}");
        }
        for cents in [0, 1, 9, 10, 1255, -1250, -7, 99_999_999] {
            assert_eq!(overpunch_cents(&overpunch(cents)), Some(cents));
        }
        for bad in ["", "12.5", "1X", "{1"] {
            assert_eq!(overpunch_cents(bad), None, "{bad}");
        }
    }

    #[test]
    fn pharmacy_edits_answer_with_their_codes_and_follow_the_policy() {
        let mut r = Request::b1("610020", "PCN1", "1000001");
        r.pharmacy_npi = "1234567890".into(); // bad check digit
        r.claims[0].prescriber_npi = Some("1245319590".into());
        r.claims[0].days = 400;
        r.claims[0].quantity_milli = 200_000_000;
        r.date_of_service = "20270101".into();
        let t = read(&request(&r), &Limits::default()).unwrap();
        let (rejects, warned) = pharmacy_edits(&t, 1, today(), &Policy::default());
        assert_eq!(rejects, ["5", "25", "15", "19", "E7"]);
        assert!(warned.is_empty());
        let policy = Policy::default().with([("ncpdp.npi.pharmacy", Severity::Off), ("ncpdp.dates", Severity::Warn)]);
        let (rejects, warned) = pharmacy_edits(&t, 1, today(), &policy);
        assert_eq!(rejects, ["25", "19", "E7"]);
        assert_eq!(warned, ["ncpdp.dates"]);
    }
}

#[test]
fn views_of_pricing_dur_cob_compound_clinical_and_the_response_money() {
    let seg = |id: &str, fields: &[(&str, &str)]| {
        let mut v = vec![SEGMENT, FIELD];
        v.extend_from_slice(format!("AM{id}").as_bytes());
        for (k, val) in fields {
            v.push(FIELD);
            v.extend_from_slice(k.as_bytes());
            v.extend_from_slice(val.as_bytes());
        }
        v
    };
    let mut b = format!("610020D0B1{:<10}101{:<15}20261201{:<10}", "PCN1", "1234567893", "CLEARWAY01").into_bytes();
    b.extend(seg("04", &[("C2", "SYNTH")]));
    b.push(GROUP);
    b.extend(seg("07", &[("EM", "1"), ("D2", "1"), ("E1", "03"), ("D7", "00093505601"), ("D3", "00")]));
    b.extend(seg("11", &[("D9", "100{"), ("DC", "25E"), ("DQ", "130{"), ("DU", "125E")]));
    b.extend(seg("08", &[("7E", "1"), ("E4", "DD"), ("E5", "M0"), ("E6", "1B"), ("7E", "2"), ("E4", "ER")]));
    b.extend(seg(
        "05",
        &[("4C", "1"), ("5C", "01"), ("6C", "03"), ("7C", "610279"), ("E8", "20261130"), ("HB", "1"), ("DV", "50{")],
    ));
    b.extend(seg(
        "10",
        &[
            ("EF", "11"),
            ("EG", "1"),
            ("EC", "2"),
            ("RE", "03"),
            ("TE", "00093505601"),
            ("ED", "10000"),
            ("EE", "40{"),
            ("RE", "03"),
            ("TE", "00093505602"),
            ("ED", "5000"),
            ("EE", "20{"),
        ],
    ));
    b.extend(seg("13", &[("VE", "2"), ("WE", "02"), ("DO", "E119"), ("WE", "02"), ("DO", "I10")]));
    let t = read(&b, &Limits::default()).unwrap();
    assert_eq!(t.to_bytes(), b);
    let r = views::request(&t).unwrap();
    assert_eq!(
        r.pricing,
        views::Pricing {
            ingredient_cost: Some(1000),
            dispensing_fee: Some(255),
            usual_and_customary: Some(1300),
            gross_amount_due: Some(1255)
        }
    );
    assert_eq!(r.dur.len(), 2);
    assert_eq!(
        (r.dur[0].reason.as_deref(), r.dur[0].professional_service.as_deref(), r.dur[0].result.as_deref()),
        (Some("DD"), Some("M0"), Some("1B"))
    );
    assert_eq!(r.dur[1].reason.as_deref(), Some("ER"));
    assert_eq!(r.cob.len(), 1);
    assert_eq!(r.cob[0].id.as_deref(), Some("610279"));
    assert_eq!(r.cob[0].amounts_paid, [500]);
    let c = r.compound.unwrap();
    assert_eq!(c.ingredients.len(), 2);
    assert_eq!(c.ingredients[1].product_id.as_deref(), Some("00093505602"));
    assert_eq!(c.ingredients[0].cost, Some(400));
    assert_eq!(
        r.diagnoses,
        [(Some("02".to_string()), "E119".to_string()), (Some("02".to_string()), "I10".to_string())]
    );

    let mut resp = b"D0B11A011234567893     20261201".to_vec();
    resp.push(GROUP);
    resp.extend(seg("21", &[("AN", "P"), ("F3", "AUTH1")]));
    resp.extend(seg("22", &[("EM", "1"), ("D2", "1")]));
    resp.extend(seg("23", &[("F5", "10{"), ("F6", "100{"), ("F7", "25E"), ("F9", "115E")]));
    resp.extend(seg("25", &[("C1", "GRP1")]));
    let t = read(&resp, &Limits::default()).unwrap();
    let v = views::response(&t).unwrap();
    assert_eq!(
        (v.patient_pay, v.ingredient_cost_paid, v.dispensing_fee_paid, v.total_paid),
        (Some(100), Some(1000), Some(255), Some(1155))
    );
    assert_eq!((v.prescription_number.as_deref(), v.group_id.as_deref()), (Some("1"), Some("GRP1")));
}
