//! The memory the claim edits' code sets hold, measured by a counting
//! allocator (this test binary's own): every loaded fiscal year of
//! ICD-10-CM and ICD-10-PCS together with HCPCS must fit in 64 MiB.
//!
//! Loaded: three real ICD-10-CM releases (FY2021, FY2025, FY2026, from
//! `CLEARWAY_CODESETS_DIR`), the ICD-10-PCS code list under three fiscal
//! years, and an HCPCS file of 8,000 codes with their dates (no package
//! ships the CMS HCPCS file; a current one has about 7,900 procedure
//! codes).

#![allow(clippy::unwrap_used, clippy::expect_used)]
// A counting global allocator is the one unsafe thing here: it forwards to
// the system allocator and only counts.
#![allow(unsafe_code)]

use clearway_formats::edits::codesets::{CodeSets, CodeSystem, Release, ReleaseCode, read_release};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use time::macros::date;

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size(), Ordering::Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size(), Ordering::Relaxed);
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        LIVE.fetch_add(new, Ordering::Relaxed);
        LIVE.fetch_sub(l.size(), Ordering::Relaxed);
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static A: Counting = Counting;

mod common;

fn release(name: &str) -> Release {
    read_release(name, &common::codeset_file(name), None, None).unwrap()
}

fn pcs(effective: time::Date) -> Release {
    common::pcs_release(effective)
}

fn hcpcs() -> Release {
    let codes = (0..8000u32)
        .map(|i| ReleaseCode {
            code: format!("{}{:04}", char::from(b'A' + (i % 22) as u8), i),
            billable: true,
            from: Some(date!(2000 - 01 - 01)),
            to: (i % 7 == 0).then_some(date!(2020 - 12 - 31)),
        })
        .collect();
    Release { system: CodeSystem::Hcpcs, label: "hcpcs".into(), effective: date!(2026 - 01 - 01), codes }
}

#[test]
fn every_fiscal_year_with_hcpcs_fits_in_64_mib() {
    let releases = vec![
        release("icd10cm-order-Jan-2021.txt"),
        release("icd10cm-tabular-April-2025.xml"),
        release("icd10c-tabular-April-1-2026.xml"),
        pcs(date!(2023 - 10 - 01)),
        pcs(date!(2024 - 10 - 01)),
        pcs(date!(2025 - 10 - 01)),
        hcpcs(),
    ];
    let before = LIVE.load(Ordering::SeqCst);
    let sets = CodeSets::new(&releases);
    // What the built tables hold (their temporaries are freed by now; the
    // releases they were built from are still alive and not counted).
    let held = LIVE.load(Ordering::SeqCst).saturating_sub(before);
    drop(releases);
    let codes: usize = CodeSystem::ALL.iter().map(|s| sets.code_count(*s)).sum();
    eprintln!(
        "code sets: {} releases, {codes} distinct codes, {:.1} MiB held (estimate {:.1} MiB)",
        sets.releases().len(),
        held as f64 / (1 << 20) as f64,
        sets.heap_bytes() as f64 / (1 << 20) as f64
    );
    assert!(held <= 64 << 20, "{held} bytes");
    assert!(sets.code_count(CodeSystem::Icd10Cm) > 74_000);
}
