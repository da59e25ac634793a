use super::*;

fn files(dir: &std::path::Path) -> Files {
    let config = FilesConfig {
        max_file_size: 1000,
        quota_per_user: 1500,
        guest_quota: 600,
        max_uploads: 2,
        ..FilesConfig::in_dir(dir.to_owned())
    };
    let files = Files::open(config).unwrap();
    files.set_base("http://127.0.0.1:1".into());
    files
}

fn offer(owner: Owner, size: u64) -> Offer {
    Offer {
        id: Uuid::now_v7(),
        name: "报告.pdf".into(),
        size,
        sha256: "AB".repeat(32),
        target: Target::Room(chat_shared::RoomName::parse("lobby").unwrap()),
        owner,
        nick: Nick::parse("alice").unwrap(),
        session: Uuid::now_v7(),
    }
}

fn alice() -> Owner {
    Owner::Account("alice".into())
}

#[test]
fn offers_are_checked_against_every_limit() {
    let dir = tempfile::tempdir().unwrap();
    let files = files(dir.path());
    assert!(matches!(
        files.offer(offer(alice(), 1001)),
        Err(FileError::TooLarge {
            size: 1001,
            max: 1000
        })
    ));
    assert!(matches!(
        files.offer(offer(alice(), 0)),
        Err(FileError::Bad(_))
    ));
    let bad_hash = Offer {
        sha256: "xyz".into(),
        ..offer(alice(), 10)
    };
    assert!(matches!(files.offer(bad_hash), Err(FileError::Bad(_))));
    let bad_name = Offer {
        name: "../../etc/passwd".into(),
        ..offer(alice(), 10)
    };
    assert!(matches!(
        files.offer(bad_name),
        Err(FileError::NameInvalid { .. })
    ));
    let slot = files.offer(offer(alice(), 1000)).unwrap();
    assert!(slot.url.starts_with("http://127.0.0.1:1/uploads/"));
    assert_eq!(slot.offset, 0);
    // 1000 reserved of 1500: 501 more is over the quota, 500 is not.
    assert!(matches!(
        files.offer(offer(alice(), 501)),
        Err(FileError::QuotaExceeded {
            used: 1000,
            quota: 1500,
            ..
        })
    ));
    files.offer(offer(alice(), 500)).unwrap();
    let guest = Owner::Guest(Uuid::now_v7());
    assert!(matches!(
        files.offer(offer(guest.clone(), 601)),
        Err(FileError::QuotaExceeded { quota: 600, .. })
    ));
    files.offer(offer(guest.clone(), 100)).unwrap();
    files.offer(offer(guest.clone(), 100)).unwrap();
    assert!(matches!(
        files.offer(offer(guest, 100)),
        Err(FileError::TooManyUploads(2))
    ));
}

#[test]
fn a_resent_offer_gets_its_slot_back_and_only_its_owner_can() {
    let dir = tempfile::tempdir().unwrap();
    let files = files(dir.path());
    let first = offer(alice(), 10);
    let id = first.id;
    let slot = files.offer(first).unwrap();
    let again = Offer {
        id,
        session: Uuid::now_v7(),
        ..offer(alice(), 10)
    };
    assert_eq!(files.offer(again).unwrap(), slot);
    let other = Offer {
        id,
        ..offer(Owner::Account("mallory".into()), 10)
    };
    assert!(matches!(files.offer(other), Err(FileError::IdInUse)));
    let guest = offer(Owner::Guest(Uuid::now_v7()), 10);
    let (guest_id, first) = (guest.id, files.offer(guest).unwrap());
    let reconnected = Offer {
        id: guest_id,
        ..offer(Owner::Guest(Uuid::now_v7()), 10)
    };
    assert_eq!(files.offer(reconnected).unwrap(), first);
    let renamed = Offer {
        id: guest_id,
        nick: Nick::parse("mallory").unwrap(),
        ..offer(Owner::Guest(Uuid::now_v7()), 10)
    };
    assert!(matches!(files.offer(renamed), Err(FileError::IdInUse)));
    let different = Offer {
        id,
        ..offer(alice(), 11)
    };
    assert!(matches!(files.offer(different), Err(FileError::IdInUse)));
}

#[test]
fn abandoned_and_expired_slots_give_their_quota_back() {
    let dir = tempfile::tempdir().unwrap();
    let mut files = files(dir.path());
    let slot = files.offer(offer(alice(), 1000)).unwrap();
    let token = slot.url.rsplit('/').next().unwrap().to_owned();
    let upload = files.upload(&token).unwrap();
    files.abandon(&upload);
    assert!(files.upload(&token).is_none());
    files.offer(offer(alice(), 1000)).unwrap();
    files.config.upload_expiry = std::time::Duration::from_millis(1);
    let guest = Owner::Guest(Uuid::now_v7());
    let slot = files.offer(offer(guest.clone(), 600)).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(5));
    assert!(files.upload(slot.url.rsplit('/').next().unwrap()).is_none());
    files.sweep();
    files.offer(offer(guest, 600)).unwrap();
    for bad in ["", "../x", &"A".repeat(32), &"0".repeat(31)] {
        assert!(files.upload(bad).is_none());
        assert!(files.download(bad).is_none());
    }
}

#[test]
fn sha256_is_read_in_either_case() {
    assert_eq!(parse_sha256(&"aB".repeat(32)), Some([0xab; 32]));
    assert_eq!(parse_sha256(&"ab".repeat(31)), None);
    assert_eq!(parse_sha256(&"g0".repeat(32)), None);
    assert_eq!(parse_sha256(&"é".repeat(32)), None);
}

#[test]
fn a_temporary_store_is_gone_with_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let config = FilesConfig {
        temporary: true,
        ..FilesConfig::in_dir(dir.path().to_owned())
    };
    let files = Files::open(config).unwrap();
    let inside: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(inside.len(), 1, "one directory of its own");
    drop(files);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

/// A finished upload, as the tus side leaves it: its bytes in its partial file.
fn finished(files: &Files, bytes: &[u8]) -> Arc<Upload> {
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    let sha = disk::hex(digest.as_ref());
    let slot = files
        .offer(Offer {
            sha256: sha,
            ..offer(alice(), bytes.len() as u64)
        })
        .unwrap();
    let upload = files.upload(slot.url.rsplit('/').next().unwrap()).unwrap();
    std::fs::write(&upload.path, bytes).unwrap();
    upload
}

/// Keeps a finished upload and marks it posted, as a share that reached its room.
fn shared(files: &Files, bytes: &[u8]) -> chat_shared::FileInfo {
    let upload = finished(files, bytes);
    let info = files.keep(&upload).unwrap();
    files.done(&upload);
    info
}

#[test]
fn a_blob_stays_while_any_share_of_it_does() {
    let dir = tempfile::tempdir().unwrap();
    let files = files(dir.path());
    let first = shared(&files, b"same");
    let second = shared(&files, b"same");
    let (blob, _) = files.download(&first.id).unwrap();
    files.unshare(&first.id);
    assert!(blob.exists(), "the second share still needs it");
    assert!(files.download(&first.id).is_none());
    files.unshare(&second.id);
    assert!(!blob.exists());
    // Shared again after the last share went: stored again.
    let third = shared(&files, b"same");
    let (blob, info) = files.download(&third.id).unwrap();
    assert_eq!(std::fs::read(blob).unwrap(), b"same");
    assert_eq!(info.size, 4);
    // The quota was given back each time: 1000 and 500 bytes (all 1500) fit again.
    files.unshare(&third.id);
    files.offer(offer(alice(), 1000)).unwrap();
    files.offer(offer(alice(), 500)).unwrap();
}

#[test]
fn a_kept_upload_waits_for_its_uploader_and_an_expired_one_takes_its_share_along() {
    let dir = tempfile::tempdir().unwrap();
    let mut files = files(dir.path());
    let upload = finished(&files, b"waiting");
    let info = files.keep(&upload).unwrap();
    assert!(files.waiting(upload.id).is_some());
    assert!(files.download(&info.id).is_some());
    files.done(&upload);
    assert!(files.waiting(upload.id).is_none());
    assert!(files.download(&info.id).is_some(), "a posted share stays");

    files.config.upload_expiry = std::time::Duration::from_millis(1);
    let upload = finished(&files, b"never fetched");
    let info = files.keep(&upload).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(5));
    files.sweep();
    assert!(files.waiting(upload.id).is_none());
    assert!(
        files.download(&info.id).is_none(),
        "never shown to anyone: gone"
    );
    // Its charge went back with it: the quota holds 1500 bytes, "waiting" still counts 7.
    files.offer(offer(alice(), 1000)).unwrap();
    assert!(matches!(
        files.offer(offer(alice(), 494)),
        Err(FileError::QuotaExceeded { used: 1007, .. })
    ));
}
