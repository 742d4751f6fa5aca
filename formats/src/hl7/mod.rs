//! HL7 v2: zero-copy parsing of messages and batch streams, validation and
//! typed read views.
//!
//! Nothing here performs I/O, reads a clock or panics on input.

pub mod parse;
pub mod validate;
pub mod views;

pub use parse::{
    AckCondition, AckMode, Batch, BatchError, BatchGroup, Component, Delimiters, Field, Limits,
    Message, MessageKind, MessageType, ParseError, Path, Repetition, Segment, SegmentId, Value,
    Version, split,
};
pub use validate::{Hl7Issue, Severity, validate};
pub use views::{AdtView, DftView, OrmView, OruView, PatientId, SiuView};
