#![allow(clippy::unwrap_used)]
use super::*;
use crate::x12::build::{self, ClaimAck, ClaimDecision, Controls, Source};
use crate::x12::synth::{self, Kind};
use crate::x12::{AnalyzeOptions, Document, analyze};
use time::macros::datetime;

fn synth_837(kind: Kind, count: usize, seed: u64) -> Vec<u8> {
    let mut v = Vec::new();
    synth::write(&mut v, kind, count, seed).unwrap();
    v
}

fn envelope() -> Envelope {
    Envelope {
        sender_qualifier: "ZZ".into(),
        sender_id: "CLEARWAY".into(),
        receiver_qualifier: "ZZ".into(),
        receiver_id: "ACME01".into(),
        group_sender: "CLEARWAY".into(),
        group_receiver: "ACME01".into(),
        usage: "T".into(),
        delimiters: OUT,
    }
}

fn parties() -> Parties<'static> {
    Parties {
        submitter_name: "CLEARWAY",
        submitter_id: "CLEARWAY",
        contact_name: "EDI DESK",
        contact_qualifier: "EM",
        contact: "edi@example.com",
        receiver_name: "ACME HEALTH PLAN",
        receiver_id: "ACME01",
    }
}

fn pcns(bytes: &[u8]) -> Vec<String> {
    let mut v: Vec<String> = analyze(bytes, &AnalyzeOptions::default())
        .documents()
        .filter_map(|d| match d {
            Document::Claim(c) => Some(c.patient_control_number.expose().clone()),
            _ => None,
        })
        .collect();
    v.sort();
    v
}

fn rebuilt(claims: &[&ClaimFragment], control: u32) -> Built {
    let traces: Vec<String> = (0..claims.len()).map(|i| format!("CW{control}-{i}")).collect();
    let traces: Vec<&str> = traces.iter().map(String::as_str).collect();
    build_837(&Outbound837 {
        traces: &traces,
        envelope: &envelope(),
        parties: parties(),
        ack_requested: true,
        control,
        bht03: "000000042",
        at: datetime!(2026-12-06 10:30),
        claims,
    })
}

#[test]
fn claims_of_two_submitters_leave_as_one_valid_837() {
    let a = synth_837(Kind::Professional837, 7, 1);
    let b = synth_837(Kind::Professional837, 5, 2);
    let fa = claim_fragments(&a);
    let fb = claim_fragments(&b);
    assert_eq!(fa.len(), 1);
    assert_eq!(fa[0].claims.len(), 7);
    assert_eq!(fb[0].claims.len(), 5);
    assert!(!fa[0].submitter.bht03.is_empty());
    let all: Vec<&ClaimFragment> = fa[0].claims.iter().chain(&fb[0].claims).map(|c| c.as_ref().unwrap()).collect();
    let built = rebuilt(&all, 42);
    let analysis = analyze(&built.bytes, &AnalyzeOptions::default());
    let issues: Vec<String> =
        analysis.sets().flat_map(|s| crate::report::set_issues(&s.report, None)).map(|i| i.message).collect();
    assert!(analysis.accepted(), "{issues:?}\n{}", String::from_utf8_lossy(&built.bytes));
    let mut want = pcns(&a);
    want.extend(pcns(&b));
    want.sort();
    assert_eq!(pcns(&built.bytes), want);
    // ISA14 asks for a TA1; ISA13 and GS06 are the control number.
    let text = String::from_utf8_lossy(&built.bytes);
    assert_eq!(&text[100..101], "1");
    assert!(text.contains("*000000042*1*T*:~"), "{}", &text[..110]);
    assert!(text.contains("~GS*HC*CLEARWAY*ACME01*20261206*1030*42*X*005010X222A1~"));
    assert!(text.contains("~BHT*0019*00*000000042*20261206*1030*CH~"));
    // Our trace number on every claim, once.
    for i in 0..12 {
        assert_eq!(text.matches(&format!("~REF*D9*CW42-{i}~")).count(), 1, "claim {i}");
    }
    // Every claim is placed once, positions 1..=n in set 0001.
    let mut positions: Vec<u32> = built
        .placed
        .iter()
        .map(|(st, p)| {
            assert_eq!(st, "0001");
            *p
        })
        .collect();
    positions.sort_unstable();
    assert_eq!(positions, (1..=12).collect::<Vec<u32>>());
}

#[test]
fn institutional_claims_rebuild_under_their_own_guide() {
    let (kind, guide) = (Kind::Institutional837, "005010X223A2");
    let a = synth_837(kind, 4, 9);
    let f = claim_fragments(&a);
    let claims: Vec<&ClaimFragment> = f[0].claims.iter().map(|c| c.as_ref().unwrap()).collect();
    assert_eq!(claims[0].implementation, guide);
    let built = rebuilt(&claims, 7);
    let analysis = analyze(&built.bytes, &AnalyzeOptions::default());
    assert!(analysis.accepted(), "{guide}\n{}", String::from_utf8_lossy(&built.bytes));
    assert_eq!(pcns(&built.bytes), pcns(&a));
}

#[test]
fn more_than_five_thousand_claims_take_more_than_one_set() {
    let a = synth_837(Kind::Professional837, MAX_CLAIMS_PER_SET + 3, 4);
    let f = claim_fragments(&a);
    let claims: Vec<&ClaimFragment> = f.iter().flat_map(|s| &s.claims).map(|c| c.as_ref().unwrap()).collect();
    let built = rebuilt(&claims, 8);
    let analysis = analyze(&built.bytes, &AnalyzeOptions::default());
    assert_eq!(claims.len(), MAX_CLAIMS_PER_SET + 3);
    assert!(analysis.accepted());
    assert_eq!(analysis.interchanges[0].groups[0].sets.len(), 2, "{:?}", &built.placed[MAX_CLAIMS_PER_SET - 1..]);
    assert_eq!(built.placed.last().unwrap(), &("0002".to_string(), 3));
}

/// A payer answers the batch with a 277CA (one claim rejected); the
/// answer reads back and is re-expressed for one submitter.
#[test]
fn a_payer_277ca_reads_back_and_forwards_per_submitter() {
    let a = synth_837(Kind::Professional837, 3, 11);
    // Another submitter's patient control numbers (synthetic ones repeat
    // across files).
    let b =
        String::from_utf8(synth_837(Kind::Professional837, 2, 12)).unwrap().replace("CLM*PCN", "CLM*QCN").into_bytes();
    let (fa, fb) = (claim_fragments(&a), claim_fragments(&b));
    let all: Vec<&ClaimFragment> = fa[0].claims.iter().chain(&fb[0].claims).map(|c| c.as_ref().unwrap()).collect();
    let built = rebuilt(&all, 42);
    // The payer's side.
    let analysis = analyze(&built.bytes, &AnalyzeOptions::default());
    let ic = &analysis.interchanges[0];
    let set = &ic.groups[0].sets[0];
    let claims = build::claims_of(set);
    let acks: Vec<ClaimAck<'_>> = claims
        .iter()
        .enumerate()
        .map(|(n, c)| ClaimAck {
            claim: c,
            decision: if n == 1 {
                ClaimDecision::rejected(build::Stc::new("A7", "562", Some("85")))
            } else {
                ClaimDecision::Accepted
            },
            clearinghouse_trace: format!("P{n}"),
        })
        .collect();
    let answer = build::ack277ca(&build::Ack277Ca {
        interchange: &ic.report.isa,
        group: &ic.groups[0].report.header,
        set: &set.report,
        claims: &acks,
        source: &Source { name: "ACME HEALTH PLAN".into(), id: "ACME01".into() },
        reference: "PAYER277",
        received: datetime!(2026-12-06 10:30).date(),
        controls: Controls { interchange: 5, group: 5, first_set: 1 },
        at: datetime!(2026-12-06 11:00),
    });
    let read = read_answers(&answer[..]).unwrap();
    let [PayerAnswer::Ack277(r)] = read.as_slice() else { panic!("{read:?}") };
    assert_eq!(r.batch_reference, "000000042");
    let statuses: Vec<&str> = r.providers.iter().flat_map(|p| p.claims.iter().map(|c| c.status.as_str())).collect();
    assert_eq!(statuses.iter().filter(|s| s.starts_with("A7:562")).count(), 1, "{statuses:?}");
    let got: Vec<String> = {
        let mut v: Vec<String> =
            r.providers.iter().flat_map(|p| p.claims.iter().map(|c| c.patient_control_number.clone())).collect();
        v.sort();
        v
    };
    let mut want = pcns(&a);
    want.extend(pcns(&b));
    want.sort();
    assert_eq!(got, want);

    // Submitter A's share.
    let mine = pcns(&a);
    let selected: Vec<(usize, Vec<usize>)> = r
        .providers
        .iter()
        .enumerate()
        .map(|(p, prov)| {
            (
                p,
                prov.claims
                    .iter()
                    .enumerate()
                    .filter(|(_, c)| mine.contains(&c.patient_control_number))
                    .map(|(i, _)| i)
                    .collect(),
            )
        })
        .filter(|(_, v): &(usize, Vec<usize>)| !v.is_empty())
        .collect();
    let env = Envelope { receiver_id: fa[0].submitter.isa_id.clone(), ..envelope() };
    let fwd = forward_277ca(&Forward277 {
        envelope: &env,
        control: 77,
        at: datetime!(2026-12-06 11:05),
        reference: "FWD1",
        payer: r,
        submitter: &fa[0].submitter,
        claims: &selected,
    });
    let analysis = analyze(&fwd, &AnalyzeOptions::default());
    let issues: Vec<String> =
        analysis.sets().flat_map(|s| crate::report::set_issues(&s.report, None)).map(|i| i.message).collect();
    assert!(analysis.accepted(), "{issues:?}\n{}", String::from_utf8_lossy(&fwd));
    let back = read_answers(&fwd[..]).unwrap();
    let [PayerAnswer::Ack277(f)] = back.as_slice() else { panic!() };
    assert_eq!(f.batch_reference, fa[0].submitter.bht03, "2200B carries the submitter's own BHT03");
    let mut forwarded: Vec<String> =
        f.providers.iter().flat_map(|p| p.claims.iter().map(|c| c.patient_control_number.clone())).collect();
    forwarded.sort();
    assert_eq!(forwarded, mine, "only this submitter's claims");
}

#[test]
fn a_999_and_a_ta1_name_our_controls() {
    let a = synth_837(Kind::Professional837, 2, 3);
    let f = claim_fragments(&a);
    let claims: Vec<&ClaimFragment> = f[0].claims.iter().map(|c| c.as_ref().unwrap()).collect();
    let built = rebuilt(&claims, 123_456);
    let analysis = analyze(&built.bytes, &AnalyzeOptions::default());
    let ic = &analysis.interchanges[0];
    let controls = Controls { interchange: 9, group: 9, first_set: 1 };
    let ack = build::ack999(ic, controls, datetime!(2026-12-06 11:00)).unwrap();
    let ta1 = build::ta1(&ic.report, controls, datetime!(2026-12-06 11:00));
    let read = read_answers(&ack[..]).unwrap();
    let [PayerAnswer::Ack999(r)] = read.as_slice() else { panic!("{read:?}") };
    assert_eq!(r.group_control, "123456");
    assert_eq!(r.group_code, "A");
    assert_eq!(r.sets, vec![("0001".to_string(), "A".to_string())]);
    let read = read_answers(&ta1[..]).unwrap();
    let [PayerAnswer::Ta1(t)] = read.as_slice() else { panic!("{read:?}") };
    assert_eq!(t.control, "123456789"[..0].to_string() + "000123456");
    assert_eq!(t.code, "A");
}

#[test]
fn what_is_not_x12_is_an_error_not_a_panic() {
    assert!(read_answers(&b"hello"[..]).is_err());
    assert!(read_answers(&b""[..]).is_err());
    assert!(claim_fragments(b"ISA*garbage").is_empty());
}

/// Regression: a billing-provider segment that could not be re-delimited
/// was dropped from the billing loop, and the claims under it went out
/// without it. Now those claims get no fragment at all.
#[test]
fn a_loop_that_cannot_be_re_delimited_leaves_its_claims_out_whole() {
    // Delimiters `|` and `!`: a `*` in the billing provider's name is data
    // that our `*` delimiter would split.
    let text = String::from_utf8(synth_837(Kind::Professional837, 2, 5)).unwrap();
    let mut isa = text[..106].to_string();
    let rest = text[106..].replace('*', "|");
    isa = isa.replace('*', "|");
    let broken = rest.replacen("NM1|85|2|", "NM1|85|2|A*B ", 1);
    let input = format!("{isa}{broken}");
    let sets = claim_fragments(input.as_bytes());
    assert_eq!(sets.len(), 1);
    // The claims under that billing provider have no fragment.
    assert!(
        sets[0].claims.iter().any(Option::is_none),
        "{:?}",
        sets[0].claims.iter().map(Option::is_some).collect::<Vec<_>>()
    );
    for c in sets[0].claims.iter().flatten() {
        assert!(c.billing.contains("NM1*85*"), "no billing loop without its NM1*85");
    }
}

/// A payer file with two 835 sets (after a 999 in a group of its own), in
/// the payer's own delimiters.
fn two_remittances() -> Vec<u8> {
    let set = |st: &str, payee: &str, claims: &[&str]| {
        let mut body = vec![
            format!("ST|835|{st}"),
            "BPR|I|30|C|ACH|CCP|01|999999992|DA|123456|1512345678||01|999988880|DA|98765|20261205".to_string(),
            format!("TRN|1|TRACE{st}|1512345678"),
            "N1|PR|ACME HEALTH".into(),
            format!("N1|PE|CLINIC|XX|{payee}"),
            "LX|1".into(),
        ];
        for (n, pcn) in claims.iter().enumerate() {
            body.push(format!("CLP|{pcn}|1|20|10||12|ICN{n}|11|1"));
            body.push(format!("NM1|QC|1|LAST|FIRST{n}||||MI|M{n}"));
        }
        body.push(format!("SE|{}|{st}", body.len() + 1));
        body
    };
    let mut all = vec![
        "ISA|00|          |00|          |ZZ|ACMEPAYER      |ZZ|CLEARWAY       |261205|0900|^|00501|000000777|0|T|>"
            .to_string(),
        "GS|FA|ACMEPAYER|CLEARWAY|20261205|0900|776|X|005010X231A1".into(),
        "ST|999|0001|005010X231A1".into(),
        "AK1|HC|42|005010X222A1".into(),
        "AK9|A|1|1|1".into(),
        "SE|4|0001".into(),
        "GE|1|776".into(),
        "GS|HP|ACMEPAYER|CLEARWAY|20261205|0900|777|X|005010X221A1".into(),
    ];
    all.extend(set("0001", "1111111111", &["A1", "A2", "A3"]));
    all.extend(set("0002", "2222222222", &["B1", "B2"]));
    all.extend(["GE|2|777".to_string(), "IEA|2|000000777".into()]);
    all.iter().map(|s| format!("{s}\r\n")).collect::<String>().replace("\r\n", "~\r\n").into_bytes()
}

/// Reads `r` `n` bytes at a time.
fn read_in(mut r: impl std::io::Read, n: usize) -> Vec<u8> {
    let (mut out, mut buf) = (Vec::new(), vec![0u8; n]);
    loop {
        match r.read(&mut buf).unwrap() {
            0 => return out,
            k => out.extend_from_slice(&buf[..k]),
        }
    }
}

/// An 835 is not kept when read: its claims are read again from the file,
/// and it is forwarded as a reader, set by set, whatever the reads' sizes.
#[test]
fn an_835_is_read_again_and_forwarded_as_it_is_read() {
    let file = two_remittances();
    let answers = read_answers(&file[..]).unwrap();
    let remits: Vec<&RemitAnswer> = answers
        .iter()
        .filter_map(|a| match a {
            PayerAnswer::Remit(r) => Some(r.as_ref()),
            _ => None,
        })
        .collect();
    assert_eq!(answers.len(), 3, "{answers:?}");
    let [first, second] = remits.as_slice() else { panic!("{answers:?}") };
    assert_eq!((first.set, first.claims, first.payee_id.as_str()), (1, 3, "1111111111"));
    assert_eq!((second.set, second.claims, second.trace.as_str()), (2, 2, "TRACE0002"));

    for (r, want) in [(first, vec!["A1", "A2", "A3"]), (second, vec!["B1", "B2"])] {
        let mut got = Vec::new();
        remittance_claim_numbers(&file[..], r, |p| got.push(p)).unwrap();
        assert_eq!(got, want);

        let env = envelope();
        let whole = read_in(forward_835(&env, 55, datetime!(2026-12-06 11:00), r, &file[..]), 1 << 20);
        for n in [1, 7, 4096] {
            assert_eq!(read_in(forward_835(&env, 55, datetime!(2026-12-06 11:00), r, &file[..]), n), whole, "{n}");
        }
        // A sound envelope around the payer's set (the set itself is the
        // payer's, as it sent it).
        let analysis = analyze(&whole, &AnalyzeOptions::default());
        let ic = &analysis.interchanges[0];
        assert!(ic.report.findings.is_empty(), "{:?}", ic.report.findings);
        assert!(ic.groups.iter().all(|g| g.report.findings.is_empty()), "{}", String::from_utf8_lossy(&whole));
        let text = String::from_utf8_lossy(&whole);
        assert!(text.starts_with("ISA*00*") && text.contains("*ACME01"), "our envelope: {text}");
        assert_eq!(text.matches("CLP*").count(), want.len(), "this set only: {text}");
        let back = read_answers(&whole[..]).unwrap();
        let [PayerAnswer::Remit(f)] = back.as_slice() else { panic!("{back:?}") };
        assert_eq!((f.set, f.claims, &f.trace, &f.payee_id), (0, r.claims, &r.trace, &r.payee_id));
    }

    // Read again from where it starts (its interchange's ISA, then the
    // file from its ST), it is the same set.
    for r in [first, second] {
        let positioned = || {
            let mut v = r.isa.clone();
            v.extend_from_slice(&file[r.offset as usize..]);
            v
        };
        let at = datetime!(2026-12-06 11:00);
        let whole = read_in(forward_835(&envelope(), 55, at, r, &file[..]), 4096);
        assert_eq!(read_in(forward_835(&envelope(), 55, at, &r.first(), &positioned()[..]), 4096), whole);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        remittance_claim_numbers(&file[..], r, |p| a.push(p)).unwrap();
        remittance_claim_numbers(&positioned()[..], &r.first(), |p| b.push(p)).unwrap();
        assert_eq!(a, b);
    }

    // A set that is not there is an error, not an empty 835.
    let missing = RemitAnswer { set: 9, ..(*first).clone() };
    let mut r = forward_835(&envelope(), 55, datetime!(2026-12-06 11:00), &missing, &file[..]);
    assert!(std::io::Read::read_to_end(&mut r, &mut Vec::new()).is_err());
}
