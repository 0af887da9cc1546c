//! The PostgreSQL backend: connection and TLS (`connect`), versioned migrations
//! (`migrate`, SQL in `migrations/`), the per-table column mapping (`tables`), the open
//! database and its reads (`store`), and the ordered group-commit writer (`writer`).

pub(crate) mod connect;
pub(crate) mod listen;
pub(crate) mod migrate;
pub(crate) mod store;
pub(crate) mod tables;
pub(crate) mod writer;
