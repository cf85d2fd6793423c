//! The daemon: the run directory, the control socket, the link, signals.
//!
//! Start-up order matters: signal handlers first (so an early SIGTERM still
//! cleans up), then the control socket (so a second varpd on the same run
//! directory fails before touching anything), then the link. SIGHUP makes
//! every instance re-read its configuration; SIGTERM and SIGINT stop the
//! daemon and remove its socket.

use crate::control::{self, ControlError};
use crate::engine::Engine;
use crate::{link, plugins};
use overlay_api::access::Access;
use overlay_api::{OVERLAYD_SOCKET, VARPD_SOCKET};
use std::path::PathBuf;
use std::sync::Arc;
use tokio::signal::unix::{signal, SignalKind};

/// Where the daemon keeps its files.
#[derive(Clone, Debug)]
pub struct Config {
    /// Sockets: ours (`varpd.sock`) and overlayd's (`overlayd.sock`).
    pub run_dir: PathBuf,
    /// Where plugin instances' saved state is kept (`varpd.json`, see
    /// [`crate::persist`]).
    pub state_dir: PathBuf,
    /// Who may use `varpd.sock`.
    pub access: Access,
}

/// Why the daemon could not run.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The run directory could not be created.
    #[error("cannot create run directory {path}: {source}")]
    RunDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The state directory could not be created.
    #[error("cannot create state directory {path}: {source}")]
    StateDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The control socket could not be set up.
    #[error(transparent)]
    Control(#[from] ControlError),
    /// Signal handlers could not be installed.
    #[error("cannot install signal handlers: {0}")]
    Signal(std::io::Error),
}

/// Runs varpd until SIGTERM or SIGINT. Needs a tokio runtime with I/O,
/// time and signals enabled.
pub async fn run(config: Config) -> Result<(), DaemonError> {
    let mut hup = signal(SignalKind::hangup()).map_err(DaemonError::Signal)?;
    let mut term = signal(SignalKind::terminate()).map_err(DaemonError::Signal)?;
    let mut int = signal(SignalKind::interrupt()).map_err(DaemonError::Signal)?;

    std::fs::create_dir_all(&config.run_dir).map_err(|source| DaemonError::RunDir {
        path: config.run_dir.clone(),
        source,
    })?;
    std::fs::create_dir_all(&config.state_dir).map_err(|source| DaemonError::StateDir {
        path: config.state_dir.clone(),
        source,
    })?;
    let store = crate::persist::Store::open(&config.state_dir);
    let engine = Arc::new(Engine::new(plugins::all()).with_store(store));
    let sock = config.run_dir.join(VARPD_SOCKET);
    let listener = control::bind(&sock, &config.access)?;
    let names: Vec<String> = engine.plugin_info().into_iter().map(|p| p.name).collect();
    log::info!(
        "varpd {} (pid {}): control socket {} ({}), state dir {}, plugins: {}",
        env!("CARGO_PKG_VERSION"),
        std::process::id(),
        sock.display(),
        config.access.describe(),
        config.state_dir.display(),
        names.join(", ")
    );

    let control = tokio::spawn(control::serve(
        listener,
        engine.clone(),
        config.access.clone(),
    ));
    let link = tokio::spawn(link::run(
        config.run_dir.join(OVERLAYD_SOCKET),
        engine.clone(),
    ));
    let why = loop {
        tokio::select! {
            _ = hup.recv() => {
                log::info!("SIGHUP: re-reading plugin configuration");
                engine.hangup();
            }
            _ = term.recv() => break "SIGTERM",
            _ = int.recv() => break "SIGINT",
        }
    };
    log::info!("{why}: shutting down");
    control.abort();
    link.abort();
    engine.save_all();
    engine.unlinked();
    if let Err(e) = std::fs::remove_file(&sock) {
        log::warn!("cannot remove {}: {e}", sock.display());
    }
    Ok(())
}
