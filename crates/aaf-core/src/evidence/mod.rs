//! Evidence: a transparency log over each organisation's audit chain (issue 18, section 1).
//!
//! The audit chain ([`crate::audit`]) proves order and integrity to whoever holds the whole
//! chain. A transparency log adds what a hash chain cannot give cheaply: a short *signed
//! checkpoint* (tree size and Merkle root) that can be published and compared, *inclusion
//! proofs* (this event is entry `i` of the tree that checkpoint commits to, `O(log n)` hashes)
//! and *consistency proofs* (the tree of a later checkpoint extends the tree of an earlier one:
//! nothing was rewritten or removed, `O(log n)` hashes).
//!
//! - [`merkle`]: the RFC 6962 / RFC 9162 Merkle tree: leaf and node hashes, the stored-hash
//!   layout a database table can hold, roots, inclusion and consistency proofs and their
//!   verification. Proof construction and checking are `tlog_tiles`' (a port of Go's
//!   `golang.org/x/mod/sumdb/tlog`); this module adds typed errors and the argument checks it
//!   documents.
//! - [`checkpoint`]: C2SP `tlog-checkpoint` bodies signed as C2SP `signed-note`s with an Ed25519
//!   log key (`signed_note`, a port of Go's `golang.org/x/mod/sumdb/note`), and their
//!   verification.
//!
//! Like the rest of `aaf-core` this does no I/O: storage is behind [`merkle::HashReader`], and
//! keys are read from and written to strings.

pub mod checkpoint;
pub mod merkle;
pub mod pack;
pub mod payload;

/// The Merkle leaf hash of an audit event: `SHA-256(0x00 || JCS(event))` ([`merkle::leaf_hash`]
/// of `canonical_event`), where `canonical_event` is the RFC 8785 canonical JSON of the event
/// ([`crate::audit::canonical_event`]): exactly the bytes the chain hash covers. Leaf `i`
/// (0-based) of an organisation's tree is its event with seq `i + 1`.
pub fn event_leaf_hash(canonical_event: &[u8]) -> merkle::Hash {
    merkle::leaf_hash(canonical_event)
}
