//! The deployment files agree with the project and with what Kubernetes will run: the ConfigMap carries
//! ./bff.toml as the cluster needs it (listeners on all interfaces, each service found by Kubernetes DNS
//! with `dns://` discovery) and a valid config; the Deployment probes the admin port the config listens on.

use bff::config::{Format, Loader};
use std::collections::HashMap;

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

/// ./bff.toml as the cluster runs it: listeners on all interfaces, and each `[services.NAME]` found by
/// Kubernetes DNS instead of the `${..._ADDR}` endpoints used locally.
fn for_cluster(project: &str) -> String {
    let mut out = String::new();
    let mut service = String::new();
    for line in project.lines() {
        if let Some(name) = line
            .strip_prefix("[services.")
            .and_then(|l| l.strip_suffix(']'))
        {
            service = name.to_string();
        }
        let line = if line.starts_with("listen = ") {
            "listen = \"0.0.0.0:8080\"".to_string()
        } else if line.starts_with("admin_listen = ") {
            "admin_listen = \"0.0.0.0:9901\"".to_string()
        } else if line.starts_with("endpoints = ") {
            format!("discovery = \"dns://{service}.default.svc.cluster.local:8080\"")
        } else {
            line.to_string()
        };
        out.push_str(&line);
        out.push('\n');
    }
    out
}

const CONFIGMAP: &str = include_str!("../k8s/configmap.yaml");
const DEPLOYMENT: &str = include_str!("../k8s/deployment.yaml");

#[test]
fn the_configmap_is_bff_toml_for_the_cluster() {
    assert_eq!(
        configmap_file(CONFIGMAP, "bff.toml"),
        for_cluster(include_str!("../bff.toml")),
        "k8s/configmap.yaml: its bff.toml is not ./bff.toml for the cluster; update it"
    );
}

#[test]
fn the_cluster_config_is_valid_and_finds_services_by_dns() {
    let config = Loader::new()
        .with_env(HashMap::from([(
            "WEB_ORIGIN".to_string(),
            "https://shop.example.com".to_string(),
        )]))
        .load_str(&configmap_file(CONFIGMAP, "bff.toml"), Format::Toml)
        .unwrap_or_else(|e| panic!("the ConfigMap's bff.toml is refused:\n{e}"));
    assert_eq!(config.bff.listen, "0.0.0.0:8080");
    assert_eq!(config.bff.admin_listen, "0.0.0.0:9901");
    assert!(!config.services.is_empty());
    for (name, service) in &config.services {
        let discovery = service.discovery.as_deref().unwrap_or_default();
        assert!(discovery.starts_with("dns://"), "{name}: {discovery:?}");
    }
}

#[test]
fn the_deployment_probes_the_admin_port() {
    let compact: String = DEPLOYMENT.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        compact.contains("- name: http containerPort: 8080"),
        "{DEPLOYMENT}"
    );
    assert!(
        compact.contains("- name: admin containerPort: 9901"),
        "{DEPLOYMENT}"
    );
    assert!(compact.contains("readinessProbe: # 503 until every required service has an available endpoint, and while draining. httpGet: path: /readyz port: admin"), "{DEPLOYMENT}");
    assert!(
        compact.contains(
            "livenessProbe: # 200 while the process runs. httpGet: path: /healthz port: admin"
        ),
        "{DEPLOYMENT}"
    );
    assert!(
        compact.contains("- name: WEB_ORIGIN"),
        "the Deployment sets what bff.toml reads"
    );
    assert!(
        compact.contains("preStop:"),
        "a preStop sleep lets the endpoint removal spread before the drain"
    );
    let grace: u64 = compact
        .split("terminationGracePeriodSeconds: ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|s| s.parse().ok())
        .expect("terminationGracePeriodSeconds");
    assert!(
        grace > 5 + 20,
        "more than preStop (5 s) + shutdown_grace (20 s): {grace}"
    );
}
