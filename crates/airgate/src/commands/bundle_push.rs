//! `airgate bundle push`: verify, then bundle to registry.

use std::process::ExitCode;
use std::time::Instant;

use airgate_core::Digest;
use airgate_core::provenance::{Import, ImportedImage};
use airgate_core::signing;
use airgate_oci::RegistryClient;
use airgate_oci::bundle::{Trust, Verified};
use airgate_oci::files::RepoFiles;
use airgate_oci::imports::{self, Artifact};
use airgate_oci::push::{self, PushRequest, PushSummary, Target};
use anyhow::{Context as _, Result, anyhow};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::cli::{BundlePushArgs, Output};
use crate::commands::bundle_verify;
use crate::{progress_bar, registry_options};

pub fn run(args: BundlePushArgs) -> Result<ExitCode> {
    let started = Instant::now();
    let target = Target::parse(&args.to, args.layout.into(), args.namespace_single.clone())
        .map_err(|e| anyhow!(e))?;
    if args.bundle.as_os_str() == "-" {
        anyhow::bail!(
            "bundle push needs the bundle as a file: it reads blobs by offset\nhint: save the stream first, or check it as it arrives with `airgate bundle verify -`"
        );
    }
    if args.chunk_size == 0 {
        anyhow::bail!("--chunk-size must be at least 1 MiB");
    }
    let mut options = registry_options::options(&args.registry)?;
    if args.insecure_http {
        options.insecure.push(target.registry.clone());
    }
    let client = RegistryClient::new(options)?;
    let image_key = match &args.sign_images {
        Some(path) => Some(super::key::read_private(path).with_context(|| {
            "--sign-images: not a private key\nhint: airgate key generate --type cosign --out PREFIX"
        })?),
        None => None,
    };
    // Verify the whole bundle before a single byte goes to the registry.
    let trust = bundle_verify::trust(&args.trust)?;
    let verified =
        bundle_verify::verify_with_progress(&args.bundle, &trust, bundle_verify::Pass::Parallel)?;
    let verified_in = started.elapsed();
    let request = PushRequest {
        bundle: &args.bundle,
        verified: &verified,
        target: &target,
        jobs: args.jobs,
        chunk_size: args.chunk_size << 20,
    };
    let (progress, bar) = progress_bar::bytes("push");
    let result = crate::block_on(async { Ok(push::push(&client, &request, &progress).await?) });
    progress_bar::finish(bar);
    let summary = result?;
    let (artifact, statement) = import_artifact(&args, &verified, &trust, &summary)?;
    let (import, signatures) = crate::block_on(after_push(
        &args,
        &client,
        &target.registry,
        &summary,
        (&artifact, &statement),
        image_key.as_ref(),
    ))?;
    match args.format {
        Output::Json => {
            let mut json = serde_json::to_value(&summary)?;
            json["import"] = serde_json::to_value(&import)?;
            json["signatures"] = serde_json::to_value(&signatures)?;
            crate::out!("{}", serde_json::to_string_pretty(&json)?)?
        }
        Output::Text => {
            for i in &summary.images {
                crate::out!("{} -> {}", i.source, i.target)?;
            }
        }
    }
    eprintln!(
        "pushed {} images to {}: {} blobs uploaded, {} already there, {} mounted; {} manifests, {} tags; {} (verify {:.1}s)",
        summary.images.len(),
        args.to,
        summary.blobs_uploaded,
        summary.blobs_present,
        summary.blobs_mounted,
        summary.manifests,
        summary.tags,
        progress_bar::rate(summary.bytes_uploaded, started.elapsed()),
        verified_in.as_secs_f64(),
    );
    report_import(&import, &signatures, image_key.as_ref());
    Ok(ExitCode::SUCCESS)
}

/// One image signed in cosign's format, and where the signature is.
#[derive(Debug, serde::Serialize)]
struct Signed {
    image: String,
    signature: String,
}

/// The import statement and the signed inventory `push` leaves beside
/// every image (see `airgate_core::provenance`).
fn import_artifact(
    args: &BundlePushArgs,
    verified: &Verified,
    trust: &Trust,
    summary: &PushSummary,
) -> Result<(Artifact, Import)> {
    let key = match (trust, &verified.signed_by) {
        (Trust::Key(k), Some(_)) => Some(k),
        _ => None,
    };
    let statement = Import {
        inventory: verified.inventory_digest.clone(),
        signed_by: key.map(signing::key_id),
        public_key: key.map(|k| STANDARD.encode(k.as_bytes())),
        target: args.to.clone(),
        images: summary
            .images
            .iter()
            .filter(|i| !i.is_referrer)
            .map(|i| ImportedImage {
                source: i.source.clone(),
                target: i.target.clone(),
                digest: i.manifest.digest.clone(),
            })
            .collect(),
        user: ["USER", "LOGNAME"]
            .iter()
            .find_map(|v| std::env::var(v).ok().filter(|u| !u.is_empty()))
            .unwrap_or_else(|| "unknown".into()),
        host: std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .ok()
            .filter(|h| !h.is_empty())
            .or_else(|| std::env::var("HOSTNAME").ok())
            .unwrap_or_else(|| "unknown".into()),
        pushed_at: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64),
        pushed_by: format!("airgate {}", env!("CARGO_PKG_VERSION")),
    };
    let artifact = Artifact {
        statement: serde_json::to_vec(&statement)?.into(),
        inventory: verified.inventory_bytes.clone(),
        signature: match (key, &verified.signature) {
            (Some(_), Some(sig)) => Some(serde_json::to_vec(sig)?.into()),
            _ => None,
        },
    };
    Ok((artifact, statement))
}

/// What `push` says of the import it recorded.
#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct ImportSummary {
    id: Digest,
    signed_by: Option<Digest>,
    /// Images the import artifact was attached to.
    attached: usize,
}

/// After the push: the import beside every image (and, with
/// `--log-repository`, in the log's inbox), then the images' cosign
/// signatures with `--sign-images`.
async fn after_push(
    args: &BundlePushArgs,
    client: &RegistryClient,
    registry: &str,
    summary: &PushSummary,
    (artifact, statement): (&Artifact, &Import),
    image_key: Option<&ed25519_dalek::SigningKey>,
) -> Result<(ImportSummary, Vec<Signed>)> {
    let pushed = || summary.images.iter().filter(|i| !i.is_referrer);
    let mut attached = 0;
    for image in pushed() {
        imports::attach(
            client,
            registry,
            &image.repository,
            &image.manifest,
            artifact,
        )
        .await?;
        attached += 1;
    }
    let import = ImportSummary {
        id: Digest::of(&artifact.statement),
        signed_by: statement.signed_by.clone(),
        attached,
    };
    if let Some(location) = &args.log_repository {
        let inbox = RepoFiles::new(client.clone(), location)?.beside(imports::INBOX);
        imports::leave(&inbox, artifact).await?;
        eprintln!(
            "import {} left in {} for the audit log",
            import.id,
            inbox.location()
        );
    }
    let mut signatures = Vec::new();
    if let Some(key) = image_key {
        for image in pushed() {
            let digest = &image.manifest.digest;
            let sig =
                airgate_oci::cosign::sign(client, registry, &image.repository, digest, key).await?;
            signatures.push(Signed {
                image: image.target.clone(),
                signature: format!("{registry}/{}@{sig}", image.repository),
            });
        }
    }
    Ok((import, signatures))
}

fn report_import(
    import: &ImportSummary,
    signatures: &[Signed],
    image_key: Option<&ed25519_dalek::SigningKey>,
) {
    eprintln!(
        "import {} recorded beside {} images (signed by {})",
        import.id,
        import.attached,
        import
            .signed_by
            .as_ref()
            .map_or("nobody: the bundle was not verified with a key", |k| k
                .as_str()),
    );
    if let Some(key) = image_key {
        eprintln!(
            "signed {} images for cosign (key id {}); check with: cosign verify --key PREFIX.pub --insecure-ignore-tlog=true IMAGE",
            signatures.len(),
            signing::key_id(&key.verifying_key())
        );
    }
}
