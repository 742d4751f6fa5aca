//! HL7 v2: zero-copy parsing of messages and batch streams, validation,
//! typed read views, acknowledgements and the MLLP frame codec.
//!
//! Nothing here performs I/O, reads a clock or panics on input.

pub mod ack;
pub mod mllp;
pub mod parse;
pub mod validate;
pub mod views;

pub use ack::{AckCode, AckSpec, AckView, build_ack, build_ack_for_unparseable, parse_error_issue};
pub use mllp::{Frame, MllpError, decode_frame, encode_frame};
pub use parse::{
    AckCondition, AckMode, Batch, BatchError, BatchGroup, Component, Delimiters, Field, Limits,
    Message, MessageKind, MessageType, ParseError, Path, Repetition, Segment, SegmentId, Value,
    Version, split,
};
pub use validate::{Hl7Issue, Severity, validate};
pub use views::{AdtView, DftView, OrmView, OruView, PatientId, SiuView};
