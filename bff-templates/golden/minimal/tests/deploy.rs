//! The deployment files agree with the project: the Kubernetes ConfigMap carries the files the BFF reads,
//! byte for byte, so what runs in the cluster is what the tests ran.

/// The block scalar `key: |` of a ConfigMap's `data`, as the file it stands for.
fn configmap_file(configmap: &str, key: &str) -> String {
    let header = format!("  {key}: |");
    let mut lines = configmap.lines().skip_while(|l| l.trim_end() != header);
    assert!(lines.next().is_some(), "k8s/configmap.yaml has no `{key}`");
    let mut file = String::new();
    for line in lines {
        if let Some(text) = line.strip_prefix("    ") {
            file.push_str(text);
        } else if !line.trim().is_empty() {
            break;
        }
        file.push('\n');
    }
    file.trim_end_matches('\n').to_string() + "\n"
}

#[test]
fn the_configmap_carries_bff_toml() {
    let configmap = include_str!("../k8s/configmap.yaml");
    assert_eq!(
        configmap_file(configmap, "bff.toml"),
        include_str!("../bff.toml"),
        "k8s/configmap.yaml: its bff.toml differs from ./bff.toml; copy it over"
    );
}
