//! The Kubernetes manifests run this BFF: the ConfigMap carries ./bff.toml as the cluster needs it (listeners
//! on all interfaces, services found by Kubernetes DNS) and it is valid; the Deployment probes the admin port
//! and drains before it stops (checked by `bff_testkit::k8s`).

use bff_testkit::k8s;

const CONFIGMAP: &str = include_str!("../k8s/configmap.yaml");

#[test]
fn the_kubernetes_manifests_run_this_bff() {
    k8s::check_manifests(
        CONFIGMAP,
        include_str!("../k8s/deployment.yaml"),
        include_str!("../bff.toml"),
        &[],
    );
}

#[test]
fn the_admin_port_is_for_prometheus_only() {
    k8s::check_network_policy(include_str!("../k8s/networkpolicy.yaml"), "mobile-bff");
}

#[test]
fn the_configmap_carries_api_keys_txt() {
    assert_eq!(
        k8s::configmap_file(CONFIGMAP, "api-keys.txt"),
        include_str!("../api-keys.txt"),
        "k8s/configmap.yaml: its api-keys.txt differs from ./api-keys.txt; copy it over"
    );
}
