//! Placeholder, filled in with the docs.
