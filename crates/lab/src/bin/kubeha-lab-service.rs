//! `kubeha-lab-service start|stop|restart|reload|status <unit>`: the lab supervisor on its own, the
//! same as the hidden `kubeha service` command (which is what kubeha runs on lab hosts). The
//! lab's tests use this binary because a library crate's tests cannot build `kubeha`.
//!
//! Exit status: 0 success (status: active), 1 failure, 2 bad unit, 3 status: inactive.

use std::process::ExitCode;

use kubeha_lab::supervisor::{Action, Supervisor};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let action = match args.first().map(String::as_str) {
        Some("start") => Action::Start,
        Some("stop") => Action::Stop,
        Some("restart") => Action::Restart,
        Some("reload") => Action::Reload,
        Some("status") => Action::Status,
        _ => {
            eprintln!("usage: kubeha-lab-service start|stop|restart|reload|status UNIT");
            return ExitCode::from(2);
        }
    };
    let Some(unit) = args.get(1).filter(|_| args.len() == 2) else {
        eprintln!("usage: kubeha-lab-service start|stop|restart|reload|status UNIT");
        return ExitCode::from(2);
    };
    match Supervisor::default().run(action, unit) {
        Ok(st) => {
            println!("{st}");
            ExitCode::from(if action == Action::Status && !st.active {
                3
            } else {
                0
            })
        }
        Err(e) => {
            let mut msg = format!("Error: {e}");
            let mut cur = std::error::Error::source(&e);
            while let Some(c) = cur {
                msg.push_str(&format!("\n  caused by: {c}"));
                cur = c.source();
            }
            eprintln!("{msg}");
            ExitCode::from(if e.is_input() { 2 } else { 1 })
        }
    }
}
