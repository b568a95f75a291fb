//! A BFF's Kubernetes manifests, shared by `bff k8s`, the templates and the examples: the ConfigMap is
//! rendered from `bff.toml` with the cluster's differences over it (`k8s/cluster.toml`: listeners on all
//! interfaces, the admin token from the environment, each service found by Kubernetes DNS: with `dns://`
//! discovery, one endpoint a pod, when the project has bff's `dns` feature, else at the Service's cluster
//! name, balanced by kube-proxy) and [`check_rendered`] names the keys where it drifted; [`check_manifests`]
//! checks it is a valid config for the cluster and that the Deployment probes the admin port the config
//! listens on, sets the admin token from a Secret and drains before it stops; the NetworkPolicy opens the
//! public port and keeps the admin port to Prometheus.

mod render;

pub use self::render::{Project, diff};
use bff::config::{Format, Loader, Source};
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

/// Panics unless the project's `k8s/configmap.yaml` is what `bff k8s render` makes of its `bff.toml` and
/// `k8s/cluster.toml`, naming each key that differs on its own line (or why it cannot be rendered).
pub fn check_rendered(project_dir: impl Into<std::path::PathBuf>) {
    let project = Project::at(project_dir);
    match project.diff() {
        Ok(lines) if lines.is_empty() => {}
        Ok(lines) => panic!(
            "{} is not rendered from {} and {}; run `bff k8s render` in the project:\n{}",
            project.configmap.display(),
            project.config.display(),
            project.cluster.display(),
            lines.join("\n")
        ),
        Err(errors) => panic!("`bff k8s render` refuses:\n{}", errors.join("\n")),
    }
}

/// Panics with a message naming the file to fix unless the manifests run a BFF: the ConfigMap's
/// `bff.toml` is a valid config (with `env` for its `${VAR}`s) listening on all interfaces with an admin
/// token, every service is found by Kubernetes DNS (`dns://` discovery or `*.svc.cluster.local`
/// endpoints), and the Deployment mounts that ConfigMap, exposes 8080 and 9901, probes `/readyz` and
/// `/healthz` on the admin port, sleeps in preStop, gives the drain more than preStop + 20 s and sets
/// every variable the config reads.
pub fn check_manifests(configmap: &str, deployment: &str, env: &[(&str, &str)]) {
    let cluster = configmap_file(configmap, "bff.toml");
    let mut env: HashMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    // What the Secret would hold.
    env.entry(ADMIN_TOKEN_VAR.to_string())
        .or_insert_with(|| "a-token-from-the-secret-0123456789".into());
    // Errors name the ConfigMap's file and their line in its bff.toml.
    let source = Source {
        name: "k8s/configmap.yaml: bff.toml".into(),
        ..Source::inline(&cluster, Format::Toml)
    };
    let config = Loader::new()
        .with_env(env)
        .load(&source)
        .unwrap_or_else(|e| panic!("k8s/configmap.yaml: its bff.toml is refused:\n{e}"));
    assert_eq!(config.bff.listen.to_string(), "0.0.0.0:8080");
    assert_eq!(config.bff.admin_listen.to_string(), "0.0.0.0:9901");
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
    let name = configmap
        .lines()
        .skip_while(|l| !l.starts_with("metadata:"))
        .find_map(|l| l.strip_prefix("  name: "))
        .expect("k8s/configmap.yaml: metadata.name");
    let mounted = format!("configMap: name: {}", name.trim());
    for want in [
        &mounted,
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

    const CLUSTER: &str = "[bff]\nlisten = \"0.0.0.0:8080\"\nadmin_listen = \"0.0.0.0:9901\"\nadmin_token = \"${BFF_ADMIN_TOKEN}\"\n[services.users]\nendpoints = [\"users.default.svc.cluster.local:8080\"]\n";
    const DEPLOYMENT: &str = "spec:\n  terminationGracePeriodSeconds: 30\n  containers:\n    - ports:\n        - name: http\n          containerPort: 8080\n        - name: admin\n          containerPort: 9901\n      env:\n        - name: BFF_ADMIN_TOKEN\n          valueFrom:\n            secretKeyRef:\n              name: x-admin\n              key: token\n      readinessProbe:\n        # ready\n        httpGet:\n          path: /readyz\n          port: admin\n      livenessProbe:\n        httpGet:\n          path: /healthz\n          port: admin\n      lifecycle:\n        preStop:\n          exec: {}\n  volumes:\n    - name: config\n      configMap:\n        name: x\n";

    fn configmap(toml: &str) -> String {
        let body: String = toml.lines().map(|l| format!("    {l}\n")).collect();
        format!("metadata:\n  name: x\ndata:\n  bff.toml: |\n{body}")
    }

    #[test]
    fn good_manifests_pass() {
        check_manifests(&configmap(CLUSTER), DEPLOYMENT, &[]);
    }

    #[test]
    #[should_panic(expected = "readinessProbe: httpGet: path: /readyz port: admin")]
    fn a_probe_on_the_public_port_fails() {
        let bad = DEPLOYMENT.replace(
            "path: /readyz\n          port: admin",
            "path: /readyz\n          port: http",
        );
        check_manifests(&configmap(CLUSTER), &bad, &[]);
    }

    #[test]
    #[should_panic(expected = "- name: BFF_ADMIN_TOKEN valueFrom: secretKeyRef:")]
    fn an_admin_token_not_from_a_secret_fails() {
        let bad = DEPLOYMENT.replace(
            "valueFrom:\n            secretKeyRef:\n              name: x-admin\n              key: token",
            "value: \"0123456789abcdef0123\"",
        );
        check_manifests(&configmap(CLUSTER), &bad, &[]);
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
    #[should_panic(expected = "service users is not found by Kubernetes DNS")]
    fn a_service_at_a_local_address_fails() {
        let local = CLUSTER.replace("users.default.svc.cluster.local:8080", "127.0.0.1:9001");
        check_manifests(&configmap(&local), DEPLOYMENT, &[]);
    }

    #[test]
    #[should_panic(expected = "k8s/deployment.yaml lacks `configMap: name: x`")]
    fn a_deployment_mounting_another_configmap_fails() {
        let bad = DEPLOYMENT.replace("name: x\n", "name: y\n");
        check_manifests(&configmap(CLUSTER), &bad, &[]);
    }
}
