//! FHIR R4.
