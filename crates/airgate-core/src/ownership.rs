//! Ownership: which App an object in the cluster belongs to.
//!
//! Server-side apply with force takes any object it is pointed at, so an
//! App whose Git names an object that exists already would silently adopt
//! it, and later delete it when it leaves Git; and an inventory (a status
//! anyone with access can edit) is not proof enough to delete anything.
//! Every object an App applies carries an **ownership mark**, the
//! annotation [`OWNER_ANNOTATION`], whose value names the App *and the
//! object itself* (after Argo CD's tracking id): a mark copied onto another
//! object, with `kubectl get -o yaml` and an edit, claims nothing.
//!
//! [`claim`] reads the mark (and the App labels older airgate versions
//! wrote) of a live object and says whose it is; [`Claim::may_apply`] and
//! [`Claim::may_delete`] are the two decisions the applier acts on:
//! - an App applies over an object only when it is its own, or carries no
//!   valid mark and was applied by this App before marks existed, or is
//!   marked for adoption by this App ([`ADOPT_ANNOTATION`], set on the live
//!   object by someone who may write it);
//! - an App deletes an object only when it carries this App's mark and
//!   labels at the moment of deletion.

use std::collections::BTreeMap;
use std::fmt;

use crate::object::ObjectRef;

/// The ownership mark: `<app namespace>/<app name>:<group>/<kind>:<namespace>/<name>`.
pub const OWNER_ANNOTATION: &str = "airgate.dev/owner";
/// Set on an existing object, `<app namespace>/<app name>`, to let that App
/// take it over.
pub const ADOPT_ANNOTATION: &str = "airgate.dev/adopt";
/// The label naming the App an object belongs to (for watches and selectors).
pub const APP_NAME_LABEL: &str = "airgate.dev/app-name";
/// The label naming the App's namespace.
pub const APP_NAMESPACE_LABEL: &str = "airgate.dev/app-namespace";

/// An App, by namespace and name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AppId {
    pub namespace: String,
    pub name: String,
}

impl fmt::Display for AppId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

impl AppId {
    pub fn new(namespace: &str, name: &str) -> AppId {
        AppId {
            namespace: namespace.to_string(),
            name: name.to_string(),
        }
    }

    /// The mark this App puts on `object` (named as the apply names it:
    /// with its namespace when its kind has one).
    pub fn mark(&self, object: &ObjectRef) -> String {
        format!(
            "{self}:{}/{}:{}/{}",
            object.group(),
            object.kind,
            object.namespace.as_deref().unwrap_or(""),
            object.name
        )
    }

    /// The labels every object of this App carries.
    pub fn labels(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (APP_NAME_LABEL.to_string(), self.name.clone()),
            (APP_NAMESPACE_LABEL.to_string(), self.namespace.clone()),
        ])
    }

    /// The label selector for [`AppId::labels`].
    pub fn selector(&self) -> String {
        format!(
            "{APP_NAME_LABEL}={},{APP_NAMESPACE_LABEL}={}",
            self.name, self.namespace
        )
    }

    fn parse(s: &str) -> Option<AppId> {
        let (namespace, name) = s.split_once('/')?;
        (!namespace.is_empty() && !name.is_empty() && !name.contains('/'))
            .then(|| AppId::new(namespace, name))
    }
}

/// Whose a live object is, as far as `app` can tell.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Claim {
    /// It carries `app`'s mark for this very object.
    Ours,
    /// `app`'s mark without its labels (someone took them away), or its
    /// labels without a valid mark (applied by an airgate from before
    /// ownership marks): applied over (the apply puts both back), never
    /// deleted.
    Partial,
    /// Marked for adoption by `app`.
    Adoptable,
    /// It belongs to another App (by its mark, or by its labels when it
    /// carries no valid mark).
    OtherApp(AppId),
    /// It exists and no App owns it: created by someone else, or carrying a
    /// mark copied from another object.
    Foreign,
}

impl Claim {
    /// Whether `app` may apply over the object.
    pub fn may_apply(&self) -> bool {
        matches!(self, Claim::Ours | Claim::Partial | Claim::Adoptable)
    }

    /// Whether `app` may delete the object: its mark, and (checked by
    /// [`claim`]) its labels.
    pub fn may_delete(&self) -> bool {
        *self == Claim::Ours
    }

    /// Why `app` may not apply over `object`, and what to do; `None` when
    /// it may.
    pub fn refusal(&self, app: &AppId, object: &ObjectRef) -> Option<String> {
        match self {
            Claim::OtherApp(owner) => Some(format!(
                "{object} belongs to App {owner} ({OWNER_ANNOTATION}); an object has one \
                 owner: remove it from this App's source, or from App {owner}'s first"
            )),
            Claim::Foreign => Some(format!(
                "{object} exists and no App owns it; to let App {app} take it over, \
                 annotate it: kubectl annotate {} {}{} {ADOPT_ANNOTATION}={app}",
                object.kind.to_lowercase(),
                object.name,
                object
                    .namespace
                    .as_deref()
                    .map(|ns| format!(" -n {ns}"))
                    .unwrap_or_default(),
            )),
            _ => None,
        }
    }
}

/// Whose the live `object` is, from its annotations and labels, as seen by
/// `app`. `object` is named as the apply names it.
pub fn claim(
    app: &AppId,
    object: &ObjectRef,
    annotations: &BTreeMap<String, String>,
    labels: &BTreeMap<String, String>,
) -> Claim {
    let labelled = |id: &AppId| {
        labels.get(APP_NAME_LABEL) == Some(&id.name)
            && labels.get(APP_NAMESPACE_LABEL) == Some(&id.namespace)
    };
    // A valid mark: one App's, naming this very object.
    let marked = annotations.get(OWNER_ANNOTATION).and_then(|mark| {
        let (owner, _) = mark.split_once(':')?;
        let owner = AppId::parse(owner)?;
        (owner.mark(object) == *mark).then_some(owner)
    });
    match marked {
        Some(owner) if owner == *app && labelled(app) => return Claim::Ours,
        Some(owner) if owner == *app => return Claim::Partial,
        Some(owner) => return Claim::OtherApp(owner),
        None => {}
    }
    if annotations.get(ADOPT_ANNOTATION).map(String::as_str) == Some(&app.to_string()) {
        return Claim::Adoptable;
    }
    if labelled(app) {
        return Claim::Partial;
    }
    match (labels.get(APP_NAMESPACE_LABEL), labels.get(APP_NAME_LABEL)) {
        (Some(ns), Some(name)) => match AppId::parse(&format!("{ns}/{name}")) {
            Some(owner) => Claim::OtherApp(owner),
            None => Claim::Foreign,
        },
        _ => Claim::Foreign,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cm(ns: &str, name: &str) -> ObjectRef {
        ObjectRef {
            api_version: "v1".into(),
            kind: "ConfigMap".into(),
            namespace: Some(ns.into()),
            name: name.into(),
        }
    }

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_mark_names_the_app_and_the_object() {
        let a = AppId::new("team-a", "shop");
        assert_eq!(
            a.mark(&cm("shop", "web")),
            "team-a/shop:/ConfigMap:shop/web"
        );
        let role = ObjectRef {
            api_version: "rbac.authorization.k8s.io/v1".into(),
            kind: "ClusterRole".into(),
            namespace: None,
            name: "reader".into(),
        };
        assert_eq!(
            a.mark(&role),
            "team-a/shop:rbac.authorization.k8s.io/ClusterRole:/reader"
        );
    }

    type Pairs<'a> = Vec<(&'a str, &'a str)>;

    #[test]
    fn whose_an_object_is() {
        let a = AppId::new("team-a", "shop");
        let b = AppId::new("team-b", "shop");
        let x = cm("ns", "x");
        let ours = a.mark(&x);
        let theirs = b.mark(&x);
        let copied = a.mark(&cm("ns", "other"));
        let a_labels = [(APP_NAME_LABEL, "shop"), (APP_NAMESPACE_LABEL, "team-a")];
        let b_labels = [(APP_NAME_LABEL, "shop"), (APP_NAMESPACE_LABEL, "team-b")];
        let adopt_a = (ADOPT_ANNOTATION, "team-a/shop");
        #[rustfmt::skip]
        let table: Vec<(&str, Pairs, Pairs, Claim)> = vec![
            ("marked and labelled", vec![(OWNER_ANNOTATION, &ours)], a_labels.to_vec(), Claim::Ours),
            ("marked, labels taken away", vec![(OWNER_ANNOTATION, &ours)], vec![], Claim::Partial),
            ("marked, relabelled to b", vec![(OWNER_ANNOTATION, &ours)], b_labels.to_vec(), Claim::Partial),
            ("another App's mark", vec![(OWNER_ANNOTATION, &theirs)], b_labels.to_vec(), Claim::OtherApp(b.clone())),
            ("another App's mark, our labels", vec![(OWNER_ANNOTATION, &theirs)], a_labels.to_vec(), Claim::OtherApp(b.clone())),
            ("another App's mark, adoption asked", vec![(OWNER_ANNOTATION, &theirs), adopt_a], vec![], Claim::OtherApp(b.clone())),
            ("labels from before marks", vec![], a_labels.to_vec(), Claim::Partial),
            ("another App's labels from before marks", vec![], b_labels.to_vec(), Claim::OtherApp(b.clone())),
            ("another App's labels, adoption asked", vec![adopt_a], b_labels.to_vec(), Claim::Adoptable),
            ("created by someone else", vec![], vec![], Claim::Foreign),
            ("adoption by us", vec![adopt_a], vec![], Claim::Adoptable),
            ("adoption by another App", vec![(ADOPT_ANNOTATION, "team-b/shop")], vec![], Claim::Foreign),
            ("a mark copied from another object", vec![(OWNER_ANNOTATION, &copied)], vec![], Claim::Foreign),
            ("a mark copied, with our labels", vec![(OWNER_ANNOTATION, &copied)], a_labels.to_vec(), Claim::Partial),
            ("a mark that does not parse", vec![(OWNER_ANNOTATION, "nonsense")], vec![], Claim::Foreign),
            ("an empty App name in labels", vec![], vec![(APP_NAME_LABEL, ""), (APP_NAMESPACE_LABEL, "x")], Claim::Foreign),
        ];
        for (case, annotations, labels, want) in table {
            let got = claim(&a, &x, &map(&annotations), &map(&labels));
            assert_eq!(got, want, "{case}");
        }
    }

    #[test]
    fn only_the_apps_own_marked_and_labelled_object_may_be_deleted() {
        let a = AppId::new("team-a", "shop");
        let x = cm("ns", "x");
        for (claim, apply, delete) in [
            (Claim::Ours, true, true),
            (Claim::Partial, true, false),
            (Claim::Adoptable, true, false),
            (Claim::OtherApp(AppId::new("b", "c")), false, false),
            (Claim::Foreign, false, false),
        ] {
            assert_eq!(claim.may_apply(), apply, "{claim:?}");
            assert_eq!(claim.may_delete(), delete, "{claim:?}");
            assert_eq!(claim.refusal(&a, &x).is_none(), apply, "{claim:?}");
        }
        let foreign = Claim::Foreign.refusal(&a, &x).unwrap_or_default();
        assert!(
            foreign.contains("kubectl annotate configmap x -n ns airgate.dev/adopt=team-a/shop"),
            "{foreign}"
        );
        let other = Claim::OtherApp(AppId::new("team-b", "web"))
            .refusal(&a, &x)
            .unwrap_or_default();
        assert!(other.contains("belongs to App team-b/web"), "{other}");
    }
}
