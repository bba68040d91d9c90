//! What the transfer tests share: a perimeter, a scratch directory, a Docker
//! config for the internal registry, and helpers to run airgate and make
//! bundles. Each test binary uses part of it.
#![allow(dead_code)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::RwLock;

use airgate_testkit::Perimeter;
use airgate_testkit::images::{ImageSpec, LayerSpec, SeededImage, seed_image};
use anyhow::{Context, Result, bail};
use sha2::{Digest as _, Sha256};

/// The registry-restart test takes this for writing; every other test for
/// reading, so none of them sees the internal registry go away.
pub static REGISTRY: RwLock<()> = RwLock::new(());

pub struct Env {
    pub p: Perimeter,
    pub docker_config: tempfile::TempDir,
    pub dir: tempfile::TempDir,
}

impl Env {
    pub fn new() -> Result<Env> {
        let p = Perimeter::get();
        Ok(Env {
            docker_config: p.docker_config()?,
            dir: tempfile::tempdir()?,
            p,
        })
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_airgate"));
        c.args(args).env("DOCKER_CONFIG", self.docker_config.path());
        c
    }

    pub fn airgate(&self, args: &[&str]) -> Result<Output> {
        self.cmd(args).output().context("running airgate")
    }

    /// Writes a Deployment using `images` and locks it.
    pub fn lock(&self, name: &str, images: &[&str]) -> Result<PathBuf> {
        let manifests = self.path(&format!("{name}-manifests"));
        std::fs::create_dir_all(&manifests)?;
        let containers: String = images
            .iter()
            .enumerate()
            .map(|(i, image)| format!("      - {{name: c{i}, image: \"{image}\"}}\n"))
            .collect();
        std::fs::write(
            manifests.join("app.yaml"),
            format!(
                "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: app}}\nspec:\n  template:\n    spec:\n      containers:\n{containers}"
            ),
        )?;
        let lock = self.path(&format!("{name}.lock"));
        ok(self.airgate(&["lock", &s(&manifests), "--out", &s(&lock)])?)?;
        Ok(lock)
    }

    pub fn key(&self, name: &str) -> Result<(String, String)> {
        let prefix = self.path(name);
        ok(self.airgate(&["key", "generate", "--out", &s(&prefix)])?)?;
        Ok((format!("{}.key", s(&prefix)), format!("{}.pub", s(&prefix))))
    }

    pub fn bundle(
        &self,
        name: &str,
        lock: &Path,
        sign_key: Option<&str>,
        extra: &[&str],
    ) -> Result<PathBuf> {
        let bundle = self.path(&format!("{name}.tar"));
        let mut args = vec!["bundle", "create", "--lock"];
        let lock = s(lock);
        let out = s(&bundle);
        args.extend([lock.as_str(), "--out", out.as_str()]);
        if let Some(k) = sign_key {
            args.extend(["--sign-key", k]);
        }
        args.extend(extra);
        ok(self.airgate(&args)?)?;
        Ok(bundle)
    }

    pub fn push_args<'a>(&'a self, bundle: &'a str, to: &'a str, key: &'a str) -> Vec<&'a str> {
        vec![
            "bundle",
            "push",
            bundle,
            "--to",
            to,
            "--key",
            key,
            "--ca-file",
            self.p.internal_registry_ca.to_str().unwrap_or_default(),
        ]
    }

    /// `prefix/<source registry>/<repository of reference>` in the internal
    /// registry: the default, by-registry layout.
    pub fn internal_repo(&self, prefix: &str, reference: &str) -> String {
        let (registry, without_registry) = reference.split_once('/').unwrap_or(("", reference));
        let repo = without_registry
            .rsplit_once(':')
            .map_or(without_registry, |(r, _)| r);
        format!("{prefix}/{}/{repo}", registry.replace(':', "_"))
    }

    pub fn internal_digest(&self, repo: &str, reference: &str) -> Result<Option<String>> {
        Ok(self
            .p
            .internal_manifest(repo, reference)?
            .map(|b| format!("sha256:{:x}", Sha256::digest(&b))))
    }
}

pub fn s(p: &Path) -> String {
    p.display().to_string()
}

pub fn ok(out: Output) -> Result<String> {
    if !out.status.success() {
        bail!(
            "airgate failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The command must fail; returns its stderr.
pub fn fails(out: Output) -> Result<String> {
    if out.status.success() {
        bail!(
            "airgate succeeded but should have failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stderr).into_owned())
}

pub fn layer(seed: u64, size: usize) -> LayerSpec {
    LayerSpec { seed, size }
}

pub fn read_lock() -> std::sync::RwLockReadGuard<'static, ()> {
    REGISTRY.read().unwrap_or_else(|e| e.into_inner())
}

/// The entries of a tar: (path, data).
pub type Entries = Vec<(String, Vec<u8>)>;

pub fn tar_entries(path: &Path) -> Result<Entries> {
    let mut archive = tar::Archive::new(std::fs::File::open(path)?);
    let mut out = Vec::new();
    for e in archive.entries()? {
        let mut e = e?;
        let name = String::from_utf8_lossy(&e.path_bytes()).into_owned();
        let mut data = Vec::new();
        e.read_to_end(&mut data)?;
        out.push((name, data));
    }
    Ok(out)
}

/// Writes a tar with any entry names at all (tar::Builder refuses the
/// dangerous ones these tests need), in the header dialect airgate writes.
pub fn write_raw_tar(path: &Path, entries: &[(String, Vec<u8>)]) -> Result<()> {
    let mut out = Vec::new();
    for (name, data) in entries {
        let h = airgate_core::archive::header(name, data.len() as u64)?;
        out.extend_from_slice(&h);
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.resize(out.len() + 1024, 0);
    std::fs::write(path, out)?;
    Ok(())
}

/// A small signed bundle and its keys, for the tamper cases.
pub fn small_bundle(env: &Env, base: &str) -> Result<(SeededImage, PathBuf, String, String)> {
    let image = seed_image(
        &env.p.upstream_registry,
        &format!("{base}/app"),
        "v1",
        &ImageSpec::single(&[layer(200, 100_000), layer(201, 20_000)]),
    )?;
    let lock = env.lock(base, &[&image.reference])?;
    let (key, public) = env.key(&format!("{base}-key"))?;
    let bundle = env.bundle(base, &lock, Some(&key), &[])?;
    Ok((image, bundle, key, public))
}
