//! The MISP API key, kept out of every printed form.
//!
//! The host reads the key from the environment or a file and hands it to the
//! component inside the configuration document. Neither the key nor that
//! document may reach a log line, an error message or a `Debug` dump, so both
//! travel in [`Secret`], whose `Debug` and `Display` print `***`.

use std::fmt;

/// A string whose `Debug` and `Display` forms are `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value itself; callers pass it on and never format it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_hide_the_value() {
        let key = Secret::new("c0ffeec0ffeec0ffeec0ffeec0ffeec0ffeec0ff");
        assert_eq!(format!("{key:?}"), "***");
        assert_eq!(format!("{key}"), "***");
        assert_eq!(format!("{:?}", Some(&key)), "Some(***)");
    }
}
