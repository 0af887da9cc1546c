//! Copying every table from one open database to another (`palyrad storage copy`).

use crate::error::StorageError;
use crate::op::WriteOp;
use crate::schema::Table;
use crate::storage::Storage;

/// Rows written per transaction while copying.
const CHUNK: usize = 1000;

/// Rows copied per table, verified on both sides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyReport {
    pub tables: Vec<(Table, u64)>,
}

/// Copies every table of `from` into `to` and checks that each table's row count is
/// the same on both sides afterwards. Refuses a target holding any row unless
/// `overwrite`, which first empties the target's tables. Stop every other writer of
/// both databases first: the copy reads `from` table by table.
pub async fn copy(
    from: &Storage,
    to: &Storage,
    overwrite: bool,
) -> Result<CopyReport, StorageError> {
    for table in Table::ALL {
        let rows = to.read_count(table).await?;
        if rows > 0 && !overwrite {
            return Err(StorageError::TargetNotEmpty {
                table: table.name(),
                rows,
            });
        }
    }
    let writer = to.start_writer()?;
    let result = copy_tables(from, to, &writer, overwrite).await;
    writer.shutdown().await;
    result
}

async fn copy_tables(
    from: &Storage,
    to: &Storage,
    writer: &crate::writer::Writer,
    overwrite: bool,
) -> Result<CopyReport, StorageError> {
    let mut report = CopyReport { tables: Vec::new() };
    for table in Table::ALL {
        if overwrite {
            let old = to.read_table(table).await?;
            for chunk in old.chunks(CHUNK) {
                let ops = chunk
                    .iter()
                    .map(|(key, _)| WriteOp::delete(table, key.clone()))
                    .collect();
                writer.write(ops).await?;
            }
        }
        let rows = from.read_table(table).await?;
        for chunk in rows.chunks(CHUNK) {
            let ops = chunk
                .iter()
                .map(|(key, value)| WriteOp::Put {
                    table,
                    key: key.clone(),
                    value: value.clone(),
                })
                .collect();
            writer.write(ops).await?;
        }
        let copied = rows.len() as u64;
        let source = from.read_count(table).await?;
        let target = to.read_count(table).await?;
        if source != copied || target != copied {
            return Err(StorageError::CopyMismatch {
                table: table.name(),
                source_rows: source,
                target_rows: target,
            });
        }
        report.tables.push((table, copied));
    }
    Ok(report)
}
