//! Writes the generated files: the SockudoCluster CRD to `crds/sockudocluster.yaml` (and the same
//! file into the Helm chart, which installs it from there) and the operator's RBAC rules to
//! `operator/rbac/clusterrole.yaml` (or the CRD to stdout with `-`).

use std::path::PathBuf;

use sockudo_operator::crd::generate::{CHART_CRD_PATH, CRD_PATH, crd_yaml};
use sockudo_operator::rbac::{RBAC_PATH, cluster_role_yaml};

fn main() -> std::io::Result<()> {
    if std::env::args().nth(1).as_deref() == Some("-") {
        print!("{}", crd_yaml());
        return Ok(());
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    for (path, text) in [
        (CRD_PATH, crd_yaml()),
        (CHART_CRD_PATH, crd_yaml()),
        (RBAC_PATH, cluster_role_yaml()),
    ] {
        let path = root.join(path);
        std::fs::create_dir_all(path.parent().expect("a file has a parent"))?;
        std::fs::write(&path, text)?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}
