//! Names: versions, removal, encryption of names, exact counts.

mod common;

use common::{memory_store, random_bytes};
use seccs_store::backend::Backend;
use seccs_store::catalog::{
    EntryKind, FileMeta, FileMode, FileStamp, HardLinks, Owner, Stamp, Xattr,
};
use seccs_store::{StoreError, WrapperKind};

#[test]
fn putting_an_existing_name_keeps_the_old_version_until_removed() {
    let (store, _) = memory_store(256, WrapperKind::AesSiv);
    let (v1, v2) = (random_bytes(5000, 1), random_bytes(7000, 2));
    let (_, n1) = store
        .put_named(&mut v1.as_slice(), "docs/a", EntryKind::File)
        .expect("put");
    let (_, n2) = store
        .put_named(&mut v2.as_slice(), "docs/a", EntryKind::File)
        .expect("put");
    assert_eq!((n1, n2), (1, 2));
    assert_eq!(
        store
            .get(&store.resolve("docs/a").expect("latest").content_ref)
            .expect("get"),
        v2
    );
    assert_eq!(
        store
            .get(&store.resolve("docs/a@1").expect("v1").content_ref)
            .expect("get"),
        v1
    );
    assert_eq!(store.remove_name("docs/a", Some(1)).expect("rm v1"), 1);
    assert!(store.resolve("docs/a@1").is_err());
    assert_eq!(store.resolve("docs/a").expect("v2").number, 2);
    store.remove_name("docs/a", None).expect("rm all");
    assert!(store.lookup("docs/a").expect("lookup").is_none());
    assert_eq!(store.usage().expect("usage").entries, 0);
}

#[test]
fn names_and_metadata_never_reach_the_backend_in_the_clear() {
    let (store, backend) = memory_store(256, WrapperKind::AesSiv);
    let name = "secret-project/plans-for-world-domination.txt";
    store
        .put_named(&mut &b"tiny"[..], name, EntryKind::File)
        .expect("put");
    let mut leaked = false;
    backend
        .for_each(&mut |k, e| {
            for hay in [k, e.value.as_slice()] {
                leaked |= hay
                    .windows(8)
                    .any(|w| name.as_bytes().windows(8).any(|n| n == w));
            }
            Ok(())
        })
        .expect("scan");
    assert!(!leaked, "a part of the name is visible to the backend");
}

#[test]
fn listing_is_sorted_and_filtered_by_prefix() {
    let (store, _) = memory_store(256, WrapperKind::AesSiv);
    for name in ["b/2", "a/1", "b/1", "c"] {
        store
            .put_named(&mut name.as_bytes(), name, EntryKind::File)
            .expect("put");
    }
    let names: Vec<String> = store
        .list("b/")
        .expect("ls")
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert_eq!(names, ["b/1", "b/2"]);
    assert_eq!(store.list("").expect("ls").len(), 4);
}

#[test]
fn counts_stay_exact_through_every_catalog_operation() {
    let (store, _) = memory_store(128, WrapperKind::AesSiv);
    let shared = random_bytes(20_000, 3);
    let r = store.put(&shared).expect("unnamed put");
    for name in ["x", "y", "x"] {
        store
            .put_named(&mut shared.as_slice(), name, EntryKind::File)
            .expect("put");
    }
    assert!(store.verify().expect("verify").is_clean());
    store.remove_name("x", None).expect("rm x");
    assert!(store.verify().expect("verify").is_clean());
    assert_eq!(store.get(&r).expect("unnamed still there"), shared);
    store.remove_name("y", None).expect("rm y");
    store.delete(&r).expect("rm unnamed");
    assert_eq!(store.usage().expect("usage").entries, 0);
}

#[test]
fn putting_a_names_newest_content_again_adds_no_version_and_no_bytes() {
    let (store, _) = memory_store(256, WrapperKind::AesSiv);
    let v = random_bytes(9000, 7);
    store
        .put_named(&mut v.as_slice(), "same", EntryKind::File)
        .expect("put");
    let before = store.usage().expect("usage");
    let (_, n) = store
        .put_named(&mut v.as_slice(), "same", EntryKind::File)
        .expect("put");
    assert_eq!(n, 1);
    assert_eq!(store.usage().expect("usage"), before);
    assert!(store.verify().expect("verify").is_clean());
    store.remove_name("same", None).expect("rm");
    assert_eq!(store.usage().expect("usage").entries, 0);
}

#[test]
fn a_chmod_without_new_bytes_is_a_version_that_shares_the_content() {
    let (store, _) = memory_store(256, WrapperKind::AesSiv);
    let v = random_bytes(3000, 9);
    let bits_of = |spec: &str| {
        store
            .resolve(spec)
            .expect("resolve")
            .mode
            .map(FileMode::bits)
    };
    let put_meta = |meta: FileMeta| {
        store
            .put_named_stamped(&mut v.as_slice(), "bin/run", EntryKind::File, meta)
            .expect("put")
    };
    let put = |bits: u32, owner: Option<Owner>| {
        put_meta(FileMeta {
            mode: Some(FileMode::from_st_mode(bits)),
            owner,
            ..FileMeta::default()
        })
    };
    put(0o100_755, None);
    assert_eq!(bits_of("bin/run"), Some(0o755));
    // Same bytes, other bits (a chmod): a second version, so that the tree
    // of an earlier time has the bits it had then; no node is added.
    let entries = store.usage().expect("usage").entries;
    let (outcome, n) = put(0o644, None);
    assert_eq!(n, 2);
    assert!(!outcome.is_new);
    assert_eq!(store.usage().expect("usage").entries, entries);
    assert_eq!(bits_of("bin/run"), Some(0o644));
    assert_eq!(bits_of("bin/run@1"), Some(0o755));
    assert_eq!(
        store.resolve("bin/run@1").expect("v1").content_ref,
        store.resolve("bin/run@2").expect("v2").content_ref
    );
    // Another owner (a chown) is a version too; the same again is not.
    let owner = Owner { uid: 7, gid: 8 };
    assert_eq!(put(0o644, Some(owner)).1, 3);
    assert_eq!(put(0o644, Some(owner)).1, 3);
    assert_eq!(store.resolve("bin/run").expect("v3").owner, Some(owner));
    assert_eq!(store.resolve("bin/run@2").expect("v2").owner, None);
    // So are other extended attributes (given in any order, kept sorted).
    let xattr = |name: &str, value: &[u8]| {
        Xattr::new(name.as_bytes().to_vec(), value.to_vec()).expect("xattr")
    };
    let with_xattrs = |xattrs: Vec<Xattr>| {
        put_meta(FileMeta {
            mode: Some(FileMode::from_st_mode(0o644)),
            owner: Some(owner),
            xattrs,
            ..FileMeta::default()
        })
        .1
    };
    let (cap, tag) = (
        xattr("security.capability", &[1, 2, 3]),
        xattr("user.tag", b"x"),
    );
    assert_eq!(with_xattrs(vec![tag.clone(), cap.clone()]), 4);
    assert_eq!(with_xattrs(vec![cap.clone(), tag.clone()]), 4);
    assert_eq!(
        store.resolve("bin/run").expect("v4").xattrs,
        [cap.clone(), tag.clone()]
    );
    assert!(store.resolve("bin/run@3").expect("v3").xattrs.is_empty());
    assert_eq!(store.usage().expect("usage").entries, entries);
    store.remove_name("bin/run", Some(4)).expect("rm @4");
    store.remove_name("bin/run", Some(3)).expect("rm @3");
    // Each version holds the content: removing one leaves the other whole.
    assert!(store.verify().expect("verify").is_clean());
    store.remove_name("bin/run", Some(2)).expect("rm @2");
    assert!(store.verify().expect("verify").is_clean());
    let back = store
        .get(&store.resolve("bin/run@1").expect("v1").content_ref)
        .expect("get");
    assert_eq!(back, v);
    // Contents put without a file (standard input) carry no bits.
    store
        .put_named(&mut v.as_slice(), "stdin", EntryKind::File)
        .expect("put");
    assert_eq!(bits_of("stdin"), None);
    store.remove_name("bin/run", None).expect("rm");
    store.remove_name("stdin", None).expect("rm");
    assert_eq!(store.usage().expect("usage").entries, 0);
}

#[test]
fn a_file_stamp_marks_the_newest_version_unchanged_without_another_put() {
    let (store, _) = memory_store(256, WrapperKind::AesSiv);
    let v = random_bytes(9000, 8);
    let stamp = |mtime_s, inode| FileStamp {
        mtime_s,
        mtime_ns: 5,
        ctime_s: mtime_s,
        ctime_ns: 7,
        inode,
    };
    let len = v.len() as u64;
    let put = |stamp: Stamp| {
        store
            .put_named_stamped(
                &mut v.as_slice(),
                "f",
                EntryKind::File,
                FileMeta {
                    stamp: Some(stamp),
                    ..FileMeta::default()
                },
            )
            .expect("put")
            .1
    };
    assert_eq!(put(Stamp::Settled(stamp(100, 42))), 1);
    let unchanged = |name: &str, len: u64, stamp: FileStamp| {
        store
            .unchanged_since_stamp(name, EntryKind::File, len, &stamp)
            .expect("lookup")
            .map(|v| v.number)
    };
    assert_eq!(unchanged("f", len, stamp(100, 42)), Some(1));
    // Any difference in the stamp or the length means "read it again".
    assert!(unchanged("f", len, stamp(101, 42)).is_none());
    assert!(unchanged("f", len, stamp(100, 43)).is_none());
    assert!(unchanged("f", len + 1, stamp(100, 42)).is_none());
    assert!(unchanged("g", len, stamp(100, 42)).is_none());
    // Read again with the same bytes and modification time, on another
    // inode (a copy put in its place, which may have left a group of hard
    // links): a version that shares the content, no node added, and the
    // first keeps the stamp it had, so a restore of its time links (or does
    // not link) the files as they were linked then.
    let counts = store.usage().expect("usage");
    assert_eq!(put(Stamp::Settled(stamp(100, 77))), 2);
    assert_eq!(store.usage().expect("usage").entries, counts.entries);
    assert!(unchanged("f", len, stamp(100, 42)).is_none());
    assert_eq!(unchanged("f", len, stamp(100, 77)), Some(2));
    // Same bytes, another modification time (a touch): another version.
    assert_eq!(put(Stamp::Settled(stamp(200, 77))), 3);
    assert_eq!(unchanged("f", len, stamp(200, 77)), Some(3));
    // A recent stamp keeps the file's times, but the next put reads it;
    // once settled with the same times, it is the same version.
    assert_eq!(put(Stamp::Recent(stamp(300, 77))), 4);
    assert!(unchanged("f", len, stamp(300, 77)).is_none());
    assert_eq!(put(Stamp::Settled(stamp(300, 77))), 4);
    assert_eq!(unchanged("f", len, stamp(300, 77)), Some(4));
    let record = store.lookup("f").expect("lookup").expect("record");
    let stamps: Vec<_> = record
        .versions
        .iter()
        .map(|v| {
            v.stamp
                .map(|s| (s.file_stamp().modified(), s.file_stamp().inode))
        })
        .collect();
    assert_eq!(
        stamps,
        [
            Some(((100, 5), 42)),
            Some(((100, 5), 77)),
            Some(((200, 5), 77)),
            Some(((300, 5), 77))
        ]
    );
    assert!(store.verify().expect("verify").is_clean());
    store.remove_name("f", None).expect("rm");
    assert_eq!(store.usage().expect("usage").entries, 0);
}

#[test]
fn a_device_renumbered_alone_is_no_change_and_adds_no_version() {
    let (store, _) = memory_store(256, WrapperKind::AesSiv);
    let v = random_bytes(4000, 30);
    let len = v.len() as u64;
    let stamp = FileStamp {
        mtime_s: 100,
        mtime_ns: 1,
        ctime_s: 100,
        ctime_ns: 2,
        inode: 9,
    };
    let put = |stamp: Stamp, device: u64| {
        store
            .put_named_stamped(
                &mut v.as_slice(),
                "f",
                EntryKind::File,
                FileMeta {
                    stamp: Some(stamp),
                    hard_links: Some(HardLinks { device, nlink: 2 }),
                    ..FileMeta::default()
                },
            )
            .expect("put")
            .1
    };
    let links_of = |spec: &str| store.resolve(spec).expect("resolve").hard_links;
    assert_eq!(put(Stamp::Settled(stamp), 1), 1);
    assert_eq!(
        links_of("f"),
        Some(HardLinks {
            device: 1,
            nlink: 2
        })
    );
    // A put after a reboot that numbered the disk 2 skips the file: the
    // stamp alone decides, and it is the one recorded.
    let unchanged = store
        .unchanged_since_stamp("f", EntryKind::File, len, &stamp)
        .expect("lookup");
    assert_eq!(unchanged.map(|v| v.number), Some(1));
    // Read again all the same (`--force`): no version, but the device the
    // file is on now, for a restore to compare with its links' devices.
    let entries = store.usage().expect("usage").entries;
    assert_eq!(put(Stamp::Settled(stamp), 2), 1);
    assert_eq!(
        links_of("f"),
        Some(HardLinks {
            device: 2,
            nlink: 2
        })
    );
    assert_eq!(
        store
            .lookup("f")
            .expect("lookup")
            .expect("record")
            .versions
            .len(),
        1
    );
    assert_eq!(store.usage().expect("usage").entries, entries);
    // A recent stamp that settles on another device is one version too.
    let later = FileStamp {
        ctime_s: 200,
        ..stamp
    };
    assert_eq!(put(Stamp::Recent(later), 2), 2);
    assert_eq!(put(Stamp::Settled(later), 3), 2);
    assert_eq!(
        links_of("f"),
        Some(HardLinks {
            device: 3,
            nlink: 2
        })
    );
    // The first version keeps what it had.
    assert_eq!(
        links_of("f@1"),
        Some(HardLinks {
            device: 2,
            nlink: 2
        })
    );
    assert!(store.verify().expect("verify").is_clean());
}

#[test]
fn a_gone_name_keeps_its_versions_leaves_listings_and_comes_back_when_put_again() {
    let (store, _) = memory_store(256, WrapperKind::AesSiv);
    let (v1, v2) = (random_bytes(6000, 21), random_bytes(300, 22));
    let stamp = FileStamp {
        mtime_s: 100,
        mtime_ns: 1,
        ctime_s: 100,
        ctime_ns: 1,
        inode: 7,
    };
    store
        .put_named(&mut v1.as_slice(), "t/a", EntryKind::File)
        .expect("put");
    store
        .put_named_stamped(
            &mut v2.as_slice(),
            "t/a",
            EntryKind::File,
            FileMeta {
                stamp: Some(Stamp::Settled(stamp)),
                ..FileMeta::default()
            },
        )
        .expect("put");
    store
        .put_named(&mut v1.as_slice(), "t/b", EntryKind::File)
        .expect("put");
    let before = store.usage().expect("usage");
    let names = ["t/a".to_string(), "t/nothing".to_string()];
    assert_eq!(
        store.mark_gone(&names).expect("mark"),
        1,
        "t/nothing is not a name"
    );
    assert_eq!(
        store.mark_gone(&names).expect("mark"),
        0,
        "t/a is gone already"
    );
    // Nothing is released: the same entries, counts still exact.
    assert_eq!(store.usage().expect("usage").entries, before.entries);
    assert!(store.verify().expect("verify").is_clean());
    let record = store.lookup("t/a").expect("lookup").expect("record");
    assert!(record.is_gone() && record.versions.len() == 2);
    // NAME alone says it is gone and how to reach it; NAME@N reads.
    let err = store.resolve("t/a").expect_err("gone").to_string();
    assert!(err.contains("gone") && err.contains("t/a@2"), "{err}");
    let old = store.resolve("t/a@1").expect("v1");
    assert_eq!(store.get(&old.content_ref).expect("get"), v1);
    // A gone file is read again even when its stamp matches.
    assert!(
        store
            .unchanged_since_stamp("t/a", EntryKind::File, v2.len() as u64, &stamp)
            .expect("lookup")
            .is_none()
    );
    // Putting its newest content again brings it back, with no new version.
    let (_, n) = store
        .put_named_stamped(
            &mut v2.as_slice(),
            "t/a",
            EntryKind::File,
            FileMeta {
                stamp: Some(Stamp::Settled(stamp)),
                ..FileMeta::default()
            },
        )
        .expect("put");
    assert_eq!(n, 2);
    assert_eq!(store.resolve("t/a").expect("back").number, 2);
    assert!(
        !store
            .lookup("t/a")
            .expect("lookup")
            .expect("record")
            .is_gone()
    );
    // A new content for a gone name brings it back as a new version.
    store.mark_gone(&names).expect("mark");
    let (_, n) = store
        .put_named(
            &mut random_bytes(400, 23).as_slice(),
            "t/a",
            EntryKind::File,
        )
        .expect("put");
    assert_eq!(n, 3);
    assert!(store.resolve("t/a").is_ok());
    // Both returns kept when the name was gone, for a tree at a past time.
    let record = store.lookup("t/a").expect("lookup").expect("record");
    assert_eq!(record.absences.len(), 2);
    assert!(record.absences.iter().all(|a| a.from <= a.to));
    let newest = record.latest().expect("v3");
    assert_eq!(record.at(newest.time).map(|v| v.number), Some(3));
    // Removing a gone name removes every version, to zero residue.
    store.mark_gone(&names).expect("mark");
    assert_eq!(store.remove_name("t/a", None).expect("rm"), 3);
    store.remove_name("t/b", None).expect("rm");
    assert_eq!(store.usage().expect("usage").entries, 0);
}

#[test]
fn removing_many_names_in_one_batch_keeps_shared_nodes_of_the_rest() {
    let (store, _) = memory_store(256, WrapperKind::AesSiv);
    let shared = random_bytes(20_000, 31);
    let mut longer = shared.clone();
    longer.extend_from_slice(&random_bytes(5_000, 32));
    for name in ["x", "y"] {
        store
            .put_named(&mut shared.as_slice(), name, EntryKind::File)
            .expect("put");
    }
    store
        .put_named(&mut random_bytes(700, 33).as_slice(), "x", EntryKind::File)
        .expect("put");
    store
        .put_named(&mut longer.as_slice(), "z", EntryKind::File)
        .expect("put");
    // A name listed twice is removed once.
    let names = ["x", "y", "not-a-name", "y"].map(String::from);
    assert_eq!(store.remove_names(&names).expect("rm"), (2, 3));
    assert!(store.lookup("x").expect("lookup").is_none());
    let z = store.resolve("z").expect("z");
    assert_eq!(store.get(&z.content_ref).expect("z reads"), longer);
    assert!(store.verify().expect("verify").is_clean());
    assert_eq!(store.remove_names(&["z".into()]).expect("rm"), (1, 1));
    assert_eq!(store.usage().expect("usage").entries, 0);
}

#[test]
fn keeping_the_newest_versions_releases_the_older_ones_exactly() {
    let (store, _) = memory_store(256, WrapperKind::AesSiv);
    let contents: Vec<Vec<u8>> = (0..4).map(|i| random_bytes(5_000, 40 + i)).collect();
    for c in &contents {
        store
            .put_named(&mut c.as_slice(), "a", EntryKind::File)
            .expect("put");
    }
    // b shares every node with a@1, which goes.
    store
        .put_named(&mut contents[0].as_slice(), "b", EntryKind::File)
        .expect("put");
    let names: Vec<String> = ["a", "b", "no-such-name"].map(String::from).to_vec();
    assert_eq!(store.keep_newest(&names, 2).expect("keep"), (1, 2));
    let a = store.lookup("a").expect("lookup").expect("record");
    assert_eq!(
        a.versions.iter().map(|v| v.number).collect::<Vec<_>>(),
        [3, 4]
    );
    assert_eq!(a.next_version, 5, "numbers are never reused");
    assert_eq!(
        store
            .get(&store.resolve("b").expect("b").content_ref)
            .expect("get"),
        contents[0]
    );
    assert_eq!(
        store
            .get(&store.resolve("a@4").expect("a@4").content_ref)
            .expect("get"),
        contents[3]
    );
    assert!(store.verify().expect("verify").is_clean());
    // Nothing more to trim; keeping none is refused.
    assert_eq!(store.keep_newest(&names, 2).expect("keep"), (0, 0));
    assert!(store.keep_newest(&names, 0).is_err());
    store.remove_name("a", None).expect("rm");
    store.remove_name("b", None).expect("rm");
    assert_eq!(store.usage().expect("usage").entries, 0);
}

#[test]
fn a_name_is_a_path_in_one_form_only() {
    let (store, backend) = memory_store(256, WrapperKind::AesSiv);
    // A name spelled like a reference (here an earlier put's) would be
    // read as that reference by `get` and `rm`.
    let reference = store.put(b"another content").expect("put").to_string();
    let spelled_like_a_reference = reference.as_str();
    for bad in [
        "",
        "/abs",
        "a/./b",
        "a/../b",
        "../up",
        "a//b",
        "dir/",
        ".",
        "a\0b",
        spelled_like_a_reference,
    ] {
        let err = store
            .put_named(&mut &b"x"[..], bad, EntryKind::File)
            .expect_err(bad);
        assert!(matches!(err, StoreError::InvalidName(_)), "{bad:?}: {err}");
    }
    // A refusal quotes a long name only in part.
    let long = format!("{}/../x", "n".repeat(1 << 20));
    let err = store
        .put_named(&mut &b"x"[..], &long, EntryKind::File)
        .expect_err("long");
    assert!(
        err.to_string().len() < 1000,
        "{} bytes",
        err.to_string().len()
    );
    assert!(err.to_string().contains("(1048581 bytes)"), "{err}");
    store
        .delete(&reference.parse().expect("reference"))
        .expect("rm");
    assert_eq!(backend.keys().len(), 0, "a refused name stores nothing");
    for good in [
        "a",
        "photos/2024/a.jpg",
        ".hidden/..x/x..",
        "icon@2x.png",
        "a@",
        "a@b1",
        "build@2",
        "dir/v@10",
    ] {
        store
            .put_named(&mut &b"x"[..], good, EntryKind::File)
            .expect(good);
    }
}

#[test]
fn a_name_ending_in_at_digits_is_read_whole_unless_that_is_ambiguous() {
    let (store, _backend) = memory_store(256, WrapperKind::AesSiv);
    let put = |name: &str, content: &[u8]| {
        store
            .put_named(&mut &content[..], name, EntryKind::File)
            .expect(name)
            .0
            .content_ref
    };
    let first = put("v@2", b"the file named v@2");
    let second = put("v@2", b"its second version");
    // The whole spelling names the file; NAME@N its versions.
    assert_eq!(store.read_spec("v@2").expect("spec"), ("v@2", None));
    assert_eq!(store.resolve("v@2").expect("v@2").content_ref, second);
    assert_eq!(store.resolve("v@2@1").expect("v@2@1").content_ref, first);
    // Without a name spelled so, it is a version of another name.
    put("w", b"w1");
    let w2 = put("w", b"w2");
    assert_eq!(store.read_spec("w@2").expect("spec"), ("w", Some(2)));
    assert_eq!(store.resolve("w@2").expect("w@2").content_ref, w2);
    // A spelling that is both is refused, naming both readings.
    put("v", b"v1");
    assert_eq!(
        store.resolve("v@2").expect("v has one version").content_ref,
        second
    );
    put("v", b"v2");
    let err = store.resolve("v@2").expect_err("ambiguous").to_string();
    assert!(
        err.contains("both a name and version 2 of \"v\"") && err.contains("v@2@N"),
        "{err}"
    );
    assert!(store.read_spec("v@2@1").is_ok());
    // Removing one side settles it.
    assert_eq!(store.remove_name("v@2", None).expect("rm"), 2);
    assert_eq!(store.read_spec("v@2").expect("spec"), ("v", Some(2)));
}

/// `get_named` reads a name's newest version or a numbered one, says
/// which name and version it does not find, refuses a directory before
/// writing anything, gives a symlink's target, and calls a missing root
/// damage.
#[test]
fn get_named_reads_a_version_by_name_and_says_what_it_cannot() {
    let (store, backend) = memory_store(256, WrapperKind::AesSiv);
    let (v1, v2) = (random_bytes(5000, 31), random_bytes(3000, 32));
    for content in [&v1, &v2] {
        store
            .put_named(&mut content.as_slice(), "docs/a", EntryKind::File)
            .expect("put");
    }
    let mut out = Vec::new();
    let newest = store.get_named("docs/a", None, &mut out).expect("newest");
    assert_eq!((newest.number, &out), (2, &v2));
    out.clear();
    let first = store.get_named("docs/a", Some(1), &mut out).expect("v1");
    assert_eq!((first.number, &out), (1, &v1));
    // What is not there is named.
    out.clear();
    match store.get_named("docs/b", None, &mut out) {
        Err(StoreError::NotFound(m)) => assert_eq!(m, "no content named \"docs/b\""),
        other => panic!("{other:?}"),
    }
    match store.get_named("docs/a", Some(7), &mut out) {
        Err(StoreError::NotFound(m)) => assert_eq!(m, "\"docs/a\" has no version 7"),
        other => panic!("{other:?}"),
    }
    // The name is taken whole: `docs/a@1` is not a version.
    assert!(matches!(
        store.get_named("docs/a@1", None, &mut out),
        Err(StoreError::NotFound(_))
    ));
    // A directory has no content: refused, nothing written.
    store
        .put_named(&mut &b""[..], "docs", EntryKind::Directory)
        .expect("dir");
    match store.get_named("docs", None, &mut out) {
        Err(e @ StoreError::IsDirectory(_)) => {
            assert!(e.to_string().contains("\"docs\" is a directory"), "{e}")
        }
        other => panic!("{other:?}"),
    }
    assert!(out.is_empty());
    // Nor is one put with a content: it could not be read back.
    let before = backend.usage().expect("usage");
    match store.put_named(&mut &b"x"[..], "docs2", EntryKind::Directory) {
        Err(e @ StoreError::IsDirectory(_)) => {
            let text = e.to_string();
            assert!(text.contains("\"docs2\" is put as a directory"), "{text}");
            assert!(text.contains("nothing was stored"), "{text}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(backend.usage().expect("usage"), before);
    assert!(store.lookup("docs2").expect("lookup").is_none());
    // A symlink gives its target, and says it is one.
    store
        .put_named(&mut &b"a"[..], "docs/link", EntryKind::Symlink)
        .expect("link");
    let link = store.get_named("docs/link", None, &mut out).expect("link");
    assert_eq!((link.kind, out.as_slice()), (EntryKind::Symlink, &b"a"[..]));
    // A gone name's newest version is not read, its numbered ones are.
    store.mark_gone(&["docs/a".to_owned()]).expect("gone");
    out.clear();
    match store.get_named("docs/a", None, &mut out) {
        Err(StoreError::NotFound(m)) => assert!(m.contains("is gone"), "{m}"),
        other => panic!("{other:?}"),
    }
    store.get_named("docs/a", Some(2), &mut out).expect("v2");
    assert_eq!(out, v2);
    // A name's root missing from the store is damage, not a wrong name.
    assert!(backend.remove_raw(first.content_ref.digest()));
    match store.get_named("docs/a", Some(1), &mut Vec::new()) {
        Err(StoreError::Integrity(m)) => assert!(
            m.starts_with("the root node of \"docs/a\" version 1 (") && m.contains("missing"),
            "{m}"
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_name_whose_content_is_gone_can_still_be_removed() {
    let (store, backend) = memory_store(256, WrapperKind::AesSiv);
    let content = random_bytes(20_000, 9);
    let (outcome, _) = store
        .put_named(&mut content.as_slice(), "a", EntryKind::File)
        .expect("put");
    let r = outcome.content_ref;
    // The root goes behind the store's back (damage, or an old build's
    // `rm REF`): the name no longer reads, but it can be removed.
    assert!(backend.remove_raw(r.digest()));
    assert!(store.get(&r).is_err());
    assert_eq!(store.remove_name("a", None).expect("removed"), 1);
    assert!(store.list("").expect("list").is_empty());
    // The nodes below keep the count their lost root gave them: `gc`
    // cannot tell them from the trees of puts without a name.
    assert!(store.verify().expect("verify").findings.is_empty());
}

/// Likewise a name whose content lost a node below its root, and the
/// content it shares nodes with keeps reading.
#[test]
fn a_name_whose_content_lost_an_inner_node_can_still_be_removed() {
    let (store, backend) = memory_store(256, WrapperKind::AesSiv);
    let content = random_bytes(20_000, 10);
    let (outcome, _) = store
        .put_named(&mut content.as_slice(), "a", EntryKind::File)
        .expect("put");
    let r = outcome.content_ref;
    let before: std::collections::HashSet<Vec<u8>> = backend.keys().into_iter().collect();
    let other = random_bytes(5_000, 11);
    let (kept, _) = store
        .put_named(&mut other.as_slice(), "b", EntryKind::File)
        .expect("put");
    let lost = before
        .iter()
        .find(|k| k.as_slice() != r.digest() && !seccs_store::catalog::is_catalog_key(k))
        .expect("a node below the root")
        .clone();
    assert!(backend.remove_raw(&lost));
    assert!(store.get(&r).is_err());
    assert_eq!(store.remove_name("a", None).expect("removed"), 1);
    assert_eq!(store.list("").expect("list").len(), 1);
    assert_eq!(store.get(&kept.content_ref).expect("b reads"), other);
    assert!(store.verify().expect("verify").findings.is_empty());
}

/// Puts `name` (one version of `content`) and makes its catalog record
/// fail to authenticate; returns the record's key.
fn put_with_bad_record(
    store: &seccs_store::Store,
    backend: &seccs_store::backend::MemoryBackend,
    name: &str,
    content: &[u8],
) -> Vec<u8> {
    let before = backend.keys();
    store
        .put_named(&mut &content[..], name, EntryKind::File)
        .expect("put");
    let record = backend
        .keys()
        .into_iter()
        .find(|k| seccs_store::catalog::is_catalog_key(k) && !before.contains(k))
        .expect("its record");
    let mut value = backend.get_raw(&record);
    value[20] ^= 1;
    backend.tamper(&record, value);
    record
}

/// The catalog record of `name`, which must be there.
fn record_of(store: &seccs_store::Store, name: &str) -> seccs_store::catalog::Record {
    store.lookup(name).expect("lookup").expect("kept")
}

/// A name whose record fails to authenticate, passed with others to a
/// command on many names, holds none of them up (it failed the whole batch
/// of 512): the others are removed or trimmed, and the command ends with
/// an error naming it and saying what was done. Removing it alone
/// says which name's record it is.
#[test]
fn a_bad_record_among_names_removed_holds_up_none_of_the_others() {
    let (store, backend) = memory_store(256, WrapperKind::AesSiv);
    for i in [0, 1, 3] {
        for v in 0..2u64 {
            store
                .put_named(
                    &mut random_bytes(3000, 50 + 2 * i + v).as_slice(),
                    &format!("n/{i}"),
                    EntryKind::File,
                )
                .expect("put");
        }
    }
    let bad = put_with_bad_record(&store, &backend, "n/2", b"the bad one's content");
    let names: Vec<String> = (0..4).map(|i| format!("n/{i}")).collect();

    match store.keep_newest(&names, 1) {
        Err(StoreError::DamagedRecords { done, names, .. }) => {
            assert_eq!(done, "removed 3 older versions of 3 names");
            assert_eq!(names, ["n/2"]);
        }
        other => panic!("{other:?}"),
    }
    for i in [0, 1, 3] {
        let record = record_of(&store, &format!("n/{i}"));
        assert_eq!(record.versions.len(), 1, "n/{i} was trimmed");
    }

    match store.remove_names(&names) {
        Err(StoreError::DamagedRecords { done, names, .. }) => {
            assert_eq!(done, "removed 3 of 4 names (3 versions)");
            assert_eq!(names, ["n/2"]);
        }
        other => panic!("{other:?}"),
    }
    let listing = store.list_readable("").expect("list");
    assert_eq!((listing.records.len(), listing.damaged), (0, 1));
    assert_eq!(backend.keys().iter().filter(|k| **k == bad).count(), 1);

    match store.remove_name("n/2", None) {
        Err(StoreError::Integrity(m)) => assert!(
            m.starts_with("the catalog record of \"n/2\" fails to authenticate"),
            "{m}"
        ),
        other => panic!("{other:?}"),
    }
    // gc removes it; its content stays, as a put without a name.
    assert_eq!(store.gc().expect("gc").records_removed.len(), 1);
    assert!(store.verify().expect("verify").is_clean());
}

/// Marking names gone (a put of their directory that no longer finds
/// their files) when one of their records fails to authenticate marks
/// none of them: the catalog's marks stay as they were, where they were
/// half made (every name but the bad one marked, and the put failed).
#[test]
fn a_bad_record_among_names_marked_gone_marks_none_of_them() {
    let (store, backend) = memory_store(256, WrapperKind::AesSiv);
    for i in [0, 1, 3] {
        store
            .put_named(
                &mut random_bytes(3000, 70 + i).as_slice(),
                &format!("n/{i}"),
                EntryKind::File,
            )
            .expect("put");
    }
    let bad = put_with_bad_record(&store, &backend, "n/2", b"the bad one's content");
    let names: Vec<String> = (0..4).map(|i| format!("n/{i}")).collect();
    match store.mark_gone(&names) {
        Err(e @ StoreError::DamagedRecords { .. }) => assert_eq!(
            e.to_string(),
            "marked none of 4 names gone; left 1 name(s) whose catalog record fails to \
             authenticate, so that their versions cannot be read (seccs gc removes such \
             records): \"n/2\""
        ),
        other => panic!("{other:?}"),
    }
    for i in [0, 1, 3] {
        let record = record_of(&store, &format!("n/{i}"));
        assert!(!record.is_gone(), "n/{i} was marked gone");
    }
    // With the bad record removed, every name is marked, once.
    assert_eq!(store.gc().expect("gc").records_removed.len(), 1);
    assert!(!backend.keys().contains(&bad));
    assert_eq!(store.mark_gone(&names).expect("marked"), 3);
    assert_eq!(store.mark_gone(&names).expect("marked already"), 0);
}

/// A memory backend that counts the bytes (keys and values) each batch
/// writes and the bytes of the values it is asked for, and whose writes
/// fail once `writes_left` reaches zero, or once a batch holds more
/// records than `records_left`, as a server that goes away part way
/// through a command.
struct Watched {
    inner: seccs_store::backend::MemoryBackend,
    writes_left: std::sync::atomic::AtomicUsize,
    records_left: std::sync::atomic::AtomicUsize,
    written: std::sync::atomic::AtomicU64,
    read: std::sync::atomic::AtomicU64,
    round_trips: std::sync::atomic::AtomicU64,
}

impl Watched {
    fn new() -> Self {
        Self {
            inner: seccs_store::backend::MemoryBackend::new(),
            writes_left: std::sync::atomic::AtomicUsize::new(usize::MAX),
            records_left: std::sync::atomic::AtomicUsize::new(usize::MAX),
            written: std::sync::atomic::AtomicU64::new(0),
            read: std::sync::atomic::AtomicU64::new(0),
            round_trips: std::sync::atomic::AtomicU64::new(0),
        }
    }
}

impl Backend for Watched {
    fn name(&self) -> &str {
        "failing"
    }
    fn get_many(
        &self,
        keys: &[&[u8]],
    ) -> Result<Vec<Option<seccs_store::backend::Entry>>, seccs_store::backend::BackendError> {
        self.round_trips
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let entries = self.inner.get_many(keys)?;
        let bytes: usize = entries.iter().flatten().map(|e| e.value.len()).sum();
        self.read
            .fetch_add(bytes as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(entries)
    }
    fn apply(
        &self,
        batch: &seccs_store::backend::Batch,
    ) -> Result<(), seccs_store::backend::BackendError> {
        use std::sync::atomic::Ordering;
        let left = self.writes_left.load(Ordering::SeqCst);
        let records_left = self.records_left.load(Ordering::SeqCst);
        if left == 0 || batch.len() > records_left {
            return Err(seccs_store::backend::BackendError::unavailable(
                "failing",
                "the server went away",
            ));
        }
        self.writes_left.store(left - 1, Ordering::SeqCst);
        self.records_left
            .store(records_left - batch.len(), Ordering::SeqCst);
        let bytes: usize = batch
            .ops()
            .iter()
            .map(|op| match op {
                seccs_store::backend::Op::Put { key, value, .. } => key.len() + value.len(),
                _ => 0,
            })
            .sum();
        self.written.fetch_add(bytes as u64, Ordering::Relaxed);
        self.inner.apply(batch)
    }
    fn is_transactional(&self) -> bool {
        true
    }
    fn walk(
        &self,
        prefix: &[u8],
        visit: &mut seccs_store::backend::Visitor<'_>,
        damaged: Option<&mut seccs_store::backend::Damaged<'_>>,
    ) -> Result<(), seccs_store::backend::BackendError> {
        self.inner.walk(prefix, visit, damaged)
    }
}

/// Removing many names stops at a failed batch and says what the batches
/// before it did; they stay done, and running the removal again finishes.
#[test]
fn a_removal_that_fails_part_way_says_what_it_did() {
    use std::sync::atomic::Ordering;
    let backend = std::sync::Arc::new(Watched::new());
    let params = seccs_store::Params::new(256, WrapperKind::AesSiv).expect("valid");
    let store = seccs_store::Store::new_unchecked(backend.clone(), params, &common::key(7));
    let names: Vec<String> = (0..1100).map(|i| format!("n/{i:04}")).collect();
    for (i, name) in names.iter().enumerate() {
        store
            .put_named(
                &mut random_bytes(100, 1000 + i as u64).as_slice(),
                name,
                EntryKind::File,
            )
            .expect("put");
    }
    // One batch (512 names) goes through, the second fails.
    backend.writes_left.store(1, Ordering::SeqCst);
    match store.remove_names(&names) {
        Err(e @ StoreError::PartlyDone { .. }) => {
            assert!(
                e.to_string()
                    .starts_with("removed 512 of 1100 names (512 versions) before it stopped"),
                "{e}"
            );
            let cause = std::error::Error::source(&e).map(ToString::to_string);
            assert_eq!(
                cause.as_deref(),
                Some("failing backend unavailable: the server went away")
            );
        }
        other => panic!("expected a removal done in part, got {other:?}"),
    }
    assert_eq!(store.list("n/").expect("list").len(), 1100 - 512);
    // Failing at the first batch did nothing, and says no more than why.
    backend.writes_left.store(0, Ordering::SeqCst);
    assert!(matches!(
        store.remove_names(&names),
        Err(StoreError::Backend(_))
    ));
    backend.writes_left.store(usize::MAX, Ordering::SeqCst);
    assert_eq!(store.remove_names(&names).expect("rm"), (588, 588));
    assert_eq!(store.usage().expect("usage").entries, 0);
}

/// Marking more names gone than one batch of reads holds (a put of a large
/// directory) is all or none also when the backend fails while it writes:
/// a server that goes away after 4,096 records leaves no name marked,
/// where marks written batch by batch left the first 4,096 marked and the
/// put failed.
#[test]
fn marking_many_names_gone_that_fails_while_it_writes_marks_none() {
    use std::sync::atomic::Ordering;
    let backend = std::sync::Arc::new(Watched::new());
    let params = seccs_store::Params::new(256, WrapperKind::AesSiv).expect("valid");
    let store = seccs_store::Store::new_unchecked(backend.clone(), params, &common::key(8));
    let names: Vec<String> = (0..4100).map(|i| format!("n/{i:04}")).collect();
    let content = random_bytes(100, 2000);
    for name in &names {
        store
            .put_named(&mut content.as_slice(), name, EntryKind::File)
            .expect("put");
    }
    backend.records_left.store(4096, Ordering::SeqCst);
    match store.mark_gone(&names) {
        Err(StoreError::Backend(e)) => {
            assert_eq!(
                e.to_string(),
                "failing backend unavailable: the server went away"
            )
        }
        other => panic!("expected the backend's failure, got {other:?}"),
    }
    let listing = store.list("n/").expect("list");
    assert_eq!(listing.len(), names.len());
    let marked = listing.iter().filter(|r| r.is_gone()).count();
    assert_eq!(
        marked, 0,
        "{marked} names were marked gone by a failed call"
    );
    backend.records_left.store(usize::MAX, Ordering::SeqCst);
    assert_eq!(store.mark_gone(&names).expect("marked"), names.len());
    assert!(
        store
            .list("n/")
            .expect("list")
            .iter()
            .all(seccs_store::catalog::Record::is_gone)
    );
}

/// A name put again and again: what a put writes and reads does not grow
/// with the versions the name already has. Its older versions sit in
/// pages written once, where a record holding every version was rewritten
/// whole by each put; and its newest version is in its head, which is all
/// a put reads, where a put read every page first.
#[test]
fn a_put_costs_no_more_at_version_300_than_at_version_70() {
    use std::sync::atomic::Ordering::Relaxed;
    let backend = std::sync::Arc::new(Watched::new());
    let params = seccs_store::Params::new(256, WrapperKind::AesSiv).expect("valid");
    let store = seccs_store::Store::new_unchecked(backend.clone(), params, &common::key(7));
    let (mut written, mut read) = (Vec::new(), Vec::new());
    for i in 1..=300u32 {
        let before = (backend.written.load(Relaxed), backend.read.load(Relaxed));
        let (_, number) = store
            .put_named(&mut i.to_string().as_bytes(), "log", EntryKind::File)
            .expect("put");
        assert_eq!(number, i);
        written.push(backend.written.load(Relaxed) - before.0);
        read.push(backend.read.load(Relaxed) - before.1);
    }
    let (at_70, at_300) = (written[69], written[299]);
    let most = written[69..].iter().max().copied().unwrap_or_default();
    assert!(
        at_300 <= 2 * at_70,
        "the put of version 300 wrote {at_300} bytes, of version 70 {at_70}"
    );
    assert!(
        most <= 3 * at_70,
        "a put after version 70 wrote {most} bytes, that of version 70 {at_70}"
    );
    let (at_70, at_300) = (read[69], read[299]);
    assert!(
        at_300 <= 2 * at_70,
        "the put of version 300 read {at_300} bytes, of version 70 {at_70}"
    );
    assert_eq!(numbers(&store, "log"), (1..=300).collect::<Vec<_>>());
    assert_clean(&store, "after 300 puts");
}

/// Marking names gone reads their records in two round trips however
/// many of them keep older versions in pages: the heads, then the pages
/// of them all, where each name with pages cost one more.
#[test]
fn marking_names_gone_reads_all_their_pages_at_once() {
    use std::sync::atomic::Ordering::Relaxed;
    let backend = std::sync::Arc::new(Watched::new());
    let params = seccs_store::Params::new(256, WrapperKind::AesSiv).expect("valid");
    let store = seccs_store::Store::new_unchecked(backend.clone(), params, &common::key(7));
    let mut names = Vec::new();
    for paged in ["a", "b", "c", "d"] {
        put_versions(&store, paged, 150);
        names.push(paged.to_owned());
    }
    for i in 0..20 {
        let name = format!("small/{i}");
        put_versions(&store, &name, 2);
        names.push(name);
    }
    let before = backend.round_trips.load(Relaxed);
    assert_eq!(store.mark_gone(&names).expect("mark"), names.len());
    let trips = backend.round_trips.load(Relaxed) - before;
    assert_eq!(trips, 2, "marking {} names gone", names.len());
    for paged in ["a", "b", "c", "d"] {
        assert_eq!(numbers(&store, paged), (1..=150).collect::<Vec<_>>());
        assert!(
            store
                .lookup(paged)
                .expect("lookup")
                .expect("kept")
                .is_gone()
        );
    }
    assert_clean(&store, "after marking");
}

/// Puts `n` versions of `name`, version `i` holding `"{name} {i}"`.
fn put_versions(store: &seccs_store::Store, name: &str, n: u32) {
    for i in 1..=n {
        let (_, number) = store
            .put_named(&mut format!("{name} {i}").as_bytes(), name, EntryKind::File)
            .expect("put");
        assert_eq!(number, i);
    }
}

fn numbers(store: &seccs_store::Store, name: &str) -> Vec<u32> {
    store
        .lookup(name)
        .expect("lookup")
        .map(|r| r.versions.iter().map(|v| v.number).collect())
        .unwrap_or_default()
}

fn assert_clean(store: &seccs_store::Store, when: &str) {
    let report = store.verify().expect("verify");
    assert!(report.is_clean(), "{when}: {report:?}");
}

/// Versions kept in pages read as those inline do, by number and by time,
/// and removing them (one in a page, a page's every version, all but the
/// newest few, the name) keeps every count exact, down to an empty store.
#[test]
fn versions_in_pages_read_and_remove_as_inline_ones_do() {
    let (store, backend) = memory_store(256, WrapperKind::AesSiv);
    put_versions(&store, "f", 150);
    put_versions(&store, "g", 3);
    // Pages of 32 move out when a head would hold more than 64: three.
    let stats = store.stats().expect("stats");
    assert_eq!((stats.names(), stats.pages.entries), (2, 3));
    assert_eq!(numbers(&store, "f"), (1..=150).collect::<Vec<_>>());
    for i in [1, 32, 33, 64, 65, 96, 97, 128, 129, 150] {
        let v = store.resolve(&format!("f@{i}")).expect("version");
        assert_eq!(v.number, i);
        assert_eq!(
            store.get(&v.content_ref).expect("get"),
            format!("f {i}").as_bytes()
        );
    }
    let record = store.lookup("f").expect("lookup").expect("there");
    let newest = record.versions.last().expect("versions").time;
    assert_eq!(record.at(newest).map(|v| v.number), Some(150));
    assert_eq!(record.at(newest.saturating_sub(1_000_000)), None);
    assert_clean(&store, "after the puts");
    // One version inside the oldest page.
    assert_eq!(store.remove_name("f", Some(5)).expect("rm f@5"), 1);
    assert!(store.resolve("f@5").is_err());
    assert_eq!(store.resolve("f@6").expect("f@6").number, 6);
    assert_clean(&store, "after rm f@5");
    // Every other version of that page: the page goes.
    for i in (1..=32).filter(|&i| i != 5) {
        store.remove_name("f", Some(i)).expect("rm");
    }
    assert_eq!(store.stats().expect("stats").pages.entries, 2);
    assert_eq!(numbers(&store, "f"), (33..=150).collect::<Vec<_>>());
    assert_clean(&store, "after removing a page's versions");
    // A new version after removals still reads, and so does every other.
    store
        .put_named(&mut &b"f 151"[..], "f", EntryKind::File)
        .expect("put");
    assert_eq!(numbers(&store, "f"), (33..=151).collect::<Vec<_>>());
    // rm --keep 10: every page goes with its versions.
    let f = vec!["f".to_string(), "g".to_string()];
    assert_eq!(store.keep_newest(&f, 10).expect("keep"), (1, 109));
    assert_eq!(numbers(&store, "f"), (142..=151).collect::<Vec<_>>());
    assert_eq!(store.stats().expect("stats").pages.entries, 0);
    assert_clean(&store, "after keep 10");
    // Put again past a page, then remove the name whole: nothing is left.
    put_versions(&store, "h", 100);
    assert_eq!(store.remove_name("h", None).expect("rm h"), 100);
    assert!(store.lookup("h").expect("lookup").is_none());
    assert_eq!(store.remove_names(&f).expect("rm"), (2, 13));
    assert_eq!(backend.usage().expect("usage").entries, 0);
}

/// Marking a name with pages gone and bringing it back rewrites its head
/// only; its versions stay whole.
#[test]
fn a_paged_name_goes_and_comes_back_whole() {
    let (store, _) = memory_store(256, WrapperKind::AesSiv);
    put_versions(&store, "d/f", 80);
    assert_eq!(store.mark_gone(&["d/f".to_string()]).expect("mark"), 1);
    let record = store.lookup("d/f").expect("lookup").expect("there");
    assert!(record.is_gone());
    assert_eq!(record.versions.len(), 80);
    assert_eq!(store.list("d/").expect("ls")[0].versions.len(), 80);
    store
        .put_named(&mut &b"d/f 80"[..], "d/f", EntryKind::File)
        .expect("put");
    let record = store.lookup("d/f").expect("lookup").expect("there");
    assert!(!record.is_gone());
    assert_eq!(record.versions.len(), 80);
    assert_clean(&store, "after gone and back");
}

/// A name whose inline versions were all removed has its newest version
/// in a page: a put that only settles that version's stamp rewrites the
/// page, and the version reads settled.
#[test]
fn the_newest_version_kept_in_a_page_is_updated_there() {
    let (store, _) = memory_store(256, WrapperKind::AesSiv);
    let stamp = |i: u32| FileStamp {
        mtime_s: i64::from(i),
        mtime_ns: 0,
        ctime_s: i64::from(i),
        ctime_ns: 0,
        inode: 7,
    };
    let put = |i: u32, s: Stamp| {
        store
            .put_named_stamped(
                &mut format!("e {i}").as_bytes(),
                "e",
                EntryKind::File,
                FileMeta {
                    stamp: Some(s),
                    ..FileMeta::default()
                },
            )
            .expect("put")
            .1
    };
    for i in 1..=70 {
        assert_eq!(put(i, Stamp::Recent(stamp(i))), i);
    }
    for i in 33..=70 {
        store.remove_name("e", Some(i)).expect("rm");
    }
    assert_eq!(numbers(&store, "e"), (1..=32).collect::<Vec<_>>());
    // The same file, its stamp settled since: no new version.
    assert_eq!(put(32, Stamp::Settled(stamp(32))), 32);
    let found = store
        .unchanged_since_stamp("e", EntryKind::File, 4, &stamp(32))
        .expect("lookup");
    assert_eq!(found.map(|v| v.number), Some(32));
    assert_eq!(numbers(&store, "e"), (1..=32).collect::<Vec<_>>());
    assert_clean(&store, "after the stamp settled");
}
