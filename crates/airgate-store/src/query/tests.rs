//! `trace` and `blame` over small histories, one question each.

use super::*;
use crate::{Part, Person};
use airgate_core::trust::{CommitTrust, Signer, TrustResult};

fn digest(n: u8) -> Digest {
    Digest::from_sha256(&[n; 32])
}

fn stored(seq: i64, record: SyncRecord) -> Stored {
    Stored {
        seq,
        prev_hash: String::new(),
        hash: String::new(),
        record,
    }
}

fn sync(app: &str, revision: &str, at: i64, images: &[String]) -> SyncRecord {
    SyncRecord {
        app: app.into(),
        kind: RecordKind::Sync,
        revision: revision.into(),
        author: Person {
            name: "Ada".into(),
            email: format!("{revision}@example.invalid"),
        },
        started_at: at,
        result: RecordResult::Succeeded,
        images: images.to_vec(),
        ..SyncRecord::default()
    }
}

fn change(object: &str, action: &str, fields: &[&str]) -> ObjectChange {
    ObjectChange {
        object: object.into(),
        action: action.into(),
        fields: fields.iter().map(|f| f.to_string()).collect(),
    }
}

#[test]
fn trace_finds_the_import_and_each_run_of_the_image_per_app() {
    let (a, b) = (digest(1), digest(2));
    let img = |d: &Digest| format!("registry.internal:5000/web@{d}");
    let import = SyncRecord {
        kind: RecordKind::Import,
        images: vec![img(&a)],
        ..SyncRecord::default()
    };
    let mut first = sync("shop/web", "r1", 10, &[img(&a)]);
    first.imported = vec![ImageImport {
        image: img(&a),
        import: digest(9),
        signed_by: None,
    }];
    let mut failed = sync("shop/web", "r2", 15, &[]);
    failed.result = RecordResult::Failed;
    // A split sync: its second part carries the image.
    let mut split1 = sync("stage/web", "s1", 12, &[]);
    split1.part = Some(Part { index: 1, of: 2 });
    let mut split2 = sync("stage/web", "s1", 12, &[img(&a)]);
    split2.part = Some(Part { index: 2, of: 2 });
    let records = [
        stored(1, import),
        stored(2, first),
        stored(3, split1),
        stored(4, split2),
        stored(5, failed),
        stored(6, sync("shop/web", "r3", 20, &[img(&b)])),
        stored(7, sync("shop/web", "r4", 30, &[img(&a)])),
    ];
    let t = trace(&records, &a);
    assert_eq!(t.imports.len(), 1);
    assert_eq!(t.imports[0].0, 1);
    let runs: Vec<(&str, i64, Option<i64>, Option<&Digest>)> = t
        .deployments
        .iter()
        .map(|d| {
            (
                d.app.as_str(),
                d.since.seq,
                d.until.as_ref().map(|u| u.seq),
                d.import.as_ref(),
            )
        })
        .collect();
    assert_eq!(
        runs,
        vec![
            ("shop/web", 2, Some(6), Some(&digest(9))),
            ("stage/web", 3, None, None),
            ("shop/web", 7, None, None),
        ]
    );
    assert!(trace(&records, &digest(3)).deployments.is_empty());
}

#[test]
fn blame_names_the_last_sync_that_set_the_field_and_drift_since() {
    let web = "Deployment/shop/web";
    let memory = ".spec.template.spec.containers[web].resources.limits.memory";
    let mut created = sync("shop/web", "r1", 10, &[]);
    created.objects = vec![change(web, "created", &[".metadata.labels", ".spec"])];
    let mut raised = sync("shop/web", "r2", 20, &[]);
    raised.objects = vec![change(web, "configured", &[memory])];
    raised.trust = vec![CommitTrust {
        commit: "r2".into(),
        tag: None,
        result: TrustResult::Good,
        signer: Some(Signer {
            principal: "lead@example.invalid".into(),
            key_type: "ssh-ed25519".into(),
            fingerprint: "SHA256:x".into(),
        }),
        committer: "lead@example.invalid".into(),
        detail: String::new(),
        trailers: [("Ticket".to_string(), vec!["OPS-7".to_string()])].into(),
    }];
    let mut scaled = sync("shop/web", "r3", 30, &[]);
    scaled.objects = vec![
        change(web, "configured", &[".spec.replicas"]),
        change("Service/shop/web", "configured", &[".spec.ports"]),
    ];
    let mut drifted = sync("shop/web", "r3", 40, &[]);
    drifted.kind = RecordKind::Drift;
    drifted.drift = vec![Drift {
        object: web.into(),
        field_manager: "kubectl-edit".into(),
        fields: vec![memory.into()],
        corrected: false,
    }];
    let records = [
        stored(1, created),
        stored(2, raised),
        stored(3, scaled),
        stored(4, drifted),
    ];
    // (field, seq of the setter, drift entries since)
    let cases: [(Option<&str>, Option<i64>, usize); 6] = [
        (Some(memory), Some(2), 1),
        (
            Some(".spec.template.spec.containers[web].resources"),
            Some(2),
            1,
        ),
        (Some(".spec.replicas"), Some(3), 0),
        (
            Some(".spec.template.spec.containers[web].image"),
            Some(1),
            0,
        ),
        (Some(".data"), None, 0),
        (None, Some(3), 1),
    ];
    for (field, want, drift) in cases {
        let b = blame(&records, web, field);
        assert_eq!(b.set_by.as_ref().map(|s| s.at.seq), want, "{field:?}");
        assert_eq!(b.drift_since.len(), drift, "{field:?}");
    }
    let b = blame(&records, web, Some(memory));
    let setter = b.set_by.as_ref();
    assert_eq!(
        setter.map(|s| s.signers.clone()),
        Some(vec!["lead@example.invalid".to_string()])
    );
    assert_eq!(setter.and_then(|s| s.ticket.as_deref()), Some("OPS-7"));
    assert_eq!(setter.map(|s| s.at.revision.as_str()), Some("r2"));
}

/// The index must answer as reading every record would, split records
/// included (the object in a later part, the signer in the first).
#[test]
fn the_index_answers_as_the_whole_log_would() -> Result<(), StoreError> {
    let mut store = Store::open(std::path::Path::new(":memory:"))?;
    let web = "Deployment/shop/web";
    let image = format!("registry.internal:5000/web@{}", digest(1));
    let mut big = sync("shop/web", "r1", 10, std::slice::from_ref(&image));
    big.message = "m".repeat(5000);
    big.objects = (0..3000)
        .map(|i| change(&format!("ConfigMap/shop/c{i:05}"), "created", &[".data"]))
        .collect();
    big.objects.push(change(web, "created", &[".spec"]));
    let mut other = sync("stage/web", "s1", 11, &[]);
    other.objects = vec![change("Deployment/stage/web", "created", &[".spec"])];
    // More later records than blame first reads (64), none of them
    // setting .spec.template: the first record must still be found.
    let later: Vec<SyncRecord> = (0..100)
        .map(|i| {
            let mut next = sync("shop/web", &format!("r{}", i + 2), 12 + i, &[]);
            next.objects = vec![change(web, "configured", &[".spec.replicas"])];
            next
        })
        .collect();
    store.append_all(&[big, other])?;
    store.append_all(&later)?;
    let all = store.all(None, None)?;
    assert!(all.len() > 3, "the first record was split");
    for field in [None, Some(".spec.replicas"), Some(".spec.template")] {
        let (from_index, whole) = (store.blame(web, field)?, blame(&all, web, field));
        assert_eq!(from_index.set_by, whole.set_by, "{field:?}");
        assert!(whole.set_by.is_some());
    }
    let (from_index, whole) = (store.trace(&digest(1))?, trace(&all, &digest(1)));
    assert_eq!(from_index.deployments, whole.deployments);
    assert_eq!(whole.deployments.len(), 1);
    let replaced_at = all
        .iter()
        .find(|s| s.record.revision == "r2")
        .map(|s| s.seq);
    assert_eq!(
        whole.deployments[0].until.as_ref().map(|u| u.seq),
        replaced_at
    );
    let first = store.blame(web, Some(".spec.template"))?;
    assert_eq!(first.set_by.map(|s| s.at.seq), Some(1));
    Ok(())
}
