//! AAF storage.
