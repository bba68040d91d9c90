//! Provenance from bundle to pod, against the perimeter: a signed bundle is
//! pushed (its import left beside the image, the image signed for cosign,
//! which verifies it), an App deploys the image
//! under `requireImportedBy`, and the log answers where the image came
//! from and who set a field; an image that skipped the gate (copied in
//! with plain skopeo, then dressed up with another image's import) is
//! refused with nothing applied.

mod tenant;

use std::process::Command;

use airgate_core::ImageRef;
use airgate_core::oci::Descriptor;
use airgate_oci::auth::Credentials;
use airgate_oci::imports::{self, Artifact};
use airgate_oci::{RegistryClient, RegistryOptions};
use airgate_testkit::images::{ImageSpec, LayerSpec, seed_image};
use airgate_testkit::{run, unique_name};
use anyhow::{Context, Result, ensure};
use serde_json::{Value, json};
use tenant::*;

#[tokio::test]
async fn an_image_is_traced_from_its_bundle_to_the_app_and_one_that_skipped_the_gate_is_refused()
-> Result<()> {
    let _git = GIT.read().await;
    let t = Tenant::new("prov").await?;
    let (p, dir) = (&t.p, t.dir.path());
    let docker = dir.join("docker");
    std::fs::create_dir_all(&docker)?;
    std::fs::copy(
        p.docker_config()?.path().join("config.json"),
        docker.join("config.json"),
    )?;
    let ca = p.internal_registry_ca.display().to_string();
    let internal = p.internal_registry.clone();
    let base = unique_name("prov");
    let layer = |seed| ImageSpec::single(&[LayerSpec { seed, size: 20_000 }]);
    let web = seed_image(
        &p.upstream_registry,
        &format!("{base}/web"),
        "v1",
        &layer(301),
    )?;
    let rogue = seed_image(
        &p.upstream_registry,
        &format!("{base}/rogue"),
        "v1",
        &layer(302),
    )?;

    // Connected side: lock, bundle, sign. Inside: push.
    let manifests = dir.join("manifests");
    std::fs::create_dir_all(&manifests)?;
    std::fs::write(
        manifests.join("web.yaml"),
        deployment(&web.reference, None, false),
    )?;
    let (lock, key, bundle) = (dir.join("x.lock"), dir.join("bundle"), dir.join("b.tar"));
    run(airgate()
        .arg("lock")
        .arg(&manifests)
        .arg("--out")
        .arg(&lock))?;
    let made = airgate()
        .args(["key", "generate", "--out"])
        .arg(&key)
        .output()?;
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&made.stdout),
        String::from_utf8_lossy(&made.stderr)
    );
    let key_id = said
        .split("key id ")
        .nth(1)
        .and_then(|s| s.get(..71))
        .context("key generate names the key id")?
        .to_string();
    run(airgate()
        .args(["key", "generate", "--type", "cosign", "--out"])
        .arg(dir.join("images")))?;
    run(airgate()
        .args([
            "key",
            "generate",
            "--type",
            "note",
            "--name",
            "airgate-test",
            "--out",
        ])
        .arg(dir.join("log")))?;
    let log_repo = format!("{internal}/audit/{}", t.ns);
    run(airgate()
        .args(["bundle", "create", "--lock"])
        .arg(&lock)
        .arg("--out")
        .arg(&bundle)
        .arg("--sign-key")
        .arg(dir.join("bundle.key")))?;
    let pushed: Value = serde_json::from_str(&run(airgate()
        .env("DOCKER_CONFIG", &docker)
        .args(["bundle", "push"])
        .arg(&bundle)
        .args(["--to", &format!("{internal}/{}", t.ns), "--ca-file", &ca])
        .arg("--key")
        .arg(dir.join("bundle.pub"))
        .arg("--sign-images")
        .arg(dir.join("images.key"))
        .args(["--log-repository", &log_repo])
        .args(["-o", "json"]))?)?;
    let target = pushed["images"][0]["target"]
        .as_str()
        .context("the pushed image")?
        .to_string();
    let import_id = pushed["import"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert_eq!(pushed["import"]["signedBy"], json!(key_id), "{pushed}");
    assert!(target.ends_with(&web.digest), "{target}");
    // cosign, the real consumer, verifies the signature push made.
    let cosign_verify = |key: &str| {
        Command::new(&p.cosign)
            .args(["verify", "--insecure-ignore-tlog=true", "--key"])
            .arg(dir.join(key))
            .arg(&target)
            .env("DOCKER_CONFIG", &docker)
            .env("SSL_CERT_FILE", &p.internal_registry_ca)
            .output()
    };
    let good = cosign_verify("images.pub")?;
    ensure!(
        good.status.success(),
        "cosign verify: {}",
        String::from_utf8_lossy(&good.stderr)
    );
    let wrong = cosign_verify("bundle.pub")?;
    ensure!(
        !wrong.status.success(),
        "cosign verified with a key that did not sign"
    );

    // The rogue image goes in by plain skopeo: no import.
    let certs = tempfile::tempdir()?;
    std::fs::copy(&p.internal_registry_ca, certs.path().join("ca.crt"))?;
    let rogue_repo = format!("{}/rogue", t.ns);
    run(Command::new("skopeo")
        .args([
            "copy",
            "--quiet",
            "--all",
            "--preserve-digests",
            "--src-tls-verify=false",
        ])
        .arg("--dest-cert-dir")
        .arg(certs.path())
        .args([
            "--dest-creds",
            &format!(
                "{}:{}",
                p.internal_registry_user,
                p.internal_registry_password()?
            ),
        ])
        .arg(format!("docker://{}", rogue.reference))
        .arg(format!("docker://{internal}/{rogue_repo}:v1")))?;
    let rogue_target = format!("{internal}/{rogue_repo}:v1@{}", rogue.digest);

    // Someone with push access copies the web image's import onto the
    // rogue one: a signed inventory, by the right key, that does not list it.
    let client = RegistryClient::new(RegistryOptions {
        insecure: vec![],
        ca_files: vec![p.internal_registry_ca.clone()],
        credentials: Credentials::from_file(&docker.join("config.json"))?,
        attempts: 3,
        ..RegistryOptions::default()
    })?;
    let web_ref = ImageRef::parse(&target)?;
    let web_digest = web.digest.parse()?;
    let found = imports::find(&client, &internal, web_ref.repository(), &web_digest).await?;
    ensure!(
        found.len() == 1,
        "one import beside the pushed image: {found:?}"
    );
    let stolen = Artifact {
        statement: found[0].import.clone().into(),
        inventory: found[0].inventory.clone().into(),
        signature: found[0].signature.clone().map(Into::into),
    };
    let rogue_manifest = client
        .get_manifest(&internal, &rogue_repo, &rogue.digest)
        .await?;
    let subject = Descriptor {
        media_type: rogue_manifest.media_type.clone(),
        digest: rogue_manifest.digest.clone(),
        size: rogue_manifest.bytes.len() as u64,
        platform: None,
        annotations: None,
        artifact_type: None,
    };
    imports::attach(&client, &internal, &rogue_repo, &subject, &stolen).await?;

    // The App deploys the imported image under requireImportedBy.
    let policy = json!({"policy": {"allowedRegistries": [internal], "requireDigests": true,
                                   "requireImportedBy": [key_id]}});
    t.write("envs/prod/web.yaml", &deployment(&target, None, false))?;
    let first = t.push("web from bundle")?;
    let lease = format!("{}-lease", t.ns);
    let log_key = dir.join("log.key").display().to_string();
    let c = t
        .controller_traced(
            "c1",
            &lease,
            None,
            &[
                "--ca-file",
                &ca,
                "--log-key",
                &log_key,
                "--log-repository",
                &log_repo,
            ],
        )
        .await?;
    // An unsigned bundle's import is not recorded from the inbox: anyone
    // who may push there could have written it.
    let unsigned = dir.join("unsigned.tar");
    run(airgate()
        .args(["bundle", "create", "--lock"])
        .arg(&lock)
        .arg("--out")
        .arg(&unsigned))?;
    let left: Value = serde_json::from_str(&run(airgate()
        .env("DOCKER_CONFIG", &docker)
        .args(["bundle", "push"])
        .arg(&unsigned)
        .args([
            "--to",
            &format!("{internal}/{}-unsigned", t.ns),
            "--ca-file",
            &ca,
        ])
        .args(["--allow-unsigned", "--log-repository", &log_repo])
        .args(["-o", "json"]))?)?;
    let unsigned_id = left["import"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    // The import is in the log once pushed, before any App deploys it.
    let imports_logged = || -> Result<Vec<String>> {
        Ok(c.records("")?
            .into_iter()
            .filter_map(|r| r.import.map(|i| i.id.to_string()))
            .collect())
    };
    airgate_testkit::eventually(
        "the import recorded from the inbox",
        std::time::Duration::from_secs(30),
        || async {
            match imports_logged() {
                Ok(ids) if ids.contains(&import_id) => Ok(Some(())),
                Ok(ids) => Err(format!("{ids:?}: {}", c.log())),
                Err(e) => Err(e.to_string()),
            }
        },
    )
    .await?;
    t.create_app("shop", policy).await?;
    t.until("shop", "Ready", ready, &c).await?;
    t.write(
        "envs/prod/web.yaml",
        &deployment(&target, Some(("MODE", "fast")), false),
    )?;
    let second = t.push("web: MODE=fast")?;
    t.until(
        "shop",
        "the second commit applied",
        |a| applied(a).as_deref() == Some(&second),
        &c,
    )
    .await?;
    let records = c.records(&format!("{}/shop", t.ns))?;
    let synced = records
        .iter()
        .find(|r| r.revision == first)
        .context("the first sync's record")?;
    assert_eq!(
        synced.imported.first().map(|i| i.import.as_str()),
        Some(import_id.as_str()),
        "{synced:?}"
    );
    assert_eq!(synced.controller, "c1");
    let next = records
        .iter()
        .find(|r| r.revision == second)
        .context("the second sync's record")?;
    assert_eq!(next.from_revision.as_deref(), Some(first.as_str()));
    assert_eq!(
        imports_logged()?,
        std::slice::from_ref(&import_id),
        "recorded once"
    );
    assert!(!unsigned_id.is_empty());
    assert!(
        c.log().contains(&unsigned_id) && c.log().contains("was not signed"),
        "{}",
        c.log()
    );

    // Where did the running image come from?
    let store = c.data.join("records.db").display().to_string();
    let traced: Value = serde_json::from_str(&run(
        airgate().args(["audit", "trace", &target, "--store", &store, "-o", "json"])
    )?)?;
    let import = &traced["imports"][0][1]["import"];
    assert_eq!(import["signedBy"], json!(key_id), "{traced}");
    assert_eq!(import["id"], json!(import_id), "{traced}");
    let deployed = &traced["deployments"][0];
    assert_eq!(deployed["app"], json!(format!("{}/shop", t.ns)), "{traced}");
    assert_eq!(deployed["since"]["revision"], json!(first), "{traced}");
    assert_eq!(deployed["until"], Value::Null, "{traced}");

    // Who set the env, and the image?
    let blame = |field: &str| -> Result<Value> {
        Ok(serde_json::from_str(&run(airgate().args([
            "audit",
            "blame",
            &format!("Deployment/{}/web", t.ns),
            "--field",
            field,
            "--store",
            &store,
            "-o",
            "json",
        ]))?)?)
    };
    let env = blame(".spec.template.spec.containers[web].env")?;
    assert_eq!(env["setBy"]["at"]["revision"], json!(second), "{env}");
    let image = blame(".spec.template.spec.containers[web].image")?;
    assert_eq!(image["setBy"]["at"]["revision"], json!(first), "{image}");

    // The rogue image is refused, naming it; nothing is applied.
    t.write(
        "envs/prod/web.yaml",
        &deployment(&rogue_target, None, false),
    )?;
    t.push("web: an image that skipped the gate")?;
    let refused = t.until_reason("ImageNotImported", &c).await?;
    let said = ready_message(&refused);
    assert!(
        said.contains(&rogue_target) && said.contains("has no import") && said.contains(&key_id),
        "{said}"
    );
    let live = t.deployment("web").await?.context("web")?;
    assert_eq!(image_of(&live), target);
    Ok(())
}
