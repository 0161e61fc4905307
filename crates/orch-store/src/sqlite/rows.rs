//! SQLite rows to records: the shared decoders of [`crate::rows`] for `SqliteRow`.

pub(super) use crate::rows::{
    EVENT_COLUMNS, ITEM_COLUMNS, NOTIFICATION_COLUMNS, PROJECT_COLUMNS, RUN_COLUMNS,
};

crate::rows::decoders!(sqlx::sqlite::SqliteRow, sqlx::Sqlite);
