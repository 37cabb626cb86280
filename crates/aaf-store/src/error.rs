//! The one error type of the store.

/// Why a store operation failed.
///
/// The variants say what the caller can do about it: retry later ([`StoreError::Unavailable`]),
/// report a missing or duplicate thing to the client ([`StoreError::NotFound`],
/// [`StoreError::Conflict`], [`StoreError::DuplicateVote`]), re-read and retry a lost
/// compare-and-set ([`StoreError::Stale`]), fix its input ([`StoreError::Invalid`]), or alert an operator
/// ([`StoreError::Corrupt`]). It is `Clone` so that the group-commit writer can hand one
/// failure to every waiter of a batch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached or written: I/O error, disk full, database locked past
    /// the busy timeout, pool or writer closed, missing table. Transient or operational;
    /// nothing was written.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// A referenced row does not exist (e.g. the action to update, or the org or agent a new
    /// row refers to).
    #[error("not found: {0}")]
    NotFound(String),
    /// A uniqueness rule was violated (e.g. an org or agent name that is taken), or the
    /// change is refused by a rule of the data (e.g. removing the last admin).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The row changed since it was read: a compare-and-set on its version found another
    /// version (another request or node changed it first), or the database rolled the
    /// transaction back to break a deadlock or a serialization conflict. Nothing was
    /// written; re-read and apply the change again (or report the conflict).
    #[error("conflict: {0}")]
    Stale(String),
    /// The user has already answered this action (one vote per user and action).
    #[error("conflict: {0}")]
    DuplicateVote(String),
    /// The request cannot be stored as given (e.g. a write on a read-only store, a value out
    /// of range, a missing required value).
    #[error("invalid request to the store: {0}")]
    Invalid(String),
    /// A stored row cannot be read back (bad JSON, bad hex, unexpected type).
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// The data keys of this organisation (the value) are not loaded on this node, or are
    /// older than the keyring's time to live, so a sealed value could not be opened. The store
    /// loads them and retries on its own; a caller sees it only when they could not be loaded
    /// (treat as [`StoreError::Unavailable`]).
    #[error("storage unavailable: the data keys of organisation {0} are not loaded")]
    KeysNotLoaded(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> StoreError {
        use sqlx::error::ErrorKind;
        match &error {
            // A deadlock or serialization failure rolled the transaction back: nothing was
            // written, and the work may be retried like a lost compare-and-set.
            sqlx::Error::Database(db)
                if matches!(db.code().as_deref(), Some("40P01") | Some("40001")) =>
            {
                StoreError::Stale(format!(
                    "changed concurrently: {} (rolled back; retry)",
                    db.message()
                ))
            }
            sqlx::Error::Database(db) => match db.kind() {
                ErrorKind::UniqueViolation => StoreError::Conflict(db.message().to_string()),
                ErrorKind::ForeignKeyViolation => StoreError::NotFound(format!(
                    "a referenced org or agent does not exist ({})",
                    db.message()
                )),
                ErrorKind::NotNullViolation | ErrorKind::CheckViolation => {
                    StoreError::Invalid(db.message().to_string())
                }
                _ => StoreError::Unavailable(db.message().to_string()),
            },
            sqlx::Error::RowNotFound => StoreError::NotFound("row not found".to_string()),
            sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) => {
                StoreError::Corrupt(error.to_string())
            }
            _ => StoreError::Unavailable(error.to_string()),
        }
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(error: sqlx::migrate::MigrateError) -> StoreError {
        StoreError::Unavailable(format!("database migration failed: {error}"))
    }
}

impl From<rusqlite::Error> for StoreError {
    /// The same mapping as for sqlx errors: the write path uses rusqlite.
    fn from(error: rusqlite::Error) -> StoreError {
        use rusqlite::ffi;
        match &error {
            rusqlite::Error::SqliteFailure(failure, message) => {
                let message = message.clone().unwrap_or_else(|| failure.to_string());
                match failure.extended_code {
                    ffi::SQLITE_CONSTRAINT_UNIQUE | ffi::SQLITE_CONSTRAINT_PRIMARYKEY => {
                        StoreError::Conflict(message)
                    }
                    ffi::SQLITE_CONSTRAINT_FOREIGNKEY => StoreError::NotFound(format!(
                        "a referenced org or agent does not exist ({message})"
                    )),
                    ffi::SQLITE_CONSTRAINT_NOTNULL | ffi::SQLITE_CONSTRAINT_CHECK => {
                        StoreError::Invalid(message)
                    }
                    _ => StoreError::Unavailable(message),
                }
            }
            rusqlite::Error::QueryReturnedNoRows => {
                StoreError::NotFound("row not found".to_string())
            }
            rusqlite::Error::FromSqlConversionFailure(..)
            | rusqlite::Error::InvalidColumnType(..)
            | rusqlite::Error::IntegralValueOutOfRange(..)
            | rusqlite::Error::Utf8Error(_) => StoreError::Corrupt(error.to_string()),
            _ => StoreError::Unavailable(error.to_string()),
        }
    }
}

/// A uniqueness conflict ([`StoreError::Conflict`]) that means the row changed concurrently:
/// [`StoreError::Stale`]; any other error as it is.
pub(crate) fn stale(error: StoreError) -> StoreError {
    match error {
        StoreError::Conflict(message) => StoreError::Stale(message),
        other => other,
    }
}

/// A uniqueness conflict ([`StoreError::Conflict`]) on an approval vote: the user has already
/// answered ([`StoreError::DuplicateVote`]); any other error as it is.
pub(crate) fn duplicate_vote(error: StoreError) -> StoreError {
    match error {
        StoreError::Conflict(message) => StoreError::DuplicateVote(message),
        other => other,
    }
}
