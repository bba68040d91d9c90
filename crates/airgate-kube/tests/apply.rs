//! Staged server-side apply against the perimeter's kube-apiserver: change
//! sets, all-or-nothing dry-runs, CRDs before their objects, and apply under
//! a ServiceAccount's identity.

use airgate_core::object::ObjectRef;
use airgate_core::ownership::AppId;
use airgate_kube::{Action, Applier, ApplyError};
use airgate_testkit::{Perimeter, unique_name};
use anyhow::{Result, bail};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use serde_json::{Value, json};

fn objects(list: &[Value]) -> Vec<(String, Value)> {
    list.iter()
        .enumerate()
        .map(|(i, v)| (format!("test object {i}"), v.clone()))
        .collect()
}

fn namespace(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
}

/// A Deployment of `replicas` pods with the pod spec `pod`, selected by
/// `app: NAME`.
fn deployment(ns: &str, name: &str, replicas: u32, pod: Value) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": ns},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}}, "spec": pod}}})
}

fn config_map(ns: &str, name: &str, value: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": ns}, "data": {"k": value}})
}

#[tokio::test]
async fn applies_in_stages_and_reports_what_changed() -> Result<()> {
    let p = Perimeter::get();
    let client = p.kube_client().await?;
    let ns = unique_name("apply");
    let crd_group = format!("{ns}.airgate.test");
    let crd = json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("widgets.{crd_group}")},
        "spec": {"group": crd_group, "scope": "Namespaced",
                 "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
                 "versions": [{"name": "v1", "served": true, "storage": true,
                               "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}});
    let widget = json!({"apiVersion": format!("{crd_group}/v1"), "kind": "Widget",
                        "metadata": {"name": "w", "namespace": ns}, "spec": {"size": 3}});
    // Deliberately out of order: the stages sort it.
    let set = objects(&[
        widget.clone(),
        config_map(&ns, "settings", "a"),
        crd.clone(),
        namespace(&ns),
    ]);
    let applier = Applier::new(client.clone(), "airgate", "default");
    let first = applier.apply(&set).await?;
    let kinds: Vec<&str> = first
        .changes
        .iter()
        .map(|c| c.object.kind.as_str())
        .collect();
    assert_eq!(
        kinds,
        [
            "CustomResourceDefinition",
            "Namespace",
            "Widget",
            "ConfigMap"
        ]
    );
    assert_eq!(first.count(Action::Created), 4, "{first:?}");

    let again = applier.apply(&set).await?;
    assert_eq!(again.count(Action::Unchanged), 4, "{again:?}");

    let changed = objects(&[
        widget,
        config_map(&ns, "settings", "b"),
        crd,
        namespace(&ns),
    ]);
    let third = applier.apply(&changed).await?;
    assert_eq!(third.count(Action::Configured), 1, "{third:?}");
    assert_eq!(third.count(Action::Unchanged), 3, "{third:?}");
    Ok(())
}

#[tokio::test]
async fn one_invalid_object_means_nothing_is_applied() -> Result<()> {
    let p = Perimeter::get();
    let client = p.kube_client().await?;
    let ns = unique_name("invalid");
    Applier::new(client.clone(), "airgate", "default")
        .apply(&objects(&[namespace(&ns)]))
        .await?;
    let bad = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": ns},
                     "spec": {"replicas": "two", "selector": {"matchLabels": {"a": "b"}},
                              "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "x"}]}}}});
    let set = objects(&[config_map(&ns, "settings", "a"), bad]);
    match Applier::new(client.clone(), "airgate", "default")
        .apply(&set)
        .await
    {
        Err(ApplyError::DryRun { object, .. }) => {
            assert_eq!(object, format!("Deployment/{ns}/web"))
        }
        other => bail!("expected a dry-run failure, got {other:?}"),
    }
    let cms: Api<ConfigMap> = Api::namespaced(client, &ns);
    assert!(
        cms.get_opt("settings").await?.is_none(),
        "the valid object was applied anyway"
    );
    Ok(())
}

#[tokio::test]
async fn applies_as_the_service_account_and_is_refused_outside_its_rights() -> Result<()> {
    let p = Perimeter::get();
    let admin = p.kube_client().await?;
    let own = unique_name("sa-own");
    let other = unique_name("sa-other");
    let setup = objects(&[
        namespace(&own),
        namespace(&other),
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "deployer", "namespace": own}}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "cm", "namespace": own},
               "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]}]}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "cm", "namespace": own},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "cm"},
               "subjects": [{"kind": "ServiceAccount", "name": "deployer", "namespace": own}]}),
    ]);
    Applier::new(admin.clone(), "airgate", "default")
        .apply(&setup)
        .await?;

    let config = p.kube_config().await?;
    let deployer = Applier::impersonating(&config, &own, "deployer", "airgate")?;
    // Without a namespace, objects go to the account's own.
    let mut unplaced = config_map(&own, "settings", "a");
    if let Some(meta) = unplaced.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("namespace");
    }
    let mut ok = None;
    for _ in 0..40 {
        match deployer.apply(&objects(&[unplaced.clone()])).await {
            Ok(c) => {
                ok = Some(c);
                break;
            }
            // RBAC takes a moment to see the new binding.
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(250)).await,
        }
    }
    let changes =
        ok.ok_or_else(|| anyhow::anyhow!("the deployer never could apply in its own namespace"))?;
    assert_eq!(
        changes.changes[0].object.to_string(),
        format!("ConfigMap/{own}/settings")
    );

    let set = objects(&[
        config_map(&own, "second", "a"),
        config_map(&other, "settings", "a"),
    ]);
    match deployer.apply(&set).await {
        Err(ApplyError::DryRun {
            object, message, ..
        }) => {
            assert_eq!(object, format!("ConfigMap/{other}/settings"));
            assert!(
                message.contains("forbidden")
                    && message.contains(&format!("system:serviceaccount:{own}:deployer")),
                "{message}"
            );
        }
        other => bail!("expected the deployer to be refused, got {other:?}"),
    }
    let cms: Api<ConfigMap> = Api::namespaced(admin, &own);
    assert!(
        cms.get_opt("second").await?.is_none(),
        "part of a refused set was applied"
    );
    Ok(())
}

#[tokio::test]
async fn health_follows_the_rollout_and_prune_deletes_only_what_left_unless_opted_out() -> Result<()>
{
    use airgate_core::health::Health;
    use airgate_core::inventory::Inventory;
    use airgate_core::object::ObjectRef;

    let p = Perimeter::get();
    let client = p.kube_client().await?;
    let ns = unique_name("prune");
    let deployment = deployment(
        &ns,
        "web",
        2,
        json!({"containers": [{"name": "web", "image": "registry.internal/web:1"}]}),
    );
    let mut kept = config_map(&ns, "kept", "a");
    kept["metadata"]["annotations"] = json!({"airgate.dev/prune": "disabled"});
    let mut helm_kept = config_map(&ns, "helm-kept", "a");
    helm_kept["metadata"]["annotations"] = json!({"helm.sh/resource-policy": "keep"});
    let first = objects(&[
        namespace(&ns),
        deployment,
        config_map(&ns, "old", "a"),
        kept,
        helm_kept,
    ]);
    let applier = Applier::new(client.clone(), "airgate", "default");
    let applied = applier.apply(&first).await?;

    let web = applied
        .changes
        .iter()
        .find(|c| c.object.kind == "Deployment")
        .map(|c| c.object.clone());
    let web = web.ok_or_else(|| anyhow::anyhow!("no deployment in {applied:?}"))?;
    // The apply's own answers: a new Deployment is on its way, the rest is
    // Ready at once (and need not be read again).
    for c in &applied.changes {
        let expected = if c.object.kind == "Deployment" {
            Health::Progressing("generation 1 not yet observed".into())
        } else {
            Health::Ready
        };
        assert_eq!(c.health.as_ref(), Some(&expected), "{}", c.object);
    }
    let mut health = applier.health(&web).await?;
    for _ in 0..240 {
        if health == Health::Ready {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        health = applier.health(&web).await?;
    }
    assert_eq!(health, Health::Ready);

    // The next revision drops both ConfigMaps: one is pruned, the opted-out one stays.
    let old_inventory = Inventory::new(applied.changes.iter().map(|c| c.object.clone()));
    let second = applier.apply(&objects(&[namespace(&ns)])).await?;
    let new_inventory =
        Inventory::new(second.changes.iter().map(|c| c.object.clone()).chain([web]));
    let stale: Vec<ObjectRef> = old_inventory.stale(&new_inventory);
    let pruned = applier.prune(&stale, &Default::default()).await?;
    let summary: Vec<String> = pruned
        .changes
        .iter()
        .map(|c| format!("{} {:?}", c.object, c.action))
        .collect();
    assert_eq!(
        summary,
        [
            format!("ConfigMap/{ns}/helm-kept Skipped"),
            format!("ConfigMap/{ns}/kept Skipped"),
            format!("ConfigMap/{ns}/old Deleted")
        ]
    );
    let cms: Api<ConfigMap> = Api::namespaced(client, &ns);
    assert!(cms.get_opt("old").await?.is_none());
    assert!(cms.get_opt("kept").await?.is_some());
    Ok(())
}

#[tokio::test]
async fn health_of_many_objects_of_one_kind_finds_each_even_one_the_label_list_misses_and_judges_each_by_its_kind()
-> Result<()> {
    use airgate_core::health::Health;
    use airgate_core::object::ObjectRef;

    let p = Perimeter::get();
    let client = p.kube_client().await?;
    let ns = unique_name("health");
    let mut set = vec![namespace(&ns)];
    set.extend((0..12).map(|i| config_map(&ns, &format!("cm-{i}"), "a")));
    // Deployments no node can run: never available. The items of a list
    // carry no kind, and these once read as Ready by the rule for objects
    // without status.
    set.extend((0..10).map(|i| {
        deployment(
            &ns,
            &format!("stuck-{i}"),
            1,
            json!({"nodeSelector": {"airgate.dev/no-such-node": "true"},
                   "containers": [{"name": "app", "image": "registry.internal/app:1"}]}),
        )
    }));
    let applier =
        Applier::new(client.clone(), "airgate", "default").with_owner(AppId::new(&ns, &ns));
    let applied = applier.apply(&objects(&set)).await?;
    // One has lost its label: the list does not see it, a read by name does.
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    cms.patch(
        "cm-0",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(json!({"metadata": {"labels": {"airgate.dev/app-name": null}}})),
    )
    .await?;
    let mut wanted: Vec<ObjectRef> = applied
        .changes
        .iter()
        .filter(|c| c.object.kind == "ConfigMap")
        .map(|c| c.object.clone())
        .collect();
    let mut missing = wanted[1].clone();
    missing.name = "absent".into();
    wanted.push(missing);
    let health = applier.health_of(&wanted).await?;
    let summary: Vec<String> = wanted
        .iter()
        .zip(&health)
        .filter(|(_, h)| **h != Health::Ready)
        .map(|(o, h)| format!("{} {h:?}", o.name))
        .collect();
    assert_eq!(summary, ["absent Progressing(\"not found\")"]);
    assert_eq!(applier.health_of(&wanted[..1]).await?, [Health::Ready]);

    let stuck: Vec<ObjectRef> = applied
        .changes
        .iter()
        .filter(|c| c.object.kind == "Deployment")
        .map(|c| c.object.clone())
        .collect();
    assert_eq!(stuck.len(), 10);
    for (o, h) in stuck.iter().zip(applier.health_of(&stuck).await?) {
        assert!(matches!(h, Health::Progressing(_)), "{}: {h:?}", o.name);
    }
    Ok(())
}

#[tokio::test]
async fn the_app_crd_is_served_and_shows_revision_ready_frozen_and_age() -> Result<()> {
    use airgate_kube::app::App;
    use kube::CustomResourceExt;

    let p = Perimeter::get();
    let client = p.kube_client().await?;
    let ns = unique_name("app-crd");
    let crd = serde_json::to_value(App::crd())?;
    let app = json!({
        "apiVersion": "airgate.dev/v1alpha1", "kind": "App", "metadata": {"name": "shop", "namespace": ns},
        "spec": {"source": {"url": "https://git.internal/platform/shop.git", "ref": {"branch": "main"}, "path": "envs/prod"},
                 "serviceAccountName": "shop-deployer", "prune": true,
                 "policy": {"allowedRegistries": ["registry.internal:5000"], "requireDigests": true}}});
    // The CRD (new kind) and an App of it in a new namespace, in one staged apply.
    Applier::new(client.clone(), "airgate-install", "default")
        .apply(&objects(&[app, namespace(&ns), crd]))
        .await?;
    let apps: Api<App> = Api::namespaced(client, &ns);
    let shop = apps.get("shop").await?;
    assert_eq!(shop.spec.service_account_name, "shop-deployer");
    assert_eq!(shop.spec.interval, "1m", "interval defaults to 1m");
    let out = std::process::Command::new(&p.kubectl)
        .args(["get", "apps.airgate.dev", "-n", &ns])
        .env("KUBECONFIG", &p.kubeconfig)
        .output()?;
    let table = String::from_utf8_lossy(&out.stdout);
    let header: Vec<&str> = table
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        ["NAME", "REVISION", "READY", "FROZEN", "AGE"],
        "{table}"
    );
    Ok(())
}

#[tokio::test]
async fn an_immutable_change_is_refused_with_a_hint_unless_the_object_opts_in_to_recreation()
-> Result<()> {
    let p = Perimeter::get();
    let client = p.kube_client().await?;
    let ns = unique_name("immutable");
    let applier = Applier::new(client.clone(), "airgate", &ns);
    let frozen = |value: &str, recreate: bool| {
        let mut cm = config_map(&ns, "frozen", value);
        cm["immutable"] = json!(true);
        if recreate {
            cm["metadata"]["annotations"] = json!({"airgate.dev/recreate": "enabled"});
        }
        cm
    };
    applier
        .apply(&objects(&[namespace(&ns), frozen("a", false)]))
        .await?;

    match applier.apply(&objects(&[frozen("b", false)])).await {
        Err(ApplyError::DryRun {
            object, message, ..
        }) => {
            assert!(object.contains("frozen"), "{object}");
            assert!(message.contains("immutable"), "{message}");
            assert!(message.contains("airgate.dev/recreate"), "{message}");
        }
        other => bail!("expected a refused dry-run, got {other:?}"),
    }
    let cms: Api<ConfigMap> = Api::namespaced(client, &ns);
    let value = |cm: Option<ConfigMap>| cm.and_then(|c| c.data).and_then(|d| d.get("k").cloned());
    assert_eq!(value(cms.get_opt("frozen").await?).as_deref(), Some("a"));

    let changes = applier.apply(&objects(&[frozen("b", true)])).await?;
    assert_eq!(changes.count(Action::Recreated), 1, "{changes:?}");
    assert_eq!(value(cms.get_opt("frozen").await?).as_deref(), Some("b"));
    Ok(())
}

#[tokio::test]
async fn workloads_apply_after_the_config_their_pods_name_and_the_change_set_keeps_git_order()
-> Result<()> {
    let p = Perimeter::get();
    let client = p.kube_client().await?;
    let ns = unique_name("waves");
    let reads_settings = |name: &str| {
        deployment(
            &ns,
            name,
            1,
            json!({"containers": [{"name": "app", "image": "registry.internal/app:1",
                                   "envFrom": [{"configMapRef": {"name": "settings"}}]}]}),
        )
    };
    // Git lists the workloads first.
    let set = objects(&[
        namespace(&ns),
        reads_settings("web"),
        reads_settings("worker"),
        config_map(&ns, "settings", "a"),
        config_map(&ns, "other", "b"),
    ]);
    let applied = Applier::new(client.clone(), "airgate", "default")
        .apply(&set)
        .await?;
    let names: Vec<&str> = applied
        .changes
        .iter()
        .map(|c| c.object.name.as_str())
        .collect();
    assert_eq!(names, [ns.as_str(), "web", "worker", "settings", "other"]);
    // resourceVersions are the store's revisions: every ConfigMap was
    // written before any Deployment.
    let version = |kind: &str| -> Vec<u64> {
        applied
            .changes
            .iter()
            .filter(|c| c.object.kind == kind)
            .filter_map(|c| c.resource_version.as_deref()?.parse().ok())
            .collect()
    };
    let (configs, workloads) = (version("ConfigMap"), version("Deployment"));
    assert_eq!((configs.len(), workloads.len()), (2, 2));
    assert!(
        configs.iter().max() < workloads.iter().min(),
        "ConfigMaps at {configs:?}, Deployments at {workloads:?}"
    );
    Ok(())
}

/// The API server echoes an invalid Secret value (here a `stringData` value
/// that is a map) in its answer; the dry-run error names the object and
/// the field, never the value.
#[tokio::test]
async fn a_secret_value_the_api_server_echoes_never_reaches_the_error() -> Result<()> {
    let p = Perimeter::get();
    let client = p.kube_client().await?;
    let ns = unique_name("scrub");
    Applier::new(client.clone(), "airgate", "default")
        .apply(&objects(&[namespace(&ns)]))
        .await?;
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db", "namespace": ns},
                        "stringData": {"password": {"nested": "hunter2-secret-value"}},
                        "data": {"token": "aHVudGVyMy1vdGhlci12YWx1ZQ=="}});
    match Applier::new(client, "airgate", "default")
        .apply(&objects(&[secret]))
        .await
    {
        Err(e) => {
            let message = e.to_string();
            assert!(message.contains(&format!("Secret/{ns}/db")), "{message}");
            assert!(!message.contains("hunter2"), "{message}");
            assert!(!message.contains("hunter3"), "{message}");
        }
        Ok(_) => bail!("a Secret with a map value was accepted"),
    }
    Ok(())
}

/// Server-side apply with force took any object it was pointed at: an App
/// silently adopted what kubectl or another App had created, and deleted it
/// once it left Git. Now an object that exists is applied over only when it
/// carries the App's ownership mark (or is marked for adoption by the App),
/// and is pruned only while it carries the App's mark and labels.
#[tokio::test]
async fn an_app_neither_takes_over_nor_prunes_what_is_not_its_own() -> Result<()> {
    let p = Perimeter::get();
    let client = p.kube_client().await?;
    let ns = unique_name("owner");
    Applier::new(client.clone(), "airgate", "default")
        .apply(&objects(&[namespace(&ns)]))
        .await?;
    let a = Applier::new(client.clone(), "airgate", &ns).with_owner(AppId::new(&ns, "a"));
    let b = Applier::new(client.clone(), "airgate", &ns).with_owner(AppId::new(&ns, "b"));
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);

    // Created by someone else: refused, with the way to allow it.
    cms.create(
        &Default::default(),
        &serde_json::from_value(config_map(&ns, "by-hand", "1"))?,
    )
    .await?;
    let refused = a.apply(&objects(&[config_map(&ns, "by-hand", "a")])).await;
    let Err(ApplyError::Ownership(why)) = refused else {
        bail!("applied over an object nobody gave it: {refused:?}");
    };
    assert!(
        why[0].contains(&format!(
            "kubectl annotate configmap by-hand -n {ns} airgate.dev/adopt={ns}/a"
        )),
        "{why:?}"
    );
    let live = cms.get("by-hand").await?;
    assert_eq!(
        live.data.unwrap_or_default().get("k").map(String::as_str),
        Some("1")
    );

    // Marked for adoption by A: A takes it.
    cms.patch(
        "by-hand",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(
            json!({"metadata": {"annotations": {"airgate.dev/adopt": format!("{ns}/a")}}}),
        ),
    )
    .await?;
    let adopted = a
        .apply(&objects(&[
            config_map(&ns, "by-hand", "a"),
            config_map(&ns, "mine", "a"),
        ]))
        .await?;
    assert_eq!(adopted.count(Action::Configured), 1, "{adopted:?}");
    let marks = cms
        .get("by-hand")
        .await?
        .metadata
        .annotations
        .unwrap_or_default();
    assert_eq!(
        marks.get("airgate.dev/owner").map(String::as_str),
        Some(format!("{ns}/a:/ConfigMap:{ns}/by-hand").as_str())
    );

    // B names A's objects: refused, naming A; nothing of B's set is written.
    let refused = b
        .apply(&objects(&[
            config_map(&ns, "b-only", "b"),
            config_map(&ns, "mine", "b"),
        ]))
        .await;
    let Err(ApplyError::Ownership(why)) = refused else {
        bail!("took over another App's object: {refused:?}");
    };
    assert!(
        why[0].contains(&format!("belongs to App {ns}/a")),
        "{why:?}"
    );
    assert!(
        cms.get_opt("b-only").await?.is_none(),
        "B wrote before refusing"
    );

    // A mark and labels copied onto an object B made do not make it A's:
    // A's prune leaves it. A prune of A's own object deletes it.
    let copy = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "copied", "namespace": ns,
        "labels": {"airgate.dev/app-name": "a", "airgate.dev/app-namespace": ns},
        "annotations": {"airgate.dev/owner": format!("{ns}/a:/ConfigMap:{ns}/mine")}}});
    cms.create(&Default::default(), &serde_json::from_value(copy)?)
        .await?;
    let cm = |name: &str| ObjectRef {
        api_version: "v1".into(),
        kind: "ConfigMap".into(),
        namespace: Some(ns.clone()),
        name: name.into(),
    };
    let pruned = a
        .prune(&[cm("copied"), cm("mine")], &Default::default())
        .await?;
    let actions: Vec<(String, Action)> = pruned
        .changes
        .iter()
        .map(|c| (c.object.name.clone(), c.action))
        .collect();
    assert_eq!(
        actions,
        [
            ("copied".to_string(), Action::Disowned),
            ("mine".to_string(), Action::Deleted)
        ]
    );
    assert!(cms.get_opt("copied").await?.is_some());
    Ok(())
}
