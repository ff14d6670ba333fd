//! The SQL-level copy: every table of the SQLite database into PostgreSQL, in pages ordered by
//! primary key, each side summed up by the same canonical checksum.
//!
//! The tables are described at run time from both schemas (SQLite's `pragma_table_info`,
//! PostgreSQL's `information_schema`), so a column added to both is copied without a change
//! here, and a column only one side has stops the copy instead of being dropped. Values are
//! converted to the PostgreSQL column's type and refused when they do not fit it (a `2` in a
//! boolean column, text in an integer one): the copy never guesses.

use super::MigrateError;
use super::checksum::{Canon, Summary};
use rusqlite::Connection;
use rusqlite::types::ValueRef;
// Every statement here is built from table and column names read from the two schemas
// (quoted), never from row data: values are always bound.
use sqlx::{AssertSqlSafe, PgConnection, Row};
use tokio::sync::mpsc;

/// The tables migrate copies, in an order that satisfies the foreign keys (tenants before
/// api_keys). A table of the source that is not here stops the copy.
pub(super) const TABLES: &[&str] = &[
    "tenants",
    "api_keys",
    "admin_keys",
    "temporary_keys",
    "settings",
    "channels",
    "messages",
    "inbox",
    "kv",
    "agents",
    "streams",
    "webhooks",
    "webhook_attempts",
    "usage",
];

/// The rows of `settings` that are copied: all but the source's position in its own log
/// (`log_identity`, `log_applied`), which is set for the destination log at the end.
const SETTINGS_COPIED: &str = "name NOT IN ('log_identity', 'log_applied')";

/// Rows sent to PostgreSQL in one statement, at most.
const PAGE_ROWS: usize = 2_000;
/// Bytes of values in one statement, at most (a page of large messages is cut earlier).
const PAGE_BYTES: usize = 8 << 20;

/// A PostgreSQL column type migrate writes, and how each side canonicalizes its values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Int8,
    Int4,
    Bool,
    Text,
    Bytes,
}

impl Kind {
    fn from_pg(data_type: &str) -> Option<Kind> {
        Some(match data_type {
            "bigint" => Kind::Int8,
            "integer" => Kind::Int4,
            "boolean" => Kind::Bool,
            "text" => Kind::Text,
            "bytea" => Kind::Bytes,
            _ => return None,
        })
    }

    fn array(self) -> &'static str {
        match self {
            Kind::Int8 => "bigint[]",
            Kind::Int4 => "integer[]",
            Kind::Bool => "boolean[]",
            Kind::Text => "text[]",
            Kind::Bytes => "bytea[]",
        }
    }
}

#[derive(Debug, Clone)]
struct Column {
    name: String,
    kind: Kind,
}

/// One table as both schemas describe it.
#[derive(Debug, Clone)]
pub(super) struct Table {
    /// Its name.
    pub(super) name: &'static str,
    /// In the SQLite schema's order (both sides are read in this order).
    columns: Vec<Column>,
    /// The primary key's columns (indexes into `columns`), in key order.
    key: Vec<usize>,
    /// A column PostgreSQL fills from a sequence (`BIGSERIAL`), whose sequence must be moved
    /// past the copied values.
    serial: Option<String>,
    /// Only the rows matching this are copied.
    filter: Option<&'static str>,
}

fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

impl Table {
    fn column_list(&self) -> String {
        self.columns
            .iter()
            .map(|c| quote(&c.name))
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn filter(&self) -> String {
        self.filter
            .map(|f| format!(" WHERE {f}"))
            .unwrap_or_default()
    }

    /// The source's rows in primary-key order (SQLite compares text bytewise).
    fn sqlite_select(&self) -> String {
        let order: Vec<String> = self
            .key
            .iter()
            .map(|&i| quote(&self.columns[i].name))
            .collect();
        format!(
            "SELECT {} FROM {}{} ORDER BY {}",
            self.column_list(),
            quote(self.name),
            self.filter(),
            order.join(", ")
        )
    }

    /// The destination's rows in the same order: text keys under the `C` collation, which
    /// compares UTF-8 bytewise as SQLite does (the database's default collation may not).
    fn pg_select(&self) -> String {
        let order: Vec<String> = self
            .key
            .iter()
            .map(|&i| {
                let c = &self.columns[i];
                match c.kind {
                    Kind::Text => format!("{} COLLATE \"C\"", quote(&c.name)),
                    _ => quote(&c.name),
                }
            })
            .collect();
        format!(
            "SELECT {} FROM {}{} ORDER BY {}",
            self.column_list(),
            quote(self.name),
            self.filter(),
            order.join(", ")
        )
    }

    fn pg_insert(&self) -> String {
        let arrays: Vec<String> = self
            .columns
            .iter()
            .enumerate()
            .map(|(i, c)| format!("${}::{}", i + 1, c.kind.array()))
            .collect();
        format!(
            "INSERT INTO {} ({}) SELECT * FROM UNNEST({})",
            quote(self.name),
            self.column_list(),
            arrays.join(", ")
        )
    }
}

/// Describes every table from both schemas, and checks they agree.
pub(super) async fn describe(
    sqlite: &Connection,
    pg: &mut PgConnection,
) -> Result<Vec<Table>, MigrateError> {
    let present: Vec<String> = sqlite
        .prepare(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
        )?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    if let Some(unknown) = present.iter().find(|t| !TABLES.contains(&t.as_str())) {
        return Err(MigrateError::UnknownTable(unknown.clone()));
    }
    let mut tables = Vec::with_capacity(TABLES.len());
    for &name in TABLES {
        let schema_error = |problem: String| MigrateError::Schema {
            table: name.to_owned(),
            problem,
        };
        // (name, position in the primary key or 0)
        let source: Vec<(String, i64)> = sqlite
            .prepare("SELECT name, pk FROM pragma_table_info(?1) ORDER BY cid")?
            .query_map([name], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?;
        if source.is_empty() {
            return Err(schema_error("the source database has no such table".into()));
        }
        let destination: Vec<(String, String, Option<String>)> = sqlx::query_as(
            "SELECT column_name::text, data_type::text, column_default::text
             FROM information_schema.columns
             WHERE table_schema = current_schema() AND table_name = $1",
        )
        .bind(name)
        .fetch_all(&mut *pg)
        .await?;
        if let Some((extra, _, _)) = destination
            .iter()
            .find(|(c, _, _)| !source.iter().any(|(s, _)| s == c))
        {
            return Err(schema_error(format!(
                "the destination has a column {extra} the source lacks"
            )));
        }
        let mut columns = Vec::with_capacity(source.len());
        let mut key: Vec<(i64, usize)> = Vec::new();
        let mut serial = None;
        for (i, (column, pk)) in source.iter().enumerate() {
            let Some((_, data_type, default)) = destination.iter().find(|(c, _, _)| c == column)
            else {
                return Err(schema_error(format!(
                    "the destination has no column {column}"
                )));
            };
            let kind = Kind::from_pg(data_type).ok_or_else(|| {
                schema_error(format!(
                    "column {column} has the type {data_type}, which migrate does not write"
                ))
            })?;
            if default
                .as_deref()
                .is_some_and(|d| d.starts_with("nextval("))
            {
                serial = Some(column.clone());
            }
            if *pk > 0 {
                key.push((*pk, i));
            }
            columns.push(Column {
                name: column.clone(),
                kind,
            });
        }
        if key.is_empty() {
            return Err(schema_error("it has no primary key to order by".into()));
        }
        key.sort();
        tables.push(Table {
            name,
            columns,
            key: key.into_iter().map(|(_, i)| i).collect(),
            serial,
            filter: (name == "settings").then_some(SETTINGS_COPIED),
        });
    }
    Ok(tables)
}

/// The first table of the destination that holds rows (settings: other than the log's
/// position, which is overwritten).
pub(super) async fn first_non_empty(
    pg: &mut PgConnection,
    tables: &[Table],
) -> sqlx::Result<Option<&'static str>> {
    for table in tables {
        let sql = format!(
            "SELECT EXISTS (SELECT 1 FROM {}{})",
            quote(table.name),
            table.filter()
        );
        let found: bool = sqlx::query_scalar(AssertSqlSafe(sql))
            .fetch_one(&mut *pg)
            .await?;
        if found {
            return Ok(Some(table.name));
        }
    }
    Ok(None)
}

/// Column arrays of one page, typed for the destination.
enum Values {
    Int8(Vec<Option<i64>>),
    Int4(Vec<Option<i32>>),
    Bool(Vec<Option<bool>>),
    Text(Vec<Option<String>>),
    Bytes(Vec<Option<Vec<u8>>>),
}

impl Values {
    fn new(kind: Kind) -> Values {
        match kind {
            Kind::Int8 => Values::Int8(Vec::new()),
            Kind::Int4 => Values::Int4(Vec::new()),
            Kind::Bool => Values::Bool(Vec::new()),
            Kind::Text => Values::Text(Vec::new()),
            Kind::Bytes => Values::Bytes(Vec::new()),
        }
    }

    /// Adds a source value converted to the column's type; its size, or why it does not fit.
    fn push(&mut self, value: ValueRef<'_>) -> Result<usize, String> {
        let wrong = |what: &str| Err(format!("holds {what}"));
        match (self, value) {
            (Values::Int8(v), ValueRef::Null) => v.push(None),
            (Values::Int4(v), ValueRef::Null) => v.push(None),
            (Values::Bool(v), ValueRef::Null) => v.push(None),
            (Values::Text(v), ValueRef::Null) => v.push(None),
            (Values::Bytes(v), ValueRef::Null) => v.push(None),
            (Values::Int8(v), ValueRef::Integer(i)) => v.push(Some(i)),
            (Values::Int4(v), ValueRef::Integer(i)) => match i32::try_from(i) {
                Ok(i) => v.push(Some(i)),
                Err(_) => return wrong(&format!("{i}, beyond a 32-bit integer")),
            },
            (Values::Bool(v), ValueRef::Integer(i @ (0 | 1))) => v.push(Some(i == 1)),
            (Values::Bool(_), ValueRef::Integer(i)) => {
                return wrong(&format!("{i}, not a boolean (0 or 1)"));
            }
            (Values::Text(v), ValueRef::Text(t)) => {
                let Ok(s) = std::str::from_utf8(t) else {
                    return wrong("text that is not UTF-8");
                };
                // PostgreSQL's text cannot hold NUL; the server stores U+FFFD instead.
                let s = if s.contains('\0') {
                    s.replace('\0', "\u{FFFD}")
                } else {
                    s.to_owned()
                };
                let n = s.len();
                v.push(Some(s));
                return Ok(n);
            }
            (Values::Bytes(v), ValueRef::Blob(b)) => {
                v.push(Some(b.to_vec()));
                return Ok(b.len());
            }
            (_, ValueRef::Integer(_)) => return wrong("an integer"),
            (_, ValueRef::Real(_)) => return wrong("a real number"),
            (_, ValueRef::Text(_)) => return wrong("text"),
            (_, ValueRef::Blob(_)) => return wrong("a blob"),
        }
        Ok(8)
    }

    fn bind<'q>(
        self,
        query: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    ) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
        match self {
            Values::Int8(v) => query.bind(v),
            Values::Int4(v) => query.bind(v),
            Values::Bool(v) => query.bind(v),
            Values::Text(v) => query.bind(v),
            Values::Bytes(v) => query.bind(v),
        }
    }
}

/// Adds a source value to the canonical checksum.
fn canon_sqlite(canon: &mut Canon, value: ValueRef<'_>) {
    match value {
        ValueRef::Null => canon.null(),
        ValueRef::Integer(i) => canon.int(i),
        ValueRef::Real(f) => canon.real(f),
        ValueRef::Text(t) => canon.text(t),
        ValueRef::Blob(b) => canon.bytes(b),
    }
}

type Page = Vec<Values>;

/// Reads a table from the source in key order, sending pages of converted rows; returns the
/// source's summary (blocking: run it off the async threads).
fn read_source(
    sqlite: &Connection,
    table: &Table,
    pages: &mpsc::Sender<Page>,
) -> Result<Summary, MigrateError> {
    let mut statement = sqlite.prepare(&table.sqlite_select())?;
    let mut rows = statement.query([])?;
    let mut canon = Canon::default();
    let fresh = || -> Page { table.columns.iter().map(|c| Values::new(c.kind)).collect() };
    let (mut page, mut in_page, mut bytes) = (fresh(), 0, 0);
    while let Some(row) = rows.next()? {
        for (i, column) in table.columns.iter().enumerate() {
            let value = row.get_ref(i)?;
            canon_sqlite(&mut canon, value);
            bytes += page[i]
                .push(value)
                .map_err(|problem| MigrateError::Schema {
                    table: table.name.to_owned(),
                    problem: format!("column {} {problem}", column.name),
                })?;
        }
        canon.end_row();
        in_page += 1;
        if in_page >= PAGE_ROWS || bytes >= PAGE_BYTES {
            let full = std::mem::replace(&mut page, fresh());
            if pages.blocking_send(full).is_err() {
                // The writer stopped; it reports why.
                return Ok(canon.finish());
            }
            (in_page, bytes) = (0, 0);
        }
    }
    if in_page > 0 {
        let _ = pages.blocking_send(page);
    }
    Ok(canon.finish())
}

/// Copies one table; returns the source's summary and the SQLite connection (for the next).
pub(super) async fn copy(
    sqlite: Connection,
    pg: &mut PgConnection,
    table: &Table,
) -> Result<(Summary, Connection), MigrateError> {
    // Two pages in flight: one being read, one being written.
    let (tx, mut rx) = mpsc::channel::<Page>(1);
    let reading = {
        let table = table.clone();
        tokio::task::spawn_blocking(move || {
            let summary = read_source(&sqlite, &table, &tx);
            (summary, sqlite)
        })
    };
    let insert = table.pg_insert();
    let mut written = Ok(());
    while let Some(page) = rx.recv().await {
        let query = page.into_iter().fold(
            sqlx::query(AssertSqlSafe(insert.clone())),
            |query, values| values.bind(query),
        );
        if let Err(e) = query.execute(&mut *pg).await {
            written = Err(e);
            break;
        }
    }
    drop(rx);
    let (summary, sqlite) = reading
        .await
        .map_err(|e| MigrateError::Internal(format!("the source reader failed: {e}")))?;
    written?;
    Ok((summary?, sqlite))
}

/// Moves the sequence of a `BIGSERIAL` column past the copied values and past `floor` (the
/// highest value SQLite ever handed out, which may belong to a deleted row).
pub(super) async fn fix_sequence(
    pg: &mut PgConnection,
    table: &Table,
    floor: i64,
) -> sqlx::Result<()> {
    let Some(column) = &table.serial else {
        return Ok(());
    };
    let sql = format!(
        "SELECT setval(pg_get_serial_sequence($1, $2),
             GREATEST(COALESCE((SELECT MAX({col}) FROM {table}), 0), $3) + 1, false)",
        col = quote(column),
        table = quote(table.name)
    );
    sqlx::query(AssertSqlSafe(sql))
        .bind(table.name)
        .bind(column)
        .bind(floor)
        .execute(pg)
        .await?;
    Ok(())
}

/// The highest value SQLite's `AUTOINCREMENT` handed out for `table` (0: none).
pub(super) fn sqlite_sequence(sqlite: &Connection, table: &str) -> rusqlite::Result<i64> {
    use rusqlite::OptionalExtension;
    let has: bool = sqlite.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE name = 'sqlite_sequence')",
        [],
        |r| r.get(0),
    )?;
    if !has {
        return Ok(0);
    }
    Ok(sqlite
        .query_row(
            "SELECT seq FROM sqlite_sequence WHERE name = ?1",
            [table],
            |r| r.get::<_, i64>(0),
        )
        .optional()?
        .unwrap_or(0))
}

/// Reads a table back from the destination in key order and sums it up the same way.
pub(super) async fn summarize_destination(
    pg: &mut PgConnection,
    table: &Table,
) -> sqlx::Result<Summary> {
    use futures_util::TryStreamExt;
    let sql = table.pg_select();
    let mut rows = sqlx::query(AssertSqlSafe(sql)).fetch(&mut *pg);
    let mut canon = Canon::default();
    while let Some(row) = rows.try_next().await? {
        for (i, column) in table.columns.iter().enumerate() {
            match column.kind {
                Kind::Int8 => canon.opt_int(row.try_get::<Option<i64>, _>(i)?),
                Kind::Int4 => canon.opt_int(row.try_get::<Option<i32>, _>(i)?.map(i64::from)),
                Kind::Bool => canon.opt_int(row.try_get::<Option<bool>, _>(i)?.map(i64::from)),
                Kind::Text => match row.try_get::<Option<&str>, _>(i)? {
                    Some(s) => canon.text(s.as_bytes()),
                    None => canon.null(),
                },
                Kind::Bytes => match row.try_get::<Option<&[u8]>, _>(i)? {
                    Some(b) => canon.bytes(b),
                    None => canon.null(),
                },
            }
        }
        canon.end_row();
    }
    Ok(canon.finish())
}

/// Reads a table from the source again and sums it up (for tests of the canonical form).
#[cfg(test)]
fn summarize_source(sqlite: &Connection, table: &Table) -> Result<Summary, MigrateError> {
    let (tx, mut rx) = mpsc::channel(1024);
    let summary = read_source(sqlite, table, &tx)?;
    while rx.try_recv().is_ok() {}
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> Table {
        Table {
            name: "t",
            columns: vec![
                Column {
                    name: "id".into(),
                    kind: Kind::Text,
                },
                Column {
                    name: "n".into(),
                    kind: Kind::Int8,
                },
                Column {
                    name: "flag".into(),
                    kind: Kind::Bool,
                },
                Column {
                    name: "blob".into(),
                    kind: Kind::Bytes,
                },
            ],
            key: vec![0],
            serial: None,
            filter: None,
        }
    }

    #[test]
    fn statements_quote_names_and_order_text_keys_bytewise() {
        let t = table();
        assert_eq!(
            t.sqlite_select(),
            r#"SELECT "id", "n", "flag", "blob" FROM "t" ORDER BY "id""#
        );
        assert_eq!(
            t.pg_select(),
            r#"SELECT "id", "n", "flag", "blob" FROM "t" ORDER BY "id" COLLATE "C""#
        );
        assert_eq!(
            t.pg_insert(),
            r#"INSERT INTO "t" ("id", "n", "flag", "blob") SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::boolean[], $4::bytea[])"#
        );
    }

    #[test]
    fn values_that_do_not_fit_the_destination_type_are_refused() {
        let mut flags = Values::new(Kind::Bool);
        assert!(flags.push(ValueRef::Integer(1)).is_ok());
        assert!(
            flags
                .push(ValueRef::Integer(2))
                .unwrap_err()
                .contains("not a boolean")
        );
        let mut ints = Values::new(Kind::Int4);
        assert!(ints.push(ValueRef::Integer(1 << 40)).is_err());
        assert!(ints.push(ValueRef::Text(b"7")).is_err());
        let mut text = Values::new(Kind::Text);
        assert!(text.push(ValueRef::Blob(b"x")).is_err());
        assert!(text.push(ValueRef::Text(b"a\0b")).is_ok());
        let Values::Text(t) = text else { panic!() };
        assert_eq!(t[0].as_deref(), Some("a\u{FFFD}b"));
    }

    #[test]
    fn the_source_summary_covers_every_row_in_key_order() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE t (id TEXT PRIMARY KEY, n INTEGER, flag INTEGER, blob BLOB);
             INSERT INTO t VALUES ('b', 2, 1, x'00ff'), ('a', NULL, 0, NULL), ('Z', 3, 0, x'');",
        )
        .unwrap();
        let t = table();
        let summary = summarize_source(&conn, &t).unwrap();
        assert_eq!(summary.rows, 3);
        // The same rows in key order ('Z' < 'a' < 'b' bytewise), canonicalized by hand, with
        // the booleans as the integers PostgreSQL's would be read back as.
        let mut canon = Canon::default();
        for (id, n, flag, blob) in [
            ("Z", Some(3), 0, Some(&b""[..])),
            ("a", None, 0, None),
            ("b", Some(2), 1, Some(&b"\x00\xff"[..])),
        ] {
            canon.text(id.as_bytes());
            canon.opt_int(n);
            canon.opt_int(Some(flag));
            match blob {
                Some(b) => canon.bytes(b),
                None => canon.null(),
            }
            canon.end_row();
        }
        assert_eq!(summary, canon.finish());
        conn.execute("UPDATE t SET n = 4 WHERE id = 'b'", [])
            .unwrap();
        assert_ne!(summarize_source(&conn, &t).unwrap(), summary);
    }
}
