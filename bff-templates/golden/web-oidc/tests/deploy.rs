//! The Kubernetes manifests run this BFF: k8s/configmap.yaml is what `bff k8s render` makes of ./bff.toml
//! and k8s/cluster.toml (the cluster's differences: listeners on all interfaces, services found by
//! Kubernetes DNS), and it is valid; the Deployment mounts it, probes the admin port and drains before it
//! stops, with the admin token from a Secret; the NetworkPolicy keeps the admin port to Prometheus
//! (checked by `bff_testkit::k8s`).

use bff_testkit::k8s;

#[test]
fn the_configmap_is_rendered_from_bff_toml_and_k8s_cluster_toml() {
    // On failure: one line per key that differs; `bff k8s render` writes it again.
    k8s::check_rendered(env!("CARGO_MANIFEST_DIR"));
}

#[test]
fn the_kubernetes_manifests_run_this_bff() {
    k8s::check_manifests(
        include_str!("../k8s/configmap.yaml"),
        include_str!("../k8s/deployment.yaml"),
        &[],
    );
}

#[test]
fn the_admin_port_is_for_prometheus_only() {
    k8s::check_network_policy(
        include_str!("../k8s/networkpolicy.yaml"),
        "golden-web-oidc",
    );
}
