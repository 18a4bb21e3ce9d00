//! Snapshots of every child object built for every example (seed configurations, managed and
//! external backends). Review changes with `cargo insta review` (or set INSTA_UPDATE=always).

use sockudo_operator::build::desired;

use super::support::{Example, example_names};

#[test]
fn children_of_every_example() {
    for name in example_names() {
        let example = Example::load(&name);
        let built = desired(&example.inputs());
        let snapshot_name = name.trim_end_matches(".yaml").to_string();
        insta::with_settings!({snapshot_path => "../snapshots", prepend_module_to_snapshot => false}, {
            insta::assert_yaml_snapshot!(snapshot_name, built.children);
        });
    }
}

#[test]
fn status_extras_of_every_example() {
    let mut summary = Vec::new();
    for name in example_names() {
        let example = Example::load(&name);
        let built = desired(&example.inputs());
        let kinds: Vec<String> = built
            .children
            .iter()
            .map(|c| format!("{} {}", c.kind(), c.name()))
            .collect();
        summary.push(serde_json::json!({
            "example": name,
            "children": kinds,
            "warnings": built.warnings,
            "skipped": built.skipped,
        }));
    }
    insta::with_settings!({snapshot_path => "../snapshots", prepend_module_to_snapshot => false}, {
        insta::assert_yaml_snapshot!("summary", summary);
    });
}
