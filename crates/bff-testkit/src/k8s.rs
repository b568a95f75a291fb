//! Checks of a BFF's Kubernetes manifests, shared by the templates and the examples: the ConfigMap carries
//! `bff.toml` as the cluster runs it (listeners on all interfaces, the admin token from the environment,
//! each service found by Kubernetes DNS: with `dns://` discovery, one endpoint a pod, when the project has
//! bff's `dns` feature, else at the Service's cluster name, balanced by kube-proxy) and it is a valid
//! config; the Deployment probes the admin port the config listens on, sets the admin token from a Secret
//! and drains before it stops; the NetworkPolicy opens the public port and keeps the admin port to
//! Prometheus.

use bff::config::{Feature, Format, Loader};
use std::collections::HashMap;

/// The block scalar `key: |` of a ConfigMap's `data`, as the file it stands for.
pub fn configmap_file(configmap: &str, key: &str) -> String {
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

/// The variable the cluster's `bff.toml` reads the admin token from (`bff.admin_token`), set from a Secret.
pub const ADMIN_TOKEN_VAR: &str = "BFF_ADMIN_TOKEN";

/// `bff.toml` as the cluster runs it (without the editor's `#:schema` line): listeners on all interfaces
/// (8080 public, 9901 admin), the admin
/// token from `${BFF_ADMIN_TOKEN}` (an admin listener off loopback needs one), and each `[services.NAME]`
/// found by Kubernetes DNS instead of the endpoints used locally: `dns://` discovery of every pod (a
/// headless Service) when this build has bff's `dns` feature, else the Service's cluster name as the one
/// endpoint.
pub fn for_cluster(project: &str) -> String {
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
            format!("admin_listen = \"0.0.0.0:9901\"\nadmin_token = \"${{{ADMIN_TOKEN_VAR}}}\"")
        } else if line.starts_with("admin_token = ") || line.starts_with("#:schema ") {
            // (The editor's schema directive names a file of the project, not of the cluster.)
            continue;
        } else if line.starts_with("endpoints = ") {
            cluster_endpoint(&service)
        } else {
            line.to_string()
        };
        out.push_str(&line);
        out.push('\n');
    }
    out
}

fn cluster_endpoint(service: &str) -> String {
    if Feature::Dns.enabled() {
        format!("discovery = \"dns://{service}.default.svc.cluster.local:8080\"")
    } else {
        format!("endpoints = [\"{service}.default.svc.cluster.local:8080\"]")
    }
}

/// Panics with a message naming the file to fix unless the manifests run this project's BFF: the
/// ConfigMap's `bff.toml` is `for_cluster(project_toml)` and a valid config (with `env` for its `${VAR}`s),
/// every service is found by Kubernetes DNS (see [`for_cluster`]), and the Deployment exposes 8080 and 9901, probes `/readyz` and
/// `/healthz` on the admin port, sleeps in preStop and gives the drain more than preStop + 20 s.
pub fn check_manifests(
    configmap: &str,
    deployment: &str,
    project_toml: &str,
    env: &[(&str, &str)],
) {
    let cluster = configmap_file(configmap, "bff.toml");
    assert_eq!(
        cluster,
        for_cluster(project_toml),
        "k8s/configmap.yaml: its bff.toml is not ./bff.toml for the cluster; update it (services: {})",
        if Feature::Dns.enabled() {
            "dns:// discovery, as this project has bff's `dns` feature"
        } else {
            "the Service's cluster name as the endpoint; with bff's `dns` feature, dns:// discovery of every pod"
        }
    );
    let mut env: HashMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    // What the Secret would hold.
    env.entry(ADMIN_TOKEN_VAR.to_string())
        .or_insert_with(|| "a-token-from-the-secret-0123456789".into());
    let config = Loader::new()
        .with_env(env)
        .load_str(&cluster, Format::Toml)
        .unwrap_or_else(|e| panic!("k8s/configmap.yaml: its bff.toml is refused:\n{e}"));
    assert_eq!(config.bff.listen, "0.0.0.0:8080");
    assert_eq!(config.bff.admin_listen, "0.0.0.0:9901");
    assert!(config.bff.admin_token.is_some());
    assert!(!config.services.is_empty());
    for (name, service) in &config.services {
        let discovery = service.discovery.as_ref();
        let cluster_dns = matches!(discovery, Some(bff::config::DiscoveryUrl::Dns { .. }))
            || (!service.endpoints.is_empty()
                && service
                    .endpoints
                    .iter()
                    .all(|e| e.as_str().contains(".svc.cluster.local:")));
        assert!(
            cluster_dns,
            "k8s/configmap.yaml: service {name} is not found by Kubernetes DNS: {discovery:?} {:?}",
            service.endpoints
        );
    }

    // The Deployment's words, without comments, on one line.
    let words: String = deployment
        .lines()
        .map(|l| l.split(" #").next().unwrap_or_default())
        .filter(|l| !l.trim_start().starts_with('#'))
        .flat_map(str::split_whitespace)
        .collect::<Vec<_>>()
        .join(" ");
    let token_from_secret = format!("- name: {ADMIN_TOKEN_VAR} valueFrom: secretKeyRef:");
    for want in [
        "- name: http containerPort: 8080",
        "- name: admin containerPort: 9901",
        "readinessProbe: httpGet: path: /readyz port: admin",
        "livenessProbe: httpGet: path: /healthz port: admin",
        "preStop:",
        &token_from_secret,
    ] {
        assert!(words.contains(want), "k8s/deployment.yaml lacks `{want}`");
    }
    let grace: u64 = words
        .split("terminationGracePeriodSeconds: ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|s| s.parse().ok())
        .expect("k8s/deployment.yaml: terminationGracePeriodSeconds");
    assert!(
        grace > 5 + 20,
        "k8s/deployment.yaml: more than preStop (5 s) + shutdown_grace (20 s): {grace}"
    );
    for (var, _) in env_vars(&cluster) {
        assert!(
            words.contains(&format!("- name: {var}")),
            "k8s/deployment.yaml does not set {var}, which bff.toml reads"
        );
    }
}

/// Panics with a message naming `k8s/networkpolicy.yaml` unless it selects the BFF's pods (labelled
/// `app.kubernetes.io/name: <app>`), lets anyone reach the public port (`http`) and the admin port
/// (`admin`) only from selected peers, and names no other port.
pub fn check_network_policy(policy: &str, app: &str) {
    let words: String = policy
        .lines()
        .map(|l| l.split(" #").next().unwrap_or_default())
        .filter(|l| !l.trim_start().starts_with('#'))
        .flat_map(str::split_whitespace)
        .collect::<Vec<_>>()
        .join(" ");
    for want in [
        "kind: NetworkPolicy",
        &format!("podSelector: matchLabels: app.kubernetes.io/name: {app}"),
        "policyTypes: - Ingress",
    ] {
        assert!(
            words.contains(want),
            "k8s/networkpolicy.yaml lacks `{want}`"
        );
    }
    let ingress = words
        .split("ingress:")
        .nth(1)
        .expect("k8s/networkpolicy.yaml: no ingress rules");
    // One rule a port: the public one without `from` (anyone), the admin one with peers.
    let rules: Vec<&str> = ingress.split(" - ports:").skip(1).collect();
    let public = rules
        .iter()
        .find(|r| r.contains("- port: http "))
        .expect("k8s/networkpolicy.yaml: no rule for the public port `http`");
    assert!(
        !public.contains("from:") && !public.contains("- port: admin"),
        "k8s/networkpolicy.yaml: the public port's rule is for everyone, and for it alone"
    );
    let admin = rules
        .iter()
        .find(|r| r.contains("- port: admin "))
        .expect("k8s/networkpolicy.yaml: no rule for the admin port `admin`");
    assert!(
        admin.contains("from: - namespaceSelector:") || admin.contains("from: - podSelector:"),
        "k8s/networkpolicy.yaml: the admin port must be open to selected peers only"
    );
}

/// The `${VAR}`s a config reads.
fn env_vars(text: &str) -> Vec<(String, ())> {
    let mut vars = Vec::new();
    for line in text.lines().filter(|l| !l.trim_start().starts_with('#')) {
        let mut rest = line;
        while let Some(i) = rest.find("${") {
            let Some(end) = rest[i..].find('}') else {
                break;
            };
            // A variable with a default (`${VAR:-default}`) need not be set.
            let var = &rest[i + 2..i + end];
            if !var.contains(":-") {
                vars.push((var.to_string(), ()));
            }
            rest = &rest[i + end + 1..];
        }
    }
    vars
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROJECT: &str = "[bff]\nlisten = \"127.0.0.1:8080\"\nadmin_listen = \"127.0.0.1:9901\"\n[services.users]\nendpoints = [\"${USERS_ADDR}\"]\n";
    const DEPLOYMENT: &str = "spec:\n  terminationGracePeriodSeconds: 30\n  containers:\n    - ports:\n        - name: http\n          containerPort: 8080\n        - name: admin\n          containerPort: 9901\n      env:\n        - name: BFF_ADMIN_TOKEN\n          valueFrom:\n            secretKeyRef:\n              name: x-admin\n              key: token\n      readinessProbe:\n        # ready\n        httpGet:\n          path: /readyz\n          port: admin\n      livenessProbe:\n        httpGet:\n          path: /healthz\n          port: admin\n      lifecycle:\n        preStop:\n          exec: {}\n";

    fn configmap(toml: &str) -> String {
        let body: String = toml.lines().map(|l| format!("    {l}\n")).collect();
        format!("data:\n  bff.toml: |\n{body}")
    }

    #[test]
    fn good_manifests_pass() {
        check_manifests(&configmap(&for_cluster(PROJECT)), DEPLOYMENT, PROJECT, &[]);
    }

    #[test]
    #[should_panic(expected = "readinessProbe: httpGet: path: /readyz port: admin")]
    fn a_probe_on_the_public_port_fails() {
        let bad = DEPLOYMENT.replace(
            "path: /readyz\n          port: admin",
            "path: /readyz\n          port: http",
        );
        check_manifests(&configmap(&for_cluster(PROJECT)), &bad, PROJECT, &[]);
    }

    #[test]
    #[should_panic(expected = "- name: BFF_ADMIN_TOKEN valueFrom: secretKeyRef:")]
    fn an_admin_token_not_from_a_secret_fails() {
        let bad = DEPLOYMENT.replace(
            "valueFrom:\n            secretKeyRef:\n              name: x-admin\n              key: token",
            "value: \"0123456789abcdef0123\"",
        );
        check_manifests(&configmap(&for_cluster(PROJECT)), &bad, PROJECT, &[]);
    }

    const POLICY: &str = "kind: NetworkPolicy\nspec:\n  podSelector:\n    matchLabels:\n      app.kubernetes.io/name: x\n  policyTypes:\n    - Ingress\n  ingress:\n    # public\n    - ports:\n        - port: http\n          protocol: TCP\n    - ports:\n        - port: admin\n          protocol: TCP\n      from:\n        - namespaceSelector:\n            matchLabels:\n              kubernetes.io/metadata.name: monitoring\n";

    #[test]
    fn a_policy_with_the_admin_port_for_prometheus_passes() {
        check_network_policy(POLICY, "x");
    }

    #[test]
    #[should_panic(expected = "the admin port must be open to selected peers only")]
    fn a_policy_with_the_admin_port_open_to_all_fails() {
        let open = POLICY.split("      from:").next().unwrap();
        check_network_policy(open, "x");
    }

    #[test]
    #[should_panic(expected = "is not ./bff.toml for the cluster")]
    fn a_configmap_that_drifted_fails() {
        check_manifests(&configmap(PROJECT), DEPLOYMENT, PROJECT, &[]);
    }
}
