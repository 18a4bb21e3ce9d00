//! Growing the `data` volumes of managed backends when their storage size grows.
//!
//! A StatefulSet's claim template only shapes claims created from then on (changing it re-creates
//! the StatefulSet, see [`super::recreate`]), so the existing claims are grown here: their
//! `spec.resources.requests.storage` is patched up to the template's. The API server allows that
//! only for a bound claim whose StorageClass has `allowVolumeExpansion: true`; its refusal is
//! reported in the `VolumesResized` condition. A smaller size is refused by the operator itself:
//! volumes never shrink, so the claims keep their size, the claim template keeps the largest
//! claim's (see [`keep_claim_sizes`]), and the condition says so.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::api::{Patch, PatchParams};
use kube::{Api, ResourceExt};
use serde_json::json;

use super::conditions::Wanted;
use super::error::Error;
use crate::build::Child;
use crate::crd::ConditionType;

/// The claim template (and so the claims) of a managed backend's data volume.
const CLAIM_TEMPLATE: &str = "data";

/// Bytes a Kubernetes quantity (`1Gi`, `500M`, `1.5Ti`, `2e9`) stands for; `None` if it is not
/// one. A float is exact enough to compare volume sizes.
pub fn bytes(quantity: &str) -> Option<f64> {
    let q = quantity.trim();
    let split = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(q.len());
    let (number, suffix) = q.split_at(split);
    let n: f64 = number.parse().ok()?;
    let binary = |p: i32| 1024f64.powi(p);
    let multiplier = match suffix {
        "" => 1.0,
        "Ki" => binary(1),
        "Mi" => binary(2),
        "Gi" => binary(3),
        "Ti" => binary(4),
        "Pi" => binary(5),
        "Ei" => binary(6),
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        exp => {
            let digits = exp.strip_prefix('e').or_else(|| exp.strip_prefix('E'))?;
            10f64.powi(digits.parse().ok()?)
        }
    };
    Some(n * multiplier)
}

/// An existing claim of a managed backend, as the API server has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveClaim {
    pub name: String,
    /// `spec.resources.requests.storage`.
    pub requested: Option<String>,
    pub bound: bool,
}

/// What becomes of one claim, given the size the spec asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// It requests that size already (or more precisely: not less, not more).
    Keep,
    /// Patch its request up to the spec's size.
    Grow,
    /// The spec asks for less than it has: refused, volumes never shrink.
    Shrink,
    /// Larger wanted, but a claim is only grown once bound.
    NotBound,
    /// A size that is no quantity (the spec's or the claim's).
    Unreadable(String),
}

pub fn decide(wanted: &str, claim: &LiveClaim) -> Decision {
    let Some(want) = bytes(wanted) else {
        return Decision::Unreadable(format!("storage size {wanted:?} is not a quantity"));
    };
    let Some(requested) = claim.requested.as_deref() else {
        return Decision::Grow;
    };
    let Some(has) = bytes(requested) else {
        return Decision::Unreadable(format!(
            "claim {} requests {requested:?}, not a quantity",
            claim.name
        ));
    };
    if want < has {
        Decision::Shrink
    } else if want == has {
        Decision::Keep
    } else if claim.bound {
        Decision::Grow
    } else {
        Decision::NotBound
    }
}

/// What happened to one claim that does not (yet) request the spec's size, or was just grown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Grown {
        claim: String,
        from: String,
        to: String,
    },
    ShrinkRefused {
        claim: String,
        has: String,
        wanted: String,
    },
    NotBound {
        claim: String,
        wanted: String,
    },
    /// The API server refused the patch (typically: the StorageClass does not allow expansion).
    Refused {
        claim: String,
        wanted: String,
        error: String,
    },
    Unreadable {
        claim: String,
        error: String,
    },
}

/// The `VolumesResized` condition for the outcomes of every claim of every managed backend with
/// storage (claims already at the spec's size give no outcome).
pub fn condition(outcomes: &[Outcome]) -> Wanted {
    let mut shrink = Vec::new();
    let mut refused = Vec::new();
    let mut unbound = Vec::new();
    let mut unreadable = Vec::new();
    for o in outcomes {
        match o {
            Outcome::Grown { .. } => {}
            Outcome::ShrinkRefused { claim, has, wanted } => {
                shrink.push(format!("{claim} has {has}, the spec asks {wanted}"));
            }
            Outcome::Refused {
                claim,
                wanted,
                error,
            } => refused.push(format!("{claim} to {wanted}: {error}")),
            Outcome::NotBound { claim, wanted } => unbound.push(format!("{claim} (to {wanted})")),
            Outcome::Unreadable { claim, error } => unreadable.push(format!("{claim}: {error}")),
        }
    }
    let not = |reason, message: String| {
        Wanted::new(ConditionType::VolumesResized, false, reason, message)
    };
    if !shrink.is_empty() {
        return not(
            "ShrinkRefused",
            format!(
                "volumes never shrink: {}. The existing claims keep their size, and so does the \
                 StatefulSet's claim template (new pods get volumes as large as their \
                 siblings'); set the size back to at least the claims' to clear this.",
                shrink.join("; ")
            ),
        );
    }
    if !refused.is_empty() {
        return not(
            "ExpansionRefused",
            format!(
                "the API server refused to grow claim {}. Growing needs a bound claim whose \
                 StorageClass has allowVolumeExpansion: true; otherwise grow the volumes another \
                 way, or set the size back.",
                refused.join("; ")
            ),
        );
    }
    if !unreadable.is_empty() {
        return not("UnreadableSize", unreadable.join("; "));
    }
    if !unbound.is_empty() {
        return not(
            "ClaimNotBound",
            format!(
                "claim(s) {} are not bound yet; they are grown once bound",
                unbound.join(", ")
            ),
        );
    }
    Wanted::new(
        ConditionType::VolumesResized,
        true,
        "AsRequested",
        "every existing claim requests the spec's storage size",
    )
}

/// The size the StatefulSet's data claim template requests, if it has one.
fn template_size(set: &StatefulSet) -> Option<String> {
    let template = set
        .spec
        .as_ref()?
        .volume_claim_templates
        .as_ref()?
        .iter()
        .find(|t| t.metadata.name.as_deref() == Some(CLAIM_TEMPLATE))?;
    let storage = template
        .spec
        .as_ref()?
        .resources
        .as_ref()?
        .requests
        .as_ref()?
        .get("storage")?;
    Some(storage.0.clone())
}

fn live(claim: &PersistentVolumeClaim) -> LiveClaim {
    LiveClaim {
        name: claim.name_any(),
        requested: claim
            .spec
            .as_ref()
            .and_then(|s| s.resources.as_ref())
            .and_then(|r| r.requests.as_ref())
            .and_then(|r| r.get("storage"))
            .map(|q| q.0.clone()),
        bound: claim
            .status
            .as_ref()
            .and_then(|s| s.phase.as_deref())
            .is_some_and(|p| p == "Bound"),
    }
}

/// The existing data claims of one managed StatefulSet, and the size its spec asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetClaims {
    pub set: String,
    /// The size the StatefulSet's claim template asks for, as built from the spec.
    pub wanted: String,
    pub claims: Vec<LiveClaim>,
}

/// Reads the existing data claims of every StatefulSet among `children` that has a data claim
/// template. Claims not created yet (pods not scheduled) are absent: they are created at the
/// template's size.
pub async fn read(
    client: &kube::Client,
    ns: &str,
    children: &[Child],
) -> Result<Vec<SetClaims>, Error> {
    let api: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
    let mut sets = Vec::new();
    for child in children {
        let Child::StatefulSet(set) = child else {
            continue;
        };
        let Some(wanted) = template_size(set) else {
            continue;
        };
        let replicas = set.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        let mut claims = Vec::new();
        for ordinal in 0..replicas {
            let name = format!("{CLAIM_TEMPLATE}-{}-{ordinal}", set.name_any());
            if let Some(claim) = api.get_opt(&name).await? {
                claims.push(live(&claim));
            }
        }
        sets.push(SetClaims {
            set: set.name_any(),
            wanted,
            claims,
        });
    }
    Ok(sets)
}

/// Raises each StatefulSet's claim template to its largest existing claim when the spec asks
/// for less. Volumes never shrink, so a smaller spec must neither give new pods smaller volumes
/// than their siblings nor re-create the StatefulSet for a change that is refused anyway.
pub fn keep_claim_sizes(children: &mut [Child], existing: &[SetClaims]) {
    for set_claims in existing {
        let Some(want) = bytes(&set_claims.wanted) else {
            continue;
        };
        let Some(largest) = set_claims
            .claims
            .iter()
            .filter_map(|c| c.requested.as_deref())
            .filter_map(|q| bytes(q).map(|b| (b, q)))
            // The first of equal sizes (`2Gi`, `2048Mi`): the template's text stays put.
            .reduce(|a, b| if b.0 > a.0 { b } else { a })
            .filter(|(b, _)| *b > want)
            .map(|(_, q)| q.to_string())
        else {
            continue;
        };
        for child in children.iter_mut() {
            if let Child::StatefulSet(set) = child
                && set.name_any() == set_claims.set
                && let Some(storage) = template_storage(set)
            {
                storage.0 = largest.clone();
            }
        }
    }
}

/// The data claim template's storage request, to change it.
fn template_storage(set: &mut StatefulSet) -> Option<&mut Quantity> {
    set.spec
        .as_mut()?
        .volume_claim_templates
        .as_mut()?
        .iter_mut()
        .find(|t| t.metadata.name.as_deref() == Some(CLAIM_TEMPLATE))?
        .spec
        .as_mut()?
        .resources
        .as_mut()?
        .requests
        .as_mut()?
        .get_mut("storage")
}

/// Grows the existing claims that ask for less than their StatefulSet's spec size. `None` when
/// no managed backend has a data claim template.
pub async fn grow(
    client: &kube::Client,
    ns: &str,
    existing: &[SetClaims],
) -> Result<Option<Vec<Outcome>>, Error> {
    if existing.is_empty() {
        return Ok(None);
    }
    let api: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
    let mut outcomes = Vec::new();
    for SetClaims { wanted, claims, .. } in existing {
        for claim in claims {
            let name = claim.name.clone();
            let has = claim.requested.clone().unwrap_or_default();
            let outcome = match decide(wanted, claim) {
                Decision::Keep => continue,
                Decision::Shrink => Outcome::ShrinkRefused {
                    claim: name,
                    has,
                    wanted: wanted.clone(),
                },
                Decision::NotBound => Outcome::NotBound {
                    claim: name,
                    wanted: wanted.clone(),
                },
                Decision::Unreadable(error) => Outcome::Unreadable { claim: name, error },
                Decision::Grow => {
                    let patch = json!({"spec": {"resources": {"requests": {"storage": wanted}}}});
                    match api
                        .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                        .await
                    {
                        Ok(_) => Outcome::Grown {
                            claim: name,
                            from: has,
                            to: wanted.clone(),
                        },
                        Err(kube::Error::Api(e)) => Outcome::Refused {
                            claim: name,
                            wanted: wanted.clone(),
                            error: e.message,
                        },
                        Err(e) => return Err(e.into()),
                    }
                }
            };
            outcomes.push(outcome);
        }
    }
    Ok(Some(outcomes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(requested: &str, bound: bool) -> LiveClaim {
        LiveClaim {
            name: "data-x-redis-0".into(),
            requested: Some(requested.into()),
            bound,
        }
    }

    #[test]
    fn quantities() {
        assert_eq!(bytes("1Gi"), Some(1073741824.0));
        assert_eq!(bytes("1024Mi"), bytes("1Gi"));
        assert_eq!(bytes("1.5Gi"), Some(1610612736.0));
        assert_eq!(bytes("2G"), Some(2e9));
        assert_eq!(bytes("2e9"), Some(2e9));
        assert_eq!(bytes("500"), Some(500.0));
        assert_eq!(bytes("1E"), Some(1e18));
        assert_eq!(bytes("1Gb"), None);
        assert_eq!(bytes("Gi"), None);
        assert_eq!(bytes(""), None);
    }

    #[test]
    fn decisions() {
        assert_eq!(decide("2Gi", &claim("1Gi", true)), Decision::Grow);
        assert_eq!(decide("2Gi", &claim("1Gi", false)), Decision::NotBound);
        assert_eq!(decide("1Gi", &claim("1024Mi", false)), Decision::Keep);
        assert_eq!(decide("1Gi", &claim("2Gi", true)), Decision::Shrink);
        assert_eq!(decide("1G", &claim("1Gi", true)), Decision::Shrink);
        assert!(matches!(
            decide("lots", &claim("1Gi", true)),
            Decision::Unreadable(_)
        ));
    }

    fn set(name: &str, size: &str) -> Child {
        Child::StatefulSet(
            serde_json::from_value(json!({
                "metadata": {"name": name},
                "spec": {
                    "selector": {},
                    "serviceName": name,
                    "template": {},
                    "volumeClaimTemplates": [{
                        "metadata": {"name": "data"},
                        "spec": {"resources": {"requests": {"storage": size}}},
                    }],
                },
            }))
            .unwrap(),
        )
    }

    fn size_of(child: &Child) -> Option<String> {
        let Child::StatefulSet(s) = child else {
            return None;
        };
        template_size(s)
    }

    fn claims(set: &str, sizes: &[&str]) -> SetClaims {
        SetClaims {
            set: set.into(),
            wanted: "1Gi".into(),
            claims: sizes
                .iter()
                .enumerate()
                .map(|(i, s)| LiveClaim {
                    name: format!("data-{set}-{i}"),
                    requested: Some((*s).into()),
                    bound: true,
                })
                .collect(),
        }
    }

    #[test]
    fn a_refused_shrink_leaves_the_template_at_the_largest_claim() {
        let mut children = vec![set("a", "1Gi"), set("b", "1Gi"), set("c", "1Gi")];
        keep_claim_sizes(
            &mut children,
            &[
                // Shrunk from 2Gi (one claim still unbound at the old 1Gi).
                claims("a", &["2Gi", "1Gi", "2048Mi"]),
                // Growing: the spec's size stays (the claims are grown to it).
                claims("b", &["512Mi"]),
                // No claim yet.
                claims("c", &[]),
            ],
        );
        let sizes: Vec<_> = children.iter().map(size_of).collect();
        assert_eq!(
            sizes,
            [Some("2Gi".into()), Some("1Gi".into()), Some("1Gi".into())]
        );
    }

    #[test]
    fn the_condition_says_what_blocks_and_what_to_do() {
        let ok = condition(&[]);
        assert!(ok.status);
        let grown = Outcome::Grown {
            claim: "data-a-0".into(),
            from: "1Gi".into(),
            to: "2Gi".into(),
        };
        assert!(condition(std::slice::from_ref(&grown)).status);
        let shrink = Outcome::ShrinkRefused {
            claim: "data-a-0".into(),
            has: "2Gi".into(),
            wanted: "1Gi".into(),
        };
        let refused = Outcome::Refused {
            claim: "data-b-0".into(),
            wanted: "2Gi".into(),
            error: "only dynamically provisioned pvc can be resized".into(),
        };
        let c = condition(&[grown, refused.clone(), shrink]);
        assert_eq!((c.status, c.reason), (false, "ShrinkRefused"));
        assert!(c.message.contains("data-a-0 has 2Gi, the spec asks 1Gi"));
        let c = condition(&[refused]);
        assert_eq!(c.reason, "ExpansionRefused");
        assert!(c.message.contains("data-b-0 to 2Gi: only dynamically"));
        assert!(c.message.contains("allowVolumeExpansion"));
    }
}
