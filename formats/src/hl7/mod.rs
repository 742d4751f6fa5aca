//! HL7 v2: zero-copy parsing of messages and batch streams.
//!
//! Nothing here performs I/O, reads a clock or panics on input.

pub mod parse;

pub use parse::{
    AckCondition, AckMode, Batch, BatchError, BatchGroup, Component, Delimiters, Field, Limits,
    Message, MessageKind, MessageType, ParseError, Path, Repetition, Segment, SegmentId, Value,
    Version, split,
};
