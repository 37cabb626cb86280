// Copyright (c) Microsoft Corporation.
// Licensed under the MIT License.

//! See [`Object`].
//!
//! `Object` uses private storage variants tuned for memory and mutation cost.
//! `Frozen` means compact boxed-slice storage, not semantic immutability:
//! mutable APIs such as [`Object::insert`], [`Object::remove`], and
//! [`Object::get_mut`] may update values in place or thaw storage
//! transparently. `Empty`, `Frozen`, and `BTree` are optimization
//! details and callers must not depend on which representation is selected.
//!
//! The implementation is split across sibling modules that share the private
//! `repr` field: [`mutate`] (insert/remove/retain/get_or_insert_with),
//! [`freeze`] (freeze/thaw transitions), and [`cursor`] (resumable iteration).

mod cursor;
mod freeze;
mod iter;
mod mutate;
mod serde;

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use core::cmp::Ordering;
use core::fmt;

use crate::value::Value;

#[cfg(feature = "rvm")]
pub use cursor::ObjectCursor;
pub use iter::{IntoIter, Iter, IterMut};

/// Opaque, ordered key-value map keyed by [`Value`].
///
/// Backed by a three-variant representation: empty objects use zero-allocation
/// storage, mutable objects use `BTreeMap`, and read-mostly objects freeze to an
/// exact-size boxed slice. The representation is private so it can change
/// without touching call sites.
///
/// # Iteration
///
/// - [`Object::iter`] — implementation-defined order; non-resumable.
/// - [`Object::iter_sorted`] — sorted by `Value::Ord`; non-resumable.
/// - [`Object::cursor`] / [`Object::next`] — implementation-defined order,
///   resumable; cheapest per-step cost. Used by interpreter/RVM when iteration
///   must yield mid-flight.
#[derive(Default, Clone)]
pub struct Object {
    pub(super) repr: Repr,
}

#[derive(Clone)]
pub(super) enum Repr {
    Empty,
    /// Compact sorted, deduplicated entries with no spare capacity.
    ///
    /// Release-critical invariant: Frozen keys are strictly sorted and deduplicated.
    /// `get`/`insert`/cursor resume use binary search in all builds, so every construction
    /// path must preserve this before entering `Repr::Frozen`.
    Frozen(Box<[(Value, Value)]>),
    BTree(BTreeMap<Value, Value>),
}

impl Default for Repr {
    #[inline]
    fn default() -> Self {
        Repr::Empty
    }
}

impl Object {
    /// Create an empty `Object`.
    #[inline]
    pub const fn new() -> Self {
        Self { repr: Repr::Empty }
    }

    #[inline]
    pub fn len(&self) -> usize {
        match &self.repr {
            Repr::Empty => 0,
            Repr::Frozen(v) => v.len(),
            Repr::BTree(m) => m.len(),
        }
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn get(&self, key: &Value) -> Option<&Value> {
        match &self.repr {
            Repr::Empty => None,
            Repr::Frozen(v) => match v.binary_search_by(|(k, _)| k.cmp(key)) {
                Ok(i) => Some(&v[i].1),
                Err(_) => None,
            },
            Repr::BTree(m) => m.get(key),
        }
    }

    /// AAF patch: `get` with a string key, without building a `Value::String` (an
    /// allocation) for it. Same result as `get(&Value::from(key))`.
    pub fn get_str(&self, key: &str) -> Option<&Value> {
        match &self.repr {
            Repr::Empty => None,
            Repr::Frozen(v) => match v.binary_search_by(|(k, _)| cmp_value_str(k, key)) {
                Ok(i) => Some(&v[i].1),
                Err(_) => None,
            },
            Repr::BTree(m) => {
                let probe: &dyn ObjectKey = &StrKey(key);
                m.get(probe)
            }
        }
    }

    #[inline]
    pub fn contains_key(&self, key: &Value) -> bool {
        self.get(key).is_some()
    }

    pub fn get_mut(&mut self, key: &Value) -> Option<&mut Value> {
        // Returning `&mut Value` for an existing key is a value-only mutation:
        // it never reorders or removes keys, so `Frozen` storage is preserved
        // in place rather than thawed (mirrors `insert`/`get_or_insert_with`).
        match &mut self.repr {
            Repr::Empty => None,
            Repr::Frozen(v) => match v.binary_search_by(|(k, _)| k.cmp(key)) {
                Ok(i) => Some(&mut v[i].1),
                Err(_) => None,
            },
            Repr::BTree(m) => m.get_mut(key),
        }
    }

    /// AAF patch: `get(&Value::Undefined)` without a search: `Undefined` orders after every
    /// other value, so it can only be the last key.
    pub fn get_undefined_key(&self) -> Option<&Value> {
        let last = match &self.repr {
            Repr::Empty => None,
            Repr::Frozen(v) => v.last().map(|(k, v)| (k, v)),
            Repr::BTree(m) => m.last_key_value(),
        };
        match last {
            Some((Value::Undefined, v)) => Some(v),
            _ => None,
        }
    }

    /// AAF patch: `get_mut` with a string key, without building a `Value` for it.
    pub fn get_mut_str(&mut self, key: &str) -> Option<&mut Value> {
        match &mut self.repr {
            Repr::Empty => None,
            Repr::Frozen(v) => match v.binary_search_by(|(k, _)| cmp_value_str(k, key)) {
                Ok(i) => Some(&mut v[i].1),
                Err(_) => None,
            },
            Repr::BTree(m) => {
                let probe: &dyn ObjectKey = &StrKey(key);
                m.get_mut(probe)
            }
        }
    }

    /// Iteration in implementation-defined order. Non-resumable.
    ///
    /// For both current backends this happens to be sorted by `Value::Ord`,
    /// but callers MUST NOT depend on that. Use [`Object::iter_sorted`] when
    /// deterministic order is required, or [`Object::cursor`] when iteration
    /// must yield and resume.
    pub fn iter(&self) -> impl Iterator<Item = (&Value, &Value)> + '_ {
        self.iter_sorted()
    }

    /// Iteration in sorted key order (by `Value::Ord`). Non-resumable.
    ///
    /// Use this for serialization, snapshots, hashing, `Debug`, the
    /// `object.keys` builtin, etc.
    #[inline]
    pub fn iter_sorted(&self) -> Iter<'_> {
        Iter {
            inner: match &self.repr {
                Repr::Empty => iter::IterInner::Empty,
                Repr::Frozen(v) => iter::IterInner::Frozen(v.iter()),
                Repr::BTree(m) => iter::IterInner::BTree(m.iter()),
            },
        }
    }

    pub fn keys(&self) -> impl Iterator<Item = &Value> + '_ {
        self.iter_sorted().map(|(k, _)| k)
    }

    pub fn keys_sorted(&self) -> impl Iterator<Item = &Value> + '_ {
        self.iter_sorted().map(|(k, _)| k)
    }

    pub fn values(&self) -> impl Iterator<Item = &Value> + '_ {
        self.iter_sorted().map(|(_, v)| v)
    }

    #[inline]
    pub fn iter_mut(&mut self) -> IterMut<'_> {
        // Frozen storage is read-only, so thaw it in place before handing out
        // mutable element references. After this, repr is never Frozen.
        self.thaw();
        IterMut {
            inner: match &mut self.repr {
                // `thaw` above guarantees repr is not Frozen here; the Frozen
                // arm is dead, but yielding an empty iterator keeps the match
                // total without a panic.
                Repr::Empty | Repr::Frozen(_) => iter::IterMutInner::Empty,
                Repr::BTree(m) => iter::IterMutInner::BTree(m.iter_mut()),
            },
        }
    }
}

// ---- Hand-written PartialEq/Eq/Ord -------------------------------------
//
// Defined in terms of `iter_sorted()` so equality and ordering are
// consistent with the canonical (sorted) view of the entries and are
// therefore independent of the storage variant. A derived PartialEq on
// `Repr` would incorrectly distinguish `Frozen` from `BTree` even when they
// hold identical entries.

impl PartialEq for Object {
    fn eq(&self, other: &Self) -> bool {
        if self.len() != other.len() {
            return false;
        }
        self.iter_sorted().eq(other.iter_sorted())
    }
}

impl Eq for Object {}

impl Ord for Object {
    fn cmp(&self, other: &Self) -> Ordering {
        self.iter_sorted().cmp(other.iter_sorted())
    }
}

impl PartialOrd for Object {
    #[inline]
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Debug for Object {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter_sorted()).finish()
    }
}

impl Extend<(Value, Value)> for Object {
    fn extend<I: IntoIterator<Item = (Value, Value)>>(&mut self, iter: I) {
        for (k, v) in iter {
            self.insert(k, v);
        }
    }
}

impl FromIterator<(Value, Value)> for Object {
    fn from_iter<I: IntoIterator<Item = (Value, Value)>>(iter: I) -> Self {
        let mut o = Object::new();
        for (k, v) in iter {
            o.insert(k, v);
        }
        o
    }
}

impl From<BTreeMap<Value, Value>> for Object {
    fn from(map: BTreeMap<Value, Value>) -> Self {
        if map.is_empty() {
            Self { repr: Repr::Empty }
        } else {
            Self {
                repr: Repr::BTree(map),
            }
        }
    }
}

impl From<Object> for Value {
    #[inline]
    fn from(o: Object) -> Self {
        o.into_value()
    }
}

// AAF patch: string keys looked up in `BTreeMap<Value, Value>` without a `Value`. A map's
// `get` accepts any `Q` the key type borrows as, with the same order; `dyn ObjectKey` is
// such a `Q` for both `Value` and a plain string, ordered as `Value`'s derived `Ord` orders
// a `Value::String` among the other variants (`Null`, `Bool`, `Number` before it; `Array`,
// `Set`, `Object`, `Undefined` after it).

/// A `Value`'s ordering of `v` against `Value::String(s)`, without building the latter.
fn cmp_value_str(v: &Value, s: &str) -> Ordering {
    match v {
        Value::Null | Value::Bool(_) | Value::Number(_) => Ordering::Less,
        Value::String(t) => crate::value::cmp_str(t, s), // AAF patch
        Value::Array(_) | Value::Set(_) | Value::Object(_) | Value::Undefined => Ordering::Greater,
    }
}

#[derive(Clone, Copy)]
enum KeyRef<'a> {
    Value(&'a Value),
    Str(&'a str),
}

trait ObjectKey {
    fn key_ref(&self) -> KeyRef<'_>;
}

impl ObjectKey for Value {
    fn key_ref(&self) -> KeyRef<'_> {
        KeyRef::Value(self)
    }
}

struct StrKey<'a>(&'a str);

impl ObjectKey for StrKey<'_> {
    fn key_ref(&self) -> KeyRef<'_> {
        KeyRef::Str(self.0)
    }
}

impl<'a> core::borrow::Borrow<dyn ObjectKey + 'a> for Value {
    fn borrow(&self) -> &(dyn ObjectKey + 'a) {
        self
    }
}

impl Ord for dyn ObjectKey + '_ {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self.key_ref(), other.key_ref()) {
            (KeyRef::Value(a), KeyRef::Value(b)) => a.cmp(b),
            (KeyRef::Str(a), KeyRef::Str(b)) => crate::value::cmp_str(a, b), // AAF patch
            (KeyRef::Value(a), KeyRef::Str(b)) => cmp_value_str(a, b),
            (KeyRef::Str(a), KeyRef::Value(b)) => cmp_value_str(b, a).reverse(),
        }
    }
}

impl PartialOrd for dyn ObjectKey + '_ {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for dyn ObjectKey + '_ {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for dyn ObjectKey + '_ {}

#[cfg(test)]
mod aaf_get_str_tests {
    use super::*;

    #[test]
    fn get_str_agrees_with_get_for_every_representation() {
        let keys = [
            Value::Null,
            Value::from(true),
            Value::from(3u64),
            Value::from(""),
            Value::from("a"),
            Value::from("ab"),
            Value::from("b"),
            Value::new_array(),
            Value::Undefined,
        ];
        let mut btree = Object::new();
        for (i, k) in keys.iter().enumerate() {
            btree.insert(k.clone(), Value::from(i as u64));
        }
        let frozen = btree.clone().freeze();
        for probe in ["", "a", "ab", "b", "c", "A"] {
            let expected = btree.get(&Value::from(probe));
            assert_eq!(btree.get_str(probe), expected, "{probe}");
            assert_eq!(frozen.get_str(probe), expected, "{probe}");
            assert_eq!(
                btree.clone().get_mut_str(probe).map(|v| v.clone()),
                expected.cloned()
            );
            assert_eq!(
                frozen.clone().get_mut_str(probe).map(|v| v.clone()),
                expected.cloned()
            );
        }
        assert_eq!(Object::new().get_str("a"), None);
        assert_eq!(btree.get_undefined_key(), btree.get(&Value::Undefined));
        assert_eq!(frozen.get_undefined_key(), btree.get(&Value::Undefined));
        let mut without = btree.clone();
        without.remove(&Value::Undefined);
        assert_eq!(without.get_undefined_key(), None);
        assert_eq!(without.clone().freeze().get_undefined_key(), None);
        assert_eq!(Object::new().get_undefined_key(), None);
    }
}
