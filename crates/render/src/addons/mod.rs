//! Cluster add-ons kubeha installs through the API after the control plane answers: what
//! kubeadm installs itself (kube-proxy, CoreDNS), the pod network (Calico or Flannel) and
//! MetalLB. Every object is typed; versions are pinned here and listed by `kubeha images`.

mod build;
pub mod calico;
pub mod coredns;
pub mod flannel;
pub mod kube_proxy;
pub mod metallb;
