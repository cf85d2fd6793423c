//! `varpd [--run-dir DIR] [--state-dir DIR] [--group GROUP]`: the virtual ARP daemon, in the
//! foreground, logging to stderr (`RUST_LOG` sets the level; info by
//! default). See the library's theory statement for what it does.

use anyhow::Context;
use clap::Parser;
use overlay_api::access::Access;
use overlay_api::{DEFAULT_RUN_DIR, DEFAULT_STATE_DIR};
use std::path::PathBuf;
use std::process::ExitCode;
use varpd::daemon::{self, Config};

/// The virtual ARP daemon: answers overlayd's target-table misses through
/// search plugins (direct, files, etcd).
#[derive(Parser, Debug)]
#[command(name = "varpd", version)]
struct Args {
    /// Directory of the control sockets (varpd.sock, overlayd.sock).
    #[arg(long, value_name = "DIR", env = "OVERLAY_RUN_DIR", default_value = DEFAULT_RUN_DIR)]
    run_dir: PathBuf,
    /// Directory for persistent state.
    #[arg(long, value_name = "DIR", env = "OVERLAY_STATE_DIR", default_value = DEFAULT_STATE_DIR)]
    state_dir: PathBuf,
    /// Operators' group: varpd.sock becomes mode 0660 in this group, and its
    /// members may connect (otherwise 0600: root and varpd's user only).
    #[arg(long, value_name = "GROUP", env = "OVERLAY_GROUP")]
    group: Option<String>,
}

fn run(args: Args) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let access = Access::from_option(args.group.as_deref())?;
    runtime.block_on(daemon::run(Config {
        run_dir: args.run_dir,
        state_dir: args.state_dir,
        access,
    }))?;
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}
