//! ASC X12 005010: streaming reader, envelope checks, SNIP 1-2 validation,
//! typed views and acknowledgement builders.

pub mod codes;
pub mod isa;
pub mod reader;
pub mod spec;
pub mod validate;

pub use isa::{Delimiters, IsaHeader};
pub use reader::{ReadError, Segment, SegmentReader};
