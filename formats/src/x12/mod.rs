//! ASC X12 005010: streaming reader, envelope checks, SNIP 1-2 validation,
//! typed views and acknowledgement builders.

pub mod analyze;
pub mod build;
pub mod codes;
pub mod edits;
pub mod isa;
pub mod reader;
pub mod spec;
pub mod synth;
pub mod validate;
pub mod views;

pub use analyze::{Analysis, AnalyzeOptions, Sink, analyze, analyze_into};
pub use isa::{Delimiters, IsaHeader};
pub use reader::{ReadError, Segment, SegmentReader};
pub use views::Document;
