//! The vault: secrets encrypted at rest with XChaCha20-Poly1305.
//!
//! Every secret is sealed under the active master key with a fresh random 192-bit
//! nonce, and its vault ref is the associated data, so a ciphertext moved to another
//! ref fails to open. A sealed secret names the id of the key that sealed it; a check
//! value sealed under the active key lets start-up refuse a key that does not open the
//! existing vault, instead of silently starting a second one.
//!
//! The keyring comes from `PALYRA_VAULT_KEY` (base64 of 32 bytes) or from the key file
//! `<data-dir>/vault.key` (one base64 key per line, mode 0600). Rotation appends the new
//! key to the file before any secret is re-sealed, re-seals everything in one
//! transaction, and only then drops the old key from the file: a crash at any point
//! leaves every secret readable.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use std::collections::BTreeMap;

use palyra_storage::{StoredRecord, Table, WriteOp, decode_record, encode_record};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, Zeroizing};

use crate::secret::SecretString;
use crate::snapshot::Snapshot;

/// Name of the key file in the data dir.
pub const VAULT_KEY_FILE: &str = "vault.key";
/// The row of the vault table that holds the check value.
const CHECK_REF: &str = "vault://system/check";
const CHECK_PLAINTEXT: &[u8] = b"palyra vault check v1";

/// Where the master key came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum VaultKeySource {
    Env,
    File,
}

/// A master key. Zeroized on drop; `Debug` shows only its id.
struct MasterKey {
    id: String,
    bytes: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MasterKey").field("id", &self.id).finish()
    }
}

impl MasterKey {
    fn from_bytes(bytes: Zeroizing<[u8; 32]>) -> Self {
        // The id is a digest of the key: stable, and it reveals nothing of the key.
        let digest = Sha256::new()
            .chain_update(b"palyra-vault-key-id:")
            .chain_update(bytes.as_slice())
            .finalize();
        let id = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
        Self { id, bytes }
    }

    fn generate() -> Self {
        let mut bytes = Zeroizing::new([0u8; 32]);
        rand::rng().fill_bytes(bytes.as_mut_slice());
        Self::from_bytes(bytes)
    }

    fn parse(text: &str) -> Result<Self, VaultError> {
        let mut decoded = STANDARD
            .decode(text.trim())
            .map_err(|_| VaultError::Key("a vault key is not valid base64".into()))?;
        if decoded.len() != 32 {
            decoded.zeroize();
            return Err(VaultError::Key(
                "a vault key must be base64 of exactly 32 bytes".into(),
            ));
        }
        let mut bytes = Zeroizing::new([0u8; 32]);
        bytes.copy_from_slice(&decoded);
        decoded.zeroize();
        Ok(Self::from_bytes(bytes))
    }

    fn encode(&self) -> Zeroizing<String> {
        Zeroizing::new(STANDARD.encode(self.bytes.as_slice()))
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(Key::from_slice(self.bytes.as_slice()))
    }
}

/// A sealed secret as stored in the vault table.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Sealed {
    key_id: String,
    nonce: Vec<u8>,
    ciphertext: Vec<u8>,
}

impl StoredRecord for Sealed {
    const TABLE: Table = Table::Vault;
    const VERSION: u32 = 1;
}

/// What can go wrong in the vault.
#[derive(Debug, Clone, thiserror::Error)]
pub enum VaultError {
    #[error("vault key: {0}")]
    Key(String),
    #[error(
        "the vault key (id {found}) does not open the existing vault (sealed with key id {expected}); start with the right PALYRA_VAULT_KEY or vault.key"
    )]
    WrongKey { expected: String, found: String },
    #[error("the secret at {0} cannot be opened (tampered, moved, or sealed with an unknown key)")]
    Unreadable(String),
    #[error(
        "the vault key comes from PALYRA_VAULT_KEY; rotate it by changing the variable, not through the daemon"
    )]
    EnvKeyNotRotatable,
    /// Another node rotated the vault key to one this node's key file lacks.
    #[error(
        "another node rotated the vault key to key id {key_id}, which this node does not have: copy that node's vault.key into this node's data dir"
    )]
    KeyNotHere { key_id: String },
    #[error(transparent)]
    Storage(#[from] palyra_storage::StorageError),
}

/// The keyring and the knowledge of which refs hold a secret. Owned by the registry
/// actor; not `Clone`, so key material lives in one place.
pub struct Vault {
    /// Active key first; older keys stay only while a rotation is incomplete.
    keys: Vec<MasterKey>,
    source: VaultKeySource,
    key_file: PathBuf,
    /// Every sealed secret by vault ref, as the registry has queued it or (on several
    /// nodes) read after another node changed it ([`Vault::note_writes`],
    /// [`Vault::note_row`]), so opening a secret needs no storage read.
    sealed: BTreeMap<String, Vec<u8>>,
    /// The stored check value as this node last saw it under a key it holds. Every
    /// write that seals a secret expects it unchanged ([`Vault::guard`]), so no node
    /// seals under a key that another node's rotation has replaced.
    check: Option<Vec<u8>>,
    /// Set when another node rotated to a key this node does not hold: its id and
    /// the check value sealed under it, applied once the key file has the key.
    foreign: Option<(String, Vec<u8>)>,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vault")
            .field("active_key_id", &self.active_key_id())
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

/// Whether start-up drops the key file's keys no stored secret names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyPruning {
    /// Embedded storage: after a crash nothing of the old process can still commit.
    Unused,
    /// Shared storage: a dead process's last COMMIT may still land.
    Keep,
}

impl Vault {
    /// Loads the keyring and proves it opens the existing vault. Returns the vault and
    /// the writes that must be committed before use (the check value of a new vault,
    /// or the pruning of a finished rotation).
    pub fn open(
        snapshot: &Snapshot,
        data_dir: &Path,
        env_key: Option<SecretString>,
    ) -> Result<(Self, Vec<WriteOp>), VaultError> {
        Self::open_with(snapshot, data_dir, env_key, KeyPruning::Unused)
    }

    /// [`Vault::open`] on storage other processes write to (PostgreSQL). A key file
    /// keeps every key it holds: a rotation this node began before it was killed may
    /// still commit after this start read the database (the server finishes a COMMIT
    /// it received from a client that is gone), and the key it re-sealed everything
    /// under must then be here. The next rotation's end drops the keys no longer used.
    pub fn open_shared(
        snapshot: &Snapshot,
        data_dir: &Path,
        env_key: Option<SecretString>,
    ) -> Result<(Self, Vec<WriteOp>), VaultError> {
        Self::open_with(snapshot, data_dir, env_key, KeyPruning::Keep)
    }

    fn open_with(
        snapshot: &Snapshot,
        data_dir: &Path,
        env_key: Option<SecretString>,
        pruning: KeyPruning,
    ) -> Result<(Self, Vec<WriteOp>), VaultError> {
        let key_file = data_dir.join(VAULT_KEY_FILE);
        let check_bytes = snapshot
            .get(Table::VaultMeta, CHECK_REF.as_bytes())
            .map(<[u8]>::to_vec);
        let check = match &check_bytes {
            Some(bytes) => Some(decode_record::<Sealed>(bytes)?),
            None => None,
        };
        let (keys, source) = match env_key {
            Some(text) => (vec![MasterKey::parse(text.expose())?], VaultKeySource::Env),
            None => {
                if let Some(check) = check.as_ref().filter(|_| !key_file.exists()) {
                    // Never start a second vault beside the existing one.
                    return Err(VaultError::Key(format!(
                        "the existing vault was sealed with key id {}, but neither PALYRA_VAULT_KEY nor {} is there",
                        check.key_id,
                        key_file.display()
                    )));
                }
                (load_or_create_key_file(&key_file)?, VaultKeySource::File)
            }
        };
        let mut vault = Self {
            keys,
            source,
            key_file,
            sealed: BTreeMap::new(),
            check: check_bytes,
            foreign: None,
        };
        vault.replace_sealed(snapshot);
        let mut ops = Vec::new();
        match check {
            Some(sealed) => {
                let Some(position) = vault.keys.iter().position(|k| k.id == sealed.key_id) else {
                    return Err(VaultError::WrongKey {
                        expected: sealed.key_id,
                        found: vault.active_key_id().to_owned(),
                    });
                };
                let mut check =
                    vault
                        .open_sealed(CHECK_REF, &sealed)
                        .map_err(|_| VaultError::WrongKey {
                            expected: sealed.key_id.clone(),
                            found: vault.keys[position].id.clone(),
                        })?;
                check.zeroize();
                // The key that sealed the check is the active one. A key file holding
                // others is the trace of a rotation cut short; keep every key a stored
                // secret still names, drop the rest.
                let active = vault.keys.remove(position);
                vault.keys.insert(0, active);
                if vault.keys.len() > 1
                    && vault.source == VaultKeySource::File
                    && pruning == KeyPruning::Unused
                {
                    let mut used = std::collections::HashSet::new();
                    for value in vault.sealed.values() {
                        if let Ok(sealed) = decode_record::<Sealed>(value) {
                            used.insert(sealed.key_id);
                        }
                    }
                    let before = vault.keys.len();
                    let active_id = vault.keys[0].id.clone();
                    vault
                        .keys
                        .retain(|k| k.id == active_id || used.contains(&k.id));
                    if vault.keys.len() != before {
                        write_key_file(&vault.key_file, &vault.keys)?;
                    }
                }
            }
            None => {
                if !vault.sealed.is_empty() {
                    return Err(VaultError::Key(
                        "the vault holds secrets but no check value; refusing to guess the key"
                            .into(),
                    ));
                }
                let op = vault.seal_op_with(0, Table::VaultMeta, CHECK_REF, CHECK_PLAINTEXT);
                vault.note_writes(std::slice::from_ref(&op));
                ops.push(op);
            }
        }
        Ok((vault, ops))
    }

    pub fn active_key_id(&self) -> &str {
        &self.keys[0].id
    }

    pub fn source(&self) -> VaultKeySource {
        self.source
    }

    /// The write that stores `secret` at `vault_ref`, sealed under the active key.
    pub fn seal(&self, vault_ref: &str, secret: &SecretString) -> WriteOp {
        self.seal_op_with(0, Table::Vault, vault_ref, secret.expose().as_bytes())
    }

    fn seal_op_with(&self, key: usize, table: Table, vault_ref: &str, plaintext: &[u8]) -> WriteOp {
        seal_with(&self.keys[key], table, vault_ref, plaintext)
    }

    /// The write that removes the secret at `vault_ref`.
    pub fn delete(vault_ref: &str) -> WriteOp {
        WriteOp::delete(Table::Vault, vault_ref.as_bytes().to_vec())
    }

    /// Takes the writes the registry queues into account: a sealed secret put or
    /// deleted in the vault table is put or deleted here too. Call it with every batch
    /// of writes as it is queued, so memory shows them in message order.
    pub fn note_writes(&mut self, ops: &[WriteOp]) {
        for op in ops {
            match op {
                WriteOp::Put {
                    table: Table::Vault,
                    key,
                    value,
                }
                | WriteOp::CompareAndSet {
                    table: Table::Vault,
                    key,
                    value,
                    ..
                } => {
                    self.sealed
                        .insert(String::from_utf8_lossy(key).into_owned(), value.clone());
                }
                WriteOp::Put {
                    table: Table::VaultMeta,
                    key,
                    value,
                }
                | WriteOp::CompareAndSet {
                    table: Table::VaultMeta,
                    key,
                    value,
                    ..
                } if key == CHECK_REF.as_bytes() => {
                    self.check = Some(value.clone());
                }
                WriteOp::Delete {
                    table: Table::Vault,
                    key,
                } => {
                    self.sealed.remove(String::from_utf8_lossy(key).as_ref());
                }
                _ => {}
            }
        }
    }

    /// Replaces the sealed secrets with those `snapshot` holds (at open, and when the
    /// registry reloads after a failed commit).
    pub fn replace_sealed(&mut self, snapshot: &Snapshot) {
        self.sealed = snapshot
            .rows(Table::Vault)
            .iter()
            .map(|(k, v)| (String::from_utf8_lossy(k).into_owned(), v.clone()))
            .collect();
    }

    /// The check value as `snapshot` holds it (when the registry reloads).
    pub fn replace_meta(&mut self, snapshot: &Snapshot) {
        if snapshot.rows(Table::VaultMeta).is_empty() {
            return;
        }
        let value = snapshot
            .get(Table::VaultMeta, CHECK_REF.as_bytes())
            .map(<[u8]>::to_vec);
        self.note_meta(CHECK_REF, value);
    }

    /// Another node changed the sealed secret at `vault_ref` (`None`: deleted it).
    pub fn note_row(&mut self, vault_ref: &str, value: Option<Vec<u8>>) {
        match value {
            Some(v) => self.sealed.insert(vault_ref.to_owned(), v),
            None => self.sealed.remove(vault_ref),
        };
    }

    /// Another node changed a vault_meta row: the check value changes only when a node
    /// rotates the key. The new key becomes active here too if this node holds it (its
    /// key file is read again for it, which a shared or copied key file makes so);
    /// otherwise this node seals nothing until it does ([`Vault::guard`]), and secrets
    /// sealed under the new key do not open on it.
    pub fn note_meta(&mut self, key: &str, value: Option<Vec<u8>>) {
        if key != CHECK_REF {
            return;
        }
        let Some(bytes) = value else {
            return;
        };
        let Ok(sealed) = decode_record::<Sealed>(&bytes) else {
            tracing::error!("the vault's check value does not decode");
            return;
        };
        if !self.keys.iter().any(|k| k.id == sealed.key_id) {
            self.reread_key_file();
        }
        let Some(position) = self.keys.iter().position(|k| k.id == sealed.key_id) else {
            tracing::error!(key_id = %sealed.key_id, "another node rotated the vault key to one this node does not have; copy its vault.key here (this node seals nothing until then)");
            self.foreign = Some((sealed.key_id, bytes));
            return;
        };
        if self.open_sealed(CHECK_REF, &sealed).is_err() {
            tracing::error!(key_id = %sealed.key_id, "the vault's new check value does not open");
            self.foreign = Some((sealed.key_id, bytes));
            return;
        }
        let active = self.keys.remove(position);
        if active.id != self.keys.first().map_or("", |k| k.id.as_str()) {
            tracing::info!(key_id = %active.id, "the vault key was rotated on another node; now active here");
        }
        self.keys.insert(0, active);
        self.check = Some(bytes);
        self.foreign = None;
    }

    /// Adds the keys of the key file this node does not hold yet (key file only).
    fn reread_key_file(&mut self) {
        if self.source != VaultKeySource::File || !self.key_file.exists() {
            return;
        }
        match load_or_create_key_file(&self.key_file) {
            Ok(keys) => {
                for key in keys {
                    if !self.keys.iter().any(|k| k.id == key.id) {
                        self.keys.push(key);
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "rereading the vault key file failed"),
        }
    }

    /// Makes a write that seals a secret conditional on the check value this node
    /// knows, so it is refused if another node rotated the key meanwhile; refuses it
    /// outright while the active key is one this node does not hold. `Ok(false)`: the
    /// key another node rotated to was found just now, so `ops` were sealed under the
    /// old one; seal them again.
    pub fn guard(&mut self, ops: &mut Vec<WriteOp>) -> Result<bool, VaultError> {
        let seals = ops.iter().any(|op| {
            matches!(
                op,
                WriteOp::Put {
                    table: Table::Vault,
                    ..
                } | WriteOp::CompareAndSet {
                    table: Table::Vault,
                    ..
                }
            )
        });
        let touches_check = ops
            .iter()
            .any(|op| matches!(op.row(), Some((Table::VaultMeta, _))));
        if !seals || touches_check {
            return Ok(true);
        }
        if let Some((key_id, bytes)) = self.foreign.clone() {
            self.note_meta(CHECK_REF, Some(bytes));
            if self.foreign.is_some() {
                return Err(VaultError::KeyNotHere { key_id });
            }
            return Ok(false);
        }
        if let Some(value) = &self.check {
            ops.push(WriteOp::Expect {
                table: Table::VaultMeta,
                key: CHECK_REF.as_bytes().to_vec(),
                value: value.clone(),
            });
        }
        Ok(true)
    }

    /// Refuses a write unless the secret at `vault_ref` is still stored as memory
    /// holds it (none if memory holds none): so what was opened from memory is what
    /// the database holds when the write commits.
    pub fn expect_sealed(&self, vault_ref: &str) -> Option<WriteOp> {
        self.sealed.get(vault_ref).map(|value| WriteOp::Expect {
            table: Table::Vault,
            key: vault_ref.as_bytes().to_vec(),
            value: value.clone(),
        })
    }

    /// The refs of every sealed secret memory holds.
    pub fn refs(&self) -> Vec<Vec<u8>> {
        self.sealed.keys().map(|k| k.as_bytes().to_vec()).collect()
    }

    /// Whether a secret is stored at `vault_ref`.
    pub fn contains(&self, vault_ref: &str) -> Result<bool, VaultError> {
        Ok(self.sealed.contains_key(vault_ref))
    }

    /// Opens the secret at `vault_ref`; `None` when there is none.
    pub fn open_secret(&self, vault_ref: &str) -> Result<Option<SecretString>, VaultError> {
        let Some(bytes) = self.sealed.get(vault_ref) else {
            return Ok(None);
        };
        self.open_row(vault_ref, bytes).map(Some)
    }

    /// Opens `bytes`, the stored row of `vault_ref` as read from storage, without
    /// remembering it (a read-through on several nodes, before the change feed
    /// brings the row).
    pub fn open_row(&self, vault_ref: &str, bytes: &[u8]) -> Result<SecretString, VaultError> {
        let sealed: Sealed = decode_record(bytes)?;
        let plaintext = self.open_sealed(vault_ref, &sealed)?;
        let text = String::from_utf8(plaintext.to_vec())
            .map_err(|_| VaultError::Unreadable(vault_ref.to_owned()))?;
        Ok(SecretString::new(text))
    }

    fn open_sealed(
        &self,
        vault_ref: &str,
        sealed: &Sealed,
    ) -> Result<Zeroizing<Vec<u8>>, VaultError> {
        let unreadable = || VaultError::Unreadable(vault_ref.to_owned());
        let key = self
            .keys
            .iter()
            .find(|k| k.id == sealed.key_id)
            .ok_or_else(unreadable)?;
        if sealed.nonce.len() != 24 {
            return Err(unreadable());
        }
        key.cipher()
            .decrypt(
                XNonce::from_slice(&sealed.nonce),
                Payload {
                    msg: &sealed.ciphertext,
                    aad: vault_ref.as_bytes(),
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| unreadable())
    }

    /// First step of a rotation: a new key; every secret and the check value re-sealed
    /// under it (returned as writes); and only then the new key made durable in the key
    /// file beside the current one. Any failure before that leaves everything as it
    /// was. Commit the writes, then call [`Vault::finish_rotation`] (or
    /// [`Vault::abort_rotation`] if the commit failed).
    pub fn begin_rotation(&mut self) -> Result<(Vec<WriteOp>, usize), VaultError> {
        if self.source == VaultKeySource::Env {
            return Err(VaultError::EnvKeyNotRotatable);
        }
        let new_key = MasterKey::generate();
        let count = self.sealed.len();
        let mut ops = Vec::with_capacity(count + 1);
        // Every re-sealed row and the check value expect what this node holds: if
        // another node changed a secret (or rotated) meanwhile, the whole rotation is
        // refused rather than overwriting the newer secret with an older one.
        for (vault_ref, value) in &self.sealed {
            let sealed: Sealed = decode_record(value)?;
            let plaintext = self.open_sealed(vault_ref, &sealed)?;
            let op = seal_with(&new_key, Table::Vault, vault_ref, &plaintext);
            ops.push(conditional(op, Some(value.clone())));
        }
        let check = seal_with(&new_key, Table::VaultMeta, CHECK_REF, CHECK_PLAINTEXT);
        ops.push(conditional(check, self.check.clone()));
        self.keys.insert(0, new_key);
        if let Err(e) = write_key_file(&self.key_file, &self.keys) {
            self.keys.remove(0);
            return Err(e);
        }
        Ok((ops, count))
    }

    /// Last step of a rotation, after its writes are durable: forget the old keys.
    pub fn finish_rotation(&mut self) -> Result<(), VaultError> {
        self.keys.truncate(1);
        write_key_file(&self.key_file, &self.keys)
    }

    /// Undo of [`Vault::begin_rotation`] when its writes failed: the old key stays active.
    pub fn abort_rotation(&mut self) {
        if self.keys.len() > 1 {
            self.keys.remove(0);
            let _ = write_key_file(&self.key_file, &self.keys);
        }
    }
}

/// `op` (a put) made conditional on the row still holding `expected`.
fn conditional(op: WriteOp, expected: Option<Vec<u8>>) -> WriteOp {
    match op {
        WriteOp::Put { table, key, value } => WriteOp::CompareAndSet {
            table,
            key,
            expected,
            value,
        },
        other => other,
    }
}

/// Seals `plaintext` for `vault_ref` under `key` with a fresh random nonce.
fn seal_with(key: &MasterKey, table: Table, vault_ref: &str, plaintext: &[u8]) -> WriteOp {
    let mut nonce = [0u8; 24];
    rand::rng().fill_bytes(&mut nonce);
    // Encryption with a valid key and nonce length cannot fail.
    let ciphertext = key
        .cipher()
        .encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: plaintext,
                aad: vault_ref.as_bytes(),
            },
        )
        .unwrap_or_default();
    WriteOp::Put {
        table,
        key: vault_ref.as_bytes().to_vec(),
        value: encode_record(&Sealed {
            key_id: key.id.clone(),
            nonce: nonce.to_vec(),
            ciphertext,
        }),
    }
}

fn load_or_create_key_file(path: &Path) -> Result<Vec<MasterKey>, VaultError> {
    let fail = |m: String| VaultError::Key(format!("{}: {m}", path.display()));
    match fs::metadata(path) {
        Ok(meta) => {
            let mode = meta.permissions().mode();
            if mode & 0o077 != 0 {
                return Err(fail(format!(
                    "readable by group or others (mode {:o}); run chmod 600 on it",
                    mode & 0o777
                )));
            }
            let text = Zeroizing::new(fs::read_to_string(path).map_err(|e| fail(e.to_string()))?);
            let keys = text
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(MasterKey::parse)
                .collect::<Result<Vec<_>, _>>()?;
            if keys.is_empty() {
                return Err(fail("holds no key".into()));
            }
            Ok(keys)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let keys = vec![MasterKey::generate()];
            write_key_file(path, &keys)?;
            Ok(keys)
        }
        Err(e) => Err(fail(e.to_string())),
    }
}

/// Replaces the key file atomically (temp file, fsync, rename, fsync of the dir).
fn write_key_file(path: &Path, keys: &[MasterKey]) -> Result<(), VaultError> {
    let fail = |e: std::io::Error| VaultError::Key(format!("{}: {e}", path.display()));
    let tmp = path.with_extension("key.tmp");
    let _ = fs::remove_file(&tmp);
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(fail)?;
    for key in keys {
        let line = key.encode();
        file.write_all(line.as_bytes()).map_err(fail)?;
        file.write_all(b"\n").map_err(fail)?;
    }
    file.sync_all().map_err(fail)?;
    fs::rename(&tmp, path).map_err(fail)?;
    if let Some(dir) = path.parent() {
        fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(fail)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
