//! How the domain's words and ids are kept in SQLite: each word as its text
//! (`DeliveryStatus::as_str`, …), each id as its row number, and the driver's errors as the
//! store's backend-neutral [`StoreError`] (keeping the driver's text for operators).

use std::str::FromStr;

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};

use crate::domain::{
    DeliveryId, DeliveryStatus, Operation, PlatformKind, SkipKind, WebhookId, WebhookStatus,
};
use crate::store::{AttemptOutcome, StoreError};

/// A word stored as its text; a text that names none is a corrupt row.
macro_rules! stored_as_text {
    ($($word:ty),+) => {$(
        impl ToSql for $word {
            fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
                Ok(ToSqlOutput::from(self.as_str()))
            }
        }

        impl FromSql for $word {
            fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
                <$word>::from_str(value.as_str()?).map_err(|e| FromSqlError::Other(Box::new(e)))
            }
        }
    )+};
}

stored_as_text!(
    DeliveryStatus,
    WebhookStatus,
    Operation,
    PlatformKind,
    AttemptOutcome,
    SkipKind
);

/// An id stored as its row number.
macro_rules! stored_as_row_number {
    ($($id:ident),+) => {$(
        impl ToSql for $id {
            fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
                self.0.to_sql()
            }
        }

        impl FromSql for $id {
            fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
                i64::column_result(value).map($id)
            }
        }
    )+};
}

stored_as_row_number!(WebhookId, DeliveryId);

impl From<&rusqlite::Error> for StoreError {
    /// A constraint's refusal is a conflict; a value that cannot be read as its type, a
    /// corrupt row; anything else (I/O, a busy or locked database, a full disk) leaves the
    /// store unavailable for now.
    fn from(error: &rusqlite::Error) -> Self {
        use rusqlite::Error as E;
        let text = error.to_string();
        match error {
            E::SqliteFailure(failure, _)
                if failure.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                StoreError::Conflict(text)
            }
            E::FromSqlConversionFailure(..)
            | E::InvalidColumnType(..)
            | E::IntegralValueOutOfRange(..)
            | E::Utf8Error(..) => StoreError::Corrupt(text),
            _ => StoreError::Unavailable(text),
        }
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(error: rusqlite::Error) -> Self {
        StoreError::from(&error)
    }
}

#[cfg(test)]
mod tests {
    use rusqlite::Connection;

    use crate::domain::DeliveryStatus;
    use crate::store::StoreError;

    #[test]
    fn driver_errors_become_neutral_ones_that_keep_the_drivers_text() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (k TEXT UNIQUE); INSERT INTO t VALUES ('sent');")
            .unwrap();
        let duplicate = conn
            .execute("INSERT INTO t VALUES ('sent')", [])
            .unwrap_err();
        let StoreError::Conflict(text) = StoreError::from(duplicate) else {
            panic!("a unique constraint's refusal is a conflict");
        };
        assert!(text.contains("UNIQUE constraint failed: t.k"), "{text}");
        let unreadable = conn
            .query_row("SELECT k FROM t", [], |row| row.get::<_, DeliveryStatus>(0))
            .unwrap_err();
        let error = StoreError::from(unreadable);
        assert!(matches!(error, StoreError::Corrupt(_)), "{error:?}");
        assert!(
            error.to_string().contains("unknown delivery status `sent`"),
            "{error}"
        );
        let missing = conn
            .execute("INSERT INTO nowhere VALUES (1)", [])
            .unwrap_err();
        let error = StoreError::from(missing);
        assert_eq!(error.to_string(), "database error: no such table: nowhere");
    }
}
