//! Test images, made from nothing and put into a registry by an independent
//! tool (skopeo), so tests of airgate's transfer code never depend on it to
//! set up their own inputs. Layers are real tar archives with deterministic
//! content: the same seed and size give the same digest, which is how tests
//! make images that share layers.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};
use serde_json::json;
use sha2::{Digest as _, Sha256};

/// One layer: `size` bytes of pseudo-random content from `seed`.
#[derive(Clone, Copy, Debug)]
pub struct LayerSpec {
    pub seed: u64,
    pub size: usize,
}

/// What a seeded image is made of.
#[derive(Clone, Debug)]
pub struct ImageSpec {
    /// `os/arch`; one gives a plain manifest, more give an index.
    pub platforms: Vec<String>,
    /// Layers every platform shares, bottom first.
    pub layers: Vec<LayerSpec>,
}

impl ImageSpec {
    pub fn single(layers: &[LayerSpec]) -> ImageSpec {
        ImageSpec {
            platforms: vec!["linux/amd64".to_string()],
            layers: layers.to_vec(),
        }
    }

    pub fn multi(platforms: &[&str], layers: &[LayerSpec]) -> ImageSpec {
        ImageSpec {
            platforms: platforms.iter().map(|p| p.to_string()).collect(),
            layers: layers.to_vec(),
        }
    }
}

/// An image now in a registry.
#[derive(Clone, Debug)]
pub struct SeededImage {
    /// `registry/repository:tag`
    pub reference: String,
    /// Digest of the top manifest or index.
    pub digest: String,
    /// Every blob digest (manifests, configs, layers) of the image.
    pub blobs: Vec<String>,
    /// Bytes of all blobs.
    pub size: u64,
}

fn sha(bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(bytes))
}

/// Deterministic pseudo-random bytes (xorshift64*).
pub fn pseudo_random(seed: u64, size: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(size + 8);
    while out.len() < size {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(size);
    out
}

/// A tar archive holding one file of the layer's content.
pub fn layer_tar(layer: LayerSpec) -> Result<Vec<u8>> {
    let data = pseudo_random(layer.seed, layer.size);
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_ustar();
    header.set_size(data.len() as u64);
    header.set_mode(0o644);
    header.set_mtime(0);
    header.set_uid(0);
    header.set_gid(0);
    builder.append_data(
        &mut header,
        format!("data/{}-{}.bin", layer.seed, layer.size),
        data.as_slice(),
    )?;
    Ok(builder.into_inner()?)
}

struct Layout<'a> {
    dir: &'a Path,
    blobs: Vec<String>,
    size: u64,
}

impl Layout<'_> {
    fn put(&mut self, bytes: &[u8]) -> Result<(String, u64)> {
        let digest = sha(bytes);
        let path = self.dir.join("blobs/sha256").join(&digest[7..]);
        if !path.exists() {
            std::fs::write(&path, bytes)?;
        }
        if !self.blobs.contains(&digest) {
            self.blobs.push(digest.clone());
            self.size += bytes.len() as u64;
        }
        Ok((digest, bytes.len() as u64))
    }
}

/// Writes `spec` as an OCI image layout in `dir` with `tag`; returns the
/// top descriptor's digest, every blob, and their total size.
pub fn write_layout(dir: &Path, tag: &str, spec: &ImageSpec) -> Result<(String, Vec<String>, u64)> {
    std::fs::create_dir_all(dir.join("blobs/sha256"))?;
    let mut layout = Layout {
        dir,
        blobs: Vec::new(),
        size: 0,
    };
    let mut layers = Vec::new();
    for l in &spec.layers {
        let (digest, size) = layout.put(&layer_tar(*l)?)?;
        layers.push((digest, size));
    }
    let mut manifests = Vec::new();
    for platform in &spec.platforms {
        let (os, arch) = platform
            .split_once('/')
            .context("platform must be os/arch")?;
        let config = serde_json::to_vec(&json!({
            "architecture": arch, "os": os,
            "config": {"Labels": {"dev.airgate.test": tag}},
            "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|(d, _)| d).collect::<Vec<_>>()}
        }))?;
        let (config_digest, config_size) = layout.put(&config)?;
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config_size},
            "layers": layers.iter().map(|(d, s)| json!({
                "mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d, "size": s})).collect::<Vec<_>>()
        }))?;
        let (digest, size) = layout.put(&manifest)?;
        manifests.push((digest, size, os.to_string(), arch.to_string()));
    }
    let top = if manifests.len() == 1 {
        let (d, s, _, _) = &manifests[0];
        json!({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": d, "size": s})
    } else {
        let index = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": manifests.iter().map(|(d, s, os, arch)| json!({
                "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": d, "size": s,
                "platform": {"os": os, "architecture": arch}})).collect::<Vec<_>>()
        }))?;
        let (d, s) = layout.put(&index)?;
        json!({"mediaType": "application/vnd.oci.image.index.v1+json", "digest": d, "size": s})
    };
    let digest = top["digest"].as_str().unwrap_or_default().to_string();
    let mut top = top;
    top["annotations"] = json!({"org.opencontainers.image.ref.name": tag});
    // Several images may share one layout: keep the other tags.
    let index_path = dir.join("index.json");
    let mut entries: Vec<serde_json::Value> = match std::fs::read(&index_path) {
        Ok(bytes) => serde_json::from_slice::<serde_json::Value>(&bytes)?["manifests"]
            .as_array()
            .cloned()
            .unwrap_or_default(),
        Err(_) => Vec::new(),
    };
    entries.retain(|e| e["annotations"]["org.opencontainers.image.ref.name"] != tag);
    entries.push(top);
    std::fs::write(
        &index_path,
        serde_json::to_vec(&json!({"schemaVersion": 2, "manifests": entries}))?,
    )?;
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    Ok((digest, layout.blobs, layout.size))
}

/// Pushes `spec` to `registry/repository:tag` (plain HTTP) with skopeo,
/// digests preserved.
pub fn seed_image(
    registry: &str,
    repository: &str,
    tag: &str,
    spec: &ImageSpec,
) -> Result<SeededImage> {
    let dir = tempfile::tempdir()?;
    seed_image_via(dir.path(), registry, repository, tag, spec)
}

/// Like [`seed_image`], building the layout in `layout` (which may already
/// hold other images: blobs they share are written once).
pub fn seed_image_via(
    layout: &Path,
    registry: &str,
    repository: &str,
    tag: &str,
    spec: &ImageSpec,
) -> Result<SeededImage> {
    let (digest, blobs, size) = write_layout(layout, tag, spec)?;
    let reference = format!("{registry}/{repository}:{tag}");
    let out = Command::new("skopeo")
        .args([
            "copy",
            "--quiet",
            "--all",
            "--preserve-digests",
            "--dest-tls-verify=false",
        ])
        .arg(format!("oci:{}:{tag}", layout.display()))
        .arg(format!("docker://{reference}"))
        .output()
        .context("running skopeo (install it with dev/tools packages)")?;
    if !out.status.success() {
        bail!(
            "skopeo copy to {reference} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(SeededImage {
        reference,
        digest,
        blobs,
        size,
    })
}
