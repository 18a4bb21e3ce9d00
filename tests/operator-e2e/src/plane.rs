//! Starting and stopping control planes, installing the CRD and RBAC, running the operator.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::rbac::v1::{ClusterRole, RoleBinding, RoleRef, Subject};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, ResourceExt};
use sockudo_operator::controller::{self, Config};
use tokio::sync::{OnceCell, oneshot};
use tokio::task::JoinHandle;

use crate::{PATIENCE, eventually, workspace_root};

/// The user of `kubeconfig-operator`: the chart's ServiceAccount in the chart's namespace.
pub const OPERATOR_NAMESPACE: &str = "sockudo-system";
pub const OPERATOR_SERVICE_ACCOUNT: &str = "sockudo-operator";
/// The field manager the harness uses for its own writes (never the operator's).
pub const TEST_MANAGER: &str = "sockudo-e2e";

fn script() -> PathBuf {
    workspace_root().join("tests/control-plane/control-plane.sh")
}

/// Control-plane directories to stop when the process exits.
static RUNNING: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

extern "C" fn stop_all_at_exit() {
    let dirs = std::mem::take(&mut *RUNNING.lock().unwrap_or_else(|e| e.into_inner()));
    for dir in dirs {
        stop_dir(&dir);
    }
}

fn stop_dir(dir: &Path) {
    let _ = Command::new(script())
        .arg("stop")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if std::env::var_os("SOCKUDO_E2E_KEEP").is_none() {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// A detached `sh` that stops the control plane once this process is gone, whatever killed it
/// (the `atexit` handler covers the normal exit; this covers SIGKILL and Ctrl-C).
fn spawn_watchdog(dir: &Path) {
    use std::os::unix::process::CommandExt;
    let pid = std::process::id();
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(r#"while kill -0 "$1" 2>/dev/null; do sleep 1; done; exec "$2" stop "$3""#)
        .arg("watchdog")
        .arg(pid.to_string())
        .arg(script())
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: setsid is async-signal-safe; it detaches the watchdog from our process group.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    // Not waited for on purpose: it outlives this process (it only acts once we are gone).
    #[allow(clippy::zombie_processes)]
    cmd.spawn().expect("spawn the control-plane watchdog");
}

/// One running control plane.
pub struct Plane {
    pub dir: PathBuf,
    pub admin_kubeconfig: PathBuf,
    admin: kube::Config,
    operator: kube::Config,
    next_namespace: AtomicU32,
}

async fn config_of(path: &Path) -> kube::Config {
    let kc = Kubeconfig::read_from(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

impl Plane {
    /// Starts a control plane (building the binaries first on a fresh machine), installs the CRD
    /// and waits until it is Established.
    pub async fn start(label: &str) -> Plane {
        let dir = tempfile::Builder::new()
            .prefix(&format!("sockudo-e2e-{label}-"))
            .tempdir()
            .expect("temp dir")
            .keep();
        RUNNING.lock().unwrap().push(dir.clone());
        static REGISTER: std::sync::Once = std::sync::Once::new();
        // SAFETY: registering a plain `extern "C" fn` with atexit.
        REGISTER.call_once(|| unsafe {
            libc::atexit(stop_all_at_exit);
        });
        spawn_watchdog(&dir);
        let d = dir.clone();
        let out = tokio::task::spawn_blocking(move || {
            Command::new(script())
                .arg("start")
                .arg(&d)
                .stdin(Stdio::null())
                .output()
        })
        .await
        .expect("join")
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script().display()));
        assert!(
            out.status.success(),
            "`control-plane.sh start` failed (it installs etcd-server, golang-go... with apt-get \
             and builds kube-apiserver on first use; see tests/control-plane/README.md):\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!("e2e: control plane {label} up in {}", dir.display());
        let plane = Plane {
            admin_kubeconfig: dir.join("kubeconfig"),
            admin: config_of(&dir.join("kubeconfig")).await,
            operator: config_of(&dir.join("kubeconfig-operator")).await,
            dir,
            next_namespace: AtomicU32::new(0),
        };
        plane.install_crd().await;
        plane
            .create_namespace_named(OPERATOR_NAMESPACE, BTreeMap::new())
            .await;
        plane
    }

    /// A client with cluster-admin rights: what the tests (not the operator) use.
    pub fn admin(&self) -> Client {
        Client::try_from(self.admin.clone()).expect("admin client")
    }

    /// A client authenticated as the operator's ServiceAccount: only what RBAC grants it.
    pub fn operator_client(&self) -> Client {
        Client::try_from(self.operator.clone()).expect("operator client")
    }

    async fn install_crd(&self) {
        let crd = sockudo_operator::crd::generate::crd();
        // What is shipped in crds/ is what the test installs.
        let shipped: CustomResourceDefinition = serde_yaml::from_str(
            &std::fs::read_to_string(workspace_root().join("crds/sockudocluster.yaml"))
                .expect("crds/sockudocluster.yaml"),
        )
        .expect("crds/sockudocluster.yaml parses");
        assert_eq!(
            shipped, crd,
            "crds/ is stale: run cargo run -p sockudo-operator --bin crdgen"
        );
        let api: Api<CustomResourceDefinition> = Api::all(self.admin());
        // Created, not server-side applied: a 1.20 API server refuses an apply that carries
        // `x-kubernetes-validations` (unknown to it) but silently drops it on create. Its CEL
        // rules are therefore not enforced here; the operator's client-side tests cover them.
        api.create(&PostParams::default(), &shipped)
            .await
            .expect("install the CRD");
        let name = crd.name_any();
        eventually("the CRD to be Established", PATIENCE, || {
            let api = api.clone();
            let name = name.clone();
            async move {
                let crd = api.get(&name).await.map_err(|e| e.to_string())?;
                let established = crd
                    .status
                    .and_then(|s| s.conditions)
                    .unwrap_or_default()
                    .iter()
                    .any(|c| c.type_ == "Established" && c.status == "True");
                established.then_some(()).ok_or_else(|| "not yet".into())
            }
        })
        .await;
    }

    async fn create_namespace_named(&self, name: &str, labels: BTreeMap<String, String>) {
        let api: Api<Namespace> = Api::all(self.admin());
        let ns = Namespace {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: Some(labels),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        match api.create(&PostParams::default(), &ns).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => panic!("create namespace {name}: {e}"),
        }
    }

    /// A fresh namespace for one test (`e2e-<test>-<n>`).
    pub async fn namespace(&self, test: &str) -> String {
        let n = self.next_namespace.fetch_add(1, Ordering::Relaxed);
        let name = format!("e2e-{}-{n}", test.replace('_', "-"));
        self.create_namespace_named(&name, BTreeMap::new()).await;
        name
    }

    /// Applies admin-side objects given as JSON values (any kind the API server serves).
    pub async fn apply_values(&self, docs: &[serde_json::Value], default_ns: Option<&str>) {
        let client = self.admin();
        for doc in docs {
            let (group, version) = match doc["apiVersion"].as_str().unwrap().split_once('/') {
                Some((g, v)) => (g.to_string(), v.to_string()),
                None => (
                    String::new(),
                    doc["apiVersion"].as_str().unwrap().to_string(),
                ),
            };
            let kind = doc["kind"].as_str().unwrap();
            let gvk = GroupVersionKind::gvk(&group, &version, kind);
            let (ar, caps) = kube::discovery::pinned_kind(&client, &gvk)
                .await
                .unwrap_or_else(|e| panic!("discover {kind}: {e}"));
            let obj: DynamicObject = serde_json::from_value(doc.clone()).unwrap();
            let api: Api<DynamicObject> = if caps.scope == kube::discovery::Scope::Namespaced {
                let ns = obj
                    .namespace()
                    .or(default_ns.map(String::from))
                    .expect("namespace");
                Api::namespaced_with(client.clone(), &ns, &ar)
            } else {
                Api::all_with(client.clone(), &ar)
            };
            api.patch(
                &obj.name_any(),
                &PatchParams::apply(TEST_MANAGER).force(),
                &Patch::Apply(&obj),
            )
            .await
            .unwrap_or_else(|e| panic!("apply {kind} {}: {e}", obj.name_any()));
        }
    }

    /// Grants the operator the generated rules of `operator/rbac/clusterrole.yaml` in `ns` only
    /// (a RoleBinding to that ClusterRole): namespace-scoped mode without the chart.
    pub async fn grant_generated_rules_in(&self, ns: &str) {
        let role: ClusterRole = serde_yaml::from_str(
            &std::fs::read_to_string(workspace_root().join(sockudo_operator::rbac::RBAC_PATH))
                .expect("operator/rbac/clusterrole.yaml"),
        )
        .expect("clusterrole.yaml parses");
        let name = role.name_any();
        let roles: Api<ClusterRole> = Api::all(self.admin());
        roles
            .patch(
                &name,
                &PatchParams::apply(TEST_MANAGER).force(),
                &Patch::Apply(&role),
            )
            .await
            .expect("apply the generated ClusterRole");
        let binding = RoleBinding {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(ns.into()),
                ..ObjectMeta::default()
            },
            role_ref: RoleRef {
                api_group: "rbac.authorization.k8s.io".into(),
                kind: "ClusterRole".into(),
                name,
            },
            subjects: Some(vec![operator_subject()]),
        };
        let api: Api<RoleBinding> = Api::namespaced(self.admin(), ns);
        api.patch(
            &binding.name_any(),
            &PatchParams::apply(TEST_MANAGER).force(),
            &Patch::Apply(&binding),
        )
        .await
        .expect("bind the generated rules");
    }

    /// Installs the chart's `watchScope: namespace` RBAC as if the chart were released in `ns`
    /// (a Role and RoleBinding for the SockudoClusters and their children, and the leader-election
    /// Role, all in `ns`), bound to the operator's user: no cluster-wide permission at all.
    pub async fn grant_chart_namespace_rbac(&self, ns: &str) {
        let mut rbac = render_chart_rbac_in(serde_json::json!({ "watchScope": "namespace" }), ns);
        for doc in &mut rbac {
            let kind = doc["kind"].as_str().unwrap_or_default().to_string();
            assert!(
                kind == "Role" || kind == "RoleBinding",
                "watchScope: namespace renders only namespaced RBAC, got {kind}: {doc:#}"
            );
            assert_eq!(doc["metadata"]["namespace"], ns, "{doc:#}");
            // The chart binds its own ServiceAccount in the release namespace; the harness's
            // operator user is the ServiceAccount of `kubeconfig-operator`.
            if kind == "RoleBinding" {
                doc["subjects"] = serde_json::to_value(vec![operator_subject()]).unwrap();
            }
        }
        assert!(
            rbac.iter().any(|d| d["kind"] == "Role"
                && d["rules"]
                    .as_array()
                    .is_some_and(|r| r.iter().any(|r| r["resources"][0] == "sockudoclusters"))),
            "the namespace-scoped chart grants SockudoClusters through a Role: {rbac:#?}"
        );
        self.apply_values(&rbac, Some(ns)).await;
    }

    /// Starts an operator in-process, authenticated as its ServiceAccount.
    pub fn start_operator(&self, config: Config) -> OperatorHandle {
        let client = self.operator_client();
        let (tx, rx) = oneshot::channel::<()>();
        let task = crate::runtime().spawn(async move {
            controller::run_until(client, config, async {
                let _ = rx.await;
            })
            .await
        });
        OperatorHandle {
            stop: Some(tx),
            task,
        }
    }
}

pub fn operator_subject() -> Subject {
    Subject {
        kind: "ServiceAccount".into(),
        name: OPERATOR_SERVICE_ACCOUNT.into(),
        namespace: Some(OPERATOR_NAMESPACE.into()),
        ..Subject::default()
    }
}

/// An operator running in-process.
pub struct OperatorHandle {
    stop: Option<oneshot::Sender<()>>,
    pub task: JoinHandle<Result<(), controller::Error>>,
}

impl OperatorHandle {
    /// Graceful stop (as on SIGTERM): the controller drains, a leader releases its Lease.
    pub async fn stop(mut self) -> Result<(), controller::Error> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        match tokio::time::timeout(Duration::from_secs(60), &mut self.task).await {
            Ok(r) => r.expect("operator task panicked"),
            Err(_) => {
                self.task.abort();
                panic!("the operator did not stop within 60 s");
            }
        }
    }

    /// Drops the operator at once (a standby replica that never led, or a crash).
    pub fn abort(self) {
        self.task.abort();
    }
}

/// Renders the Helm chart's RBAC with the Helm SDK (`helm_python`) and returns its documents.
pub fn render_chart_rbac(values: serde_json::Value) -> Vec<serde_json::Value> {
    render_chart_rbac_in(values, OPERATOR_NAMESPACE)
}

/// Renders the Helm chart's RBAC for a release in `namespace`.
pub fn render_chart_rbac_in(values: serde_json::Value, namespace: &str) -> Vec<serde_json::Value> {
    let root = workspace_root();
    let python = root.join(".venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run tests/setup/install-deps.sh (it creates the venv with helm-python)",
        python.display()
    );
    let program = r#"
import json, sys
import helm_python as helm
import yaml
out = helm.Chart.load(sys.argv[1]).render(json.loads(sys.argv[2]), name="sockudo-operator",
                                          namespace=sys.argv[3], is_install=True)
docs = []
for path, text in sorted(out.items()):
    if path.endswith("/rbac.yaml"):
        docs.extend(d for d in yaml.safe_load_all(text) if d)
print(json.dumps(docs))
"#;
    let out = Command::new(&python)
        .arg("-c")
        .arg(program)
        .arg(root.join("charts/sockudo-operator"))
        .arg(values.to_string())
        .arg(namespace)
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "rendering the chart failed (install-deps.sh installs helm-python):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let docs: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).expect("json");
    assert!(!docs.is_empty(), "the chart rendered no RBAC");
    docs
}

/// The shared control plane and its cluster-wide operator.
pub struct Shared {
    pub plane: Plane,
    /// Where the shared operator serves `/healthz`, `/readyz` and `/metrics`.
    pub operator_http: std::net::SocketAddr,
    _operator: OperatorHandle,
}

/// The shared control plane: one operator watching every namespace, with exactly the RBAC of the
/// chart's default (`watchScope: cluster`) installation, not cluster-admin.
pub async fn shared() -> &'static Shared {
    static SHARED: OnceCell<Shared> = OnceCell::const_new();
    SHARED
        .get_or_init(|| async {
            let plane = Plane::start("shared").await;
            let rbac = render_chart_rbac(serde_json::json!({ "watchScope": "cluster" }));
            assert!(
                rbac.iter()
                    .any(|d| d["kind"] == "ClusterRole"
                        && d["metadata"]["name"] == "sockudo-operator"),
                "the chart's default RBAC has a ClusterRole: {rbac:#?}"
            );
            plane.apply_values(&rbac, Some(OPERATOR_NAMESPACE)).await;
            let operator_http =
                std::net::SocketAddr::from(([127, 0, 0, 1], sockudo_test_backends::free_port()));
            let operator = plane.start_operator(Config {
                namespace: None,
                instance: Some("e2e-shared".into()),
                health_addr: Some(operator_http),
                ..Config::default()
            });
            Shared {
                plane,
                operator_http,
                _operator: operator,
            }
        })
        .await
}

/// A control plane without a cluster-wide operator: tests run namespace-scoped operators in it.
pub async fn scoped() -> &'static Plane {
    static SCOPED: OnceCell<Plane> = OnceCell::const_new();
    SCOPED.get_or_init(|| Plane::start("scoped")).await
}
