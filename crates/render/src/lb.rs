//! placeholder, being written.
use kubeha_spec::Node;
use crate::{Ctx, HostFile, Result};

pub fn files(_cx: Ctx<'_>, _node: &Node) -> Result<Vec<HostFile>> {
    Ok(vec![])
}

pub fn services() -> Vec<String> {
    vec![]
}
