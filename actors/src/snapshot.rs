//! The rows actors load their state from, read once (asynchronously, on either
//! backend) before an actor starts or while it reloads, so the loading code itself
//! stays plain synchronous code over rows in key order.

use std::collections::HashMap;

use palyra_storage::{Row, Storage, StorageError, Table};

/// Every row of some tables, in key order, as one read saw them.
#[derive(Debug, Default)]
pub struct Snapshot {
    rows: HashMap<Table, Vec<Row>>,
}

impl Snapshot {
    /// The tables actors load at start: all but the audit log, which is read in pages.
    pub fn startup_tables() -> Vec<Table> {
        Table::ALL
            .into_iter()
            .filter(|t| *t != Table::Audit)
            .collect()
    }

    /// Reads every row of `tables`.
    pub async fn read(storage: &Storage, tables: &[Table]) -> Result<Self, StorageError> {
        let mut rows = HashMap::with_capacity(tables.len());
        for &table in tables {
            rows.insert(table, storage.read_table(table).await?);
        }
        Ok(Self { rows })
    }

    /// The rows of `table`; empty when it was not read.
    pub fn rows(&self, table: Table) -> &[Row] {
        self.rows.get(&table).map_or(&[], Vec::as_slice)
    }

    /// The value under `key` in `table`.
    pub fn get(&self, table: Table, key: &[u8]) -> Option<&[u8]> {
        let rows = self.rows(table);
        rows.binary_search_by(|(k, _)| k.as_slice().cmp(key))
            .ok()
            .map(|i| rows[i].1.as_slice())
    }

    /// Takes the rows of `table` out of the snapshot.
    pub fn take(&mut self, table: Table) -> Vec<Row> {
        self.rows.remove(&table).unwrap_or_default()
    }
}
