//! HL7 v2 parsing throughput, and the same work with `hl7-parser` for a ratio.
//!
//! "Parse" means what the intake does with every message before it can
//! acknowledge: split the stream into messages, index the fields and read
//! MSH-9, MSH-10 and PID-3. Inputs are about 1 MB: synthetic ADT^A01 from
//! `hl7::write_adt`, and a realistic ORU^R01 (lab panel with 20 OBX)
//! repeated with distinct control ids.
//!
//! `hl7-parser` has no stream splitting, so it gets the messages pre-split
//! (a head start); `clearway/parse_presplit` does the same work on the same
//! pre-split messages for a like-for-like ratio.
//!
//! Run: `cargo bench -p clearway-formats --bench hl7 -- --warm-up-time 1 --measurement-time 3`

use clearway_formats::hl7::{AckCode, AckSpec, Limits, Message, build_ack, split, validate, write_adt};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::fmt::Write as _;
use std::hint::black_box;

const TARGET_BYTES: usize = 1_000_000;

/// About 1 MB of synthetic ADT^A01.
fn adt_input() -> Vec<u8> {
    let mut probe = Vec::new();
    write_adt(&mut probe, 100, 7).expect("generate");
    let count = TARGET_BYTES * 100 / probe.len().max(1);
    let mut out = Vec::new();
    write_adt(&mut out, count, 7).expect("generate");
    out
}

/// One ORU^R01: a complete blood count and chemistry panel with 20 OBX.
fn oru_message(out: &mut String, i: usize) {
    const TESTS: &[(&str, &str, &str, &str, &str)] = &[
        ("6690-2", "Leukocytes [#/volume] in Blood by Automated count", "10*3/uL", "4.5-11.0", "7.2"),
        ("789-8", "Erythrocytes [#/volume] in Blood by Automated count", "10*6/uL", "4.20-5.90", "4.81"),
        ("718-7", "Hemoglobin [Mass/volume] in Blood", "g/dL", "13.5-17.5", "14.6"),
        ("4544-3", "Hematocrit [Volume Fraction] of Blood by Automated count", "%", "41-53", "43.1"),
        ("787-2", "MCV [Entitic volume] by Automated count", "fL", "80-100", "89.6"),
        ("785-6", "MCH [Entitic mass] by Automated count", "pg", "26-34", "30.4"),
        ("786-4", "MCHC [Mass/volume] by Automated count", "g/dL", "31-37", "33.9"),
        ("788-0", "Erythrocyte distribution width [Ratio] by Automated count", "%", "11.5-14.5", "12.8"),
        ("777-3", "Platelets [#/volume] in Blood by Automated count", "10*3/uL", "150-400", "251"),
        ("2345-7", "Glucose [Mass/volume] in Serum or Plasma", "mg/dL", "70-99", "104"),
        ("3094-0", "Urea nitrogen [Mass/volume] in Serum or Plasma", "mg/dL", "7-20", "15"),
        ("2160-0", "Creatinine [Mass/volume] in Serum or Plasma", "mg/dL", "0.74-1.35", "0.98"),
        ("2951-2", "Sodium [Moles/volume] in Serum or Plasma", "mmol/L", "135-145", "140"),
        ("2823-3", "Potassium [Moles/volume] in Serum or Plasma", "mmol/L", "3.5-5.1", "4.2"),
        ("2075-0", "Chloride [Moles/volume] in Serum or Plasma", "mmol/L", "98-107", "103"),
        ("2028-9", "Carbon dioxide, total [Moles/volume] in Serum or Plasma", "mmol/L", "22-29", "25"),
        ("17861-6", "Calcium [Mass/volume] in Serum or Plasma", "mg/dL", "8.6-10.3", "9.4"),
        ("2885-2", "Protein [Mass/volume] in Serum or Plasma", "g/dL", "6.0-8.3", "7.1"),
        ("1751-7", "Albumin [Mass/volume] in Serum or Plasma", "g/dL", "3.5-5.0", "4.3"),
        ("1975-2", "Bilirubin.total [Mass/volume] in Serum or Plasma", "mg/dL", "0.1-1.2", "1.4"),
    ];
    let _ = write!(
        out,
        "MSH|^~\\&|LAB_LIS|GEN_HOSPITAL|EHR|GEN_HOSPITAL|20240315083000||ORU^R01^ORU_R01|LAB{i:08}|P|2.5.1|||AL|NE|USA\r\
         PID|1||{mrn}^^^GEN_HOSPITAL^MR||MARTINEZ^MARIA^L||19750412|F|||42 OAK AVE^^SPRINGFIELD^IL^62701^USA||(555)555-0142\r\
         PV1|1|O|LAB^^^GEN_HOSPITAL||||1234^QUINN^GREGORY^^^^MD|||LAB||||1|||1234^QUINN^GREGORY^^^^MD|OP|V{visit}^^^GEN_HOSPITAL^VN\r\
         ORC|RE|ORD{i:08}^EHR|LAB{i:08}^LAB_LIS||CM||||20240315080000|||1234^QUINN^GREGORY^^^^MD\r\
         OBR|1|ORD{i:08}^EHR|LAB{i:08}^LAB_LIS|80053^Comprehensive metabolic panel and CBC^CPT|||20240315074500|||||||20240315075000|Blood^Blood|1234^QUINN^GREGORY^^^^MD||||||20240315082900|||F\r",
        mrn = 100_000 + i,
        visit = 5_000_000 + i,
    );
    for (n, (code, name, unit, range, value)) in TESTS.iter().enumerate() {
        let flag = if n % 7 == 6 { "H" } else { "N" };
        let _ = write!(
            out,
            "OBX|{}|NM|{code}^{name}^LN||{value}|{unit}^{unit}^UCUM|{range}|{flag}|||F|||20240315082900|GH^Gen Hospital Lab^L|5678^LABTECH^LEE\r",
            n + 1
        );
    }
    out.push_str("NTE|1|L|Specimen received 08:05. Results verified by \\T\\ released to EHR.\r");
}

/// About 1 MB of ORU^R01.
fn oru_input() -> Vec<u8> {
    let mut s = String::new();
    let mut i = 0;
    while s.len() < TARGET_BYTES {
        oru_message(&mut s, i);
        i += 1;
    }
    s.into_bytes()
}

/// The work measured: split, index, read MSH-9, MSH-10, PID-3.
fn clearway_split_and_read(input: &[u8]) -> usize {
    let batch = split(input, &Limits::DEFAULT).expect("split");
    let mut acc = 0;
    for m in batch.messages() {
        acc += read_clearway(m);
    }
    acc
}

fn read_clearway(m: &Message<'_>) -> usize {
    let msh = m.msh();
    let t = msh.field(9).map_or(0, |f| f.raw().len());
    let id = msh.field(10).map_or(0, |f| f.raw().len());
    let pid3 = m.segment("PID").and_then(|s| s.field(3)).map_or(0, |f| f.raw().len());
    t + id + pid3
}

fn read_hl7_parser(s: &str) -> usize {
    let m = hl7_parser::Message::parse(s).expect("hl7-parser parse");
    let msh = m.segment("MSH").expect("MSH");
    let t = msh.field(9).map_or(0, |f| f.raw_value().len());
    let id = msh.field(10).map_or(0, |f| f.raw_value().len());
    let pid3 = m.segment("PID").and_then(|s| s.field(3)).map_or(0, |f| f.raw_value().len());
    t + id + pid3
}

fn bench_input(c: &mut Criterion, name: &str, input: &[u8]) {
    let batch = split(input, &Limits::DEFAULT).expect("split");
    let messages: Vec<&[u8]> = batch.messages().map(|m| m.raw()).collect();
    let texts: Vec<&str> = messages.iter().map(|m| std::str::from_utf8(m).expect("utf-8")).collect();
    // Both parsers must read the same values before their speed means anything.
    let ours: usize = batch.messages().map(read_clearway).sum();
    let theirs: usize = texts.iter().map(|t| read_hl7_parser(t)).sum();
    assert_eq!(ours, theirs, "{name}: parsers disagree");

    let mut g = c.benchmark_group(name);
    g.throughput(Throughput::Bytes(input.len() as u64));
    g.bench_function("clearway/split+read", |b| b.iter(|| clearway_split_and_read(black_box(input))));
    g.bench_function("clearway/parse_presplit+read", |b| {
        b.iter(|| messages.iter().map(|m| read_clearway(&Message::parse(black_box(m)).expect("parse"))).sum::<usize>())
    });
    g.bench_function("hl7-parser/parse_presplit+read", |b| {
        b.iter(|| texts.iter().map(|t| read_hl7_parser(black_box(t))).sum::<usize>())
    });
    // Lazy access makes "parse" cheap; this is the cost of touching every
    // subcomponent, for comparison with a parser that builds a full tree.
    g.bench_function("clearway/split+walk_every_subcomponent", |b| {
        b.iter(|| {
            let batch = split(black_box(input), &Limits::DEFAULT).expect("split");
            let mut n = 0usize;
            for m in batch.messages() {
                for seg in m.segments() {
                    for field in seg.fields() {
                        for rep in field.repetitions() {
                            for comp in rep.components() {
                                n += comp.subcomponents().map(|s| s.raw().len()).sum::<usize>();
                            }
                        }
                    }
                }
            }
            n
        })
    });
    g.bench_function("clearway/split+validate+ack", |b| {
        b.iter(|| {
            let batch = split(black_box(input), &Limits::DEFAULT).expect("split");
            batch
                .messages()
                .map(|m| {
                    let issues = validate(m);
                    build_ack(
                        m,
                        &AckSpec {
                            code: AckCode::for_issues(&issues, false),
                            control_id: "ACK1",
                            timestamp: "20240315083000",
                            text: None,
                            issues: &issues,
                        },
                    )
                    .len()
                })
                .sum::<usize>()
        })
    });
    g.finish();
}

/// Prints how both parsers decode escapes next to multi-byte text, for the
/// record: `hl7-parser` 0.3 slices the text by character index, which
/// corrupts the value or panics on a char boundary.
fn compare_escape_decoding() {
    let cases = ["A\\T\\B", "Ä\\T\\ö", "ÄÄ\\T\\x", "日本\\F\\語", "Ä\\X41\\", "cut\\T"];
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    for value in cases {
        let input = format!("MSH|^~\\&|A|B|C|D|1||ADT^A01|1|P|2.5\rPID|1||{value}\r");
        let ours = Message::parse(input.as_bytes()).ok().and_then(|m| m.get("PID-3").map(|v| v.decode().into_owned()));
        let theirs = std::panic::catch_unwind(|| {
            let m = hl7_parser::Message::parse(&input).ok()?;
            let f = m.segment("PID")?.field(3)?;
            Some(f.display(&m.separators).to_string())
        })
        .unwrap_or_else(|_| Some("<panic>".to_string()));
        eprintln!("escape decoding of {value:?}: clearway {ours:?}, hl7-parser {theirs:?}");
    }
    std::panic::set_hook(hook);
}

fn benches(c: &mut Criterion) {
    compare_escape_decoding();
    let adt = adt_input();
    let oru = oru_input();
    bench_input(c, "hl7_adt_1mb", &adt);
    bench_input(c, "hl7_oru_1mb", &oru);
}

criterion_group!(hl7, benches);
criterion_main!(hl7);
