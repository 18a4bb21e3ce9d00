//! The operator against a real API server, under the chart's default (cluster-wide) RBAC. Every
//! test has its own namespace on one shared control plane and runs concurrently with the others.

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod, Secret};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;
use sockudo_operator::build::{Child, names};
use sockudo_operator::crd::SockudoCluster;
use sockudo_operator_e2e::k8s::*;
use sockudo_operator_e2e::{PATIENCE, Shared, eventually, http_get, run, shared};

/// A test's prologue: the shared control plane, an admin client and a new namespace whose
/// name starts with `test`.
async fn in_new_namespace(test: &str) -> (&'static Shared, Client, String) {
    let env = shared().await;
    let client = env.plane.admin();
    let ns = env.plane.namespace(test).await;
    (env, client, ns)
}

/// [`in_new_namespace`], with the SockudoCluster (and Secrets) of the example file `example`
/// applied there; the last item is the cluster's name.
async fn example_in_new_namespace(
    test: &str,
    example: &str,
) -> (&'static Shared, Client, String, String) {
    let (env, client, ns) = in_new_namespace(test).await;
    let name = apply_example(&client, &ns, example).await;
    (env, client, ns, name)
}

/// Long enough for several reconciles of a cluster that is not Ready (it is requeued every 10 s)
/// plus the watch events of the test's own change: if the operator wanted to write, it has.
const SETTLE: Duration = Duration::from_secs(12);

/// Each example produces exactly the children the builders describe, owned by the
/// SockudoCluster, labelled, written by the operator's field manager; the optional APIs 1.20
/// lacks are skipped and reported; and a reconcile with nothing changed writes nothing.
#[test]
fn every_example_produces_exactly_its_children_and_a_no_op_writes_nothing() {
    run(async {
        let env = shared().await;
        let client = env.plane.admin();
        let only = std::env::var("E2E_EXAMPLE").ok();
        let examples = example_names()
            .into_iter()
            .filter(|e| only.as_ref().is_none_or(|o| e.contains(o.as_str())));
        let checks = examples.map(|example| {
            let client = client.clone();
            async move {
                let stem = example.trim_end_matches(".yaml").to_string();
                let ns = env.plane.namespace(&format!("ex-{stem}")).await;
                let name = apply_example(&client, &ns, &example).await;
                let cluster = wait_cluster(&client, &ns, &name, "a status", observed_current).await;
                let uid = cluster.uid().unwrap();
                let desired = desired_for(&client, &cluster).await;
                let want = desired_kind_names(&desired);
                let live = wait_children(&client, &ns, &uid, &want).await;

                for child in &live {
                    let what = format!("{example}: {} {:?}", child.kind, child.meta.name);
                    let owners = child.meta.owner_references.clone().unwrap_or_default();
                    assert_eq!(owners.len(), 1, "{what}: one owner");
                    let o = &owners[0];
                    assert_eq!(
                        (o.kind.as_str(), o.name.as_str(), o.uid.as_str(), o.controller),
                        ("SockudoCluster", name.as_str(), uid.as_str(), Some(true)),
                        "{what}"
                    );
                    assert_eq!(o.api_version, "sockudo.io/v1alpha1", "{what}");
                    let labels = child.meta.labels.clone().unwrap_or_default();
                    assert_eq!(labels.get(names::LABEL_MANAGED_BY).map(String::as_str), Some(names::MANAGER), "{what}");
                    assert_eq!(labels.get(names::LABEL_INSTANCE), Some(&name), "{what}");
                    assert!(labels.contains_key(names::LABEL_NAME), "{what}");
                    assert!(labels.contains_key(names::LABEL_COMPONENT), "{what}");
                    let managers: Vec<_> = child
                        .meta
                        .managed_fields
                        .iter()
                        .flatten()
                        .filter(|m| m.operation.as_deref() == Some("Apply"))
                        .map(|m| m.manager.clone().unwrap_or_default())
                        .collect();
                    assert_eq!(managers, vec![names::MANAGER.to_string()], "{what}: applied by one field manager");
                }

                // The rendered server config in the API server is what the builder rendered.
                let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
                for c in &desired.children {
                    if let Child::ConfigMap(want) = c {
                        let got = cms.get(&want.name_any()).await.unwrap();
                        assert_eq!(got.data, want.data, "{example}: ConfigMap {}", want.name_any());
                    }
                }

                // Status: not degraded; what 1.20 lacks is reported, not retried as an error.
                let cluster = get_cluster(&client, &ns, &name).await;
                let status = cluster.status.clone().unwrap();
                assert!(condition_is(&cluster, "Degraded", "False"), "{example}: {}", describe(&cluster));
                assert_eq!(status.skipped, desired.skipped, "{example}");
                if cluster.spec.replicas > 1 {
                    assert!(status.skipped.contains(&"PodDisruptionBudget (policy/v1)".to_string()), "{example}: {:?}", status.skipped);
                }
                assert_eq!(status.config_hash.as_deref(), Some(desired.config_hash.as_str()), "{example}");
                let d = deployment(&client, &ns, &name).await;
                assert_eq!(template_hash(&d).as_deref(), Some(desired.config_hash.as_str()), "{example}");

                // A reconcile with nothing changed writes nothing. Wait until the workload
                // controllers have settled (they write the workloads' status), touch the
                // SockudoCluster to trigger a reconcile, and let several reconciles pass.
                eventually("workload controllers to settle", PATIENCE, || async {
                    let d = deployment(&client, &ns, &name).await;
                    let s = d.status.clone().unwrap_or_default();
                    let settled = s.observed_generation == d.metadata.generation
                        && s.replicas.unwrap_or(0) == d.spec.as_ref().unwrap().replicas.unwrap_or(1);
                    if settled { Ok(()) } else { Err(format!("{s:?}")) }
                })
                .await;
                tokio::time::sleep(Duration::from_secs(2)).await;
                patch_cluster(&client, &ns, &name, json!({"metadata": {"annotations": {"e2e.sockudo.io/touch": "1"}}})).await;
                let before_cluster = get_cluster(&client, &ns, &name).await;
                let before = owned_children(&client, &ns, &uid).await;
                tokio::time::sleep(SETTLE).await;
                let after_cluster = get_cluster(&client, &ns, &name).await;
                let after = owned_children(&client, &ns, &uid).await;
                assert_eq!(
                    before_cluster.resource_version(),
                    after_cluster.resource_version(),
                    "{example}: the SockudoCluster (status) was written by a no-op reconcile:\n{:#?}\n{:#?}",
                    before_cluster.status,
                    after_cluster.status
                );
                let (tb, ta) = (operator_write_times(&before), operator_write_times(&after));
                let changed: Vec<_> = after
                    .iter()
                    .filter(|l| {
                        let k = (l.kind.to_string(), l.meta.name.clone().unwrap_or_default());
                        tb.get(&k) != ta.get(&k)
                    })
                    .map(|l| (l.kind, &l.meta.name, l.meta.generation, &l.meta.managed_fields))
                    .collect();
                assert!(changed.is_empty(), "{example}: the operator wrote children in a no-op reconcile: {changed:#?}");
                let stable = |v: &[Live]| {
                    let mut m = versions(v);
                    m.retain(|(k, _), _| k != "Deployment" && k != "StatefulSet");
                    m
                };
                assert_eq!(stable(&before), stable(&after), "{example}: resourceVersions changed");
            }
        });
        futures::future::join_all(checks).await;
    });
}

/// observedGeneration, Progressing then Ready once the pods are (made) ready, Events for the
/// transitions.
#[test]
fn status_goes_progressing_then_ready_with_events() {
    run(async {
        let (env, client, ns, name) =
            example_in_new_namespace("ready", "2-multi-node-redis.yaml").await;
        let c = wait_cluster(&client, &ns, &name, "Progressing", |c| {
            observed_current(c)
                && condition_is(c, "Progressing", "True")
                && condition_is(c, "Ready", "False")
        })
        .await;
        assert_eq!(
            c.status.as_ref().unwrap().observed_generation,
            c.metadata.generation
        );
        assert!(condition_is(&c, "RedisReady", "False"), "{}", describe(&c));

        // The operator's readiness gauge follows the Ready condition.
        let series = format!(
            "sockudo_operator_cluster_ready{{sockudocluster_namespace=\"{ns}\",sockudocluster=\"{name}\"}}"
        );
        let gauge = |want: Option<&'static str>| {
            let series = series.clone();
            async move {
                let text = http_get(env.operator_http, "/metrics").await?;
                let got = text
                    .lines()
                    .find_map(|l| l.strip_prefix(series.as_str()))
                    .map(str::trim);
                if got == want {
                    Ok(())
                } else {
                    Err(format!("{series}: {got:?}"))
                }
            }
        };
        eventually("the cluster's readiness gauge at 0", PATIENCE, || {
            gauge(Some("0"))
        })
        .await;

        let c = drive_to_ready(&client, &ns, &name).await;
        assert!(condition_is(&c, "Progressing", "False"), "{}", describe(&c));
        assert!(condition_is(&c, "RedisReady", "True"), "{}", describe(&c));
        let status = c.status.unwrap();
        assert_eq!((status.replicas, status.ready_replicas), (3, 3));
        eventually("the cluster's readiness gauge at 1", PATIENCE, || {
            gauge(Some("1"))
        })
        .await;

        let events = eventually("Events of the transitions", PATIENCE, || async {
            let events = operator_events(&client, &ns, &name).await;
            let notes: Vec<String> = events.iter().filter_map(|e| e.note.clone()).collect();
            let has = |s: &str| notes.iter().any(|n| n.starts_with(s));
            if has("Ready=True") && has("Progressing=True") && has("Progressing=False") {
                Ok(events)
            } else {
                Err(format!("{notes:?}"))
            }
        })
        .await;
        assert!(
            events
                .iter()
                .all(|e| e.type_.as_deref() == Some("Normal")
                    || e.reason.as_deref() != Some("Ready"))
        );
    });
}

/// A referenced Secret that does not exist: Degraded with the reason and the Secret's name; the
/// Secret appearing repairs it.
#[test]
fn a_missing_secret_degrades_with_a_reason() {
    run(async {
        let (_, client, ns) = in_new_namespace("missing-secret").await;
        let docs = example_docs("1-single-node.yaml");
        let cluster: SockudoCluster = serde_json::from_value(
            docs.iter()
                .find(|d| d["kind"] == "SockudoCluster")
                .unwrap()
                .clone(),
        )
        .unwrap();
        let name = cluster.name_any();
        create_cluster(&client, &ns, &cluster).await;
        let c = wait_cluster(&client, &ns, &name, "Degraded", |c| {
            condition_is(c, "Degraded", "True")
        })
        .await;
        let degraded = condition(&c, "Degraded").unwrap();
        assert_eq!(degraded.reason, "SecretMissing");
        assert!(
            degraded.message.contains("single-node-app-1234/key"),
            "{}",
            degraded.message
        );
        assert!(condition_is(&c, "Ready", "False"));
        eventually("a Warning Event", PATIENCE, || async {
            let events = operator_events(&client, &ns, &name).await;
            events
                .iter()
                .any(|e| {
                    e.type_.as_deref() == Some("Warning")
                        && e.reason.as_deref() == Some("SecretMissing")
                })
                .then_some(())
                .ok_or_else(|| {
                    format!("{:?}", events.iter().map(|e| &e.reason).collect::<Vec<_>>())
                })
        })
        .await;

        let secret: Secret =
            serde_json::from_value(docs.iter().find(|d| d["kind"] == "Secret").unwrap().clone())
                .unwrap();
        create_or_replace_secret(&client, &ns, secret).await;
        wait_cluster(&client, &ns, &name, "no longer Degraded", |c| {
            condition_is(c, "Degraded", "False")
        })
        .await;
        deployment(&client, &ns, &name).await;
    });
}

/// A server setting rolls the pods (pod-template hash), a rotated backend credential rolls them,
/// a rotated app Secret does not (the server reloads the mounted apps Secret in place).
#[test]
fn spec_change_and_backend_secret_roll_but_app_secret_does_not() {
    run(async {
        let (_, client, ns, name) =
            example_in_new_namespace("rollout", "redis-external.yaml").await;
        let hash_of = |want_not: Option<String>| {
            let client = client.clone();
            let ns = ns.clone();
            let name = name.clone();
            async move {
                eventually("a new pod-template hash", PATIENCE, || async {
                    let api: Api<k8s_openapi::api::apps::v1::Deployment> =
                        Api::namespaced(client.clone(), &ns);
                    let d = api.get_opt(&name).await.map_err(|e| e.to_string())?;
                    match d.as_ref().and_then(template_hash) {
                        Some(h) if Some(&h) != want_not.as_ref() => Ok(h),
                        h => Err(format!("{h:?}")),
                    }
                })
                .await
            }
        };
        let h0 = hash_of(None).await;

        patch_cluster(
            &client,
            &ns,
            &name,
            json!({"spec": {"server": {"activityTimeoutSeconds": 60}}}),
        )
        .await;
        let h1 = hash_of(Some(h0.clone())).await;
        let c = wait_cluster(&client, &ns, &name, "status with the new hash", |c| {
            observed_current(c) && c.status.as_ref().unwrap().config_hash.as_ref() == Some(&h1)
        })
        .await;
        assert!(condition_is(&c, "Degraded", "False"), "{}", describe(&c));

        create_or_replace_secret(
            &client,
            &ns,
            secret(
                "redis-external-credentials",
                &[("username", "sockudo"), ("password", "rotated")],
            ),
        )
        .await;
        let h2 = hash_of(Some(h1.clone())).await;
        assert_ne!(h2, h0);

        // The app Secret: the operator copies it into the apps Secret; the pods keep running.
        create_or_replace_secret(
            &client,
            &ns,
            secret(
                "redis-external-app-1234",
                &[("key", "app-key"), ("secret", "rotated-app-secret")],
            ),
        )
        .await;
        let apps: Api<Secret> = Api::namespaced(client.clone(), &ns);
        eventually(
            "the apps Secret to carry the rotated secret",
            PATIENCE,
            || async {
                let s = apps
                    .get(&names::apps_secret(&get_cluster(&client, &ns, &name).await))
                    .await
                    .unwrap();
                let v = s
                    .data
                    .unwrap_or_default()
                    .get("1234.secret")
                    .map(|b| b.0.clone());
                (v.as_deref() == Some(b"rotated-app-secret".as_slice()))
                    .then_some(())
                    .ok_or_else(|| format!("{v:?}"))
            },
        )
        .await;
        tokio::time::sleep(SETTLE).await;
        let d = deployment(&client, &ns, &name).await;
        assert_eq!(
            template_hash(&d),
            Some(h2),
            "an app Secret rotation must not roll the pods"
        );
    });
}

/// Switching the adapter from redis to nats creates the NATS children; the managed Redis stays
/// while the rate limiter uses it and goes when nothing does.
#[test]
fn switching_the_adapter_to_nats_prunes_redis_only_when_unused() {
    run(async {
        let (_, client, ns, name) =
            example_in_new_namespace("switch", "2-multi-node-redis.yaml").await;
        let uid = get_cluster(&client, &ns, &name).await.uid().unwrap();
        let redis_sts = format!("{name}-redis");
        let sets: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
        let expect_children = |client: kube::Client| {
            let ns = ns.clone();
            let name = name.clone();
            let uid = uid.clone();
            async move {
                let c =
                    wait_cluster(&client, &ns, &name, "the new generation", observed_current).await;
                let desired = desired_for(&client, &c).await;
                wait_children(&client, &ns, &uid, &desired_kind_names(&desired)).await
            }
        };
        expect_children(client.clone()).await;
        assert!(sets.get_opt(&redis_sts).await.unwrap().is_some());

        patch_cluster(
            &client,
            &ns,
            &name,
            json!({"spec": {
                "adapter": {"driver": "nats"},
                "nats": {"managed": {"replicas": 3}},
            }}),
        )
        .await;
        let live = expect_children(client.clone()).await;
        let sts: BTreeSet<String> = live
            .iter()
            .filter(|l| l.kind == "StatefulSet")
            .filter_map(|l| l.meta.name.clone())
            .collect();
        assert!(
            sts.contains(&redis_sts),
            "the rate limiter still uses Redis: {sts:?}"
        );
        assert!(
            sts.iter().any(|s| s.contains("nats")),
            "NATS created: {sts:?}"
        );

        patch_cluster(
            &client,
            &ns,
            &name,
            json!({"spec": {"rateLimiter": {"driver": "memory"}}}),
        )
        .await;
        let live = expect_children(client.clone()).await;
        assert!(
            !live.iter().any(|l| l
                .meta
                .labels
                .as_ref()
                .and_then(|l| l.get(names::LABEL_NAME))
                .map(String::as_str)
                == Some("redis")),
            "no Redis child left: {:?}",
            kind_names(&live)
        );
        assert!(sets.get_opt(&redis_sts).await.unwrap().is_none());
    });
}

/// The pause annotation: nothing is applied or deleted, status still follows the spec.
#[test]
fn the_pause_annotation_stops_all_writes_but_status() {
    run(async {
        let (_, client, ns, name) = example_in_new_namespace("pause", "1-single-node.yaml").await;
        let (c, _) = wait_reconciled(&client, &ns, &name).await;
        let uid = c.uid().unwrap();
        let d0 = deployment(&client, &ns, &name).await;

        patch_cluster(
            &client,
            &ns,
            &name,
            json!({"metadata": {"annotations": {"sockudo.io/reconcile": "paused"}}}),
        )
        .await;
        wait_cluster(&client, &ns, &name, "ReconciliationPaused", |c| {
            condition_is(c, "ReconciliationPaused", "True")
        })
        .await;
        let before = owned_children(&client, &ns, &uid).await;
        patch_cluster(
            &client,
            &ns,
            &name,
            json!({"spec": {"server": {"logLevel": "debug"}}}),
        )
        .await;
        let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
        cms.delete(&names::config_map(&c), &DeleteParams::default())
            .await
            .unwrap();
        let c = wait_cluster(
            &client,
            &ns,
            &name,
            "status of the new generation while paused",
            observed_current,
        )
        .await;
        assert!(
            condition_is(&c, "ReconciliationPaused", "True"),
            "{}",
            describe(&c)
        );
        tokio::time::sleep(SETTLE).await;
        let after = owned_children(&client, &ns, &uid).await;
        assert!(
            cms.get_opt(&names::config_map(&c)).await.unwrap().is_none(),
            "paused: a deleted child is not recreated"
        );
        let mut expected = operator_write_times(&before);
        expected.remove(&("ConfigMap".to_string(), names::config_map(&c)));
        assert_eq!(
            expected,
            operator_write_times(&after),
            "paused: nothing applied"
        );
        let d1 = deployment(&client, &ns, &name).await;
        assert_eq!(d0.metadata.generation, d1.metadata.generation);

        patch_cluster(
            &client,
            &ns,
            &name,
            json!({"metadata": {"annotations": {"sockudo.io/reconcile": null}}}),
        )
        .await;
        let c = wait_cluster(&client, &ns, &name, "unpaused", |c| {
            condition(c, "ReconciliationPaused").is_none() && observed_current(c)
        })
        .await;
        let desired = desired_for(&client, &c).await;
        wait_children(&client, &ns, &uid, &desired_kind_names(&desired)).await;
        wait_rolled(&client, &c).await;
        assert_ne!(template_hash(&d0), Some(desired.config_hash.clone()));
    });
}

/// `kubectl scale sockudocluster/x --replicas=5` goes through the scale subresource to the
/// Deployment and back to status.
#[test]
fn kubectl_scale_works_through_the_scale_subresource() {
    run(async {
        let (env, client, ns, name) =
            example_in_new_namespace("scale", "2-multi-node-redis.yaml").await;
        wait_cluster(&client, &ns, &name, "a status", observed_current).await;
        let kubeconfig = env.plane.admin_kubeconfig.clone();
        let target = format!("sockudocluster/{name}");
        let ns2 = ns.clone();
        let out = tokio::task::spawn_blocking(move || {
            std::process::Command::new("kubectl")
                .args(["--kubeconfig"])
                .arg(&kubeconfig)
                .args(["-n", &ns2, "scale", &target, "--replicas=5"])
                .output()
        })
        .await
        .unwrap()
        .expect(
            "kubectl is not installed: run tests/setup/install-deps.sh (apt-get install kubectl)",
        );
        assert!(
            out.status.success(),
            "kubectl scale: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        eventually("the Deployment to have 5 replicas", PATIENCE, || async {
            let d = deployment(&client, &ns, &name).await;
            let r = d.spec.unwrap().replicas;
            (r == Some(5)).then_some(()).ok_or_else(|| format!("{r:?}"))
        })
        .await;
        let c = wait_cluster(&client, &ns, &name, "status.replicas 5", |c| {
            c.status.as_ref().is_some_and(|s| s.replicas == 5)
        })
        .await;
        assert_eq!(c.spec.replicas, 5);
        // The scale subresource reads what the operator reports.
        let api: Api<SockudoCluster> = Api::namespaced(client.clone(), &ns);
        let scale = api.get_scale(&name).await.unwrap();
        assert_eq!(scale.spec.unwrap().replicas, Some(5));
        let s = scale.status.unwrap();
        assert_eq!(s.replicas, 5);
        assert_eq!(
            s.selector.as_deref(),
            Some(names::server_selector_string(&c).as_str())
        );
    });
}

/// Deleting the SockudoCluster lets the garbage collector remove every child.
#[test]
fn deleting_the_cluster_garbage_collects_every_child() {
    run(async {
        let (_, client, ns, name) = example_in_new_namespace("gc", "4-multi-node-nats.yaml").await;
        let (c, _) = wait_reconciled(&client, &ns, &name).await;
        let uid = c.uid().unwrap();
        Api::<SockudoCluster>::namespaced(client.clone(), &ns)
            .delete(&name, &DeleteParams::background())
            .await
            .unwrap();
        // The garbage collector discovers a new kind within 30 s; be generous.
        sockudo_operator_e2e::eventually(
            "every child to be collected",
            Duration::from_secs(180),
            || async {
                let left = owned_children(&client, &ns, &uid).await;
                left.is_empty()
                    .then_some(())
                    .ok_or_else(|| format!("{:?}", kind_names(&left)))
            },
        )
        .await;
    });
}

/// The schema rejects an invalid SockudoCluster with a message naming the field. (CEL rules,
/// e.g. `replicas > 1` needing an adapter other than `local`, are dropped by this 1.20 API
/// server; the operator's client-side tests check them, and the operator reports them in status.)
#[test]
fn an_invalid_cluster_is_rejected_by_the_schema() {
    run(async {
        let (_, client, ns) = in_new_namespace("invalid").await;
        let api: Api<SockudoCluster> = Api::namespaced(client.clone(), &ns);
        let bad: SockudoCluster = serde_json::from_value(json!({
            "apiVersion": "sockudo.io/v1alpha1", "kind": "SockudoCluster",
            "metadata": {"name": "bad"},
            "spec": {"replicas": -1, "apps": [{"id": "1", "secretRef": {"name": "s"}}]}
        }))
        .unwrap();
        let err = api.create(&PostParams::default(), &bad).await.unwrap_err();
        let kube::Error::Api(status) = err else {
            panic!("{err}")
        };
        assert_eq!(status.code, 422);
        assert!(
            status.message.contains("spec.replicas")
                && status.message.contains("greater than or equal to 0"),
            "{}",
            status.message
        );
        // Wrong enum value, sent raw (the Rust types could not even express it).
        let raw = json!({
            "apiVersion": "sockudo.io/v1alpha1", "kind": "SockudoCluster",
            "metadata": {"name": "bad2"},
            "spec": {"replicas": 1, "adapter": {"driver": "bogus"}, "apps": [{"id": "1", "secretRef": {"name": "s"}}]}
        });
        let dyn_api: Api<kube::api::DynamicObject> = Api::namespaced_with(
            client.clone(),
            &ns,
            &kube::api::ApiResource::erase::<SockudoCluster>(&()),
        );
        let err = dyn_api
            .create(
                &PostParams::default(),
                &serde_json::from_value(raw).unwrap(),
            )
            .await
            .unwrap_err();
        let kube::Error::Api(status) = err else {
            panic!("{err}")
        };
        assert!(
            status.message.contains("spec.adapter.driver")
                && status.message.contains("Unsupported value"),
            "{}",
            status.message
        );

        // Integers beyond their Rust type: `format: uint32` / `int32` alone is not checked by
        // the API server, so every integer carries its type's bounds (else the typed client
        // could not read the object back).
        for (field, spec, path, bound) in [
            (
                "u32",
                json!({"replicas": 1, "apps": [{"id": "1", "secretRef": {"name": "s"},
                       "limits": {"maxClientEventsPerSecond": 5_000_000_000u64}}]}),
                "spec.apps.limits.maxClientEventsPerSecond",
                "less than or equal to 4294967295",
            ),
            (
                "i32",
                json!({"replicas": 5_000_000_000u64, "apps": [{"id": "1", "secretRef": {"name": "s"}}]}),
                "spec.replicas",
                "less than or equal to 2147483647",
            ),
            // And a malformed image digest (the pattern is enforced by every API server).
            (
                "digest",
                json!({"replicas": 1, "image": {"digest": "sha256:ABC"},
                       "apps": [{"id": "1", "secretRef": {"name": "s"}}]}),
                "spec.image.digest",
                "should match '^sha256:[a-f0-9]{64}$'",
            ),
        ] {
            let raw = json!({
                "apiVersion": "sockudo.io/v1alpha1", "kind": "SockudoCluster",
                "metadata": {"name": format!("too-big-{field}")}, "spec": spec,
            });
            let err = dyn_api
                .create(
                    &PostParams::default(),
                    &serde_json::from_value(raw).unwrap(),
                )
                .await
                .expect_err("out of range");
            let kube::Error::Api(status) = err else {
                panic!("{err}")
            };
            assert_eq!(status.code, 422, "{}", status.message);
            assert!(
                status.message.contains(path) && status.message.contains(bound),
                "{field}: {}",
                status.message
            );
        }

        // A CEL-only rule: accepted by 1.20, refused by the operator's own validation.
        let cel_only: SockudoCluster = serde_json::from_value(json!({
            "apiVersion": "sockudo.io/v1alpha1", "kind": "SockudoCluster",
            "metadata": {"name": "cel-only"},
            "spec": {"replicas": 3, "adapter": {"driver": "local"}, "apps": [{"id": "1", "secretRef": {"name": "s"}}]}
        }))
        .unwrap();
        api.create(&PostParams::default(), &cel_only)
            .await
            .expect("1.20 does not enforce CEL");
        let c = wait_cluster(&client, &ns, "cel-only", "InvalidSpec", |c| {
            condition(c, "Degraded").is_some_and(|d| d.reason == "InvalidSpec")
        })
        .await;
        assert!(describe(&c).contains("local"), "{}", describe(&c));
    });
}

/// A SockudoCluster the API server accepts but the operator cannot read does not stop the
/// reconciliation of the others.
///
/// How such an object is produced, honestly: the spec can no longer be the way (every integer
/// now carries the bounds of its type, see `an_invalid_cluster_is_rejected_by_the_schema`), but
/// the status can. The API server checks `format: date-time` with Go's parser, which takes any
/// number of fractional digits, while the operator's RFC 3339 parser (jiff, through k8s-openapi)
/// stops at nanoseconds. So a client other than the operator (a `kubectl edit
/// --subresource=status`, a restore tool) writing a condition time with 10 fractional digits
/// leaves an object the schema accepts and the typed client cannot deserialize.
#[test]
fn a_malformed_cluster_does_not_stop_the_others() {
    run(async {
        let (_, client, ns) = in_new_namespace("malformed").await;
        let typed: Api<SockudoCluster> = Api::namespaced(client.clone(), &ns);
        let valid: SockudoCluster = serde_json::from_value(json!({
            "apiVersion": "sockudo.io/v1alpha1", "kind": "SockudoCluster",
            "metadata": {"name": "malformed"},
            "spec": {"replicas": 1, "apps": [{"id": "1", "secretRef": {"name": "s"}}]}
        }))
        .unwrap();
        create_cluster(&client, &ns, &valid).await;
        // Untyped: the typed client could not even read the API server's answer.
        let dyn_api: Api<kube::api::DynamicObject> = Api::namespaced_with(
            client.clone(),
            &ns,
            &kube::api::ApiResource::erase::<SockudoCluster>(&()),
        );
        let bad_status = json!({"status": {"conditions": [{
            "type": "Ready", "status": "False", "reason": "Restored", "message": "restored",
            "lastTransitionTime": "2024-01-01T00:00:00.1234567891Z",
        }]}});
        // The operator reconciles the valid object meanwhile; a status write of its own that
        // lands after ours would replace the conditions, so write until it has seen ours.
        eventually(
            "an InvalidObject Warning about the malformed one",
            PATIENCE,
            || async {
                dyn_api
                    .patch_status(
                        "malformed",
                        &PatchParams::default(),
                        &Patch::Merge(&bad_status),
                    )
                    .await
                    .map_err(|e| format!("the API server refused the status: {e}"))?;
                tokio::time::sleep(Duration::from_secs(2)).await;
                let events = operator_events(&client, &ns, "malformed").await;
                events
                    .iter()
                    .any(|e| {
                        e.reason.as_deref() == Some("InvalidObject")
                            && e.type_.as_deref() == Some("Warning")
                    })
                    .then_some(())
                    .ok_or_else(|| format!("{} events", events.len()))
            },
        )
        .await;
        let err = typed
            .get("malformed")
            .await
            .expect_err("the typed client cannot read it");
        assert!(matches!(err, kube::Error::SerdeError(_)), "{err}");

        let name = apply_example(&client, &ns, "1-single-node.yaml").await;
        wait_reconciled(&client, &ns, &name).await;
        // And later changes of the good one are still picked up.
        change_server_setting(&client, &ns, &name).await;
    });
}

/// Optional APIs missing on 1.20 (policy/v1 PDB, autoscaling/v2 HPA, the ServiceMonitor CRD,
/// a StatefulSet's PVC retention policy) are skipped and reported in status, not retried as
/// errors.
#[test]
fn missing_optional_apis_are_skipped_and_reported() {
    run(async {
        let (_, client, ns) = in_new_namespace("optional").await;
        create_or_replace_secret(
            &client,
            &ns,
            secret("app", &[("key", "k"), ("secret", "s")]),
        )
        .await;
        let c: SockudoCluster = serde_json::from_value(json!({
            "apiVersion": "sockudo.io/v1alpha1", "kind": "SockudoCluster",
            "metadata": {"name": "optional"},
            "spec": {
                "replicas": 3,
                "adapter": {"driver": "nats"},
                "nats": {"managed": {"storage": {"size": "1Gi", "whenDeleted": "Delete"}}},
                "autoscaling": {"minReplicas": 3, "maxReplicas": 6},
                "metrics": {"serviceMonitor": {"interval": "30s"}},
                "apps": [{"id": "1", "secretRef": {"name": "app"}}]
            }
        }))
        .unwrap();
        create_cluster(&client, &ns, &c).await;
        let c = wait_cluster(&client, &ns, "optional", "skipped APIs reported", |c| {
            observed_current(c) && c.status.as_ref().is_some_and(|s| s.skipped.len() >= 4)
        })
        .await;
        let skipped = &c.status.as_ref().unwrap().skipped;
        for want in [
            "PodDisruptionBudget (policy/v1)",
            "HorizontalPodAutoscaler (autoscaling/v2)",
            "ServiceMonitor (monitoring.coreos.com/v1)",
            sockudo_operator::build::RETENTION_SKIPPED,
        ] {
            assert!(skipped.contains(&want.to_string()), "{skipped:?}");
        }
        assert!(condition_is(&c, "Degraded", "False"), "{}", describe(&c));
        let events = operator_events(&client, &ns, "optional").await;
        assert!(
            !events.iter().any(|e| e.type_.as_deref() == Some("Warning")),
            "no error loop: {:?}",
            events
                .iter()
                .map(|e| (&e.reason, &e.note))
                .collect::<Vec<_>>()
        );
        let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client.clone(), &ns);
        let _ = pods.list(&ListParams::default()).await.unwrap();
    });
}

/// Changing an immutable StatefulSet field (the managed Redis storage size, in its
/// `volumeClaimTemplates`) re-creates the StatefulSet: the old one is deleted orphaning its pod
/// and claim, which the new one adopts (same pod, same volume: no downtime); an Event says so,
/// the SockudoCluster is not Degraded, and it happens once, not on every reconcile.
#[test]
fn an_immutable_field_change_recreates_the_stateful_set_and_keeps_its_pod() {
    run(async {
        let (_, client, ns, name) =
            example_in_new_namespace("recreate", "redis-managed.yaml").await;
        let sts = format!("{name}-redis");
        let sets: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
        let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
        let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns);
        let pod_name = format!("{sts}-0");
        let claim_name = format!("data-{sts}-0");
        let (old_uid, pod_uid, claim_uid) = eventually(
            "the Redis StatefulSet, its pod and its claim",
            PATIENCE,
            || async {
                let s = sets.get_opt(&sts).await.map_err(|e| e.to_string())?;
                let p = pods.get_opt(&pod_name).await.map_err(|e| e.to_string())?;
                let c = claims
                    .get_opt(&claim_name)
                    .await
                    .map_err(|e| e.to_string())?;
                match (s, p, c) {
                    (Some(s), Some(p), Some(c)) => Ok((s.uid(), p.uid(), c.uid())),
                    other => Err(format!(
                        "{:?}",
                        (other.0.is_some(), other.1.is_some(), other.2.is_some())
                    )),
                }
            },
        )
        .await;
        let storage = |s: &StatefulSet| {
            s.spec.as_ref()?.volume_claim_templates.as_ref()?[0]
                .spec
                .as_ref()?
                .resources
                .as_ref()?
                .requests
                .as_ref()?
                .get("storage")
                .map(|q| q.0.clone())
        };
        assert_eq!(
            storage(&sets.get(&sts).await.unwrap()).as_deref(),
            Some("1Gi")
        );

        patch_cluster(
            &client,
            &ns,
            &name,
            json!({"spec": {"redis": {"managed": {"storage": {"size": "3Gi"}}}}}),
        )
        .await;
        let new = eventually(
            "the StatefulSet re-created with the new volumeClaimTemplates",
            PATIENCE,
            || async {
                let s = sets.get_opt(&sts).await.map_err(|e| e.to_string())?;
                match s {
                    Some(s) if s.uid() != old_uid && storage(&s).as_deref() == Some("3Gi") => Ok(s),
                    Some(s) => Err(format!("uid {:?} storage {:?}", s.uid(), storage(&s))),
                    None => Err("gone".into()),
                }
            },
        )
        .await;
        let new_uid = new.uid();

        // The pod and its volume were kept, and the new StatefulSet adopted the pod.
        eventually(
            "the pod adopted by the new StatefulSet",
            PATIENCE,
            || async {
                let p = pods.get(&pod_name).await.map_err(|e| e.to_string())?;
                let owner = p
                    .owner_references()
                    .iter()
                    .find(|o| o.controller == Some(true))
                    .map(|o| o.uid.clone());
                if p.uid() != pod_uid {
                    panic!("the pod was re-created: {:?} -> {:?}", pod_uid, p.uid());
                }
                (owner == new_uid)
                    .then_some(())
                    .ok_or_else(|| format!("owner {owner:?}"))
            },
        )
        .await;
        assert_eq!(claims.get(&claim_name).await.unwrap().uid(), claim_uid);

        let c = wait_cluster(&client, &ns, &name, "the new generation", observed_current).await;
        assert!(condition_is(&c, "Degraded", "False"), "{}", describe(&c));
        let events = operator_events(&client, &ns, &name).await;
        let recreated: Vec<_> = events
            .iter()
            .filter(|e| e.reason.as_deref() == Some("Recreated"))
            .collect();
        assert_eq!(recreated.len(), 1, "one Recreated Event: {recreated:?}");
        assert!(
            recreated[0]
                .note
                .as_deref()
                .unwrap_or_default()
                .contains(&sts),
            "{:?}",
            recreated[0].note
        );

        // Once: later reconciles leave the new StatefulSet alone.
        change_server_setting(&client, &ns, &name).await;
        tokio::time::sleep(SETTLE).await;
        assert_eq!(sets.get(&sts).await.unwrap().uid(), new_uid);
    });
}

/// A managed standalone Redis of the `redis-managed.yaml` example whose volumes use the
/// StorageClass `class`; returns its name and its claim once the claim exists, marked bound (as
/// the volume binder would; there is none here) at the example's 1Gi.
async fn redis_with_storage_class(
    client: &kube::Client,
    ns: &str,
    class: &str,
) -> (String, String) {
    let mut name = None;
    for doc in example_docs("redis-managed.yaml") {
        match doc["kind"].as_str() {
            Some("Secret") => {
                create_or_replace_secret(client, ns, serde_json::from_value(doc).unwrap()).await;
            }
            _ => {
                let mut c: SockudoCluster = serde_json::from_value(doc).unwrap();
                let storage = c.spec.redis.as_mut().unwrap().managed.as_mut().unwrap();
                let storage = storage.storage.as_mut().unwrap();
                assert_eq!(storage.size, "1Gi");
                storage.storage_class_name = Some(class.into());
                name = Some(c.name_any());
                create_cluster(client, ns, &c).await;
            }
        }
    }
    let name = name.unwrap();
    let claim = format!("data-{name}-redis-0");
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
    eventually("the Redis claim", PATIENCE, || async {
        claims
            .get_opt(&claim)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| "not yet".to_string())
    })
    .await;
    let bound = json!({"status": {"phase": "Bound", "capacity": {"storage": "1Gi"}}});
    claims
        .patch_status(&claim, &PatchParams::default(), &Patch::Merge(&bound))
        .await
        .unwrap();
    (name, claim)
}

fn requested(claim: &PersistentVolumeClaim) -> Option<String> {
    let requests = claim.spec.as_ref()?.resources.as_ref()?.requests.as_ref()?;
    requests.get("storage").map(|q| q.0.clone())
}

/// Growing a managed backend's storage size grows its existing, bound claim when the
/// StorageClass allows expansion (an Event says so, `VolumesResized` is True); with a
/// StorageClass that does not, the API server's refusal is in `VolumesResized` (False,
/// `ExpansionRefused`). A smaller size is refused: the claim keeps its size, `VolumesResized`
/// is False with `ShrinkRefused` naming the claim, and a Warning Event is recorded.
#[test]
fn growing_storage_grows_bound_claims_and_a_shrink_is_refused() {
    use k8s_openapi::api::storage::v1::StorageClass;

    run(async {
        let (env, client, ns) = in_new_namespace("grow").await;
        let fixed_ns = env.plane.namespace("grow-fixed").await;
        let classes: Api<StorageClass> = Api::all(client.clone());
        let (expandable, fixed) = (format!("{ns}-expandable"), format!("{ns}-fixed"));
        for (class, expand) in [(&expandable, true), (&fixed, false)] {
            let sc: StorageClass = serde_json::from_value(json!({
                "metadata": {"name": class},
                "provisioner": "example.com/none",
                "allowVolumeExpansion": expand,
            }))
            .unwrap();
            classes.create(&PostParams::default(), &sc).await.unwrap();
        }
        let (name, claim) = redis_with_storage_class(&client, &ns, &expandable).await;
        let (fixed_name, fixed_claim) = redis_with_storage_class(&client, &fixed_ns, &fixed).await;
        let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns);
        let fixed_claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &fixed_ns);
        let resize =
            |size: &str| json!({"spec": {"redis": {"managed": {"storage": {"size": size}}}}});
        let volumes = |c: &SockudoCluster| {
            condition(c, "VolumesResized")
                .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
        };

        patch_cluster(&client, &ns, &name, resize("2Gi")).await;
        patch_cluster(&client, &fixed_ns, &fixed_name, resize("2Gi")).await;
        eventually("the bound claim grown to 2Gi", PATIENCE, || async {
            let c = claims.get(&claim).await.map_err(|e| e.to_string())?;
            (requested(&c).as_deref() == Some("2Gi"))
                .then_some(())
                .ok_or(format!("{:?}", requested(&c)))
        })
        .await;
        let c = wait_cluster(&client, &ns, &name, "VolumesResized True", |c| {
            observed_current(c) && condition_is(c, "VolumesResized", "True")
        })
        .await;
        assert!(condition_is(&c, "Degraded", "False"), "{}", describe(&c));
        let events = operator_events(&client, &ns, &name).await;
        assert!(
            events
                .iter()
                .any(|e| e.reason.as_deref() == Some("VolumeGrown")
                    && e.note
                        .as_deref()
                        .is_some_and(|n| n.contains(&claim) && n.contains("1Gi to 2Gi"))),
            "{events:#?}"
        );

        let c = wait_cluster(&client, &fixed_ns, &fixed_name, "ExpansionRefused", |c| {
            observed_current(c)
                && volumes(c).is_some_and(|(s, r, _)| s == "False" && r == "ExpansionRefused")
        })
        .await;
        let (_, _, message) = volumes(&c).unwrap();
        assert!(message.contains(&fixed_claim), "{message}");
        assert!(
            message.contains("storageclass that provisions the pvc must support resize"),
            "{message}"
        );
        let kept = fixed_claims.get(&fixed_claim).await.unwrap();
        assert_eq!(requested(&kept).as_deref(), Some("1Gi"));

        // Shrinking back: refused, the claim keeps 2Gi.
        patch_cluster(&client, &ns, &name, resize("1Gi")).await;
        let c = wait_cluster(&client, &ns, &name, "ShrinkRefused", |c| {
            observed_current(c)
                && volumes(c).is_some_and(|(s, r, _)| s == "False" && r == "ShrinkRefused")
        })
        .await;
        let (_, _, message) = volumes(&c).unwrap();
        assert!(
            message.contains(&format!("{claim} has 2Gi, the spec asks 1Gi")),
            "{message}"
        );
        tokio::time::sleep(SETTLE).await;
        let kept = claims.get(&claim).await.unwrap();
        assert_eq!(requested(&kept).as_deref(), Some("2Gi"));
        // The StatefulSet keeps asking for 2Gi: a pod added later gets a volume as large as
        // its siblings', and the refused change did not re-create the StatefulSet.
        let sets: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
        let set_name = claim
            .strip_prefix("data-")
            .and_then(|c| c.strip_suffix("-0"))
            .unwrap();
        let set = sets.get(set_name).await.unwrap();
        let templates = set.spec.unwrap().volume_claim_templates.unwrap();
        assert_eq!(requested(&templates[0]).as_deref(), Some("2Gi"));
        let events = operator_events(&client, &ns, &name).await;
        assert!(
            events.iter().any(|e| e.type_.as_deref() == Some("Warning")
                && e.reason.as_deref() == Some("ShrinkRefused")),
            "{events:#?}"
        );
    });
}

/// Moving a fleet to another adapter splits it while its pods roll (old and new pods do not
/// hear each other): `status.warnings` says so until the rollout ends, and
/// `status.interconnect` then names the new interconnect.
#[test]
fn an_adapter_change_warns_while_the_fleet_is_split() {
    run(async {
        let (_, client, ns, name) =
            example_in_new_namespace("interconnect", "redis-external.yaml").await;
        let c = drive_to_ready(&client, &ns, &name).await;
        let before = c.status.as_ref().unwrap().interconnect.clone();
        let before = before.expect("recorded once the first rollout completed");
        assert!(
            before.starts_with("redis redis.example.internal:6380 db 0, prefix "),
            "{before}"
        );
        let split = |c: &SockudoCluster| {
            c.status.as_ref().is_some_and(|s| {
                s.warnings
                    .iter()
                    .any(|w| w.starts_with("the adapter changes from"))
            })
        };
        assert!(!split(&c), "{}", describe(&c));

        patch_cluster(
            &client,
            &ns,
            &name,
            json!({"spec": {
                "adapter": {"driver": "nats"},
                "nats": {"external": {"servers": ["nats://nats.example.internal:4222"]}},
            }}),
        )
        .await;
        let c = wait_cluster(&client, &ns, &name, "the split warned", |c| {
            observed_current(c) && split(c)
        })
        .await;
        let status = c.status.as_ref().unwrap();
        assert_eq!(status.interconnect.as_deref(), Some(before.as_str()));
        let warning = status
            .warnings
            .iter()
            .find(|w| w.starts_with("the adapter changes from"))
            .unwrap();
        assert!(
            warning.contains(&before) && warning.contains("nats nats://nats.example.internal:4222"),
            "{warning}"
        );

        drive_to_ready(&client, &ns, &name).await;
        let c = wait_cluster(&client, &ns, &name, "the split over", |c| {
            observed_current(c) && !split(c)
        })
        .await;
        let after = c.status.as_ref().unwrap().interconnect.as_deref().unwrap();
        assert!(
            after.starts_with("nats nats://nats.example.internal:4222"),
            "{after}"
        );
    });
}
