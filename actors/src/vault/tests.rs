//! The vault's unit tests: sealing bound to the ref, rotation (failed, cut short by a crash, on another node) and the key checks.

use super::*;
use palyra_storage::Storage;

async fn snapshot(storage: &Storage) -> Snapshot {
    Snapshot::read(storage, &Snapshot::startup_tables())
        .await
        .unwrap()
}

#[tokio::test]
async fn a_sealed_secret_opens_only_at_its_own_ref() {
    let dir = tempfile::tempdir().unwrap();
    let storage = Storage::open(dir.path()).unwrap();
    let writer = storage.start_writer().unwrap();
    let (mut vault, ops) = Vault::open(&snapshot(&storage).await, dir.path(), None).unwrap();
    writer.write(ops).await.unwrap();
    let secret = SecretString::new("moved-secret-value".into());
    let sealed_a = vec![vault.seal("vault://global/a", &secret)];
    vault.note_writes(&sealed_a);
    writer.write(sealed_a).await.unwrap();
    assert_eq!(
        vault
            .open_secret("vault://global/a")
            .unwrap()
            .unwrap()
            .expose(),
        "moved-secret-value"
    );
    // The same ciphertext moved to another ref does not open.
    let sealed = storage
        .read_row(Table::Vault, b"vault://global/a")
        .await
        .unwrap()
        .unwrap();
    let moved = vec![WriteOp::Put {
        table: Table::Vault,
        key: b"vault://global/b".to_vec(),
        value: sealed.clone(),
    }];
    vault.note_writes(&moved);
    writer.write(moved).await.unwrap();
    // What storage holds after a reload opens the same way.
    vault.replace_sealed(&snapshot(&storage).await);
    assert!(vault.contains("vault://global/a").unwrap());
    assert!(matches!(
        vault.open_secret("vault://global/b"),
        Err(VaultError::Unreadable(_))
    ));
    // Two seals of the same secret differ: fresh nonces.
    let again = vault.seal("vault://global/a", &secret);
    let WriteOp::Put { value, .. } = again else {
        panic!("a seal is a put");
    };
    assert_ne!(value, sealed);
    assert!(!format!("{vault:?}").contains("moved-secret"));
    assert_eq!(format!("{secret:?}"), "[redacted]");
    writer.shutdown().await;
}

/// A rotation's COMMIT that lands after the next start read the database (a killed
/// node's last transaction, finished by the server): on shared storage the start
/// keeps the new key, so what the rotation sealed still opens; pruning it (what
/// embedded storage may do) would leave every secret under a key no one holds.
#[tokio::test]
async fn a_rotation_committed_after_the_next_start_still_opens_on_shared_storage() {
    let dir = tempfile::tempdir().unwrap();
    let storage = Storage::open(dir.path()).unwrap();
    let writer = storage.start_writer().unwrap();
    let (mut vault, ops) = Vault::open(&snapshot(&storage).await, dir.path(), None).unwrap();
    writer.write(ops).await.unwrap();
    let secret = SecretString::new("survives-the-race".into());
    let kept = vec![vault.seal("vault://global/kept", &secret)];
    vault.note_writes(&kept);
    writer.write(kept).await.unwrap();
    // The rotation began: the new key is in the key file, its writes not yet durable.
    let (rotation, _) = vault.begin_rotation().unwrap();
    let new_key = vault.active_key_id().to_owned();
    drop(vault);
    // The next start reads the database first ...
    let (mut shared, _) = Vault::open_shared(&snapshot(&storage).await, dir.path(), None).unwrap();
    assert_eq!(shared.keys.len(), 2, "shared storage keeps both keys");
    // ... and then the old process's commit lands (announced on the change feed).
    writer.write(rotation).await.unwrap();
    let after = snapshot(&storage).await;
    let check = after
        .get(Table::VaultMeta, CHECK_REF.as_bytes())
        .map(<[u8]>::to_vec);
    shared.note_meta(CHECK_REF, check);
    shared.replace_sealed(&after);
    assert_eq!(shared.active_key_id(), new_key);
    assert_eq!(
        shared
            .open_secret("vault://global/kept")
            .unwrap()
            .unwrap()
            .expose(),
        "survives-the-race"
    );
    writer.shutdown().await;
}

#[tokio::test]
async fn a_failed_rotation_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let storage = Storage::open(dir.path()).unwrap();
    let writer = storage.start_writer().unwrap();
    let (mut vault, ops) = Vault::open(&snapshot(&storage).await, dir.path(), None).unwrap();
    writer.write(ops).await.unwrap();
    let secret = SecretString::new("kept-secret".into());
    let kept = vec![vault.seal("vault://global/kept", &secret)];
    vault.note_writes(&kept);
    writer.write(kept).await.unwrap();
    // A row no key opens makes the rotation fail before anything changes.
    let foreign = vec![WriteOp::put(
        b"vault://global/foreign".to_vec(),
        &Sealed {
            key_id: "0000000000000000".into(),
            nonce: vec![0; 24],
            ciphertext: vec![1, 2, 3],
        },
    )];
    vault.note_writes(&foreign);
    writer.write(foreign).await.unwrap();
    let key_file = std::fs::read_to_string(dir.path().join(VAULT_KEY_FILE)).unwrap();
    let active = vault.active_key_id().to_owned();
    assert!(vault.begin_rotation().is_err());
    assert_eq!(vault.active_key_id(), active);
    assert_eq!(
        std::fs::read_to_string(dir.path().join(VAULT_KEY_FILE)).unwrap(),
        key_file
    );
    // Secrets sealed afterwards still open after a restart.
    let later = vec![vault.seal("vault://global/later", &secret)];
    vault.note_writes(&later);
    writer.write(later).await.unwrap();
    writer.shutdown().await;
    drop(vault);
    drop(storage);
    let storage = Storage::open(dir.path()).unwrap();
    let (reopened, _) = Vault::open(&snapshot(&storage).await, dir.path(), None).unwrap();
    assert_eq!(
        reopened
            .open_secret("vault://global/later")
            .unwrap()
            .unwrap()
            .expose(),
        "kept-secret"
    );
}

#[tokio::test]
async fn a_rotation_on_another_node_is_followed_or_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let storage = Storage::open(dir.path()).unwrap();
    let writer = storage.start_writer().unwrap();
    let (mut a, ops) = Vault::open(&snapshot(&storage).await, dir.path(), None).unwrap();
    writer.write(ops).await.unwrap();
    let secret = SecretString::new("shared-secret".into());
    let sealed = vec![a.seal("vault://global/s", &secret)];
    a.note_writes(&sealed);
    writer.write(sealed).await.unwrap();
    // Node B shares A's key file; node C has a copy of the old one only.
    let (mut b, _) = Vault::open(&snapshot(&storage).await, dir.path(), None).unwrap();
    let other = tempfile::tempdir().unwrap();
    std::fs::copy(
        dir.path().join(VAULT_KEY_FILE),
        other.path().join(VAULT_KEY_FILE),
    )
    .unwrap();
    let (mut c, _) = Vault::open(&snapshot(&storage).await, other.path(), None).unwrap();
    let old_check = b.check.clone();
    // A rotates; the check value changes under B and C.
    let (ops, _) = a.begin_rotation().unwrap();
    writer.write(ops.clone()).await.unwrap();
    a.finish_rotation().unwrap();
    a.note_writes(&ops);
    let after = snapshot(&storage).await;
    let check = after
        .get(Table::VaultMeta, CHECK_REF.as_bytes())
        .map(<[u8]>::to_vec);
    let row = after
        .get(Table::Vault, b"vault://global/s")
        .map(<[u8]>::to_vec);
    for node in [&mut b, &mut c] {
        node.note_meta(CHECK_REF, check.clone());
        node.note_row("vault://global/s", row.clone());
    }
    // B read the new key from the key file: it opens and seals under it, and its
    // writes expect the new check value.
    assert_eq!(b.active_key_id(), a.active_key_id());
    assert_eq!(
        b.open_secret("vault://global/s").unwrap().unwrap().expose(),
        "shared-secret"
    );
    let mut ops = vec![b.seal("vault://global/t", &secret)];
    assert!(b.guard(&mut ops).unwrap());
    assert!(
        ops.iter()
            .any(|op| matches!(op, WriteOp::Expect { value, .. } if Some(value) == check.as_ref()))
    );
    // C does not have it: it refuses to seal, with what to do.
    let mut ops = vec![c.seal("vault://global/t", &secret)];
    let refused = c.guard(&mut ops).unwrap_err().to_string();
    assert!(refused.contains("copy that node's vault.key"), "{refused}");
    assert_ne!(c.check, check);
    assert_eq!(c.check, old_check);
    // Once the key file is copied over, C follows too.
    std::fs::copy(
        dir.path().join(VAULT_KEY_FILE),
        other.path().join(VAULT_KEY_FILE),
    )
    .unwrap();
    let mut ops = vec![c.seal("vault://global/t", &secret)];
    assert!(
        !c.guard(&mut ops).unwrap(),
        "sealed under the old key: seal again"
    );
    assert_eq!(c.active_key_id(), a.active_key_id());
    let mut ops = vec![c.seal("vault://global/t", &secret)];
    assert!(c.guard(&mut ops).unwrap());
    writer.shutdown().await;
}

#[test]
fn keys_must_be_32_bytes_of_base64() {
    assert!(MasterKey::parse("not base64!").is_err());
    assert!(MasterKey::parse("AAAA").is_err());
    let key = MasterKey::parse(&STANDARD.encode([7u8; 32])).unwrap();
    assert_eq!(key.id.len(), 16);
    assert!(!format!("{key:?}").contains("BwcH"));
}
