//! Property tests for the X12 reader, validator and acknowledgements.
#![allow(clippy::unwrap_used)]

use clearway_formats::x12::synth::{self, Kind};
use clearway_formats::x12::{AnalyzeOptions, Document, SegmentReader, analyze, fuzz_x12};
use proptest::prelude::*;

fn sample(kind: Kind, count: usize, seed: u64) -> Vec<u8> {
    let mut out = vec![];
    synth::write(&mut out, kind, count, seed).unwrap();
    out
}

fn claims(input: &[u8]) -> Vec<(String, String)> {
    analyze(input, &AnalyzeOptions::default())
        .documents()
        .filter_map(|d| match d {
            Document::Claim(c) => Some((c.patient_control_number.expose().clone(), c.total_charge.to_string())),
            _ => None,
        })
        .collect()
}

/// Characters that never occur in generated data, usable as delimiters.
const DELIMS: &[u8] = b"*|!^~:>{}\\#&+<`";

fn redelimit(input: &[u8], e: u8, c: u8, r: u8, s: u8, eol: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    for &b in input {
        match b {
            b'*' => out.push(e),
            b':' => out.push(c),
            b'^' => out.push(r),
            b'~' => {
                out.push(s);
                out.extend_from_slice(eol);
            }
            b'\n' => {}
            o => out.push(o),
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Any legal delimiter choice, with or without line breaks after the
    /// terminator, reads back to the same accepted claims.
    #[test]
    fn any_legal_delimiters_round_trip(
        picks in proptest::sample::subsequence(DELIMS.to_vec(), 4).prop_shuffle(),
        newline_terminator in any::<bool>(),
        eol in prop_oneof![Just(&b""[..]), Just(&b"\n"[..]), Just(&b"\r\n"[..])],
        seed in 0u64..1000,
    ) {
        let input = sample(Kind::Professional837, 3, seed);
        let s = if newline_terminator { b'\n' } else { picks[3] };
        let eol = if newline_terminator { &b""[..] } else { eol };
        let changed = redelimit(&input, picks[0], picks[1], picks[2], s, eol);
        let a = analyze(&changed, &AnalyzeOptions::default());
        prop_assert!(a.accepted(), "{:?}", String::from_utf8_lossy(&changed[..200.min(changed.len())]));
        prop_assert_eq!(claims(&changed), claims(&input));
    }

    /// Reading in any chunking gives the same segments.
    #[test]
    fn chunking_does_not_change_segments(chunk in 1usize..300, seed in 0u64..100) {
        struct Chunked<'a>(&'a [u8], usize);
        impl std::io::Read for Chunked<'_> {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                let n = self.1.min(buf.len()).min(self.0.len());
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let input = sample(Kind::Institutional837, 4, seed);
        let collect = |r: &mut dyn FnMut() -> Option<Vec<u8>>| {
            let mut v = vec![];
            while let Some(s) = r() { v.push(s) }
            v
        };
        let mut whole = SegmentReader::new(&input[..]);
        let a = collect(&mut || whole.next_segment().unwrap().map(|s| s.raw().to_vec()));
        let mut parts = SegmentReader::new(Chunked(&input, chunk));
        let b = collect(&mut || parts.next_segment().unwrap().map(|s| s.raw().to_vec()));
        prop_assert_eq!(a, b);
    }

    /// Any mutation of a valid file never panics, and every acknowledgement
    /// built for it is itself valid.
    #[test]
    fn mutations_never_panic(
        seed in 0u64..50,
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..4), 1..8),
    ) {
        let mut input = sample(Kind::Professional837, 2, seed);
        for (at, byte, op) in edits {
            if input.is_empty() { break; }
            let i = at.index(input.len());
            match op {
                0 => input[i] = byte,
                1 => input.insert(i, byte),
                2 => { input.remove(i); }
                _ => input.truncate(i),
            }
        }
        fuzz_x12(&input);
    }

    /// Arbitrary bytes never panic.
    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..2048)) {
        fuzz_x12(&data);
        let mut with_isa = b"ISA*00*          *00*          *ZZ*A              *ZZ*B              *240101*1200*^*00501*000000001*0*T*:~".to_vec();
        with_isa.extend_from_slice(&data);
        fuzz_x12(&with_isa);
    }
}
