//! The Kubernetes manifests run this BFF: the ConfigMap is what `bff k8s render` makes of ./bff.toml and
//! k8s/cluster.toml (listeners on all interfaces, services found by Kubernetes DNS) and it is valid; the
//! Deployment probes the admin port and drains before it stops (checked by `bff_testkit::k8s`).

use bff_testkit::k8s;

const CONFIGMAP: &str = include_str!("../k8s/configmap.yaml");

#[test]
fn the_configmap_is_rendered_from_bff_toml_and_k8s_cluster_toml() {
    k8s::check_rendered(env!("CARGO_MANIFEST_DIR"));
}

#[test]
fn the_kubernetes_manifests_run_this_bff() {
    k8s::check_manifests(
        CONFIGMAP,
        include_str!("../k8s/deployment.yaml"),
        &[("WEB_ORIGIN", "https://shop.example.com")],
    );
}

#[test]
fn the_admin_port_is_for_prometheus_only() {
    k8s::check_network_policy(include_str!("../k8s/networkpolicy.yaml"), "web-bff");
}
