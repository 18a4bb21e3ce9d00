//! Image references: a digest pins the server and managed backend images as
//! `repository@digest` (the tag is ignored); a malformed digest is refused client-side with the
//! field's path (the CRD's pattern refuses it in the API server, which the end-to-end tests show).

use sockudo_operator::build::{Child, desired};
use sockudo_operator::crd::ImageSpec;
use sockudo_operator::validate::validate;

use super::support::Example;

const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn pinned(repository: Option<&str>) -> Option<ImageSpec> {
    Some(ImageSpec {
        repository: repository.map(String::from),
        tag: Some("ignored-when-pinned".into()),
        digest: Some(DIGEST.into()),
        pull_policy: None,
    })
}

/// (kind/name, container, image) of every container the children run.
fn images(children: &[Child]) -> Vec<(String, String, String)> {
    children
        .iter()
        .filter_map(|c| {
            let template = match c {
                Child::Deployment(d) => &d.spec.as_ref()?.template,
                Child::StatefulSet(s) => &s.spec.as_ref()?.template,
                _ => return None,
            };
            Some(
                template
                    .spec
                    .as_ref()?
                    .containers
                    .iter()
                    .map(|k| {
                        (
                            format!("{}/{}", c.kind(), c.name()),
                            k.name.clone(),
                            k.image.clone().unwrap_or_default(),
                        )
                    })
                    .collect::<Vec<_>>(),
            )
        })
        .flatten()
        .collect()
}

#[test]
fn digests_pin_the_server_and_managed_backend_images() {
    let mut ex = Example::load("nats-managed.yaml");
    let spec = &mut ex.cluster.spec;
    spec.image = pinned(Some("registry.example/sockudo"));
    spec.nats.as_mut().unwrap().managed.as_mut().unwrap().image = pinned(None);
    let limiter_redis = spec.rate_limiter.as_mut().unwrap().redis.as_mut().unwrap();
    limiter_redis.managed.as_mut().unwrap().image = pinned(None);
    assert_eq!(validate(&ex.cluster.spec), vec![]);
    let built = desired(&ex.inputs());
    let got = images(&built.children);
    assert_eq!(got.len(), 3, "{got:#?}");
    for (_, _, image) in &got {
        assert!(image.ends_with(&format!("@{DIGEST}")), "{image}");
        assert!(!image.contains("ignored-when-pinned"), "{image}");
    }
    insta::with_settings!({snapshot_path => "../snapshots", prepend_module_to_snapshot => false}, {
        insta::assert_yaml_snapshot!("pinned-images", got);
    });
}

#[test]
fn a_malformed_digest_is_refused_with_its_path() {
    for bad in [
        "sha256:0123",                                                             // short
        "sha256:0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef", // upper case
        "sha512:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", // algorithm
        "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",        // no algorithm
    ] {
        let mut ex = Example::load("redis-managed.yaml");
        let image = ImageSpec {
            digest: Some(bad.into()),
            ..ImageSpec::default()
        };
        ex.cluster.spec.image = Some(image.clone());
        ex.managed_redis().image = Some(image);
        let paths: Vec<String> = validate(&ex.cluster.spec)
            .into_iter()
            .map(|e| e.path)
            .collect();
        assert_eq!(
            paths,
            vec!["spec.image.digest", "spec.redis.managed.image.digest"],
            "{bad}"
        );
    }
}
