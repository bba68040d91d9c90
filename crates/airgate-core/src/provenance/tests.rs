//! Each way an attacker with push access to the registry could dress up an
//! import, and what `verify` and `choose` make of it.

use super::*;
use crate::signing::{private_key_pem, sign, signing_key_from_seed};

fn digest(n: u8) -> Digest {
    Digest::from_sha256(&[n; 32])
}

fn inventory(images: &[Digest], children: &[Digest]) -> Vec<u8> {
    let blobs: Vec<serde_json::Value> = children
        .iter()
        .map(|d| serde_json::json!({"digest": d, "size": 10, "mediaType": crate::oci::OCI_MANIFEST, "carried": true}))
        .collect();
    let images: Vec<serde_json::Value> = images
        .iter()
        .map(|d| serde_json::json!({"reference": "registry.example/app:1", "digest": d, "mediaType": crate::oci::OCI_INDEX, "size": 10}))
        .collect();
    serde_json::to_vec(&serde_json::json!({
        "apiVersion": crate::bundle::API_VERSION, "kind": crate::bundle::KIND,
        "createdBy": "airgate test", "images": images, "blobs": blobs, "layout": []
    }))
    .unwrap_or_default()
}

struct Case {
    seed: Option<u8>,
    inventory: Vec<u8>,
    import_images: Vec<Digest>,
}

fn evidence(case: &Case, tweak: impl Fn(&mut Import, &mut Evidence)) -> Evidence {
    let mut import = Import {
        inventory: Digest::of(&case.inventory),
        signed_by: None,
        public_key: None,
        target: "registry.internal:5000".into(),
        images: case
            .import_images
            .iter()
            .map(|d| ImportedImage {
                source: "registry.example/app:1".into(),
                target: format!("registry.internal:5000/app@{d}"),
                digest: d.clone(),
            })
            .collect(),
        user: "ops".into(),
        host: "gate-1".into(),
        pushed_at: 100,
        pushed_by: "airgate test".into(),
    };
    let mut ev = Evidence {
        inventory: case.inventory.clone(),
        ..Evidence::default()
    };
    if let Some(seed) = case.seed {
        let key = signing_key_from_seed([seed; 32]);
        import.signed_by = Some(signing::key_id(&key.verifying_key()));
        import.public_key = Some(STANDARD.encode(key.verifying_key().as_bytes()));
        ev.signature = serde_json::to_vec(&sign(&case.inventory, &key)).ok();
    }
    tweak(&mut import, &mut ev);
    ev.import = serde_json::to_vec(&import).unwrap_or_default();
    ev
}

#[test]
fn an_import_verifies_only_when_signed_inventory_key_and_image_all_hold() -> Result<(), String> {
    let image = digest(1);
    let child = digest(2);
    let other = digest(3);
    let signed = Case {
        seed: Some(7),
        inventory: inventory(std::slice::from_ref(&image), std::slice::from_ref(&child)),
        import_images: vec![image.clone(), child.clone()],
    };
    let stranger = signing_key_from_seed([9; 32]);
    type Tweak = Box<dyn Fn(&mut Import, &mut Evidence)>;
    let cases: Vec<(&str, &Digest, Tweak, Option<&str>)> = vec![
        ("as pushed", &image, Box::new(|_, _| {}), None),
        ("a manifest of the index", &child, Box::new(|_, _| {}), None),
        (
            "attached to an image the inventory does not list",
            &other,
            Box::new(|_, _| {}),
            Some("does not list"),
        ),
        (
            "an inventory edited after signing",
            &image,
            Box::new(|i, e| {
                e.inventory.push(b' ');
                i.inventory = Digest::of(&e.inventory);
            }),
            Some("signature"),
        ),
        (
            "another inventory than the one named",
            &image,
            Box::new(|_, e| e.inventory.push(b' ')),
            Some("not the one the import names"),
        ),
        (
            "a signer claimed whose key is not the one given",
            &image,
            Box::new(move |i, _| {
                i.public_key = Some(STANDARD.encode(stranger.verifying_key().as_bytes()))
            }),
            Some("claims signer"),
        ),
        (
            "a signer claimed, no signature",
            &image,
            Box::new(|_, e| e.signature = None),
            Some("no signature"),
        ),
        (
            "a signer claimed, no key",
            &image,
            Box::new(|i, _| i.public_key = None),
            Some("without its public key"),
        ),
    ];
    for (name, digest, tweak, want) in cases {
        let got = verify(&evidence(&signed, tweak), digest);
        match (want, got) {
            (None, Ok(v)) => assert_eq!(v.signed_by, signed_key(7), "{name}"),
            (Some(w), Err(e)) => assert!(e.to_string().contains(w), "{name}: {e}"),
            (want, got) => return Err(format!("{name}: wanted {want:?}, got {got:?}")),
        }
    }
    // A statement naming an image its signed inventory does not list is
    // refused whole (what the controller reads from the imports inbox).
    let padded = Case {
        seed: Some(7),
        inventory: inventory(std::slice::from_ref(&image), &[]),
        import_images: vec![image.clone(), other.clone()],
    };
    let whole = verify_statement(&evidence(&padded, |_, _| {}));
    assert_eq!(whole.err(), Some(ProvenanceError::Unlisted(other.clone())));
    assert!(verify_statement(&evidence(&signed, |_, _| {})).is_ok());
    // The key a bundle is signed with is also a PEM file; the id is the same.
    let pem = private_key_pem(&signing_key_from_seed([7; 32])).map_err(|e| e.to_string())?;
    let parsed = signing::parse_private_key(&pem).map_err(|e| e.to_string())?;
    assert_eq!(
        Some(signing::key_id(&parsed.verifying_key())),
        signed_key(7)
    );
    Ok(())
}

fn signed_key(seed: u8) -> Option<Digest> {
    Some(signing::key_id(
        &signing_key_from_seed([seed; 32]).verifying_key(),
    ))
}

#[test]
fn require_imported_by_names_the_image_and_prefers_the_required_signer() -> Result<(), String> {
    let image = digest(1);
    let verified = |seed: Option<u8>, at: i64| -> Result<VerifiedImport, String> {
        let case = Case {
            seed,
            inventory: inventory(std::slice::from_ref(&image), &[]),
            import_images: vec![image.clone()],
        };
        verify(&evidence(&case, |i, _| i.pushed_at = at), &image).map_err(|e| e.to_string())
    };
    let (by7, by8, unsigned) = (
        verified(Some(7), 20)?,
        verified(Some(8), 10)?,
        verified(None, 5)?,
    );
    let k7 = signed_key(7).ok_or("key")?;
    let all = [unsigned.clone(), by8.clone(), by7.clone()];
    // (required, imports, chosen, refusal contains)
    type Row<'a> = (
        Vec<Digest>,
        Vec<VerifiedImport>,
        Option<&'a VerifiedImport>,
        Option<&'a str>,
    );
    let cases: Vec<Row> = vec![
        (vec![], vec![], None, None),
        (vec![], all.to_vec(), Some(&by8), None),
        (vec![], vec![unsigned.clone()], Some(&unsigned), None),
        (vec![k7.clone()], all.to_vec(), Some(&by7), None),
        (vec![k7.clone()], vec![], None, Some("has no import")),
        (
            vec![k7.clone()],
            vec![by8.clone(), unsigned.clone()],
            None,
            Some("other keys"),
        ),
    ];
    for (required, imports, want, refusal) in cases {
        match (
            choose(&required, "registry.internal:5000/app@x", &imports),
            refusal,
        ) {
            (Ok(got), None) => assert_eq!(got, want),
            (Err(e), Some(w)) => {
                assert!(
                    e.contains(w) && e.contains("registry.internal:5000/app@x"),
                    "{e}"
                )
            }
            (got, _) => return Err(format!("{required:?}: {got:?}")),
        }
    }
    Ok(())
}
