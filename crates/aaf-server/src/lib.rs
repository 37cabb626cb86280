//! AAF server.
