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
