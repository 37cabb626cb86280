//! Signed checkpoints of a transparency log: C2SP `tlog-checkpoint` bodies
//! (<https://c2sp.org/tlog-checkpoint>) signed as C2SP `signed-note`s
//! (<https://c2sp.org/signed-note>) with an Ed25519 log key.
//!
//! A signed checkpoint looks like this (signed with the example key of Go's `sumdb/note`,
//! named `PeterNeumann`; AAF's key name is the origin by convention):
//!
//! ```text
//! example.com/origin
//! 123
//! TszzRgjTG6xce+z2AG31kAXYKBgQVtCSCE40HmuwBb0=
//!
//! — PeterNeumann x08go8pwjqh/VPia+5tQP7Eqr8KcdxrCLsAKAxnzF+CotQs6PSNbSI8A1m8laKEDs8idzXGovw+RksFhVQ4nYCCPHgY=
//! ```
//!
//! The body is the origin (the log's name), the tree size in decimal and the base64 root
//! hash, each ending in a newline; then a blank line and one line per signature: an em dash,
//! the key name, and the base64 of the 4-byte key ID followed by the Ed25519 signature of the
//! body. Parsing and signing are `tlog_tiles`' (checkpoint body) and `signed_note`'s (note,
//! keys, signatures), ports of Go's `golang.org/x/mod/sumdb/{tlog,note}`.

use std::fmt;

use base64::prelude::*;
use ed25519_dalek::SigningKey;
use signed_note::{Note, NoteError, StandardSigner, StandardVerifier, Verifier, VerifierList};

use super::merkle::Hash;

/// The Ed25519 algorithm byte of signed-note keys.
const ALG_ED25519: u8 = 1;

/// Why a checkpoint, note or key was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    /// A key name must be non-empty and contain neither Unicode spaces nor `+` (C2SP
    /// signed-note).
    #[error("invalid key name {0:?}: it must be non-empty, without spaces or '+'")]
    InvalidKeyName(String),
    /// The private key string is not a signed-note Ed25519 private key (the key itself is
    /// never part of the message).
    #[error("malformed private key: {0}")]
    MalformedPrivateKey(&'static str),
    /// The verifier key string is not a signed-note Ed25519 verifier key.
    #[error("malformed verifier key: {0}")]
    MalformedVerifierKey(String),
    /// The text is not a signed note: UTF-8 without control characters other than newline,
    /// the body ending in a newline, a blank line, then one or more well-formed signature
    /// lines ending in a newline.
    #[error("malformed signed note")]
    MalformedNote,
    /// The note carries no signature of this key (name and key ID).
    #[error("the note has no signature by key {key}")]
    NotSignedByKey {
        /// `<name>+<key ID in hex>`.
        key: String,
    },
    /// The note carries a signature that claims this key but does not verify: the body or
    /// the signature was changed.
    #[error("the signature by key {key} does not verify")]
    BadSignature {
        /// `<name>+<key ID in hex>`.
        key: String,
    },
    /// The body is not a checkpoint of the exact form [`Checkpoint::body`] writes.
    #[error("malformed checkpoint body: {0}")]
    MalformedBody(&'static str),
    /// The checkpoint cannot be written as a body that reads back as itself (for example an
    /// origin that is empty or has a newline), so it is not signed.
    #[error("cannot sign the checkpoint: {0}")]
    Unsignable(String),
}

/// A tree head: the log's origin, its size and its Merkle root (C2SP `tlog-checkpoint`, without
/// extension lines).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log's name, the first line: non-empty, by convention a schema-less URL such as
    /// `aaf.example/audit/<org>`, and the name of the key that signs it.
    pub origin: String,
    /// The number of leaves of the tree (entries of the log).
    pub size: u64,
    /// The root of the tree of those `size` leaves (RFC 9162 section 2.1.1).
    pub root: Hash,
}

impl Checkpoint {
    /// The checkpoint body, exactly `<origin>\n<size in decimal>\n<base64 root>\n` (standard
    /// base64 with padding: 44 characters). This is the text that is signed.
    pub fn body(&self) -> String {
        format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            BASE64_STANDARD.encode(self.root)
        )
    }

    /// Parses a body of the exact form [`Checkpoint::body`] writes. Strict: the origin is
    /// non-empty and has no control characters; the size is decimal without sign, spaces or
    /// leading zeros; the root is canonical padded base64 of 32 bytes; every line ends in `\n`
    /// and nothing follows the root line. C2SP tlog-checkpoint allows extension lines after the
    /// root; they are refused here, because AAF's checkpoints have none and a [`Checkpoint`]
    /// could not carry them (a verifier would otherwise accept signed text it does not show).
    ///
    /// # Errors
    ///
    /// [`CheckpointError::MalformedBody`], naming what is wrong.
    pub fn parse_body(text: &str) -> Result<Self, CheckpointError> {
        if text.chars().any(|c| c < ' ' && c != '\n') {
            return Err(CheckpointError::MalformedBody(
                "control character other than newline",
            ));
        }
        let parsed = tlog_tiles::Checkpoint::from_bytes(text.as_bytes()).map_err(|_| {
            CheckpointError::MalformedBody(
                "not a non-empty origin line, a decimal size line and a base64 SHA-256 root line, \
                 each ending in a newline",
            )
        })?;
        if !parsed.extension().is_empty() {
            return Err(CheckpointError::MalformedBody(
                "lines after the root line (extension lines are not accepted)",
            ));
        }
        Ok(Self {
            origin: parsed.origin().to_owned(),
            size: parsed.size(),
            root: parsed.hash().0,
        })
    }
}

/// A log's Ed25519 signing key and its key name (by convention the log's origin).
///
/// It reads and writes the signed-note private key form that Go's `note.GenerateKey` and
/// `signed_note::generate_key` write, `PRIVATE+KEY+<name>+<key ID, 8 hex digits>+<base64 of
/// 0x01 || 32-byte Ed25519 seed>`, so the server can keep it in a file or an environment
/// variable; its public half is the verifier key `<name>+<key ID>+<base64 of 0x01 || 32-byte
/// public key>`, published to verifiers. The key ID is the first 4 bytes of
/// `SHA-256(name || 0x0A || 0x01 || public key)` (C2SP signed-note). `Debug` shows the name and
/// the verifier key only.
#[derive(Clone)]
pub struct LogKey {
    name: String,
    signing_key: SigningKey,
    signer: StandardSigner,
}

impl fmt::Debug for LogKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogKey")
            .field("name", &self.name)
            .field("verifier_key", &self.verifier_key())
            .finish_non_exhaustive()
    }
}

impl LogKey {
    /// A new random key (from the thread-local CSPRNG) named `name`.
    ///
    /// # Errors
    ///
    /// [`CheckpointError::InvalidKeyName`] for an empty name or one with a space or `+`.
    pub fn generate(name: &str) -> Result<Self, CheckpointError> {
        Self::from_signing_key(name, SigningKey::from_bytes(&rand::random::<[u8; 32]>()))
    }

    fn from_signing_key(name: &str, signing_key: SigningKey) -> Result<Self, CheckpointError> {
        if !signed_note::is_key_name_valid(name) {
            return Err(CheckpointError::InvalidKeyName(name.to_owned()));
        }
        let signer = StandardSigner::new(&encode_private_key(name, &signing_key))
            .map_err(|_| CheckpointError::MalformedPrivateKey("cannot be encoded"))?;
        Ok(Self {
            name: name.to_owned(),
            signing_key,
            signer,
        })
    }

    /// Reads a signed-note private key string (surrounding whitespace, such as the newline at
    /// the end of a key file, is ignored).
    ///
    /// # Errors
    ///
    /// [`CheckpointError::MalformedPrivateKey`] when it is not of the form
    /// `PRIVATE+KEY+<name>+<id>+<base64>`, not Ed25519, or its key ID does not match the key.
    pub fn from_private_key(private_key: &str) -> Result<Self, CheckpointError> {
        let private_key = private_key.trim();
        let signer = StandardSigner::new(private_key).map_err(|e| {
            CheckpointError::MalformedPrivateKey(match e {
                signed_note::SignerError::Alg => "not an Ed25519 key",
                signed_note::SignerError::Id => "the key ID does not match the key",
                signed_note::SignerError::Format => {
                    "not of the form PRIVATE+KEY+<name>+<8 hex digits>+<base64 key>"
                }
            })
        })?;
        // `StandardSigner` keeps its key to itself; the public half (for the verifier key) and
        // the encoding (for `to_private_key`) need it, so decode the validated string again.
        let malformed = || CheckpointError::MalformedPrivateKey("cannot be decoded");
        let mut fields = private_key.splitn(5, '+').skip(2);
        let name = fields.next().ok_or_else(malformed)?;
        let encoded = fields.nth(1).ok_or_else(malformed)?;
        let key = BASE64_STANDARD.decode(encoded).map_err(|_| malformed())?;
        let signing_key = match key.split_first() {
            Some((&ALG_ED25519, seed)) => SigningKey::try_from(seed).map_err(|_| malformed())?,
            _ => return Err(malformed()),
        };
        Ok(Self {
            name: name.to_owned(),
            signing_key,
            signer,
        })
    }

    /// The signed-note private key string (secret: anyone holding it can sign checkpoints).
    pub fn to_private_key(&self) -> String {
        encode_private_key(&self.name, &self.signing_key)
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The verifier key `<name>+<key ID>+<base64 public key>` that verifiers are given.
    pub fn verifier_key(&self) -> String {
        signed_note::new_ed25519_verifier_key(&self.name, &self.signing_key.verifying_key())
    }

    /// Signs the checkpoint: returns the whole signed note, the [`Checkpoint::body`], a blank
    /// line and the signature line `— <name> <base64 of key ID || signature>\n`.
    ///
    /// # Errors
    ///
    /// [`CheckpointError::Unsignable`] when the body would not read back as this checkpoint
    /// with [`Checkpoint::parse_body`] (an empty origin, or one with a control character).
    pub fn sign(&self, checkpoint: &Checkpoint) -> Result<String, CheckpointError> {
        let body = checkpoint.body();
        match Checkpoint::parse_body(&body) {
            Ok(read) if read == *checkpoint => {}
            Ok(_) => {
                return Err(CheckpointError::Unsignable(
                    "the body does not read back as the same checkpoint".to_owned(),
                ))
            }
            Err(e) => return Err(CheckpointError::Unsignable(e.to_string())),
        }
        let mut note = Note::new(body.as_bytes(), &[])
            .map_err(|e| CheckpointError::Unsignable(e.to_string()))?;
        note.add_sigs(&[&self.signer])
            .map_err(|e| CheckpointError::Unsignable(e.to_string()))?;
        String::from_utf8(note.to_bytes()).map_err(|e| CheckpointError::Unsignable(e.to_string()))
    }
}

/// The private key string of `signed_note::generate_key` (Go's `note.GenerateKey`).
fn encode_private_key(name: &str, signing_key: &SigningKey) -> String {
    let mut public = vec![ALG_ED25519];
    public.extend_from_slice(signing_key.verifying_key().as_bytes());
    let mut private = [0u8; 33];
    private[0] = ALG_ED25519;
    private[1..].copy_from_slice(signing_key.as_bytes());
    format!(
        "PRIVATE+KEY+{name}+{:08x}+{}",
        signed_note::key_id(name, &public),
        BASE64_STANDARD.encode(private)
    )
}

/// Verifies a signed checkpoint note against one verifier key and returns the checkpoint.
///
/// The note must carry a valid signature of that key (other signatures, by keys not given, are
/// ignored, as C2SP signed-note prescribes), and its body must be a checkpoint as
/// [`Checkpoint::parse_body`] reads it. The origin is not compared with the key name or with
/// anything else: the caller compares it (and the size) with what it expects.
///
/// # Errors
///
/// [`CheckpointError::MalformedVerifierKey`], [`CheckpointError::MalformedNote`],
/// [`CheckpointError::NotSignedByKey`] (no signature line of this key name and ID: unsigned,
/// or signed by another key), [`CheckpointError::BadSignature`] (a signature of this key that
/// does not verify: the body or signature was changed), or
/// [`CheckpointError::MalformedBody`].
pub fn verify_checkpoint(note: &str, verifier_key: &str) -> Result<Checkpoint, CheckpointError> {
    let verifier = StandardVerifier::new(verifier_key.trim())
        .map_err(|e| CheckpointError::MalformedVerifierKey(e.to_string()))?;
    let key = format!("{}+{:08x}", verifier.name(), verifier.key_id());
    let parsed = Note::from_bytes(note.as_bytes()).map_err(|_| CheckpointError::MalformedNote)?;
    match parsed.verify(&VerifierList::new(vec![Box::new(verifier)])) {
        Ok(_) => {}
        Err(NoteError::UnverifiedNote) => return Err(CheckpointError::NotSignedByKey { key }),
        Err(NoteError::InvalidSignature { .. }) => {
            return Err(CheckpointError::BadSignature { key })
        }
        Err(_) => return Err(CheckpointError::MalformedNote),
    }
    let body = std::str::from_utf8(parsed.text()).map_err(|_| CheckpointError::MalformedNote)?;
    Checkpoint::parse_body(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evidence::merkle::{leaf_hash, EMPTY_ROOT};

    /// The example key of Go's `sumdb/note` documentation (and `signed_note`'s).
    const PETER_PRIVATE: &str =
        "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
    const PETER_VERIFIER: &str =
        "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";

    fn checkpoint() -> Checkpoint {
        Checkpoint {
            origin: "aaf.example/audit/org-1".to_owned(),
            size: 12,
            root: leaf_hash(b"root of twelve"),
        }
    }

    #[test]
    fn body_format_is_exact() {
        // The golden example of Go's sumdb/tlog and tlog_tiles' tests.
        let c = Checkpoint {
            origin: "example.com/origin".to_owned(),
            size: 123,
            root: leaf_hash(b"hello world"),
        };
        assert_eq!(
            c.body(),
            "example.com/origin\n123\nTszzRgjTG6xce+z2AG31kAXYKBgQVtCSCE40HmuwBb0=\n"
        );
        let empty = Checkpoint {
            origin: "aaf.example/audit/org-1".to_owned(),
            size: 0,
            root: EMPTY_ROOT,
        };
        assert_eq!(
            empty.body(),
            "aaf.example/audit/org-1\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n"
        );
        assert_eq!(Checkpoint::parse_body(&c.body()), Ok(c));
        assert_eq!(Checkpoint::parse_body(&empty.body()), Ok(empty));
    }

    #[test]
    fn parse_body_is_strict() {
        let root = "TszzRgjTG6xce+z2AG31kAXYKBgQVtCSCE40HmuwBb0=";
        let max = format!("o\n18446744073709551615\n{root}\n");
        assert_eq!(Checkpoint::parse_body(&max).map(|c| c.size), Ok(u64::MAX));
        let bad = [
            format!("o\n123\n{root}"),                    // no final newline
            format!("o\n123\n{root}\n\n"),                // blank line after
            format!("o\n123\n{root}\nextension\n"),       // extension line
            format!("\n123\n{root}\n"),                   // empty origin
            format!("o\n0123\n{root}\n"),                 // leading zero
            format!("o\n+123\n{root}\n"),                 // sign
            format!("o\n 123\n{root}\n"),                 // space
            format!("o\n-1\n{root}\n"),                   // negative
            format!("o\n18446744073709551616\n{root}\n"), // beyond u64
            format!("o\n0x7b\n{root}\n"),                 // hex
            "o\n123\nTszzRgjTG6xce+z2AG31kAXYKBgQVtCSCE40HmuwBb0\n".to_owned(), // no padding
            "o\n123\nTszzRgjTG6xce+z2AG31kAXYKBgQVtCSCE40HmuwBb1=\n".to_owned(), // trailing bits
            "o\n123\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA==\n".to_owned(), // 31 bytes
            format!("o\r\n123\n{root}\n"),                // CR
            format!("o\n123\r\n{root}\n"),                // CR
            format!("o\n123\n{root}\r\n"),                // CR
            "o\n123\n".to_owned(),                        // no root
            String::new(),
        ];
        for text in &bad {
            assert!(
                matches!(
                    Checkpoint::parse_body(text),
                    Err(CheckpointError::MalformedBody(_))
                ),
                "accepted {text:?}"
            );
        }
    }

    #[test]
    fn sign_then_verify_round_trips() {
        let key = LogKey::generate("aaf.example/audit/org-1").unwrap();
        let c = checkpoint();
        let note = key.sign(&c).unwrap();
        let body = c.body();
        assert!(note.starts_with(&format!("{body}\n— aaf.example/audit/org-1 ")));
        assert!(note.ends_with('\n'));
        assert_eq!(note.lines().count(), 5);
        assert_eq!(verify_checkpoint(&note, &key.verifier_key()), Ok(c));
        // A verifier key read from a file keeps its newline.
        assert!(verify_checkpoint(&note, &format!("{}\n", key.verifier_key())).is_ok());
    }

    #[test]
    fn golden_signed_note() {
        // Ed25519 signatures are deterministic: this note is what the Go example key signs.
        let key = LogKey::from_private_key(PETER_PRIVATE).unwrap();
        let c = Checkpoint {
            origin: "example.com/origin".to_owned(),
            size: 123,
            root: leaf_hash(b"hello world"),
        };
        let note = key.sign(&c).unwrap();
        assert_eq!(note, GOLDEN_NOTE);
        assert_eq!(verify_checkpoint(GOLDEN_NOTE, PETER_VERIFIER), Ok(c));
    }

    /// Computed independently of this crate and of `signed_note` (OpenSSL's Ed25519 through
    /// Python's `cryptography`, key ID and layout by the C2SP signed-note text).
    const GOLDEN_NOTE: &str = "example.com/origin\n\
        123\n\
        TszzRgjTG6xce+z2AG31kAXYKBgQVtCSCE40HmuwBb0=\n\
        \n\
        — PeterNeumann x08go8pwjqh/VPia+5tQP7Eqr8KcdxrCLsAKAxnzF+CotQs6PSNbSI8A1m8laKEDs8idzXGovw+RksFhVQ4nYCCPHgY=\n";

    #[test]
    fn changed_notes_fail() {
        let key = LogKey::generate("aaf.example/audit/org-1").unwrap();
        let vkey = key.verifier_key();
        let c = checkpoint();
        let note = key.sign(&c).unwrap();
        let bad_signature = |text: String| {
            assert!(
                matches!(
                    verify_checkpoint(&text, &vkey),
                    Err(CheckpointError::BadSignature { .. })
                ),
                "accepted or misreported {text:?}"
            );
        };
        // Size, root and origin changed in the signed body.
        bad_signature(note.replacen("\n12\n", "\n13\n", 1));
        let other_root = BASE64_STANDARD.encode(leaf_hash(b"another root"));
        bad_signature(note.replacen(&BASE64_STANDARD.encode(c.root), &other_root, 1));
        bad_signature(note.replacen("org-1\n12", "org-2\n12", 1));
        // One byte of the signature changed (after the 4-byte key ID, so it still names the key).
        let (head, line) = note.rsplit_once("— ").unwrap();
        let (name, sig) = line.trim_end().split_once(' ').unwrap();
        let mut raw = BASE64_STANDARD.decode(sig).unwrap();
        for i in [4, 20, raw.len() - 1] {
            raw[i] ^= 1;
            bad_signature(format!("{head}— {name} {}\n", BASE64_STANDARD.encode(&raw)));
            raw[i] ^= 1;
        }
        // The key ID changed: no longer a signature of this key.
        raw[0] ^= 1;
        let changed_id = format!("{head}— {name} {}\n", BASE64_STANDARD.encode(&raw));
        assert!(matches!(
            verify_checkpoint(&changed_id, &vkey),
            Err(CheckpointError::NotSignedByKey { .. })
        ));
        // Not a note at all, or the signature lines removed.
        assert_eq!(
            verify_checkpoint(&c.body(), &vkey),
            Err(CheckpointError::MalformedNote)
        );
        assert_eq!(
            verify_checkpoint("", &vkey),
            Err(CheckpointError::MalformedNote)
        );
    }

    #[test]
    fn another_key_fails() {
        let key = LogKey::generate("aaf.example/audit/org-1").unwrap();
        let same_name = LogKey::generate("aaf.example/audit/org-1").unwrap();
        let other = LogKey::generate("aaf.example/audit/org-2").unwrap();
        let note = key.sign(&checkpoint()).unwrap();
        for k in [&same_name, &other] {
            let err = verify_checkpoint(&note, &k.verifier_key()).unwrap_err();
            assert!(
                matches!(err, CheckpointError::NotSignedByKey { .. }),
                "{err}"
            );
        }
        // A note signed by both keys verifies with either.
        let both = format!(
            "{note}{}",
            other
                .sign(&checkpoint())
                .unwrap()
                .rsplit_once("\n\n")
                .unwrap()
                .1
        );
        assert!(verify_checkpoint(&both, &key.verifier_key()).is_ok());
        assert!(verify_checkpoint(&both, &other.verifier_key()).is_ok());
        assert!(matches!(
            verify_checkpoint(&note, "not a key"),
            Err(CheckpointError::MalformedVerifierKey(_))
        ));
        assert!(matches!(
            verify_checkpoint(&note, PETER_PRIVATE),
            Err(CheckpointError::MalformedVerifierKey(_))
        ));
    }

    #[test]
    fn private_keys_round_trip_in_go_note_form() {
        let peter = LogKey::from_private_key(PETER_PRIVATE).unwrap();
        assert_eq!(peter.name(), "PeterNeumann");
        assert_eq!(peter.verifier_key(), PETER_VERIFIER);
        assert_eq!(peter.to_private_key(), PETER_PRIVATE);
        assert!(LogKey::from_private_key(&format!("{PETER_PRIVATE}\n")).is_ok());

        let key = LogKey::generate("aaf.example/audit/org-1").unwrap();
        let encoded = key.to_private_key();
        assert!(encoded.starts_with("PRIVATE+KEY+aaf.example/audit/org-1+"));
        // signed_note reads it, and finds the same key ID as the verifier key.
        assert!(StandardSigner::new(&encoded).is_ok());
        let again = LogKey::from_private_key(&encoded).unwrap();
        assert_eq!(again.verifier_key(), key.verifier_key());
        assert_eq!(again.to_private_key(), encoded);
        let id = |k: &str| k.split('+').nth(1).map(str::to_owned);
        assert_eq!(
            id(&key.verifier_key()),
            encoded.split('+').nth(3).map(str::to_owned)
        );
        // Debug does not show the secret.
        let debug = format!("{key:?}");
        assert!(debug.contains(&key.verifier_key()));
        // The key data is everything after the fourth "+" (its base64 may hold "+"
        // too: the last "+"-separated piece alone could be a letter or two, found by
        // chance in the verifier key).
        let secret = encoded.splitn(5, '+').nth(4).unwrap();
        assert!(secret.len() > 40, "{encoded}");
        assert!(!debug.contains(secret));
    }

    #[test]
    fn bad_keys_and_names_are_refused() {
        for name in ["", "a b", "a+b", "a\tb"] {
            assert_eq!(
                LogKey::generate(name).unwrap_err(),
                CheckpointError::InvalidKeyName(name.to_owned())
            );
        }
        let wrong_id = PETER_PRIVATE.replace("c74f20a3", "c74f20a4");
        let bad = [
            PETER_VERIFIER,
            "PRIVATE+KEY+PeterNeumann+c74f20a3",
            "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr",
            wrong_id.as_str(),
            "",
        ];
        for text in bad {
            let err = LogKey::from_private_key(text).unwrap_err();
            assert!(matches!(err, CheckpointError::MalformedPrivateKey(_)));
            assert!(!err.to_string().contains("AYEKFALV"), "{err}");
        }
    }

    #[test]
    fn unsignable_checkpoints_are_refused() {
        let key = LogKey::generate("aaf.example/audit/org-1").unwrap();
        for origin in ["", "two\nlines", "tab\there"] {
            let c = Checkpoint {
                origin: origin.to_owned(),
                ..checkpoint()
            };
            assert!(
                matches!(key.sign(&c), Err(CheckpointError::Unsignable(_))),
                "signed {origin:?}"
            );
        }
    }
}
