//! A wrapper for protected health information (PHI).

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// A value that is protected health information.
///
/// `Debug` prints `<redacted>` and there is deliberately no `Display`, so a
/// `Sensitive` value can sit inside a struct that is logged with `{:?}`
/// without leaking. Serialization is transparent: API responses to the owner
/// of the data and acknowledgements sent back to the submitter carry the real
/// value, because those are the places the value is meant to go.
///
/// Read the value with [`Sensitive::expose`]; the name makes every read
/// visible in review.
#[derive(Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sensitive<T>(T);

impl<T> Sensitive<T> {
    pub const fn new(value: T) -> Self {
        Sensitive(value)
    }

    /// The protected value. Never pass it to `tracing`, `metrics` or an error.
    pub fn expose(&self) -> &T {
        &self.0
    }

    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> From<T> for Sensitive<T> {
    fn from(value: T) -> Self {
        Sensitive(value)
    }
}

impl<T> fmt::Debug for Sensitive<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl<T: Serialize> Serialize for Sensitive<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Sensitive<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        T::deserialize(deserializer).map(Sensitive)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_value() {
        let s = Sensitive::new("DOE^JOHN".to_string());
        let shown = format!("{s:?} {:?}", Some(&s));
        assert!(!shown.contains("DOE"), "{shown}");
        assert_eq!(s.expose(), "DOE^JOHN");
    }

    #[test]
    fn serializes_transparently() {
        let s = Sensitive::new("123");
        assert_eq!(serde_json::to_string(&s).unwrap_or_default(), "\"123\"");
    }
}
