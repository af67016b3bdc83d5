//! Converging hosts: observe each one, apply the plan phase by phase (hosts of a phase in
//! parallel), and hold every phase behind its health gate.

pub mod gate;
pub mod membership;
pub mod observe;
pub mod run;
pub mod service;

pub use observe::{Observed, observe};
pub use run::{ApplyError, Options, Progress, Report, converge};
pub use service::ServiceManager;
