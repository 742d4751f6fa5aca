//! Property tests for the NCPDP D.0 reader: never a panic, and what reads
//! writes back byte for byte, whatever the bytes and wherever the
//! separators fall.
#![allow(clippy::unwrap_used)]

use clearway_formats::ncpdp::{self, FIELD, GROUP, Limits, SEGMENT, fuzz_ncpdp};
use proptest::prelude::*;

const REQUEST_HEADER: &[u8] = b"610097D0B1PCNTEST   1011234567893     20261206SOFTWARE01";

fn field() -> impl Strategy<Value = Vec<u8>> {
    ("[A-Z0-9]{2}", "[ -~&&[^\\x1c-\\x1e]]{0,20}").prop_map(|(id, v)| [id.as_bytes(), v.as_bytes()].concat())
}

fn segment() -> impl Strategy<Value = Vec<u8>> {
    ("[0-9]{2}", prop::collection::vec(field(), 0..8), any::<bool>()).prop_map(|(id, fields, group)| {
        let mut out = Vec::new();
        if group {
            out.push(GROUP);
        }
        out.extend([SEGMENT, FIELD]);
        out.extend_from_slice(format!("AM{id}").as_bytes());
        for f in fields {
            out.push(FIELD);
            out.extend(f);
        }
        out
    })
}

proptest! {
    #[test]
    fn well_formed_requests_read_and_write_back(segments in prop::collection::vec(segment(), 1..10)) {
        let mut bytes = REQUEST_HEADER.to_vec();
        for s in segments {
            bytes.extend(s);
        }
        let t = ncpdp::read(&bytes, &Limits::default()).unwrap();
        prop_assert_eq!(t.to_bytes(), bytes);
        prop_assert_eq!(t.transaction_code(), "B1");
        fuzz_ncpdp(&t.to_bytes());
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..400)) {
        fuzz_ncpdp(&data);
        let mut with_header = REQUEST_HEADER.to_vec();
        with_header.extend(&data);
        fuzz_ncpdp(&with_header);
    }

    #[test]
    fn batches_of_requests_read_back_in_order(
        rx in prop::collection::vec(1u64..999_999_999_999, 0..20),
        sender in "[A-Z0-9 ]{0,24}",
        batch_number in "[0-9]{7}",
    ) {
        use clearway_formats::ncpdp::batch::{BatchHeader, read_batch, write_batch};
        use clearway_formats::ncpdp::synth::{Request, request};
        let header = BatchHeader {
            transmission_type: "T".into(),
            sender_id: sender.trim_end().to_string(),
            batch_number: batch_number.clone(),
            creation_date: "20261206".into(),
            creation_time: "0700".into(),
            file_type: "T".into(),
            version: "12".into(),
            receiver_id: "CLEARWAY".into(),
        };
        let details: Vec<(String, Vec<u8>)> = rx
            .iter()
            .enumerate()
            .map(|(i, n)| (format!("R{i:09}"), request(&Request::b1("610020", "P", &n.to_string()))))
            .collect();
        let file = write_batch(&header, &details, "");
        let b = read_batch(&file, 100).unwrap();
        prop_assert_eq!(&b.header, &header);
        prop_assert_eq!(b.details.len(), details.len());
        for (d, (reference, t)) in b.details.iter().zip(&details) {
            prop_assert_eq!(&d.reference, reference);
            prop_assert_eq!(d.transmission, t.as_slice());
            prop_assert!(ncpdp::read(d.transmission, &Limits::default()).is_ok());
        }
        fuzz_ncpdp(&file);
    }
}
