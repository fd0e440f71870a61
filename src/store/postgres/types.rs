//! How the domain's words and ids are kept in PostgreSQL (each word as its text, each id as
//! its `BIGINT`), and the driver's errors as the store's backend-neutral [`StoreError`]
//! (keeping the driver's text for operators).

use std::str::FromStr;

use sqlx::Row;
use sqlx::postgres::PgRow;

use crate::store::StoreError;

/// The word stored as text in column `column`; a text that names none is a corrupt row.
pub(super) fn word<W>(row: &PgRow, column: &str) -> Result<W, sqlx::Error>
where
    W: FromStr,
    W::Err: std::error::Error + Send + Sync + 'static,
{
    let text: String = row.try_get(column)?;
    W::from_str(&text).map_err(|error| sqlx::Error::ColumnDecode {
        index: column.to_string(),
        source: Box::new(error),
    })
}

/// [`word`] of a column that may be NULL.
pub(super) fn optional_word<W>(row: &PgRow, column: &str) -> Result<Option<W>, sqlx::Error>
where
    W: FromStr,
    W::Err: std::error::Error + Send + Sync + 'static,
{
    let text: Option<String> = row.try_get(column)?;
    text.map(|text| {
        W::from_str(&text).map_err(|error| sqlx::Error::ColumnDecode {
            index: column.to_string(),
            source: Box::new(error),
        })
    })
    .transpose()
}

/// SQLSTATE classes and codes the store tells apart.
const INTEGRITY_CONSTRAINT_VIOLATION: &str = "23";
const SERIALIZATION_FAILURE: &str = "40001";
const DEADLOCK_DETECTED: &str = "40P01";

/// Whether a transaction that failed with `error` may simply be run again: PostgreSQL
/// chose it as the victim of a deadlock or a serialization conflict with another
/// transaction (another instance's claim or record), and nothing of it was written.
pub(super) fn is_retryable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Database(db) => matches!(
            db.code().as_deref(),
            Some(SERIALIZATION_FAILURE | DEADLOCK_DETECTED)
        ),
        _ => false,
    }
}

impl From<sqlx::Error> for StoreError {
    /// A constraint's refusal is a conflict; a value that cannot be read as its type, a
    /// corrupt row; anything else (the server gone, a pool out of connections, a full
    /// disk) leaves the store unavailable for now.
    fn from(error: sqlx::Error) -> Self {
        let text = error.to_string();
        match &error {
            sqlx::Error::Database(db)
                if db
                    .code()
                    .is_some_and(|code| code.starts_with(INTEGRITY_CONSTRAINT_VIOLATION)) =>
            {
                StoreError::Conflict(text)
            }
            sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) => StoreError::Corrupt(text),
            sqlx::Error::PoolClosed => StoreError::Stopped,
            _ => StoreError::Unavailable(text),
        }
    }
}
