//! Property tests: no input panics, the codec round-trips, and any legal
//! choice of delimiters reads back the values that were written.

use super::parse::{Delimiters, Message, decode_escapes, encode_escapes};
use super::{decode_frame, encode_frame, fuzz_hl7, fuzz_mllp, mllp};
use proptest::prelude::*;

/// Fragments that steer random input towards the parser's interesting paths.
const TOKENS: &[&str] = &[
    "MSH|^~\\&|",
    "MSH|^~}|",
    "MSH#*@$%#",
    "FHS|^~\\&|",
    "BHS|^~\\&|",
    "BTS|",
    "FTS|",
    "MSA|AA|",
    "PID|1||",
    "EVN|A01|",
    "PV1|1|I|",
    "OBR|1|",
    "OBX|1|NM|",
    "FT1|1||||||||||",
    "SCH|",
    "ORC|NW|",
    "ADT^A01^ADT_A01",
    "ORU^R01",
    "ACK^A01^ACK",
    "DFT^P03",
    "SIU^S12",
    "ORM^O01",
    "|P|2.5.1",
    "|T|2.3",
    "|P|2.4|||AL|NE",
    "|",
    "^",
    "~",
    "&",
    "\\",
    "}",
    "#",
    "\r",
    "\n",
    "\r\n",
    "\\T\\",
    "\\X41\\",
    "\\XC3\\",
    "\\.br\\",
    "\\H\\",
    "Ä",
    "日本",
    "\u{FEFF}",
    "\"\"",
    "12.50",
    "\x0B",
    "\x1C\r",
    "20240101",
    "x",
    " ",
];

fn hl7ish() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(prop::sample::select(TOKENS), 0..120).prop_map(|parts| parts.concat().into_bytes())
}

/// Input that starts like a message, so that most cases get past the header
/// and reach field access, validation and the ACK builder.
fn message_like() -> impl Strategy<Value = Vec<u8>> {
    const HEADERS: &[&str] = &[
        "MSH|^~\\&|A|B|C|D|20240101||",
        "MSH|^~}|A|B|C|D|20240101||",
        "MSH#*@$%#A#B#C#D#20240101##",
        "\u{FEFF}MSH|^~\\&|",
    ];
    (prop::sample::select(HEADERS), prop::collection::vec(prop::sample::select(TOKENS), 0..80))
        .prop_map(|(head, parts)| format!("{head}{}", parts.concat()).into_bytes())
}

/// Five distinct ASCII punctuation characters.
fn delimiter_set() -> impl Strategy<Value = [u8; 6]> {
    let punct: Vec<u8> = (0x21u8..0x7F).filter(u8::is_ascii_punctuation).collect();
    Just(punct).prop_shuffle().prop_map(|p| {
        let mut out = [0u8; 6];
        for (o, b) in out.iter_mut().zip(p) {
            *o = b;
        }
        out
    })
}

/// A leaf value: any text, delimiters and multi-byte characters included.
fn leaf() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9 |^~\\\\&#*@$%!?.\\-ÄöΩ日\n\t]{0,8}"
}

type Fields = Vec<Vec<Vec<Vec<String>>>>;

fn fields() -> impl Strategy<Value = Fields> {
    let sub = prop::collection::vec(leaf(), 1..3);
    let comp = prop::collection::vec(sub, 1..3);
    let rep = prop::collection::vec(comp, 1..3);
    prop::collection::vec(rep, 1..5)
}

proptest! {
    // 512 cases by default; `PROPTEST_CASES` overrides for longer runs.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(512),
        // Found cases become named regression tests in the modules instead
        // of files outside the module.
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn arbitrary_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..600)) {
        fuzz_hl7(&data);
        fuzz_mllp(&data);
    }

    #[test]
    fn hl7_like_input_never_panics(data in hl7ish()) {
        fuzz_hl7(&data);
        fuzz_mllp(&data);
    }

    #[test]
    fn message_like_input_never_panics(data in message_like()) {
        fuzz_hl7(&data);
    }

    #[test]
    fn framed_hl7_like_input_never_panics(msgs in prop::collection::vec(hl7ish(), 0..4), junk in prop::collection::vec(any::<u8>(), 0..4)) {
        let mut buf = Vec::new();
        for m in &msgs {
            encode_frame(m, &mut buf);
        }
        buf.extend_from_slice(&junk);
        fuzz_mllp(&buf);
    }

    #[test]
    fn mllp_round_trips(payloads in prop::collection::vec(
        prop::collection::vec(any::<u8>().prop_map(|b| if b == mllp::START || b == mllp::END[0] { b'x' } else { b }), 0..300),
        1..5,
    )) {
        let mut buf = Vec::new();
        for p in &payloads {
            encode_frame(p, &mut buf);
        }
        let mut rest = &buf[..];
        for p in &payloads {
            let frame = decode_frame(rest, 300);
            let Ok(Some(f)) = frame else {
                return Err(TestCaseError::fail(format!("{frame:?}")));
            };
            prop_assert_eq!(rest.get(f.payload.clone()), Some(&p[..]));
            rest = rest.get(f.consumed..).unwrap_or_default();
        }
        prop_assert!(rest.is_empty());
    }

    #[test]
    fn escapes_round_trip(s in any::<String>()) {
        let d = Delimiters::default();
        let enc = encode_escapes(&s, &d);
        prop_assert_eq!(decode_escapes(enc.as_bytes(), &d), s);
    }

    #[test]
    fn decoding_arbitrary_bytes_never_panics(data in prop::collection::vec(any::<u8>(), 0..200), set in delimiter_set()) {
        let d = Delimiters { field: set[0], component: set[1], repetition: set[2], escape: Some(set[3]), subcomponent: Some(set[4]), truncation: Some(set[5]) };
        let out = decode_escapes(&data, &d);
        prop_assert!(out.len() <= data.len() * 3);
    }

    #[test]
    fn any_legal_delimiters_read_back_what_was_written(
        set in delimiter_set(),
        truncation in any::<bool>(),
        segments in prop::collection::vec(fields(), 1..4),
        terminator in prop::sample::select(&["\r", "\n", "\r\n"][..]),
    ) {
        let d = Delimiters {
            field: set[0],
            component: set[1],
            repetition: set[2],
            escape: Some(set[3]),
            subcomponent: Some(set[4]),
            truncation: truncation.then_some(set[5]),
        };
        let (f, c, r, s) = (
            char::from(d.field),
            char::from(d.component).to_string(),
            char::from(d.repetition).to_string(),
            char::from(set[4]).to_string(),
        );
        let mut text = format!("MSH{f}{}{f}APP{f}FAC{f}{f}{f}20240101{f}{f}ADT{c}A01{f}ID1{f}P{f}{}", d.encoding_characters(), encode_escapes("2.5.1", &d));
        for seg in &segments {
            text.push_str(terminator);
            text.push_str("ZZ1");
            for field in seg {
                text.push(f);
                let reps: Vec<String> = field
                    .iter()
                    .map(|rep| {
                        rep.iter()
                            .map(|comp| comp.iter().map(|leaf| encode_escapes(leaf, &d)).collect::<Vec<_>>().join(&s))
                            .collect::<Vec<_>>()
                            .join(&c)
                    })
                    .collect();
                text.push_str(&reps.join(&r));
            }
        }
        let msg = match Message::parse(text.as_bytes()) {
            Ok(m) => m,
            Err(e) => return Err(TestCaseError::fail(format!("{e}"))),
        };
        prop_assert_eq!(msg.delimiters(), &d);
        let control_id = msg.control_id();
        prop_assert_eq!(control_id.as_deref(), Some("ID1"));
        prop_assert_eq!(msg.message_type().trigger, "A01");
        prop_assert_eq!(msg.count("ZZ1"), segments.len());
        for (i, seg) in segments.iter().enumerate() {
            let Some(parsed) = msg.segment_n("ZZ1", i + 1) else {
                return Err(TestCaseError::fail("segment missing"));
            };
            prop_assert_eq!(parsed.field_count(), seg.len());
            for (fi, field) in seg.iter().enumerate() {
                let pf = parsed.field(fi + 1);
                prop_assert_eq!(pf.map(|x| x.repetition_count()), Some(field.len()));
                for (ri, rep) in field.iter().enumerate() {
                    for (ci, comp) in rep.iter().enumerate() {
                        for (si, leaf) in comp.iter().enumerate() {
                            let got = pf
                                .and_then(|x| x.repetition(ri + 1))
                                .and_then(|x| x.component(ci + 1))
                                .and_then(|x| x.subcomponent(si + 1))
                                .map(|x| x.decode().into_owned());
                            prop_assert_eq!(got.as_deref(), Some(leaf.as_str()));
                            let path = format!("ZZ1({})-{}({}).{}.{}", i + 1, fi + 1, ri + 1, ci + 1, si + 1);
                            let via_path = msg.get(&path).map(|x| x.decode().into_owned());
                            prop_assert_eq!(via_path.as_deref(), Some(leaf.as_str()));
                        }
                    }
                }
            }
        }
    }
}
