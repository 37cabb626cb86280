//! The RFC 6962 / RFC 9162 Merkle tree of a transparency log: hashes, stored-hash layout,
//! roots, inclusion and consistency proofs, and their verification.
//!
//! # The tree
//!
//! A tree of `n` leaves `d[0..n]` has the Merkle Tree Hash of RFC 9162 section 2.1.1:
//! `MTH({}) = SHA-256()`, `MTH({d0}) = SHA-256(0x00 || d0)` ([`leaf_hash`]) and, for `n > 1`
//! with `k` the largest power of two below `n`,
//! `MTH(D[n]) = SHA-256(0x01 || MTH(D[0:k]) || MTH(D[k:n]))` ([`node_hash`]). The 0x00 / 0x01
//! prefixes keep a leaf from ever being taken for an inner node.
//!
//! # Storage
//!
//! The log keeps the tree's *stored hashes* in the layout of Go's `sumdb/tlog` (Crosby and
//! Wallach, "Efficient Data Structures for Tamper-Evident Logging", section 3.3): the hash of
//! every complete subtree, numbered densely by [`stored_hash_index`], written once and never
//! changed. Appending leaf `n` (0-based) appends the hashes [`hashes_to_store`] returns (the
//! leaf hash and the hash of every subtree that leaf completes: just under two per leaf on
//! average, at most `1 + log2 n`) at the next free indexes; a tree of `n` leaves holds
//! [`stored_hash_count`]`(n)` of them. The table of a database can hold them as
//! `(log, index, hash)` rows: append-only, one row per index.
//!
//! Every operation reads the hashes it needs through one call of [`HashReader::read_hashes`].
//! A caller whose store is asynchronous (a database) first asks which indexes an operation
//! needs ([`root_indexes`], [`inclusion_proof_indexes`], [`consistency_proof_indexes`],
//! [`hashes_to_store_indexes`]), fetches them, and runs the operation over the fetched rows
//! (a `HashMap<u64, Hash>` or `BTreeMap<u64, Hash>` is a [`HashReader`]). [`MemoryTree`]
//! keeps a whole tree in memory (tests, proof packs, the offline verifier).
//!
//! Tree construction, proof construction and proof checking are `tlog_tiles`' (Cloudflare's
//! port of `golang.org/x/mod/sumdb/tlog`); this module wraps them with its own
//! [`Hash`](type@Hash) and errors, and adds the argument checks each function documents.

use std::cell::Cell;
use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasher;

use tlog_tiles::Hash as TlogHash;

/// A SHA-256 hash: a leaf hash, an inner node hash or a tree root (32 bytes).
pub type Hash = [u8; 32];

/// The root of the empty tree, `SHA-256()` (RFC 9162 section 2.1.1).
pub const EMPTY_ROOT: Hash = tlog_tiles::EMPTY_HASH.0;

/// The largest tree (in leaves) that [`hashes_to_store`], [`root`], the proof builders and
/// [`MemoryTree`] accept: 2^62. Stored-hash indexes of larger trees no longer fit in a `u64`
/// (index `stored_hash_index(0, n)` is about `2n`). Verification has no such limit.
pub const MAX_TREE_SIZE: u64 = 1 << 62;

/// An error of tree construction or proof construction (the log side).
#[derive(Debug, thiserror::Error)]
pub enum MerkleError {
    /// A leaf index that is not below the tree size.
    #[error("leaf index {index} is not below the tree size {size}")]
    IndexOutOfRange {
        /// The leaf index (0-based).
        index: u64,
        /// The tree size (leaves).
        size: u64,
    },
    /// Consistency proofs exist for `0 < old_size <= new_size` (RFC 9162 section 2.1.4).
    #[error("a consistency proof needs 0 < old size <= new size (old {old_size}, new {new_size})")]
    InvalidSizes {
        /// The size of the earlier tree (leaves).
        old_size: u64,
        /// The size of the later tree (leaves).
        new_size: u64,
    },
    /// A tree (or a position in one) beyond [`MAX_TREE_SIZE`].
    #[error("tree size {size} exceeds the supported maximum {MAX_TREE_SIZE}")]
    TreeTooLarge {
        /// The tree size (leaves) asked for.
        size: u64,
    },
    /// A tree level beyond 62 (no tree of [`MAX_TREE_SIZE`] leaves has one).
    #[error("tree level {level} exceeds the supported maximum 62")]
    LevelTooLarge {
        /// The level asked for (0 = leaves).
        level: u8,
    },
    /// The store has no hash at this stored-hash index.
    #[error("the hash store has no hash at stored index {index}")]
    MissingHash {
        /// The stored-hash index.
        index: u64,
    },
    /// The store answered a read with the wrong number of hashes.
    #[error("the hash store returned {got} hashes for {asked} indexes")]
    WrongHashCount {
        /// How many indexes were asked for.
        asked: usize,
        /// How many hashes came back.
        got: usize,
    },
    /// The store failed (for implementations of [`HashReader`] over real storage).
    #[error("hash store: {0}")]
    Store(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// Any other error of `tlog_tiles` (not expected after this module's checks).
    #[error("tlog: {0}")]
    Tlog(String),
}

/// Reads stored hashes by stored-hash index (see [`stored_hash_index`]).
///
/// Every function of this module that reads the tree makes exactly one call.
pub trait HashReader {
    /// Returns the hashes at the stored-hash `indexes`, one per index and in the same order.
    /// Callers ask in increasing index order.
    ///
    /// # Errors
    ///
    /// [`MerkleError::MissingHash`] for an index the store does not hold, or
    /// [`MerkleError::Store`] when the store fails. Returning a different number of hashes is
    /// reported as [`MerkleError::WrongHashCount`] by the caller.
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, MerkleError>;
}

impl<R: HashReader + ?Sized> HashReader for &R {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, MerkleError> {
        (**self).read_hashes(indexes)
    }
}

/// A dense store: the hash with stored index `i` is element `i`.
impl HashReader for [Hash] {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, MerkleError> {
        indexes
            .iter()
            .map(|&index| {
                usize::try_from(index)
                    .ok()
                    .and_then(|i| self.get(i))
                    .copied()
                    .ok_or(MerkleError::MissingHash { index })
            })
            .collect()
    }
}

/// A dense store: the hash with stored index `i` is element `i`.
impl HashReader for Vec<Hash> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, MerkleError> {
        self.as_slice().read_hashes(indexes)
    }
}

/// Rows fetched from a table, keyed by stored index.
impl<S: BuildHasher> HashReader for HashMap<u64, Hash, S> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, MerkleError> {
        indexes
            .iter()
            .map(|&index| {
                self.get(&index)
                    .copied()
                    .ok_or(MerkleError::MissingHash { index })
            })
            .collect()
    }
}

/// Rows fetched from a table, keyed by stored index.
impl HashReader for BTreeMap<u64, Hash> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, MerkleError> {
        indexes
            .iter()
            .map(|&index| {
                self.get(&index)
                    .copied()
                    .ok_or(MerkleError::MissingHash { index })
            })
            .collect()
    }
}

/// Presents a [`HashReader`] to `tlog_tiles`. `tlog_tiles` asserts (panics) when a reader
/// returns the wrong number of hashes; this adapter turns that into an error, and keeps the
/// reader's own error (which `tlog_tiles`' error type cannot carry) to return it as is.
struct TlogReader<'a, R: ?Sized> {
    inner: &'a R,
    failure: Cell<Option<MerkleError>>,
}

impl<R: HashReader + ?Sized> tlog_tiles::HashReader for TlogReader<'_, R> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<TlogHash>, tlog_tiles::Error> {
        let read = self.inner.read_hashes(indexes).and_then(|hashes| {
            if hashes.len() == indexes.len() {
                Ok(hashes)
            } else {
                Err(MerkleError::WrongHashCount {
                    asked: indexes.len(),
                    got: hashes.len(),
                })
            }
        });
        match read {
            Ok(hashes) => Ok(hashes.into_iter().map(TlogHash).collect()),
            Err(e) => {
                self.failure.set(Some(e));
                Err(tlog_tiles::Error::IndexesNotInTree)
            }
        }
    }
}

/// Runs a `tlog_tiles` operation over `reader`, returning the reader's own error if it failed.
fn with_tlog<R, T>(
    reader: &R,
    op: impl FnOnce(&TlogReader<'_, R>) -> Result<T, tlog_tiles::Error>,
) -> Result<T, MerkleError>
where
    R: HashReader + ?Sized,
{
    let adapter = TlogReader {
        inner: reader,
        failure: Cell::new(None),
    };
    op(&adapter).map_err(|e| {
        adapter
            .failure
            .take()
            .unwrap_or_else(|| MerkleError::Tlog(e.to_string()))
    })
}

fn check_tree_size(size: u64) -> Result<(), MerkleError> {
    if size > MAX_TREE_SIZE {
        return Err(MerkleError::TreeTooLarge { size });
    }
    Ok(())
}

/// The hash of a leaf with the given data: `SHA-256(0x00 || data)` (RFC 9162 section 2.1.1).
pub fn leaf_hash(data: &[u8]) -> Hash {
    tlog_tiles::record_hash(data).0
}

/// The hash of an inner node: `SHA-256(0x01 || left || right)` (RFC 9162 section 2.1.1).
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    tlog_tiles::node_hash(TlogHash(*left), TlogHash(*right)).0
}

/// The stored-hash index of the `n`-th (0-based) hash at `level` (0 = leaves; level `l` hashes
/// cover `2^l` leaves): Go `sumdb/tlog`'s `StoredHashIndex`.
///
/// # Errors
///
/// [`MerkleError::LevelTooLarge`] or [`MerkleError::TreeTooLarge`] when that subtree lies
/// beyond a tree of [`MAX_TREE_SIZE`] leaves (its index would overflow).
pub fn stored_hash_index(level: u8, n: u64) -> Result<u64, MerkleError> {
    if level > 62 {
        return Err(MerkleError::LevelTooLarge { level });
    }
    // The subtree covers leaves [n << level, (n + 1) << level).
    let end = n
        .checked_add(1)
        .and_then(|m| m.checked_mul(1 << level))
        .unwrap_or(u64::MAX);
    check_tree_size(end)?;
    Ok(tlog_tiles::stored_hash_index(level, n))
}

/// How many stored hashes a tree of `size` leaves holds (about `2 * size`): Go
/// `sumdb/tlog`'s `StoredHashCount`.
///
/// # Errors
///
/// [`MerkleError::TreeTooLarge`] beyond [`MAX_TREE_SIZE`].
pub fn stored_hash_count(size: u64) -> Result<u64, MerkleError> {
    check_tree_size(size)?;
    Ok(tlog_tiles::stored_hash_count(size))
}

/// The stored hashes to append when leaf `n` (0-based; the tree has `n` leaves before it) with
/// leaf hash `leaf` is added: `(stored index, hash)` pairs with consecutive indexes starting at
/// `stored_hash_index(0, n)`, the leaf hash first, then the hash of each subtree the leaf
/// completes. `existing` must hold the stored hashes of the first `n` leaves; at most
/// `log2 n` of them are read.
///
/// # Errors
///
/// [`MerkleError::TreeTooLarge`] when `n + 1` exceeds [`MAX_TREE_SIZE`], or the reader's error.
pub fn hashes_to_store<R: HashReader + ?Sized>(
    n: u64,
    leaf: Hash,
    existing: &R,
) -> Result<Vec<(u64, Hash)>, MerkleError> {
    check_tree_size(n.saturating_add(1))?;
    let first = tlog_tiles::stored_hash_index(0, n);
    let hashes = with_tlog(existing, |r| {
        tlog_tiles::stored_hashes_for_record_hash(n, TlogHash(leaf), r)
    })?;
    Ok((first..).zip(hashes.into_iter().map(|h| h.0)).collect())
}

/// The root (Merkle Tree Hash, RFC 9162 section 2.1.1) of the tree of the first `size` leaves,
/// computed from at most `1 + log2 size` stored hashes; [`EMPTY_ROOT`] for `size` 0.
///
/// # Errors
///
/// [`MerkleError::TreeTooLarge`] beyond [`MAX_TREE_SIZE`], or the reader's error (for example
/// when the store holds fewer than `size` leaves).
pub fn root<R: HashReader + ?Sized>(size: u64, r: &R) -> Result<Hash, MerkleError> {
    check_tree_size(size)?;
    Ok(with_tlog(r, |t| tlog_tiles::tree_hash(size, t))?.0)
}

/// The inclusion proof (RFC 9162 section 2.1.3.1 `PATH(index, D[size])`, RFC 6962's audit
/// path) of leaf `index` (0-based) in the tree of the first `size` leaves: the sibling hashes
/// from the leaf up to the root, at most `log2 size` of them. Check it with
/// [`verify_inclusion`].
///
/// # Errors
///
/// [`MerkleError::IndexOutOfRange`] unless `index < size`, [`MerkleError::TreeTooLarge`]
/// beyond [`MAX_TREE_SIZE`], or the reader's error.
pub fn inclusion_proof<R: HashReader + ?Sized>(
    index: u64,
    size: u64,
    r: &R,
) -> Result<Vec<Hash>, MerkleError> {
    if index >= size {
        return Err(MerkleError::IndexOutOfRange { index, size });
    }
    check_tree_size(size)?;
    let proof = with_tlog(r, |t| tlog_tiles::prove_record(size, index, t))?;
    Ok(proof.into_iter().map(|h| h.0).collect())
}

/// The consistency proof (RFC 9162 section 2.1.4.1 `PROOF(old_size, D[new_size])`) that the
/// tree of the first `new_size` leaves extends the tree of the first `old_size` leaves: at
/// most `log2 new_size + 1` hashes, none when the sizes are equal. Check it with
/// [`verify_consistency`].
///
/// # Errors
///
/// [`MerkleError::InvalidSizes`] unless `0 < old_size <= new_size` (a proof from the empty
/// tree proves nothing), [`MerkleError::TreeTooLarge`] beyond [`MAX_TREE_SIZE`], or the
/// reader's error.
pub fn consistency_proof<R: HashReader + ?Sized>(
    old_size: u64,
    new_size: u64,
    r: &R,
) -> Result<Vec<Hash>, MerkleError> {
    if old_size == 0 || old_size > new_size {
        return Err(MerkleError::InvalidSizes { old_size, new_size });
    }
    check_tree_size(new_size)?;
    let proof = with_tlog(r, |t| tlog_tiles::prove_tree(new_size, old_size, t))?;
    Ok(proof.into_iter().map(|h| h.0).collect())
}

/// Records the indexes an operation reads (answering with zero hashes, which the index
/// arithmetic of `tlog_tiles` never looks at).
struct IndexRecorder(Cell<Vec<u64>>);

impl HashReader for IndexRecorder {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, MerkleError> {
        let mut seen = self.0.take();
        seen.extend_from_slice(indexes);
        self.0.set(seen);
        Ok(vec![[0; 32]; indexes.len()])
    }
}

fn recorded_indexes<T>(
    op: impl FnOnce(&IndexRecorder) -> Result<T, MerkleError>,
) -> Result<Vec<u64>, MerkleError> {
    let recorder = IndexRecorder(Cell::new(Vec::new()));
    op(&recorder)?;
    Ok(recorder.0.take())
}

/// The stored-hash indexes (increasing) that [`root`]`(size, _)` reads.
///
/// # Errors
///
/// As [`root`], without the reader's.
pub fn root_indexes(size: u64) -> Result<Vec<u64>, MerkleError> {
    recorded_indexes(|r| root(size, r))
}

/// The stored-hash indexes (increasing) that [`inclusion_proof`]`(index, size, _)` reads.
///
/// # Errors
///
/// As [`inclusion_proof`], without the reader's.
pub fn inclusion_proof_indexes(index: u64, size: u64) -> Result<Vec<u64>, MerkleError> {
    recorded_indexes(|r| inclusion_proof(index, size, r))
}

/// The stored-hash indexes (increasing) that [`consistency_proof`]`(old_size, new_size, _)`
/// reads.
///
/// # Errors
///
/// As [`consistency_proof`], without the reader's.
pub fn consistency_proof_indexes(old_size: u64, new_size: u64) -> Result<Vec<u64>, MerkleError> {
    recorded_indexes(|r| consistency_proof(old_size, new_size, r))
}

/// The stored-hash indexes (increasing) that [`hashes_to_store`]`(n, _, _)` reads.
///
/// # Errors
///
/// As [`hashes_to_store`], without the reader's.
pub fn hashes_to_store_indexes(n: u64) -> Result<Vec<u64>, MerkleError> {
    recorded_indexes(|r| hashes_to_store(n, [0; 32], r))
}

/// A whole tree in memory: its stored hashes in index order. For tests, proof packs and the
/// offline verifier; it is a [`HashReader`], so [`root`] and the proof functions also work on
/// any earlier size of it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemoryTree {
    size: u64,
    hashes: Vec<Hash>,
}

impl MemoryTree {
    /// An empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// A tree of these leaf hashes, in order.
    ///
    /// # Errors
    ///
    /// As [`MemoryTree::append`].
    pub fn from_leaves(leaves: impl IntoIterator<Item = Hash>) -> Result<Self, MerkleError> {
        let mut tree = Self::new();
        for leaf in leaves {
            tree.append(leaf)?;
        }
        Ok(tree)
    }

    /// Appends a leaf by its leaf hash ([`leaf_hash`] of its data) and returns its index
    /// (0-based).
    ///
    /// # Errors
    ///
    /// [`MerkleError::TreeTooLarge`] when the tree already has [`MAX_TREE_SIZE`] leaves.
    pub fn append(&mut self, leaf: Hash) -> Result<u64, MerkleError> {
        let index = self.size;
        let new = hashes_to_store(index, leaf, &self.hashes)?;
        self.hashes.extend(new.into_iter().map(|(_, h)| h));
        self.size += 1;
        Ok(index)
    }

    /// The number of leaves.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The stored hashes, element `i` having stored index `i`.
    pub fn stored_hashes(&self) -> &[Hash] {
        &self.hashes
    }

    /// The root of the whole tree.
    ///
    /// # Errors
    ///
    /// None in practice (the tree holds every hash it needs); the type is [`root`]'s.
    pub fn root(&self) -> Result<Hash, MerkleError> {
        root(self.size, self)
    }

    /// The inclusion proof of leaf `index` in the whole tree (see [`inclusion_proof`]).
    ///
    /// # Errors
    ///
    /// [`MerkleError::IndexOutOfRange`] unless `index < self.size()`.
    pub fn inclusion_proof(&self, index: u64) -> Result<Vec<Hash>, MerkleError> {
        inclusion_proof(index, self.size, self)
    }

    /// The consistency proof from the tree of the first `old_size` leaves to the whole tree
    /// (see [`consistency_proof`]).
    ///
    /// # Errors
    ///
    /// [`MerkleError::InvalidSizes`] unless `0 < old_size <= self.size()`.
    pub fn consistency_proof(&self, old_size: u64) -> Result<Vec<Hash>, MerkleError> {
        consistency_proof(old_size, self.size, self)
    }
}

impl HashReader for MemoryTree {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, MerkleError> {
        self.hashes.read_hashes(indexes)
    }
}

/// The right edge of a tree, enough to compute its root as leaves are appended: the roots
/// of its complete subtrees (one per 1 bit of the size, largest first), at most 63 hashes
/// whatever the size. What a verifier streaming a chain of any length uses to compare the
/// tree it recomputes with checkpoints; it cannot give proofs (a [`MemoryTree`] or the
/// stored hashes can).
///
/// Appending is one [`leaf_hash`] plus on average one [`node_hash`]; [`CompactTree::root`]
/// is at most 62 node hashes. The roots equal [`root`]'s (RFC 9162 section 2.1.1): the
/// largest power of two below the size splits the tree, and each complete subtree is one
/// of those splits.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompactTree {
    size: u64,
    /// `(height, hash)` of the complete subtrees, left to right (strictly decreasing height).
    edge: Vec<(u32, Hash)>,
}

impl CompactTree {
    /// An empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a leaf by its leaf hash and returns the new size.
    ///
    /// # Errors
    ///
    /// [`MerkleError::TreeTooLarge`] when the tree already has [`MAX_TREE_SIZE`] leaves.
    pub fn append(&mut self, leaf: Hash) -> Result<u64, MerkleError> {
        check_tree_size(self.size.saturating_add(1))?;
        let mut node = (0_u32, leaf);
        while let Some(&(height, left)) = self.edge.last() {
            if height != node.0 {
                break;
            }
            self.edge.pop();
            node = (height + 1, node_hash(&left, &node.1));
        }
        self.edge.push(node);
        self.size += 1;
        Ok(self.size)
    }

    /// The number of leaves.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The root of the tree ([`EMPTY_ROOT`] when empty).
    pub fn root(&self) -> Hash {
        let mut hashes = self.edge.iter().rev().map(|(_, hash)| *hash);
        let Some(mut root) = hashes.next() else {
            return EMPTY_ROOT;
        };
        for left in hashes {
            root = node_hash(&left, &root);
        }
        root
    }
}

/// Why a proof does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// Inclusion: the leaf index is not below the tree size (this includes every index of the
    /// empty tree).
    #[error("leaf index {index} is not below the tree size {size}")]
    IndexBeyondSize {
        /// The leaf index (0-based).
        index: u64,
        /// The tree size (leaves).
        size: u64,
    },
    /// Consistency: the old tree is empty. Every tree extends the empty tree, so such a proof
    /// would prove nothing; RFC 9162 section 2.1.4.2 defines verification for `0 < first`.
    #[error("a consistency proof from the empty tree proves nothing (old size is 0)")]
    EmptyOldTree,
    /// Consistency: the old tree is larger than the new one.
    #[error("old tree size {old_size} is larger than new tree size {new_size}")]
    OldSizeBeyondNew {
        /// The size of the earlier tree (leaves).
        old_size: u64,
        /// The size of the later tree (leaves).
        new_size: u64,
    },
    /// The proof has the wrong number of hashes for these sizes (and index): RFC 9162's
    /// verification algorithms consume exactly this many.
    #[error("the proof has {got} hashes; one for these sizes has exactly {want}")]
    WrongProofLength {
        /// Hashes in the proof.
        got: usize,
        /// Hashes a proof for these sizes has.
        want: usize,
    },
    /// The proof has the right shape but its hashes do not lead to the given root(s): a
    /// changed leaf, proof hash or root, or a leaf or tree that is not the one claimed.
    #[error("the proof does not lead to the given root")]
    RootMismatch,
}

/// The bit length of `x` (0 for 0).
fn bit_len(x: u64) -> u32 {
    u64::BITS - x.leading_zeros()
}

/// The number of hashes in the inclusion proof of leaf `index` in a tree of `size` leaves,
/// `index < size`: the length of the path RFC 9162 section 2.1.3.2 walks from `fn = index`,
/// `sn = size - 1` until `sn` is 0. Below the level where `index` and `size - 1` meet, every
/// level takes one hash (`inner`); above it, only the levels where the leaf's subtree has a
/// left sibling do (`border`).
fn inclusion_proof_len(index: u64, size: u64) -> usize {
    let inner = bit_len(index ^ (size - 1));
    let border = index.checked_shr(inner).unwrap_or(0).count_ones();
    (inner + border) as usize
}

/// The number of hashes in the consistency proof between trees of `old_size` and `new_size`
/// leaves, `0 < old_size < new_size`: RFC 9162 section 2.1.4.2 walks the inclusion path of leaf
/// `old_size - 1`, skipping the levels below the largest complete subtree that ends the old
/// tree (`shift`), whose hash comes first in the proof unless it is the whole old tree (an old
/// size that is a power of two: step 2 of the algorithm prepends the old root instead).
fn consistency_proof_len(old_size: u64, new_size: u64) -> usize {
    let last = old_size - 1;
    let inner = bit_len(last ^ (new_size - 1));
    let border = last.checked_shr(inner).unwrap_or(0).count_ones();
    let shift = old_size.trailing_zeros();
    let start = u32::from(!old_size.is_power_of_two());
    (start + inner.saturating_sub(shift) + border) as usize
}

fn to_tlog(proof: &[Hash]) -> Vec<TlogHash> {
    proof.iter().copied().map(TlogHash).collect()
}

/// Verifies that `proof` shows the leaf with hash `leaf` (the [`leaf_hash`] of its data) at
/// `index` (0-based) in the tree of `size` leaves with root `root` (RFC 9162 section 2.1.3.2;
/// RFC 6962 section 2.1.1's audit path).
///
/// The hashing is `tlog_tiles::check_record`'s. Checks added before it, so that an error says
/// what is wrong rather than `tlog_tiles`' one "invalid proof":
/// - `index < size` (step 1 of RFC 9162 section 2.1.3.2; `tlog_tiles` checks it too, as an
///   "unmet input condition"), reported as [`ProofError::IndexBeyondSize`];
/// - the proof length: the algorithm fails unless the path ends exactly when `sn` reaches 0
///   (steps 4a and 5), which fixes the length from `index` and `size` (at most 64). Checking
///   it first reports [`ProofError::WrongProofLength`] instead of a mismatch, and bounds the
///   work `tlog_tiles`' recursion (which copies the remaining proof at every level) does on an
///   oversized proof.
///
/// `tlog_tiles` alone gives the same accept/reject outcome on every RFC 6962 test vector
/// (`tests/merkle_vectors.rs` checks both).
///
/// # Errors
///
/// [`ProofError::IndexBeyondSize`], [`ProofError::WrongProofLength`], or
/// [`ProofError::RootMismatch`] when the recomputed root differs from `root`.
pub fn verify_inclusion(
    index: u64,
    size: u64,
    leaf: &Hash,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    if index >= size {
        return Err(ProofError::IndexBeyondSize { index, size });
    }
    let want = inclusion_proof_len(index, size);
    if proof.len() != want {
        return Err(ProofError::WrongProofLength {
            got: proof.len(),
            want,
        });
    }
    tlog_tiles::check_record(
        &to_tlog(proof),
        size,
        TlogHash(*root),
        index,
        TlogHash(*leaf),
    )
    .map_err(|_| ProofError::RootMismatch)
}

/// Verifies that `proof` shows the tree of `new_size` leaves with root `new_root` extends (has
/// as its first `old_size` leaves) the tree of `old_size` leaves with root `old_root` (RFC 9162
/// section 2.1.4.2; RFC 6962 section 2.1.2).
///
/// The hashing is `tlog_tiles::check_tree`'s. Checks added before it, so that an error says
/// what is wrong rather than `tlog_tiles`' one "invalid proof":
/// - `old_size > 0`: RFC 9162 section 2.1.4.2 verifies `0 < first < second`, and a proof from
///   the empty tree would prove nothing (every tree extends it) — [`ProofError::EmptyOldTree`];
/// - `old_size <= new_size` — [`ProofError::OldSizeBeyondNew`] (`tlog_tiles` rejects both as
///   one "unmet input condition");
/// - the proof length: for `old_size < new_size` the algorithm consumes exactly a number of
///   hashes fixed by the two sizes (step 1 rejects an empty path; step 7 requires `sn` to end
///   at 0), and for `old_size == new_size` the proof is empty (RFC 9162 section 2.1.4.1,
///   `SUBPROOF(m, D[m], true) = {}`) and the two roots must be equal. A wrong length is
///   [`ProofError::WrongProofLength`]; checking it first also bounds `tlog_tiles`' work on an
///   oversized proof.
///
/// `tlog_tiles` alone gives the same accept/reject outcome on every RFC 6962 test vector
/// (`tests/merkle_vectors.rs` checks both).
///
/// # Errors
///
/// [`ProofError::EmptyOldTree`], [`ProofError::OldSizeBeyondNew`],
/// [`ProofError::WrongProofLength`], or [`ProofError::RootMismatch`] when the proof does not
/// lead to both `old_root` and `new_root` (for equal sizes: the roots differ).
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), ProofError> {
    if old_size == 0 {
        return Err(ProofError::EmptyOldTree);
    }
    if old_size > new_size {
        return Err(ProofError::OldSizeBeyondNew { old_size, new_size });
    }
    let want = if old_size == new_size {
        0
    } else {
        consistency_proof_len(old_size, new_size)
    };
    if proof.len() != want {
        return Err(ProofError::WrongProofLength {
            got: proof.len(),
            want,
        });
    }
    tlog_tiles::check_tree(
        &to_tlog(proof),
        new_size,
        TlogHash(*new_root),
        old_size,
        TlogHash(*old_root),
    )
    .map_err(|_| ProofError::RootMismatch)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    /// Leaf data of the test trees.
    fn data(i: u64) -> Vec<u8> {
        format!("audit event {i}").into_bytes()
    }

    #[test]
    fn the_compact_tree_has_the_roots_of_the_stored_tree_at_every_size() {
        let mut compact = CompactTree::new();
        let mut stored = MemoryTree::new();
        assert_eq!(compact.root(), EMPTY_ROOT);
        for i in 0..300 {
            let leaf = leaf_hash(&data(i));
            assert_eq!(compact.append(leaf).unwrap(), i + 1);
            stored.append(leaf).unwrap();
            assert_eq!(compact.root(), stored.root().unwrap(), "size {}", i + 1);
            assert_eq!(compact.size(), stored.size());
        }
        // The edge never holds more hashes than the size has 1 bits.
        assert_eq!(compact.edge.len(), 300_u64.count_ones() as usize);
    }

    /// The largest power of two below `n` (`n > 1`).
    fn split(n: usize) -> usize {
        let mut k = 1;
        while k * 2 < n {
            k *= 2;
        }
        k
    }

    /// RFC 9162 section 2.1.1, written out independently of the code under test.
    fn naive_mth(d: &[Vec<u8>]) -> Hash {
        match d.len() {
            0 => Sha256::digest([]).into(),
            1 => Sha256::new()
                .chain_update([0u8])
                .chain_update(&d[0])
                .finalize()
                .into(),
            n => {
                let k = split(n);
                Sha256::new()
                    .chain_update([1u8])
                    .chain_update(naive_mth(&d[..k]))
                    .chain_update(naive_mth(&d[k..]))
                    .finalize()
                    .into()
            }
        }
    }

    /// RFC 9162 section 2.1.3.1 `PATH(m, D[n])`.
    fn naive_path(m: usize, d: &[Vec<u8>]) -> Vec<Hash> {
        let n = d.len();
        if n == 1 {
            return vec![];
        }
        let k = split(n);
        if m < k {
            let mut p = naive_path(m, &d[..k]);
            p.push(naive_mth(&d[k..]));
            p
        } else {
            let mut p = naive_path(m - k, &d[k..]);
            p.push(naive_mth(&d[..k]));
            p
        }
    }

    /// RFC 9162 section 2.1.4.1 `SUBPROOF(m, D[n], b)`.
    fn naive_subproof(m: usize, d: &[Vec<u8>], b: bool) -> Vec<Hash> {
        let n = d.len();
        if m == n {
            return if b { vec![] } else { vec![naive_mth(d)] };
        }
        let k = split(n);
        if m <= k {
            let mut p = naive_subproof(m, &d[..k], b);
            p.push(naive_mth(&d[k..]));
            p
        } else {
            let mut p = naive_subproof(m - k, &d[k..], false);
            p.push(naive_mth(&d[..k]));
            p
        }
    }

    fn flip(h: &Hash) -> Hash {
        let mut h = *h;
        h[7] ^= 0x20;
        h
    }

    #[test]
    fn hashes_have_rfc_prefixes() {
        assert_eq!(leaf_hash(b"x"), <Hash>::from(Sha256::digest(b"\x00x")));
        let (l, r) = ([1u8; 32], [2u8; 32]);
        let mut buf = vec![1u8];
        buf.extend_from_slice(&l);
        buf.extend_from_slice(&r);
        assert_eq!(node_hash(&l, &r), <Hash>::from(Sha256::digest(&buf)));
        assert_eq!(EMPTY_ROOT, <Hash>::from(Sha256::digest([])));
        assert_eq!(root(0, &MemoryTree::new()).ok(), Some(EMPTY_ROOT));
    }

    #[test]
    fn every_proof_of_every_tree_up_to_70_verifies_and_matches_rfc_9162() {
        const MAX: u64 = 70;
        let leaves: Vec<Vec<u8>> = (0..MAX).map(data).collect();
        let tree = MemoryTree::from_leaves(leaves.iter().map(|d| leaf_hash(d))).unwrap();
        let roots: Vec<Hash> = (0..=MAX).map(|n| root(n, &tree).unwrap()).collect();
        let mut inclusion = 0;
        let mut consistency = 0;
        for n in 1..=MAX {
            let d = &leaves[..n as usize];
            let rt = roots[n as usize];
            assert_eq!(rt, naive_mth(d), "root of size {n}");
            for i in 0..n {
                let leaf = leaf_hash(&leaves[i as usize]);
                let proof = inclusion_proof(i, n, &tree).unwrap();
                assert_eq!(proof, naive_path(i as usize, d), "PATH({i}, D[{n}])");
                assert_eq!(proof.len(), inclusion_proof_len(i, n));
                assert_eq!(verify_inclusion(i, n, &leaf, &proof, &rt), Ok(()));
                inclusion += 1;
                for j in 0..proof.len() {
                    let mut bad = proof.clone();
                    bad[j] = flip(&bad[j]);
                    assert_eq!(
                        verify_inclusion(i, n, &leaf, &bad, &rt),
                        Err(ProofError::RootMismatch),
                        "size {n}, leaf {i}, proof hash {j} changed"
                    );
                }
                assert_eq!(
                    verify_inclusion(i, n, &flip(&leaf), &proof, &rt),
                    Err(ProofError::RootMismatch)
                );
                assert_eq!(
                    verify_inclusion(i, n, &leaf, &proof, &flip(&rt)),
                    Err(ProofError::RootMismatch)
                );
                if n > 1 {
                    // The same proof for the neighbouring leaf, or one hash short / long.
                    let other = (i + 1) % n;
                    assert!(verify_inclusion(other, n, &leaf, &proof, &rt).is_err());
                    assert!(matches!(
                        verify_inclusion(i, n, &leaf, &proof[1..], &rt),
                        Err(ProofError::WrongProofLength { .. })
                    ));
                }
                let mut long = proof.clone();
                long.push(rt);
                assert!(matches!(
                    verify_inclusion(i, n, &leaf, &long, &rt),
                    Err(ProofError::WrongProofLength { .. })
                ));
            }
            for m in 1..=n {
                let proof = consistency_proof(m, n, &tree).unwrap();
                assert_eq!(
                    proof,
                    naive_subproof(m as usize, d, true),
                    "PROOF({m}, D[{n}])"
                );
                let old = roots[m as usize];
                assert_eq!(verify_consistency(m, n, &old, &rt, &proof), Ok(()));
                consistency += 1;
                for j in 0..proof.len() {
                    let mut bad = proof.clone();
                    bad[j] = flip(&bad[j]);
                    assert!(
                        verify_consistency(m, n, &old, &rt, &bad).is_err(),
                        "sizes {m}..{n}, proof hash {j} changed"
                    );
                }
                assert_eq!(
                    verify_consistency(m, n, &flip(&old), &rt, &proof),
                    Err(ProofError::RootMismatch)
                );
                assert_eq!(
                    verify_consistency(m, n, &old, &flip(&rt), &proof),
                    Err(ProofError::RootMismatch)
                );
                if m < n {
                    assert_eq!(proof.len(), consistency_proof_len(m, n));
                    assert!(verify_consistency(m, n, &old, &rt, &proof[1..]).is_err());
                    // The old root of another size does not pass either.
                    let other = roots[(m - 1) as usize];
                    if m > 1 {
                        assert!(verify_consistency(m - 1, n, &other, &rt, &proof).is_err());
                    }
                }
            }
        }
        assert_eq!(inclusion, MAX * (MAX + 1) / 2);
        assert_eq!(consistency, MAX * (MAX + 1) / 2);
    }

    #[test]
    fn hashes_to_store_one_leaf_at_a_time_matches_memory_tree() {
        let tree = MemoryTree::from_leaves((0..70).map(|i| leaf_hash(&data(i)))).unwrap();
        // A table of (index, hash) rows, as a database would keep them.
        let mut table: HashMap<u64, Hash> = HashMap::new();
        for n in 0..70u64 {
            let leaf = leaf_hash(&data(n));
            // Fetch only the rows the append reads, as an asynchronous store would.
            let needed = hashes_to_store_indexes(n).unwrap();
            let fetched: BTreeMap<u64, Hash> = needed.iter().map(|i| (*i, table[i])).collect();
            let rows = hashes_to_store(n, leaf, &fetched).unwrap();
            assert_eq!(rows[0], (stored_hash_index(0, n).unwrap(), leaf));
            for (k, (index, hash)) in rows.into_iter().enumerate() {
                assert_eq!(index, table.len() as u64, "leaf {n}, row {k}");
                assert!(table.insert(index, hash).is_none());
            }
            assert_eq!(table.len() as u64, stored_hash_count(n + 1).unwrap());
            // The table answers like the prefix of the whole tree's storage, also when only
            // the rows a root needs are fetched.
            let prefix = tree.stored_hashes()[..table.len()].to_vec();
            let size = n + 1;
            assert_eq!(root(size, &table).unwrap(), root(size, &tree).unwrap());
            let fetched: HashMap<u64, Hash> = root_indexes(size)
                .unwrap()
                .into_iter()
                .map(|i| (i, table[&i]))
                .collect();
            assert_eq!(root(size, &fetched).unwrap(), root(size, &prefix).unwrap());
        }
        let mut dense: Vec<Hash> = vec![[0; 32]; table.len()];
        for (i, h) in &table {
            dense[*i as usize] = *h;
        }
        assert_eq!(dense, tree.stored_hashes());
    }

    #[test]
    fn index_helpers_name_exactly_what_proofs_read() {
        let tree = MemoryTree::from_leaves((0..37).map(|i| leaf_hash(&data(i)))).unwrap();
        let fetch = |indexes: Vec<u64>| -> HashMap<u64, Hash> {
            indexes
                .into_iter()
                .map(|i| (i, tree.stored_hashes()[i as usize]))
                .collect()
        };
        for n in 1..=37 {
            for i in 0..n {
                let rows = fetch(inclusion_proof_indexes(i, n).unwrap());
                assert_eq!(
                    inclusion_proof(i, n, &rows).unwrap(),
                    inclusion_proof(i, n, &tree).unwrap()
                );
            }
            for m in 1..=n {
                let rows = fetch(consistency_proof_indexes(m, n).unwrap());
                assert_eq!(
                    consistency_proof(m, n, &rows).unwrap(),
                    consistency_proof(m, n, &tree).unwrap()
                );
            }
        }
    }

    #[test]
    fn bad_arguments_and_stores_are_errors_not_panics() {
        let tree = MemoryTree::from_leaves((0..5).map(|i| leaf_hash(&data(i)))).unwrap();
        assert!(matches!(
            inclusion_proof(5, 5, &tree),
            Err(MerkleError::IndexOutOfRange { index: 5, size: 5 })
        ));
        assert!(matches!(
            consistency_proof(0, 5, &tree),
            Err(MerkleError::InvalidSizes { .. })
        ));
        assert!(matches!(
            consistency_proof(6, 5, &tree),
            Err(MerkleError::InvalidSizes { .. })
        ));
        assert!(matches!(
            root(6, &tree),
            Err(MerkleError::MissingHash { .. })
        ));
        assert!(matches!(
            root(u64::MAX, &tree),
            Err(MerkleError::TreeTooLarge { .. })
        ));
        assert!(matches!(
            hashes_to_store(u64::MAX, [0; 32], &tree),
            Err(MerkleError::TreeTooLarge { .. })
        ));
        assert!(stored_hash_index(63, 0).is_err());
        assert!(stored_hash_index(0, MAX_TREE_SIZE).is_err());
        assert!(stored_hash_index(0, MAX_TREE_SIZE - 1).is_ok());
        assert!(stored_hash_count(MAX_TREE_SIZE).is_ok());

        /// A store that answers with one hash too few.
        struct Short;
        impl HashReader for Short {
            fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, MerkleError> {
                Ok(vec![[0; 32]; indexes.len().saturating_sub(1)])
            }
        }
        assert!(matches!(
            root(7, &Short),
            Err(MerkleError::WrongHashCount { .. })
        ));
        assert!(matches!(
            hashes_to_store(3, [0; 32], &Short),
            Err(MerkleError::WrongHashCount { .. })
        ));

        /// A store that fails.
        struct Broken;
        impl HashReader for Broken {
            fn read_hashes(&self, _: &[u64]) -> Result<Vec<Hash>, MerkleError> {
                Err(MerkleError::Store("database is gone".into()))
            }
        }
        let err = inclusion_proof(1, 7, &Broken).unwrap_err();
        assert_eq!(err.to_string(), "hash store: database is gone");

        // Verification of huge sizes neither panics nor loops.
        let h = [3u8; 32];
        assert!(verify_inclusion(u64::MAX - 1, u64::MAX, &h, &[h; 64], &h).is_err());
        assert!(verify_inclusion(0, u64::MAX, &h, &[h; 64], &h).is_err());
        assert!(verify_consistency(1, u64::MAX, &h, &h, &[h; 64]).is_err());
        assert!(verify_consistency(u64::MAX - 1, u64::MAX, &h, &h, &[h; 65]).is_err());
        assert_eq!(
            verify_inclusion(0, 1, &h, &vec![h; 100_000], &h),
            Err(ProofError::WrongProofLength {
                got: 100_000,
                want: 0
            })
        );
        assert_eq!(
            verify_consistency(0, 0, &h, &h, &[]),
            Err(ProofError::EmptyOldTree)
        );
        assert_eq!(
            verify_consistency(2, 1, &h, &h, &[]),
            Err(ProofError::OldSizeBeyondNew {
                old_size: 2,
                new_size: 1
            })
        );
        assert_eq!(
            verify_inclusion(0, 0, &h, &[], &h),
            Err(ProofError::IndexBeyondSize { index: 0, size: 0 })
        );
    }
}
