"""Chart tests: lint and render with the real Helm SDK, validate every rendered object against the
Kubernetes schemas of the oldest and newest supported versions, and check the chart against crds/."""

import json
import pathlib
import re
import shutil

import helm_python as helm
import jsonschema
import kubernetes_validate
import promql_parser
import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "sockudo-operator"
KUBE_VERSIONS = ["1.33.0", "1.37.0"]
SCENARIOS = sorted((CHART / "ci").glob("*.yaml"))


def values_of(path):
    return yaml.safe_load(path.read_text()) or {}


def render(values, namespace="sockudo-system"):
    out = helm.Chart.load(str(CHART)).render(values, name="so", namespace=namespace, is_install=True)
    docs = []
    for path, text in sorted(out.items()):
        if path.endswith("NOTES.txt"):
            continue
        docs.extend(d for d in yaml.safe_load_all(text) if d)
    return docs


def crd_schemas():
    schemas = {}
    for f in (ROOT / "crds").glob("*.yaml"):
        for crd in yaml.safe_load_all(f.read_text()):
            for v in crd["spec"]["versions"]:
                key = (f"{crd['spec']['group']}/{v['name']}", crd["spec"]["names"]["kind"])
                schemas[key] = v["schema"]["openAPIV3Schema"]
    return schemas


@pytest.mark.parametrize("kube", KUBE_VERSIONS)
@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda p: p.stem)
def test_lint_strict(scenario, kube):
    report = helm.lint(str(CHART), values_of(scenario), strict=True, kube_version=f"v{kube}")
    assert not report["errors"], report
    assert not [m for m in report["messages"] if m["severity"] >= 2], report["messages"]


@pytest.mark.parametrize("kube", KUBE_VERSIONS)
@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda p: p.stem)
def test_rendered_objects_are_valid(scenario, kube):
    custom = crd_schemas()
    docs = render(values_of(scenario))
    assert docs
    for doc in docs:
        key = (doc["apiVersion"], doc["kind"])
        if key in custom:
            errors = list(jsonschema.Draft7Validator(custom[key]).iter_errors(doc))
            assert not errors, [e.message for e in errors]
        else:
            kubernetes_validate.validate(doc, kube, strict=True)


def test_chart_crds_are_the_generated_ones():
    rendered = [d for d in render({}) if d["kind"] == "CustomResourceDefinition"]
    generated = [d for f in sorted((ROOT / "crds").glob("*.yaml")) for d in yaml.safe_load_all(f.read_text())]
    assert generated, "crds/ is empty: run `cargo run -p sockudo-operator --bin crdgen`"
    assert len(rendered) == len(generated)
    for r in rendered:
        assert r["metadata"]["annotations"].pop("helm.sh/resource-policy") == "keep"
        if not r["metadata"]["annotations"]:
            del r["metadata"]["annotations"]
        assert r in generated, f"chart CRD {r['metadata']['name']} differs from crds/"


def test_crds_can_be_left_to_gitops():
    assert not [d for d in render({"crds": {"create": False}}) if d["kind"] == "CustomResourceDefinition"]


def test_namespace_scope_grants_nothing_cluster_wide():
    docs = render({"watchScope": "namespace"})
    kinds = {d["kind"] for d in docs}
    assert "ClusterRole" not in kinds and "ClusterRoleBinding" not in kinds
    dep = next(d for d in docs if d["kind"] == "Deployment")
    env = {e["name"]: e.get("value") for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["WATCH_NAMESPACE"] == "sockudo-system"


def test_ha_gets_leader_election_and_pdb():
    docs = render({"replicaCount": 2})
    assert any(d["kind"] == "PodDisruptionBudget" for d in docs)
    dep = next(d for d in docs if d["kind"] == "Deployment")
    env = {e["name"]: e.get("value") for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["LEADER_ELECTION"] == "true"
    assert not any(d["kind"] == "PodDisruptionBudget" for d in render({}))


def test_pod_is_locked_down():
    dep = next(d for d in render({}) if d["kind"] == "Deployment")
    pod = dep["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    c = pod["containers"][0]["securityContext"]
    assert c["readOnlyRootFilesystem"] is True and c["allowPrivilegeEscalation"] is False


def test_image_by_digest_or_tag():
    def image(values):
        dep = next(d for d in render(values) if d["kind"] == "Deployment")
        return dep["spec"]["template"]["spec"]["containers"][0]["image"]

    assert image({}).endswith(":0.1.0")
    assert image({"image": {"tag": "v9"}}).endswith(":v9")
    digest = "sha256:" + "a" * 64
    assert image({"image": {"digest": digest}}).endswith("@" + digest)


def test_service_monitor_only_when_the_api_exists():
    # helm template knows no monitoring.coreos.com API, so an enabled ServiceMonitor is skipped.
    docs = render({"metrics": {"serviceMonitor": {"enabled": True}}})
    assert not any(d["kind"] == "ServiceMonitor" for d in docs)


@pytest.mark.parametrize(
    "bad",
    [{"replicaCount": 0}, {"watchScope": "everywhere"}, {"image": {"digest": "latest"}}, {"bogus": 1}],
    ids=json.dumps,
)
def test_values_schema_rejects_bad_values(bad):
    with pytest.raises(helm.HelmError):
        helm.Chart.load(str(CHART)).validate_schema(bad)


def rule_set(rules):
    return {
        (group, resource, verb)
        for r in rules
        for group in r["apiGroups"]
        for resource in r["resources"]
        for verb in r["verbs"]
    }


@pytest.mark.parametrize("scope", ["cluster", "namespace"])
def test_rbac_grants_exactly_what_the_operator_calls(scope):
    # operator/rbac/clusterrole.yaml is generated from the operator's code (crdgen).
    wanted = yaml.safe_load((ROOT / "operator" / "rbac" / "clusterrole.yaml").read_text())
    docs = render({"watchScope": scope})
    granted = set()
    for d in docs:
        if d["kind"] in ("Role", "ClusterRole"):
            granted |= rule_set(d["rules"])
    assert granted == rule_set(wanted["rules"])


EXAMPLES = sorted((ROOT / "operator" / "examples").glob("*.yaml"))


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_examples_render_through_chart_values(example):
    cluster = next(d for d in yaml.safe_load_all(example.read_text()) if d and d["kind"] == "SockudoCluster")
    values = {"sockudoCluster": {"enabled": True, "name": cluster["metadata"]["name"], "spec": cluster["spec"]}}
    helm.Chart.load(str(CHART)).validate_schema(values)
    rendered = next(d for d in render(values) if d["kind"] == "SockudoCluster")
    assert rendered["spec"] == cluster["spec"]
    schema = crd_schemas()[(rendered["apiVersion"], "SockudoCluster")]
    errors = list(jsonschema.Draft7Validator(schema).iter_errors(rendered))
    assert not errors, [e.message for e in errors]


ALERTS = CHART / "files" / "alerts.yaml"


def alert_rules():
    return [r for g in yaml.safe_load(ALERTS.read_text())["groups"] for r in g["rules"]]


def test_prometheus_rule_only_when_the_api_exists():
    docs = render({"metrics": {"prometheusRule": {"enabled": True}}})
    assert not any(d["kind"] == "PrometheusRule" for d in docs)


def test_prometheus_rule_carries_the_alerts_and_extra_labels(tmp_path):
    # helm template knows no monitoring.coreos.com API: render a copy whose capability check is
    # taken as true, to check what the template makes of files/alerts.yaml.
    chart = tmp_path / "chart"
    shutil.copytree(CHART, chart)
    template = chart / "templates" / "prometheusrule.yaml"
    check = '(.Capabilities.APIVersions.Has "monitoring.coreos.com/v1/PrometheusRule")'
    assert check in template.read_text()
    template.write_text(template.read_text().replace(check, "true"))
    values = {
        "metrics": {
            "prometheusRule": {
                "enabled": True,
                "labels": {"release": "kube-prometheus"},
                "alertLabels": {"team": "realtime", "severity": "page"},
            }
        }
    }
    out = helm.Chart.load(str(chart)).render(values, name="so", namespace="ns", is_install=True)
    docs = [
        d for path, text in out.items() if not path.endswith("NOTES.txt") for d in yaml.safe_load_all(text) if d
    ]
    rule = next(d for d in docs if d["kind"] == "PrometheusRule")
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus"
    rendered = [r for g in rule["spec"]["groups"] for r in g["rules"]]
    source = alert_rules()
    assert [r["alert"] for r in rendered] == [r["alert"] for r in source]
    for got, want in zip(rendered, source):
        assert got["expr"] == want["expr"]
        assert got["annotations"] == want["annotations"]
        # Extra labels are added; an alert's own labels (severity) win.
        assert got["labels"] == {"team": "realtime", **want["labels"]}


def metric_names_in(paths):
    """String literals that look like metric names in the Rust sources under `paths`."""
    names = set()
    for base in paths:
        for f in base.rglob("*.rs"):
            names |= set(re.findall(r'"([a-z][a-z0-9_]*)', f.read_text()))
    return names


def assert_valid_promql_over_real_metrics(expr, where):
    """`expr` parses as PromQL and each `sockudo_*` metric it reads is registered in the code."""
    # Grafana's interval variable is not PromQL; any duration stands for it.
    promql_parser.parse(expr.replace("$__rate_interval", "5m"))  # raises on a syntax error
    server = metric_names_in([ROOT / "server" / "src"])
    operator = metric_names_in([ROOT / "operator" / "src" / "controller"])
    for metric in re.findall(r"\b(sockudo_[a-z0-9_]+)", expr):
        if metric.startswith("sockudo_operator_"):
            assert metric in operator, f"{where}: no operator metric {metric}"
        else:
            # The server registers names without the `sockudo_` prefix (metrics.prefix).
            bare = re.sub(r"_(bucket|sum|count)$", "", metric.removeprefix("sockudo_"))
            assert bare in server, f"{where}: no server metric {metric}"


def test_alerts_are_valid_promql_over_real_metrics():
    for rule in alert_rules():
        expr = rule["expr"]
        assert_valid_promql_over_real_metrics(expr, rule["alert"])
        # Every label an annotation names survives the expression's aggregation.
        kept = set()
        for group in re.findall(r"\bby \(([^)]*)\)", expr):
            kept |= {label.strip() for label in group.split(",")}
        for field in rule["annotations"].values():
            for label in re.findall(r"\$labels\.(\w+)", field):
                assert label in kept, f"{rule['alert']}: $labels.{label} is aggregated away"
        assert rule["labels"]["severity"] in ("warning", "critical")


DASHBOARD = CHART / "files" / "grafana-dashboard.json"


def test_dashboard_configmap_carries_the_dashboard():
    docs = render({"grafanaDashboard": {"enabled": True, "annotations": {"grafana_folder": "Realtime"}}})
    cm = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-dashboard"))
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert cm["metadata"]["annotations"] == {"grafana_folder": "Realtime"}
    assert json.loads(cm["data"]["sockudo.json"]) == json.loads(DASHBOARD.read_text())
    assert not any(d["kind"] == "ConfigMap" for d in render({}))


def test_dashboard_queries_are_valid_promql_over_real_metrics():
    dashboard = json.loads(DASHBOARD.read_text())
    targets = [(p["title"], t["expr"]) for p in dashboard["panels"] for t in p["targets"]]
    assert targets
    for title, expr in targets:
        assert_valid_promql_over_real_metrics(expr, title)
    panel_ids = [p["id"] for p in dashboard["panels"]]
    assert len(panel_ids) == len(set(panel_ids))
