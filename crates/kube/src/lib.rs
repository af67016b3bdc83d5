//! The Kubernetes API edge.
