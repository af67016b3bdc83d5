//! placeholder, being written.
use kubeha_spec::Node;
use crate::{Ctx, HostFile, Result};

pub fn files(_cx: Ctx<'_>, _node: &Node, _host_files: &[HostFile]) -> Result<Vec<HostFile>> {
    Ok(vec![])
}
