//! How a (table, key bytes, value bytes) row maps to a PostgreSQL table's columns.
//!
//! Every table keeps the exact `key` and `value` bytes; the typed columns beside them
//! (see `migrations/0001_init.sql`) are filled here from the key and from the record in
//! its `{"v":..,"r":..}` envelope. A record that does not parse leaves its value columns
//! NULL (the row is still stored); a key that does not fit a table's key columns (a
//! run key without its NUL and sequence number) refuses the op with an error, because
//! those columns are the table's identity.

use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio_postgres::types::ToSql;

use crate::schema::Table;

/// One typed column value of a row, as [`extract`] reads it from the record.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Cell {
    Text(Option<String>),
    Int(Option<i64>),
    Time(Option<DateTime<Utc>>),
    Bool(Option<bool>),
}

impl Cell {
    /// The value as a statement's parameter.
    pub(crate) fn as_sql(&self) -> &(dyn ToSql + Sync) {
        match self {
            Cell::Text(v) => v,
            Cell::Int(v) => v,
            Cell::Time(v) => v,
            Cell::Bool(v) => v,
        }
    }

    /// The SQL type of an array of such values.
    pub(crate) fn array_type(&self) -> &'static str {
        match self {
            Cell::Text(_) => "text[]",
            Cell::Int(_) => "bigint[]",
            Cell::Time(_) => "timestamptz[]",
            Cell::Bool(_) => "boolean[]",
        }
    }
}

/// One typed column of many rows, borrowed from their [`Cell`]s: a batched
/// statement's array parameter.
pub(crate) enum Array<'a> {
    Bytes(Vec<&'a [u8]>),
    Text(Vec<Option<&'a str>>),
    Int(Vec<Option<i64>>),
    Time(Vec<Option<DateTime<Utc>>>),
    Bool(Vec<Option<bool>>),
}

impl<'a> Array<'a> {
    /// The column of `cells`, of the kind of `first` (every row of a table has the
    /// same kinds, in the same order: a cell of another kind, or none, is NULL).
    pub(crate) fn column(first: &Cell, cells: impl Iterator<Item = Option<&'a Cell>>) -> Self {
        match first {
            Cell::Text(_) => Array::Text(
                cells
                    .map(|c| match c {
                        Some(Cell::Text(v)) => v.as_deref(),
                        _ => None,
                    })
                    .collect(),
            ),
            Cell::Int(_) => Array::Int(
                cells
                    .map(|c| match c {
                        Some(Cell::Int(v)) => *v,
                        _ => None,
                    })
                    .collect(),
            ),
            Cell::Time(_) => Array::Time(
                cells
                    .map(|c| match c {
                        Some(Cell::Time(v)) => *v,
                        _ => None,
                    })
                    .collect(),
            ),
            Cell::Bool(_) => Array::Bool(
                cells
                    .map(|c| match c {
                        Some(Cell::Bool(v)) => *v,
                        _ => None,
                    })
                    .collect(),
            ),
        }
    }

    /// The column as a statement's parameter.
    pub(crate) fn as_sql(&self) -> &(dyn ToSql + Sync) {
        match self {
            Array::Bytes(v) => v,
            Array::Text(v) => v,
            Array::Int(v) => v,
            Array::Time(v) => v,
            Array::Bool(v) => v,
        }
    }
}

/// The typed columns of `table`, in the order [`extract`] returns their values.
pub(crate) fn columns(table: Table) -> &'static [&'static str] {
    match table {
        Table::Sessions => &["principal", "issued_at_ms", "expires_at_ms", "last_seen_ms"],
        Table::Handoffs => &["principal", "expires_at_ms"],
        Table::Vault => &["vault_ref", "key_id"],
        Table::VaultMeta => &["name", "key_id"],
        Table::AuthProfiles => &["profile_id", "provider", "profile_name", "updated_at"],
        Table::AuthDefaults => &["default_key", "provider", "profile_id"],
        Table::OAuthAttempts => &[
            "attempt_id",
            "provider",
            "profile_id",
            "state_digest",
            "status",
            "expires_at_ms",
        ],
        Table::Agents => &["agent_id", "default_model_profile", "updated_at"],
        Table::Objectives => &[
            "objective_id",
            "agent_id",
            "kind",
            "state",
            "next_run_at",
            "run_seq",
        ],
        Table::Runs => &[
            "objective_id",
            "seq",
            "run_id",
            "trigger",
            "status",
            "scheduled_for",
            "started_at",
            "finished_at",
        ],
        Table::Audit => &["at_ms", "seq", "kind", "actor", "outcome"],
        Table::Operators => &["operator_id", "role", "disabled"],
        Table::ApiTokens => &["token_id", "operator_id", "role", "expires_at_ms"],
        Table::NotificationChannels => &["channel_id"],
        Table::NotificationEvents => &["event_id", "kind"],
        Table::NotificationDeliveries => {
            &["delivery_id", "channel_id", "status", "next_attempt_ms"]
        }
        Table::UsageRollup => &[
            "bucket_start",
            "agent_id",
            "objective_id",
            "profile_id",
            "provider",
            "model",
            "input_tokens",
            "output_tokens",
            "calls",
        ],
    }
}

/// The typed columns of `table` that [`crate::WriteOp::Add`] adds to (bigint, filled
/// from the record's integer fields of the same names); empty for tables without.
pub(crate) fn counters(table: Table) -> &'static [&'static str] {
    match table {
        Table::UsageRollup => &["input_tokens", "output_tokens", "calls"],
        _ => &[],
    }
}

/// The typed column values of one row.
pub(crate) fn extract(table: Table, key: &[u8], value: &[u8]) -> Result<Vec<Cell>, String> {
    let record: Option<Value> = serde_json::from_slice::<Value>(value)
        .ok()
        .and_then(|mut v| v.get_mut("r").map(Value::take));
    let r = record.as_ref();
    let cells = match table {
        Table::Sessions => vec![
            text(r, "principal"),
            int(r, "issued_at_ms"),
            int(r, "expires_at_ms"),
            int(r, "last_seen_ms"),
        ],
        Table::Handoffs => vec![text(r, "principal"), int(r, "expires_at_ms")],
        Table::Vault | Table::VaultMeta => vec![id_key(table, key)?, text(r, "key_id")],
        Table::AuthProfiles => vec![
            id_key(table, key)?,
            text(r, "provider"),
            text(r, "profile_name"),
            time(r, "updated_at"),
        ],
        Table::AuthDefaults => {
            let default_key = utf8_key(table, key)?;
            let provider = default_key.split('|').next().map(str::to_owned);
            let profile_id = std::str::from_utf8(value)
                .ok()
                .filter(|s| !s.contains('\0'))
                .map(str::to_owned);
            vec![
                Cell::Text(Some(default_key)),
                Cell::Text(provider),
                Cell::Text(profile_id),
            ]
        }
        Table::OAuthAttempts => vec![
            id_key(table, key)?,
            text(r, "provider"),
            text(r, "profile_id"),
            text(r, "state_digest"),
            nested_text(r, "status", "state"),
            int(r, "expires_at_ms"),
        ],
        Table::Agents => vec![
            id_key(table, key)?,
            text(r, "default_model_profile"),
            time(r, "updated_at"),
        ],
        Table::Objectives => vec![
            id_key(table, key)?,
            text(r, "agent_id"),
            text(r, "kind"),
            text(r, "state"),
            time(r, "next_run_at"),
            int(r, "run_seq"),
        ],
        Table::Runs => {
            let (objective_id, seq) = run_key(key)?;
            vec![
                Cell::Text(Some(objective_id)),
                Cell::Int(Some(seq)),
                text(r, "run_id"),
                text(r, "trigger"),
                text(r, "status"),
                time(r, "scheduled_for"),
                time(r, "started_at"),
                time(r, "finished_at"),
            ]
        }
        Table::Audit => {
            let (at_ms, seq) = audit_key(key)?;
            vec![
                Cell::Int(Some(at_ms)),
                Cell::Int(Some(seq)),
                text(r, "kind"),
                text(r, "actor"),
                text(r, "outcome"),
            ]
        }
        Table::Operators => vec![id_key(table, key)?, text(r, "role"), boolean(r, "disabled")],
        Table::ApiTokens => vec![
            id_key(table, key)?,
            text(r, "operator_id"),
            text(r, "role"),
            int(r, "expires_at_ms"),
        ],
        Table::NotificationChannels => vec![id_key(table, key)?],
        Table::NotificationEvents => vec![id_key(table, key)?, text(r, "kind")],
        Table::NotificationDeliveries => vec![
            id_key(table, key)?,
            text(r, "channel_id"),
            text(r, "status"),
            int(r, "next_attempt_ms"),
        ],
        Table::UsageRollup => vec![
            time(r, "bucket_start"),
            text(r, "agent_id"),
            text(r, "objective_id"),
            text(r, "profile_id"),
            text(r, "provider"),
            text(r, "model"),
            Cell::Int(Some(as_int(field(r, "input_tokens")).unwrap_or(0))),
            Cell::Int(Some(as_int(field(r, "output_tokens")).unwrap_or(0))),
            Cell::Int(Some(as_int(field(r, "calls")).unwrap_or(0))),
        ],
    };
    Ok(cells)
}

fn utf8_key(table: Table, key: &[u8]) -> Result<String, String> {
    match std::str::from_utf8(key) {
        Ok(s) if !s.contains('\0') => Ok(s.to_owned()),
        _ => Err(format!(
            "a key of table {} must be UTF-8 text without NUL",
            table.name()
        )),
    }
}

fn id_key(table: Table, key: &[u8]) -> Result<Cell, String> {
    Ok(Cell::Text(Some(utf8_key(table, key)?)))
}

/// `objective_id`, NUL, `seq` (u64 big-endian).
fn run_key(key: &[u8]) -> Result<(String, i64), String> {
    let bad = || "a runs key is an objective id, a NUL byte and an 8-byte sequence".to_owned();
    if key.len() < 9 || key[key.len() - 9] != 0 {
        return Err(bad());
    }
    let (id, rest) = key.split_at(key.len() - 9);
    let seq = u64::from_be_bytes(rest[1..].try_into().map_err(|_| bad())?);
    let id = utf8_key(Table::Runs, id)?;
    Ok((id, i64::try_from(seq).map_err(|_| bad())?))
}

/// `at_ms` (i64 big-endian), `seq` (u64 big-endian).
fn audit_key(key: &[u8]) -> Result<(i64, i64), String> {
    let bad = || "an audit key is 8 bytes of milliseconds and 8 of sequence".to_owned();
    if key.len() != 16 {
        return Err(bad());
    }
    let at = i64::from_be_bytes(key[..8].try_into().map_err(|_| bad())?);
    let seq = u64::from_be_bytes(key[8..].try_into().map_err(|_| bad())?);
    Ok((at, i64::try_from(seq).map_err(|_| bad())?))
}

fn field<'a>(r: Option<&'a Value>, name: &str) -> Option<&'a Value> {
    r.and_then(|r| r.get(name))
}

fn text(r: Option<&Value>, name: &str) -> Cell {
    Cell::Text(as_text(field(r, name)))
}

fn nested_text(r: Option<&Value>, name: &str, inner: &str) -> Cell {
    Cell::Text(as_text(field(r, name).and_then(|v| v.get(inner))))
}

fn as_text(v: Option<&Value>) -> Option<String> {
    v.and_then(Value::as_str)
        .filter(|s| !s.contains('\0'))
        .map(str::to_owned)
}

fn int(r: Option<&Value>, name: &str) -> Cell {
    Cell::Int(as_int(field(r, name)))
}

fn as_int(v: Option<&Value>) -> Option<i64> {
    v.and_then(|v| {
        v.as_i64()
            .or_else(|| v.as_u64().and_then(|u| i64::try_from(u).ok()))
    })
}

fn boolean(r: Option<&Value>, name: &str) -> Cell {
    Cell::Bool(field(r, name).and_then(Value::as_bool))
}

fn time(r: Option<&Value>, name: &str) -> Cell {
    let v = field(r, name)
        .and_then(Value::as_str)
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Utc));
    Cell::Time(v)
}

/// The SQL of each op kind on one table, for one op ([`TableSql::new`]) or for many ops
/// on distinct rows in one statement ([`TableSql::batched`]).
///
/// One op's parameters: `$1` key, `$2` value, then the typed columns, then
/// (compare-and-set) the expected value; a delete and a take have only the key, an
/// expect the key and the value. A batched statement has the same parameters as
/// arrays, one element per op, and its conditional statements return the keys of the
/// rows whose condition held (a take with their values), so each op's answer is read
/// from the one statement's rows.
#[derive(Debug)]
pub(crate) struct TableSql {
    name: &'static str,
    /// `key, value, <typed columns>`: the insert's column list.
    insert_columns: String,
    /// The rows to insert as a `SELECT` list (`put_if_any` adds its condition).
    select: String,
    /// What `put` sets on a conflict.
    updates: String,
    pub(crate) put: String,
    pub(crate) insert_if_absent: String,
    pub(crate) compare_and_set: String,
    pub(crate) delete: String,
    pub(crate) take: String,
    pub(crate) expect: String,
    /// [`crate::WriteOp::Add`]: an additive upsert of the [`counters`] columns, the
    /// value's bytes rebuilt from the sums (the same as `put` for a table without).
    pub(crate) add: String,
}

impl TableSql {
    /// The statements of one op.
    pub(crate) fn new(table: Table) -> Self {
        let cols = columns(table);
        let n = cols.len();
        let values: Vec<String> = (1..=n + 2).map(|i| format!("${i}")).collect();
        let values = values.join(", ");
        let sets: String = cols
            .iter()
            .enumerate()
            .map(|(i, c)| format!(", {c} = ${}", i + 3))
            .collect();
        let name = table.name();
        Self::build(
            table,
            &format!("VALUES ({values})"),
            format!("SELECT {values}"),
            Rows {
                compare_and_set: format!(
                    "UPDATE {name} SET value = $2{sets} WHERE key = $1 AND value = ${}",
                    n + 3
                ),
                delete: format!("DELETE FROM {name} WHERE key = $1"),
                take: format!("DELETE FROM {name} WHERE key = $1 RETURNING value"),
                expect: format!("SELECT 1 FROM {name} WHERE key = $1 AND value = $2 FOR SHARE"),
                returning: "",
            },
        )
    }

    /// The statements of many ops of one kind, each on its own row, in one statement;
    /// `types` are the SQL array types of the typed columns (see [`Cell::array_type`]).
    pub(crate) fn batched(table: Table, types: &[&str]) -> Self {
        let cols = columns(table);
        let name = table.name();
        let mut arrays = vec!["$1::bytea[]".to_owned(), "$2::bytea[]".to_owned()];
        arrays.extend(
            types
                .iter()
                .enumerate()
                .map(|(i, t)| format!("${}::{t}", i + 3)),
        );
        let names: String = cols.iter().map(|c| format!(", {c}")).collect();
        let picked: String = cols.iter().map(|c| format!(", u.{c}")).collect();
        let rows = format!(
            "SELECT u.key, u.value{picked} FROM unnest({}) AS u(key, value{names})",
            arrays.join(", ")
        );
        let sets: String = cols.iter().map(|c| format!(", {c} = u.{c}")).collect();
        Self::build(
            table,
            &rows,
            rows.clone(),
            Rows {
                compare_and_set: format!(
                    "UPDATE {name} AS t SET value = u.value{sets} FROM unnest({}, ${}::bytea[]) \
                     AS u(key, value{names}, expected) \
                     WHERE t.key = u.key AND t.value = u.expected RETURNING t.key",
                    arrays.join(", "),
                    arrays.len() + 1
                ),
                delete: format!("DELETE FROM {name} WHERE key = ANY($1::bytea[])"),
                take: format!(
                    "DELETE FROM {name} WHERE key = ANY($1::bytea[]) RETURNING key, value"
                ),
                expect: format!(
                    "SELECT t.key FROM {name} AS t \
                     JOIN unnest($1::bytea[], $2::bytea[]) AS u(key, value) \
                     ON t.key = u.key AND t.value = u.value FOR SHARE OF t"
                ),
                returning: " RETURNING key",
            },
        )
    }

    /// `rows`: what follows the insert's column list (`VALUES (..)` or a `SELECT`);
    /// `select`: the same rows as a `SELECT`, for `put_if_any`.
    fn build(table: Table, rows: &str, select: String, by_key: Rows) -> Self {
        let name = table.name();
        let cols = columns(table);
        let names: String = cols.iter().map(|c| format!(", {c}")).collect();
        let insert = format!("INSERT INTO {name} (key, value{names}) {rows}");
        let updates: String = cols
            .iter()
            .map(|c| format!(", {c} = EXCLUDED.{c}"))
            .collect();
        let counted = counters(table);
        let add = if counted.is_empty() {
            format!("{insert} ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value{updates}")
        } else {
            let sums: String = counted
                .iter()
                .map(|c| format!(", {c} = {name}.{c} + EXCLUDED.{c}"))
                .collect();
            // The stored envelope with its counters replaced by the sums; jsonb's text
            // differs from serde's in spacing and key order, which only byte-exact
            // conditions would notice, and no condition is ever put on a counter row.
            let fields: String = counted
                .iter()
                .map(|c| format!(", '{c}', {name}.{c} + EXCLUDED.{c}"))
                .collect();
            format!(
                "{insert} ON CONFLICT (key) DO UPDATE SET value = convert_to(jsonb_set( \
                 convert_from({name}.value, 'UTF8')::jsonb, '{{r}}', \
                 (convert_from({name}.value, 'UTF8')::jsonb -> 'r') || \
                 jsonb_build_object({}))::text, 'UTF8'){sums}",
                &fields[2..]
            )
        };
        Self {
            name,
            insert_columns: format!("key, value{names}"),
            select,
            updates: updates.clone(),
            add,
            put: format!(
                "{insert} ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value{updates}"
            ),
            insert_if_absent: format!("{insert} ON CONFLICT DO NOTHING{}", by_key.returning),
            compare_and_set: by_key.compare_and_set,
            delete: by_key.delete,
            take: by_key.take,
            expect: by_key.expect,
        }
    }

    /// [`crate::WriteOp::PutIfAny`]: `put`, decided by the statement itself, so the
    /// guard rows it sees are those committed before it (read committed) and those of
    /// its own transaction.
    pub(crate) fn put_if_any(&self, guard: Table) -> String {
        let (name, columns, select, updates) =
            (self.name, &self.insert_columns, &self.select, &self.updates);
        format!(
            "INSERT INTO {name} ({columns}) {select} WHERE EXISTS (SELECT 1 FROM {}) \
             ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value{updates}",
            guard.name()
        )
    }
}

/// The statements of [`TableSql`] that find their rows by key.
struct Rows {
    compare_and_set: String,
    delete: String,
    take: String,
    expect: String,
    /// What an insert-if-absent returns (the batched form's inserted keys).
    returning: &'static str,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_table_has_as_many_values_as_columns() {
        let run_key = [b"obj".as_slice(), &[0], &7u64.to_be_bytes()].concat();
        let audit_key = [5i64.to_be_bytes(), 1u64.to_be_bytes()].concat();
        for table in Table::ALL {
            let key = match table {
                Table::Runs => run_key.clone(),
                Table::Audit => audit_key.clone(),
                _ => b"id".to_vec(),
            };
            let values = extract(table, &key, br#"{"v":1,"r":{}}"#).unwrap();
            assert_eq!(values.len(), columns(table).len(), "{}", table.name());
        }
        assert_eq!(super::run_key(&run_key).unwrap(), ("obj".to_owned(), 7));
        assert!(super::run_key(b"no-seq").is_err());
        assert!(extract(Table::Agents, &[0xff], b"{}").is_err());
    }
}
