//! The X12 acknowledgement code lists, as data.
//!
//! Every finding carries one of these so the acknowledgement builders never
//! guess: TA105 (element I18) for the interchange, IK304 (620) for segments,
//! IK403 (621) for elements, IK502 (618) for transaction sets and AK905 (716)
//! for functional groups.

use serde::{Serialize, Serializer};
use std::fmt;

macro_rules! code_enum {
    ($(#[$m:meta])* $name:ident { $($variant:ident = $code:literal, $doc:literal;)* }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $(#[doc = $doc] $variant,)*
        }
        impl $name {
            /// The code as it appears in the acknowledgement.
            pub fn code(self) -> &'static str {
                match self { $($name::$variant => $code,)* }
            }
            /// The standard's description of the code.
            pub fn description(self) -> &'static str {
                match self { $($name::$variant => $doc,)* }
            }
            /// Looks a code up by its value.
            pub fn from_code(code: &str) -> Option<Self> {
                match code { $($code => Some($name::$variant),)* _ => None }
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.code())
            }
        }
        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.code())
            }
        }
    };
}

code_enum!(
    /// TA105, interchange note code (element I18).
    Ta105 {
        NoError = "000", "No error";
        ControlNumberMismatch = "001", "The interchange control number in the header and trailer do not match";
        StandardNotSupported = "002", "This standard as noted in the control standards identifier is not supported";
        VersionNotSupported = "003", "This version of the controls is not supported";
        InvalidSegmentTerminator = "004", "The segment terminator is invalid";
        InvalidSenderQualifier = "005", "Invalid interchange ID qualifier for sender";
        InvalidSenderId = "006", "Invalid interchange sender ID";
        InvalidReceiverQualifier = "007", "Invalid interchange ID qualifier for receiver";
        InvalidReceiverId = "008", "Invalid interchange receiver ID";
        UnknownReceiverId = "009", "Unknown interchange receiver ID";
        InvalidAuthorizationQualifier = "010", "Invalid authorization information qualifier value";
        InvalidAuthorizationValue = "011", "Invalid authorization information value";
        InvalidSecurityQualifier = "012", "Invalid security information qualifier value";
        InvalidSecurityValue = "013", "Invalid security information value";
        InvalidDate = "014", "Invalid interchange date value";
        InvalidTime = "015", "Invalid interchange time value";
        InvalidStandardsId = "016", "Invalid interchange standards identifier value";
        InvalidVersion = "017", "Invalid interchange version ID value";
        InvalidControlNumber = "018", "Invalid interchange control number value";
        InvalidAckRequested = "019", "Invalid acknowledgment requested value";
        InvalidTestIndicator = "020", "Invalid test indicator value";
        InvalidGroupCount = "021", "Invalid number of included groups value";
        InvalidControlStructure = "022", "Invalid control structure";
        PrematureEnd = "023", "Improper (premature) end-of-file (transmission)";
        InvalidContent = "024", "Invalid interchange content (e.g., invalid GS segment)";
        Duplicate = "025", "Duplicate interchange control number";
        InvalidElementSeparator = "026", "Invalid data element separator";
        InvalidComponentSeparator = "027", "Invalid component element separator";
    }
);

impl Ta105 {
    /// Whether the finding rejects the interchange (TA104 = R) rather than
    /// accepting it with errors (TA104 = E). Trailer mismatches are
    /// recoverable: the header values are used; malformed headers are not.
    pub fn rejects(self) -> bool {
        !matches!(self, Ta105::NoError | Ta105::ControlNumberMismatch | Ta105::InvalidGroupCount)
    }
}

code_enum!(
    /// IK304, implementation segment syntax error code (element 620).
    SegmentCode {
        Unrecognized = "1", "Unrecognized segment ID";
        Unexpected = "2", "Unexpected segment";
        RequiredMissing = "3", "Required segment missing";
        LoopOverMax = "4", "Loop occurs over maximum times";
        OverMaxUse = "5", "Segment exceeds maximum use";
        NotInTransactionSet = "6", "Segment not in defined transaction set";
        NotInSequence = "7", "Segment not in proper sequence";
        ElementErrors = "8", "Segment has data element errors";
        NotUsedPresent = "I4", "Implementation \"Not Used\" segment present";
        SituationalMissing = "I6", "Implementation dependent segment missing";
        LoopUnderMin = "I7", "Implementation loop occurs under minimum times";
        UnderMinUse = "I8", "Implementation segment below minimum use";
        SituationalNotUsedPresent = "I9", "Implementation dependent \"Not Used\" segment present";
    }
);

code_enum!(
    /// IK403, implementation data element syntax error code (element 621).
    ElementCode {
        RequiredMissing = "1", "Required data element missing";
        ConditionalMissing = "2", "Conditional required data element missing";
        TooMany = "3", "Too many data elements";
        TooShort = "4", "Data element too short";
        TooLong = "5", "Data element too long";
        InvalidCharacter = "6", "Invalid character in data element";
        InvalidCode = "7", "Invalid code value";
        InvalidDate = "8", "Invalid date";
        InvalidTime = "9", "Invalid time";
        ExclusionViolated = "10", "Exclusion condition violated";
        TooManyRepetitions = "12", "Too many repetitions";
        TooManyComponents = "13", "Too many components";
        CodeNotUsed = "I6", "Code value not used in implementation";
        SituationalMissing = "I9", "Implementation dependent data element missing";
        NotUsedPresent = "I10", "Implementation \"Not Used\" data element present";
        TooFewRepetitions = "I11", "Implementation too few repetitions";
        PatternMismatch = "I12", "Implementation pattern match failure";
        SituationalNotUsedPresent = "I13", "Implementation dependent \"Not Used\" data element present";
    }
);

code_enum!(
    /// IK502..IK506, implementation transaction set syntax error code (element 618).
    SetCode {
        NotSupported = "1", "Transaction set not supported";
        TrailerMissing = "2", "Transaction set trailer missing";
        ControlNumberMismatch = "3", "Transaction set control number in header and trailer do not match";
        SegmentCountMismatch = "4", "Number of included segments does not match actual count";
        SegmentsInError = "5", "One or more segments in error";
        InvalidIdentifier = "6", "Missing or invalid transaction set identifier";
        InvalidControlNumber = "7", "Missing or invalid transaction set control number";
        NotInGroup = "18", "Transaction set not in functional group";
        InvalidImplementationReference = "19", "Invalid transaction set implementation convention reference";
        ControlNumberNotUnique = "23", "Transaction set control number not unique within the functional group";
        ImplementationSegmentsInError = "I5", "Implementation one or more segments in error";
        ImplementationNotSupported = "I6", "Implementation convention not supported";
    }
);

code_enum!(
    /// AK905..AK909, functional group syntax error code (element 716).
    GroupCode {
        NotSupported = "1", "Functional group not supported";
        VersionNotSupported = "2", "Functional group version not supported";
        TrailerMissing = "3", "Functional group trailer missing";
        ControlNumberMismatch = "4", "Group control number in the functional group header and trailer do not agree";
        SetCountMismatch = "5", "Number of included transaction sets does not match actual count";
        ControlNumberSyntax = "6", "Group control number violates syntax";
        ControlNumberNotUnique = "19", "Functional group control number not unique within interchange";
    }
);

/// IK501 / AK901 acknowledgement code (element 715).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum AckCode {
    /// A: accepted.
    #[serde(rename = "A")]
    Accepted,
    /// E: accepted but errors were noted.
    #[serde(rename = "E")]
    AcceptedWithErrors,
    /// P: partially accepted, at least one transaction set rejected (AK901 only).
    #[serde(rename = "P")]
    Partial,
    /// R: rejected.
    #[serde(rename = "R")]
    Rejected,
}

impl AckCode {
    pub fn code(self) -> &'static str {
        match self {
            AckCode::Accepted => "A",
            AckCode::AcceptedWithErrors => "E",
            AckCode::Partial => "P",
            AckCode::Rejected => "R",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip() {
        for c in ["001", "022", "025", "027"] {
            assert_eq!(Ta105::from_code(c).map(Ta105::code), Some(c));
        }
        assert_eq!(SegmentCode::from_code("I4"), Some(SegmentCode::NotUsedPresent));
        assert_eq!(ElementCode::InvalidCode.code(), "7");
        assert_eq!(SetCode::SegmentCountMismatch.code(), "4");
        assert_eq!(GroupCode::SetCountMismatch.code(), "5");
        assert!(Ta105::PrematureEnd.rejects());
        assert!(!Ta105::ControlNumberMismatch.rejects());
    }
}
